"""Image reading, resizing and writing with Pillow, treating every file as untrusted.

Reading refuses, with one line naming the file: a missing path, a directory or other non-regular
file, an unreadable or empty file, text, a format outside FORMATS, a truncated or corrupt file,
and an image whose declared size is over MAX_PIXELS or would not fit in memory (both checked
from the header, before any pixel is decoded). Every colour mode comes out as upright sRGB-ish
RGB uint8, with any alpha kept aside so the writer can put it back. Every file write is atomic.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from onnxstyle.errors import InputError
from onnxstyle.files import atomic_write
from onnxstyle.runtime import fit

# Formats read; others (EPS runs Ghostscript, PDF/ICO/PCX/... are no photos) are refused.
# JPEG includes MPO, what many phone cameras write.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
MAX_PIXELS = 64_000_000  # refuse bigger images before decoding (decompression bombs)
# An encoded image is never larger than its raw pixels: 64 Mpx x 4 channels x 2 bytes = 512 MB.
MAX_FILE_BYTES = 1 << 30
DECODE_BYTES_PER_PIXEL = 24  # decoded uint8 RGBA + float32 RGB copy + resize buffers (measured ~20)

_open_lock = threading.Lock()  # warnings.catch_warnings is process-wide: one opener at a time


# ---------------------------------------------------------------------------------- reading


def _describe_text(data: bytes) -> bool:
    """True when the bytes look like text (so the message can say so)."""
    head = data[:512]
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _read_bytes(path: Path) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise InputError(f"{path}: {st.st_size:,} bytes is over the {MAX_FILE_BYTES:,} byte limit")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        raise InputError(f"{path}: permission denied (the file is not readable)") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def _identify(data: bytes) -> str | None:
    """The format name Pillow gives these bytes (header only), or None."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except Exception:  # any plugin may fail on hostile headers; we only want a name
        return None


class ImageTooLarge(InputError):
    """An image over the pixel limit (or a decompression bomb), refused before decoding."""


def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and decode an image file, refusing anything unsafe or broken with an InputError."""
    path = Path(path)
    return decode_image(_read_bytes(path), str(path), max_pixels)


def decode_image(data: bytes, path: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image from bytes (an upload) as open_image does; `path` names it in errors.
    The pixel limit is checked from the header, before any pixel is decoded (ImageTooLarge)."""
    if not data:
        raise InputError(f"{path}: file is empty (0 bytes)")
    max_pixels = min(max_pixels, MAX_PIXELS)
    Image.init()  # register every plugin, so FORMATS (MPO, WEBP, TIFF) are all known
    try:
        with _open_lock, warnings.catch_warnings():
            # MAX_PIXELS below is stricter than Pillow's warning: silence it, refuse ourselves
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        w, h = img.size
        if w < 1 or h < 1:
            raise InputError(f"{path}: image of {w}x{h} pixels is empty")
        if w * h > max_pixels:
            raise ImageTooLarge(f"{path}: {w}x{h} pixels is over the limit of {max_pixels:,} "
                             "(a decompression bomb?); refused before decoding")
        fit.check_memory(w * h * DECODE_BYTES_PER_PIXEL, f"{path}: decoding {w}x{h} pixels")
        img.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        if _describe_text(data):
            raise InputError(f"{path}: a text file, not an image") from None
        fmt = _identify(data)
        if fmt is not None:
            raise InputError(f"{path}: {fmt} images are not supported "
                             f"(use one of {', '.join(FORMATS)})") from None
        raise InputError(f"{path}: not an image file in a known format") from None
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)):,} pixels" if m else "its size"
        raise ImageTooLarge(f"{path}: {size} is over the limit of {max_pixels:,} (a decompression "
                         "bomb?); refused before decoding") from None
    except MemoryError:
        raise InputError(f"{path}: not enough memory to decode this image") from None
    except OSError as e:
        msg = str(e)
        if "truncated" in msg or "broken data stream" in msg:
            raise InputError(f"{path}: the file is truncated (incomplete download?)") from None
        raise InputError(f"{path}: cannot decode image ({msg[:120]})") from None
    except Exception as e:  # Pillow plugins raise SyntaxError, ValueError, struct.error, ...
        raise InputError(f"{path}: corrupt image ({type(e).__name__}: {str(e)[:100]})") from None
    return img


# ---------------------------------------------------------------------------- colour modes

