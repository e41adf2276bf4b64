"""Temporally consistent video style transfer (Ruder et al. 2016): `stylize_clip`.

Needs the `video` extra (PyAV and OpenCV): `pip install 'onnxstyle[video]'`. Importing this
package loads neither; `require()` says in one line what is missing.
"""

from __future__ import annotations

from pathlib import Path

from onnxstyle.errors import InputError

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
VIDEO_SUFFIXES = tuple(CONTAINERS)
INSTALL_HINT = "video needs PyAV and OpenCV: pip install 'onnxstyle[video]'"


def require() -> None:
    """An InputError naming the install command when av or cv2 is missing."""
    try:
        import av  # noqa: F401
        import cv2  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def is_clip(path) -> bool:
    """A video file, by its suffix (a batch row whose content is one is a clip job)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def work_folder(output) -> Path:
    """Where a clip keeps its finished frames until the video is written (then removed)."""
    output = Path(output)
    return output.with_name(output.name + ".frames")


def stylize_clip(*args, **kwargs):
    """See onnxstyle.video.run.stylize_clip (imported on first use)."""
    require()
    from onnxstyle.video.run import stylize_clip as run

    return run(*args, **kwargs)


__all__ = ["require", "stylize_clip", "is_clip", "work_folder", "INSTALL_HINT", "VIDEO_SUFFIXES"]
