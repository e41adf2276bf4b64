"""Frames in and out: a video file (PyAV: FFmpeg's libraries) or a folder of numbered images.

Decoding gives RGB uint8 frames in order. Encoding writes H.264 (yuv420p, CRF 17) at the given
frame rate into a temporary file beside the target and renames it over the target at the end
(never a half-written video); the input's audio streams are copied packet for packet (no
re-encoding), trimmed to the frame range when one is given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from onnxstyle.errors import InputError
from onnxstyle.runtime import images
from onnxstyle.video import CONTAINERS, VIDEO_SUFFIXES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm")
FOLDER_FPS = Fraction(25)  # frame rate of a folder of images when --fps is not given
CRF = "17"  # x264 quality: visually lossless for stylized frames
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last number in a file name


@dataclass(frozen=True)
class Source:
    """A clip to read: a video file or a folder of numbered images."""

    path: Path
    fps: Fraction
    count: int  # frames
    width: int
    height: int
    files: tuple[Path, ...] = field(default=())  # a folder's images, in frame order

    @property
    def is_folder(self) -> bool:
        return bool(self.files)

    @property
    def duration(self) -> float:
        return float(self.count / self.fps)


def numbered_images(folder: Path) -> list[Path]:
    """The folder's image files ordered by the last number in their names (frame_2 < frame_10)."""
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and _NUMBER.search(p.stem)]
    return sorted(found, key=lambda p: (int(_NUMBER.search(p.stem).group(1)), p.name))


def probe(path: str | os.PathLike, fps: Fraction | None = None) -> Source:
    """What `path` holds, or a one-line InputError (missing, not a video, no frames)."""
    path = Path(path)
    if path.is_dir():
        files = numbered_images(path)
        if not files:
            raise InputError(f"{path}: no numbered images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        h, w = images.load_rgb(files[0]).shape[:2]
        return Source(path, fps or FOLDER_FPS, len(files), w, h, tuple(files))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        with av.open(str(path)) as box:
            if not box.streams.video:
                raise InputError(f"{path}: no video stream in this file")
            stream = box.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            # Count packets (no decoding): reliable where the header's frame count is missing.
            count = sum(1 for p in box.demux(stream) if p.size)
            w, h = stream.codec_context.width, stream.codec_context.height
    except av.FFmpegError as e:
        raise InputError(f"{path}: not a video FFmpeg can read ({e.strerror or type(e).__name__})") from None
    if count == 0 or not rate:
        raise InputError(f"{path}: the video stream has no frames")
    return Source(path, fps or Fraction(rate), count, w, h)


def parse_frames(spec: str | None, count: int) -> tuple[int, int]:
    """'A:B' (0-based, B excluded, either side may be empty; negative counts from the end) ->
    (start, stop) within 0..count, or a one-line InputError."""
    if spec is None or spec.strip() in ("", ":"):
        return 0, count
    a, sep, b = spec.partition(":")
    try:
        if not sep:
            raise ValueError
        start, stop, _ = slice(int(a) if a.strip() else None, int(b) if b.strip() else None).indices(count)
    except ValueError:
        raise InputError(f"--frames {spec!r}: expected START:STOP, e.g. 0:48 or 10: or :-5") from None
    if stop <= start:
        raise InputError(f"--frames {spec!r} selects no frames of the {count} in the clip")
    return start, stop


def read(source: Source, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames start..stop-1 in order."""
    stop = source.count if stop is None else stop
    if source.is_folder:
        for f in source.files[start:stop]:
            yield images.load_rgb(f)
        return
    with av.open(str(source.path)) as box:
        for i, frame in enumerate(box.decode(box.streams.video[0])):
            if i >= stop:
                break
            if i >= start:
                yield frame.to_ndarray(format="rgb24")


def write_video(path: str | os.PathLike, frames: Sequence[Path], fps: Fraction,
                audio_from: Source | None = None, start: int = 0) -> Path:
    """Encode the image files `frames` as H.264 at `fps` into `path` (atomically), copying the
    audio of `audio_from` (a video Source) from frame `start`'s time for the clip's duration."""
    path = Path(path)
    container = CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise InputError(f"{path}: unknown video extension {path.suffix!r} (use {', '.join(VIDEO_SUFFIXES)})")

    def encode(f) -> None:
        with av.open(f, "w", format=container) as out:
            stream = out.add_stream("libx264", rate=fps, options={"crf": CRF})
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = 1 / fps
            first = images.load_rgb(frames[0])
            stream.height, stream.width = first.shape[:2]
            box = av.open(str(audio_from.path)) if audio_from is not None and not audio_from.is_folder else None
            copies = [(s, out.add_stream_from_template(s)) for s in box.streams.audio] if box else []
            for i, name in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(first if i == 0 else images.load_rgb(name), format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
            if box is not None:
                whole = start == 0 and len(frames) == audio_from.count
                _copy_audio(copies, None if whole else (start / audio_from.fps, len(frames) / audio_from.fps))
                box.close()

    try:
        return images.atomic_write(path, encode)  # a temporary file beside it, renamed at the end
    except av.FFmpegError as e:
        raise InputError(f"{path}: could not write the video ({e})") from None


def _copy_audio(copies, span: tuple[Fraction, Fraction] | None) -> None:
    """Mux every audio packet unchanged (bit for bit, same timestamps), or with `span` (start,
    duration in seconds) only those starting within it, shifted to start at 0."""
    for src, dst in copies:
        first = end = 0
        if span is not None:
            first = round(span[0] / src.time_base)
            end = first + span[1] / src.time_base
        for packet in src.container.demux(src):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if span is not None:
                if packet.pts is None or not first <= packet.pts < end:
                    continue
                packet.pts -= first
                if packet.dts is not None:
                    packet.dts -= first
            packet.stream = dst
            dst.container.mux(packet)
