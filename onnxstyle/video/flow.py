"""Optical flow (OpenCV), backward warping and Ruder et al.'s reliability mask.

Flows are H x W x 2 float32 (dx, dy) in pixels: `flow(a, b)[y, x]` is where the pixel (x, y) of
`a` moves to in `b`. The video loop needs the backward flow (frame t -> t-1) to warp the previous
stylized frame onto frame t, and the forward flow (t-1 -> t) to tell where that warp is reliable.
"""

from __future__ import annotations

import cv2
import numpy as np

from onnxstyle.errors import InputError

METHODS = ("dis", "farneback")
DEFAULT_METHOD = "dis"  # more accurate and faster than Farneback on the known-motion clip (docs/video.md)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def flow(a: np.ndarray, b: np.ndarray, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Dense flow from RGB image `a` to RGB image `b` (same size)."""
    ga, gb = _grey(a), _grey(b)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        # The preset stops at half resolution; down to full resolution its error on the pan+zoom clip
        # halves (0.114 -> 0.054 px at 128 x 96; docs/video.md, "Sharpness"), and under a zoom the warped
        # start's error is mostly the flow's.
        dis.setFinestScale(0)
        out = dis.calc(ga, gb, None)
    elif method == "farneback":
        out = cv2.calcOpticalFlowFarneback(ga, gb, None, pyr_scale=0.5, levels=5, winsize=15,
                                           iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    else:
        raise InputError(f"unknown flow method {method!r}: expected one of {', '.join(METHODS)}")
    return out.astype(np.float32)


BILINEAR, LANCZOS = cv2.INTER_LINEAR, cv2.INTER_LANCZOS4  # the latter: an 8 x 8 windowed sinc


def warp(image: np.ndarray, flow_to_source: np.ndarray, interpolation: int = BILINEAR,
         fill: np.ndarray | None = None) -> np.ndarray:
    """Backward warp: out[y, x] = image[(x, y) + flow_to_source[y, x]], bilinear unless
    `interpolation` (BILINEAR, LANCZOS) says otherwise. A pixel whose source lies outside the
    image takes `fill`'s value there (an array of the output's shape), or the nearest edge
    pixel's when `fill` is None. With the backward flow t -> t-1 this carries frame t-1 onto t."""
    h, w = flow_to_source.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow_to_source[..., 0], gy + flow_to_source[..., 1]
    out = cv2.remap(np.ascontiguousarray(image, np.float32), mx, my, interpolation, borderMode=cv2.BORDER_REPLICATE)
    if fill is not None:
        outside = outside_source(flow_to_source)
        out[outside] = np.asarray(fill, np.float32)[outside]
    return out


def outside_source(flow_to_source: np.ndarray) -> np.ndarray:
    """H x W bool: where (x, y) + flow_to_source lies outside the image (nothing to carry over)."""
    h, w = flow_to_source.shape[:2]
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    sx, sy = gx + flow_to_source[..., 0], gy + flow_to_source[..., 1]
    return (sx < 0) | (sx > w - 1) | (sy < 0) | (sy > h - 1)


def reliability(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder et al. (2016) eq. 2-3: 1 where the backward flow (t -> t-1) can be trusted, 0 at
    disocclusions (the forward flow, warped onto frame t, does not cancel the backward one) and at
    motion boundaries (a large gradient of the backward flow). H x W float32."""
    w_fwd = warp(forward, backward)  # w~(x) = w(x + w^(x))
    s = w_fwd + backward
    disoccluded = (s**2).sum(-1) > 0.01 * ((w_fwd**2).sum(-1) + (backward**2).sum(-1)) + 0.5
    du = np.gradient(backward[..., 0])
    dv = np.gradient(backward[..., 1])
    grad2 = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    boundary = grad2 > 0.01 * (backward**2).sum(-1) + 0.002
    outside = outside_source(backward)  # came from outside frame t-1
    return (~(disoccluded | boundary | outside)).astype(np.float32)


# Inside the frame no pixel is let go entirely. A pixel the temporal term does not hold, amid ones it
# holds, is moved by L-BFGS with steps scaled for the held ones' stiffness and ends near 0 or 255: a
# speck, carried on by the next frame's warp. On the pan+zoom clip Ruder's mask drops 17 to 74 pixels
# a frame where the fine flow's noise crosses the motion-boundary threshold (the true flow has none);
# they moved by 100 levels rms and made all of the temporal error above the start's; held at 0.1,
# by 1.5 (docs/video.md, "Sharpness").
UNRELIABLE_HOLD = 0.1


def hold(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """The temporal term's c per pixel: 1 where reliable, UNRELIABLE_HOLD at disocclusions and motion
    boundaries, 0 only where the pixel came from outside frame t-1 (its start is a fresh canvas)."""
    c = np.maximum(reliability(forward, backward), UNRELIABLE_HOLD)
    return np.where(outside_source(backward), 0.0, c).astype(np.float32)


def endpoint_error(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean endpoint error (Euclidean distance between flow vectors, in px), over `mask` if given."""
    err = np.sqrt(((estimate - truth) ** 2).sum(-1))
    return float(err[mask > 0].mean() if mask is not None else err.mean())
