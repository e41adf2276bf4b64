"""Image reading, resizing and writing with Pillow. Every file write is atomic."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from onnxstyle.errors import InputError

MAX_PIXELS = 64_000_000  # refuse bigger images before decoding (decompression bombs)


def open_image(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    try:
        img = Image.open(path)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise InputError(f"{path}: {w}x{h} pixels is over the limit of {MAX_PIXELS:,}")
        img.load()
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image dimensions are too large (decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: cannot decode image ({e})") from None
    return img


def to_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 [H, W, 3] in the photo's upright orientation, and its alpha (or None)."""
    img = ImageOps.exif_transpose(img)
    alpha = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 / 65535.0 if arr.max() > 255 else 1.0
        grey = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
    rgb = img.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8).copy(), alpha


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    return to_rgb(open_image(path))[0]


def as_rgb_array(image) -> np.ndarray:
    """Accept a path, a PIL image or an array; return float32 RGB [H, W, 3] in 0..255."""
    if isinstance(image, (str, os.PathLike)):
        return load_rgb(image).astype(np.float32)
    if isinstance(image, Image.Image):
        return to_rgb(image)[0].astype(np.float32)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"image array of shape {arr.shape}: expected H x W x 3 RGB")
    arr = arr[..., :3].astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError("image array holds NaN or Inf")
    return arr


def fit_size(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(height, width) with the longer side `size`, aspect kept, each side >= 16."""
    h, w = shape[:2]
    scale = size / max(h, w)
    return max(16, round(h * scale)), max(16, round(w * scale))


def resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(hw):
        return image.astype(np.float32)
    pil = Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(pil.resize((hw[1], hw[0]), Image.Resampling.LANCZOS), dtype=np.float32)


def resize_mask(mask, hw: tuple[int, int]) -> np.ndarray:
    """A mask (path, PIL image or array) as float32 [H, W] in 0..1 at size hw."""
    if isinstance(mask, (str, os.PathLike)):
        mask = open_image(mask)
    if isinstance(mask, Image.Image):
        mask = np.asarray(ImageOps.exif_transpose(mask).convert("L"), np.float32)
    m = np.asarray(mask, np.float32)
    if m.ndim == 3:
        m = m.mean(axis=2)
    if m.ndim != 2:
        raise InputError(f"mask of shape {m.shape}: expected a 2-D image")
    if m.max() > 1.0:
        m = m / 255.0
    pil = Image.fromarray(m.astype(np.float32), mode="F")
    return np.asarray(pil.resize((hw[1], hw[0]), Image.Resampling.BILINEAR), np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(image) + 0.5, 0, 255).astype(np.uint8)


def save(image: np.ndarray, path: str | os.PathLike, alpha: np.ndarray | None = None) -> Path:
    """Write atomically: a temporary file beside the target, then rename over it."""
    return save_pil(Image.fromarray(to_uint8(image)), path, alpha)


def save_pil(img: Image.Image, path: str | os.PathLike, alpha: np.ndarray | None = None) -> Path:
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r} (use .png or .jpg)")
    if alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        a = Image.fromarray(alpha).resize(img.size, Image.Resampling.LANCZOS)
        img.putalpha(a)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