_SRGB = None


def _srgb_profile():
    global _SRGB
    if _SRGB is None:
        _SRGB = ImageCms.createProfile("sRGB")
    return _SRGB


def _colour_managed(img: Image.Image) -> Image.Image | None:
    """RGB through the embedded ICC profile (CMYK or RGB photos), or None if there is none."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("CMYK", "RGB"):
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(img, src, _srgb_profile(), outputMode="RGB")
    except Exception:  # a broken or unsupported profile: fall back to the plain conversion
        return None


def _high_depth_grey(img: Image.Image) -> np.ndarray:
    """uint8 grey from 16-bit ("I;16*", or "I" from a 16-bit PNG/TIFF) or float images."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
    elif img.mode.startswith("I;16") or arr.size == 0 or arr.max() > 255 or (
        img.format == "PNG"
    ):
        arr = arr / 257.0  # 65535 -> 255
    arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 [H, W, 3] in the photo's upright orientation, and its alpha (or None)."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # corrupt EXIF: keep the stored orientation rather than fail
        pass
    alpha = None
    try:
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            grey = _high_depth_grey(img)
            return np.repeat(grey[..., None], 3, axis=2), None
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode in ("RGBa", "La"):  # premultiplied: straighten first
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA", "PA"):
            alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
        if img.mode == "L" and "transparency" in img.info:
            img = img.convert("LA")
            alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
        rgb = _colour_managed(img) or img.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(f"cannot convert a {img.mode} image to RGB ({e})") from None
    return np.asarray(rgb, dtype=np.uint8).copy(), alpha


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    return to_rgb(open_image(path))[0]


def load_rgba(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB uint8, alpha uint8 or None) of an image file."""
    return to_rgb(open_image(path))


def as_rgb_array(image) -> np.ndarray:
    """Accept a path, a PIL image or an array; return float32 RGB [H, W, 3] in 0..255."""
    if isinstance(image, (str, os.PathLike)):
        return load_rgb(image).astype(np.float32)
    if isinstance(image, Image.Image):
        return to_rgb(image)[0].astype(np.float32)
    try:
        arr = np.asarray(image)
    except Exception:
        raise InputError(f"cannot use a {type(image).__name__} as an image") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"image array of dtype {arr.dtype}: expected numbers")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"image array of shape {arr.shape}: expected H x W x 3 RGB")
    if arr.size and arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise InputError(f"image array of {arr.shape[1]}x{arr.shape[0]} pixels is over the limit "
                         f"of {MAX_PIXELS:,}")
    arr = arr[..., :3].astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError("image array holds NaN or Inf")
    return arr


# ------------------------------------------------------------------------------- geometry


def fit_size(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(height, width) with the longer side `size`, aspect kept, each side >= 16."""
    h, w = shape[:2]
    scale = size / max(h, w)
    return max(16, round(h * scale)), max(16, round(w * scale))


def resize(image: np.ndarray, hw: tuple[int, int], wrap: bool = False) -> np.ndarray:
    """Lanczos to hw. `wrap`: the picture is a torus (--tileable), so the filter reads across its
    edges: the picture tiled 3 x 3 is resized to 3 hw and the middle copy kept."""
    if image.shape[:2] == tuple(hw):
        return image.astype(np.float32)
    if wrap:
        big = resize(np.tile(image, (3, 3, 1)), (3 * hw[0], 3 * hw[1]))
        return big[hw[0]:2 * hw[0], hw[1]:2 * hw[1]]
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


# -------------------------------------------------------------------------------- writing


def save(image: np.ndarray, path: str | os.PathLike, alpha: np.ndarray | None = None) -> Path:
    """Write atomically; `alpha` (from to_rgb) goes back on formats that hold it."""
    return save_pil(Image.fromarray(to_uint8(image)), path, alpha)


def save_pil(img: Image.Image, path: str | os.PathLike, alpha: np.ndarray | None = None) -> Path:
    """Write a PIL image atomically (temporary file beside the target, then rename)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r} (use .png or .jpg)")
    if alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        a = Image.fromarray(np.asarray(alpha, np.uint8))
        img.putalpha(a.resize(img.size, Image.Resampling.LANCZOS) if a.size != img.size else a)
    opts = {"quality": 95} if fmt == "JPEG" else {}
    return atomic_write(path, lambda f: img.save(f, format=fmt, **opts))
