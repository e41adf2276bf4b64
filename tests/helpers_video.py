"""Clips for the video and batch tests (needs PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, frames: list[np.ndarray], fps: int = 12, audio: bool = True) -> Path:
    """An H.264 clip of `frames` with an AAC tone as long as the video."""
    with av.open(str(path), "w") as box:
        v = box.add_stream("libx264", rate=fps)
        v.pix_fmt, v.height, v.width = "yuv420p", *frames[0].shape[:2]
        a = box.add_stream("aac", rate=8000) if audio else None
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            box.mux(v.encode(vf))
        box.mux(v.encode())
        if a is not None:
            n = 8000 * len(frames) // fps
            tone = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / 8000)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts = 8000, k
                box.mux(a.encode(af))
            box.mux(a.encode())
    return path
