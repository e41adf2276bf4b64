"""A clip with known motion: a photograph panned and zoomed by known amounts, so the true flow
between any two frames is known exactly (the flow and temporal-consistency checks, docs/video.md)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PanZoom:
    """Frame t shows the photo around centre + t * pan (photo px), at scale * (1 + zoom) ** t
    frame px per photo px."""

    width: int = 160
    height: int = 120
    scale: float = 0.5
    pan: tuple[float, float] = (2.0, 1.0)
    zoom: float = 0.015
    centre: tuple[float, float] | None = None  # default: the photo's centre

    def _affine(self, t: int, photo_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
        """(c_t, s_t): frame point x maps to photo point c_t + (x - x_c) / s_t."""
        c0 = np.array(self.centre if self.centre else ((photo_hw[1] - 1) / 2, (photo_hw[0] - 1) / 2))
        return c0 + t * np.asarray(self.pan), self.scale * (1 + self.zoom) ** t

    @property
    def frame_centre(self) -> np.ndarray:
        return np.array([(self.width - 1) / 2, (self.height - 1) / 2])

    def frames(self, photo: np.ndarray, n: int) -> list[np.ndarray]:
        """n RGB uint8 frames (the photo low-passed for the sampling rate: no aliasing)."""
        out = []
        for t in range(n):
            c, s = self._affine(t, photo.shape[:2])
            src = cv2.GaussianBlur(photo, (0, 0), max(0.5 / s - 0.5, 1e-3)) if s < 1 else photo
            m = np.array([[1 / s, 0, c[0] - self.frame_centre[0] / s], [0, 1 / s, c[1] - self.frame_centre[1] / s]])
            out.append(cv2.warpAffine(src, m, (self.width, self.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                      borderMode=cv2.BORDER_REFLECT))
        return out

    def flow(self, t_from: int, t_to: int, photo_hw: tuple[int, int]) -> np.ndarray:
        """The true flow from frame t_from to frame t_to (H x W x 2, px)."""
        c1, s1 = self._affine(t_from, photo_hw)
        c2, s2 = self._affine(t_to, photo_hw)
        gx, gy = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        x = np.stack([gx, gy], -1)
        p = c1 + (x - self.frame_centre) / s1
        return (self.frame_centre + s2 * (p - c2) - x).astype(np.float32)

    def visible(self, flow: np.ndarray) -> np.ndarray:
        """1 where x + flow lands inside the frame (seen in both frames), else 0."""
        gx, gy = np.meshgrid(np.arange(self.width), np.arange(self.height))
        sx, sy = gx + flow[..., 0], gy + flow[..., 1]
        return ((sx >= 0) & (sx <= self.width - 1) & (sy >= 0) & (sy <= self.height - 1)).astype(np.float32)


def temporal_error(frames: list[np.ndarray], backward_flows: list[np.ndarray], masks: list[np.ndarray],
                   interpolation: int = cv2.INTER_LINEAR) -> float:
    """Mean over t >= 1 of the mean squared difference (per value, 0..255 units) between frame t
    and frame t-1 warped by the true backward flow t -> t-1 (bilinear unless `interpolation`
    says otherwise), on pixels visible in both."""
    from onnxstyle.video.flow import warp

    errs = []
    for t in range(1, len(frames)):
        d = (frames[t].astype(np.float32) - warp(frames[t - 1], backward_flows[t - 1], interpolation)) ** 2
        m = masks[t - 1] > 0
        errs.append(float(d[m].mean()))
    return float(np.mean(errs))
