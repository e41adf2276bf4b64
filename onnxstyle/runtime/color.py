"""Preserving the content's colours (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving
Color in Neural Artistic Style Transfer"): luminance-only transfer, or colour matching of the
style image to the content's statistics (the linear transforms of the authors'
NeuralImageSynthesis: Cholesky, PCA or symmetric)."""

from __future__ import annotations

import numpy as np

from onnxstyle.errors import InputError

MATCH = ("chol", "pca", "sym")

# ITU-R BT.601 full-range YCbCr (JPEG), images in 0..255.
_RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = np.linalg.inv(_RGB2YCC)
_OFFSET = np.array([0.0, 128.0, 128.0])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ _RGB2YCC.T + _OFFSET


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    return (np.asarray(ycc, np.float64) - _OFFSET) @ _YCC2RGB.T


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y replicated to 3 channels: what the network sees in luminance-only transfer."""
    y = rgb_to_ycbcr(rgb)[..., 0]
    return np.repeat(y[..., None], 3, axis=2).astype(np.float32)


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """The style's luminance shifted and scaled to the content's mean and deviation (paper, eq. 1)."""
    s = style_y.astype(np.float64)
    c = content_y.astype(np.float64)
    out = (s - s.mean()) * (c.std() / max(s.std(), 1e-6)) + c.mean()
    return np.clip(out, 0, 255).astype(np.float32)


def with_chroma(output: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The output's luminance with the content's Cb and Cr."""
    y = rgb_to_ycbcr(output)[..., 0]
    ycc = rgb_to_ycbcr(content)
    ycc[..., 0] = y
    return np.clip(ycbcr_to_rgb(ycc), 0, 255).astype(np.float32)


def _sqrtm(c: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def color_transform(style: np.ndarray, content: np.ndarray, mode: str = "pca") -> np.ndarray:
    """A (3x3) and b with A @ s + b having the content's colour mean and covariance."""
    if mode not in MATCH:
        raise InputError(f"unknown colour-match mode {mode!r}: expected one of {', '.join(MATCH)}")
    s = style.reshape(-1, 3).astype(np.float64)
    c = content.reshape(-1, 3).astype(np.float64)
    mu_s, mu_c = s.mean(0), c.mean(0)
    eye = np.eye(3) * 1e-5  # keeps flat (e.g. greyscale) images invertible
    cov_s = np.cov(s, rowvar=False) + eye
    cov_c = np.cov(c, rowvar=False) + eye
    if mode == "chol":
        a = np.linalg.cholesky(cov_c) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    elif mode == "pca":
        a = _sqrtm(cov_c) @ np.linalg.inv(_sqrtm(cov_s))
    else:  # sym: the transform with A cov_s A^T = cov_c that is symmetric
        hs = _sqrtm(cov_s)
        hs_inv = np.linalg.inv(hs)
        a = hs_inv @ _sqrtm(hs @ cov_c @ hs) @ hs_inv
    return a, mu_c - a @ mu_s


def match_colors(style: np.ndarray, content: np.ndarray, mode: str = "pca",
                 clip: bool = True) -> np.ndarray:
    """The style image recoloured to the content's colour statistics."""
    a, b = color_transform(style, content, mode)
    out = style.reshape(-1, 3).astype(np.float64) @ a.T + b
    out = out.reshape(style.shape)
    return (np.clip(out, 0, 255) if clip else out).astype(np.float32)
