"""Image reading treats every file as untrusted; every colour mode and orientation comes out
right."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from onnxstyle.errors import InputError
from onnxstyle.runtime import fit, images
from tests.helpers_reliability import CONTENT, SHARED_SPECIAL, STYLE, png, png_bomb, png_header_bomb

# ------------------------------------------------------------------------ fixtures / makers


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A small real photo (the bundled astronaut, 64 x 64)."""
    with Image.open(CONTENT) as im:
        return np.asarray(im.convert("RGB").resize((64, 64)), np.uint8).copy()


def write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def encoded(arr_or_img, fmt: str, **kw) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bad(path, *words: str) -> str:
    with pytest.raises(InputError) as ei:
        images.load_rgb(path)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)
    return msg


# ------------------------------------------------------------------------------ bad files


def test_missing_file(tmp_path):
    bad(tmp_path / "nope.jpg", "not found")


def test_directory(tmp_path):
    bad(tmp_path, "directory")


def test_fifo_is_not_a_regular_file(tmp_path):
    p = tmp_path / "pipe.png"
    os.mkfifo(p)
    bad(p, "not a regular file")  # reading it would block forever


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_mode(tmp_path, photo):
    p = write(tmp_path, "locked.png", encoded(photo, "PNG"))
    p.chmod(0)
    bad(p, "permission denied")


def test_unreadable_file(tmp_path, photo, monkeypatch):
    """Whoever runs the tests (root ignores modes), a file open() refuses is reported as such."""
    p = write(tmp_path, "locked.png", encoded(photo, "PNG"))

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(images, "open", refuse, raising=False)
    bad(p, "permission denied")


def test_zero_byte_file(tmp_path):
    bad(write(tmp_path, "empty.jpg", b""), "empty")


def test_truncated_jpeg(tmp_path, photo):
    data = encoded(photo, "JPEG", quality=90)
    bad(write(tmp_path, "half.jpg", data[: len(data) // 2]), "truncated")


def test_truncated_png(tmp_path, photo):
    data = encoded(photo, "PNG")
    bad(write(tmp_path, "half.png", data[: len(data) // 2]), "truncated")


def test_png_with_only_its_signature(tmp_path):
    bad(write(tmp_path, "sig.png", b"\x89PNG\r\n\x1a\n"))


def test_corrupt_png_data(tmp_path, photo):
    data = bytearray(encoded(photo, "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 200] = bytes(190)  # zeroes in the middle of the deflate stream
    bad(write(tmp_path, "corrupt.png", bytes(data)))


def test_text_file_named_jpg(tmp_path):
    bad(write(tmp_path, "notes.jpg", b"these are my holiday notes\n"), "text file")


def test_random_bytes_named_png(tmp_path):
    rng = np.random.default_rng(1)
    bad(write(tmp_path, "noise.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "not an image")


@pytest.mark.parametrize("fmt", ["PCX", "ICO", "TGA"])
def test_unsupported_format(tmp_path, photo, fmt):
    bad(write(tmp_path, f"picture.{fmt.lower()}", encoded(photo, fmt)), "not supported", fmt)


def test_eps_is_refused_without_running_ghostscript(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto\n%%EOF\n"
    bad(write(tmp_path, "drawing.jpg", eps))


def test_png_bomb_refused_before_decoding(tmp_path, monkeypatch):
    p = write(tmp_path, "bomb.png", png_bomb())
    assert p.stat().st_size < 200_000  # 100 Mpx in ~100 kB
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    bad(p, "10000x10000", "before decoding")
    assert not decoded


def test_header_only_bomb_refused(tmp_path):
    bad(write(tmp_path, "huge.png", png_header_bomb()), "10,000,000,000 pixels", "bomb")


def test_image_over_memory_refused_up_front(tmp_path, photo, monkeypatch):
    p = write(tmp_path, "ok.png", encoded(photo, "PNG"))
    monkeypatch.setenv(fit.ENV_MEMORY, "64K")
    msg = bad(p, "memory", "available")
    assert "MiB" in msg  # the estimate and the limit are both given


def test_file_over_size_limit(tmp_path, monkeypatch, photo):
    p = write(tmp_path, "big.png", encoded(photo, "PNG"))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    bad(p, "byte limit")


def test_array_inputs_checked():
    with pytest.raises(InputError, match="NaN"):
        images.as_rgb_array(np.full((20, 20, 3), np.nan))
    with pytest.raises(InputError, match="shape"):
        images.as_rgb_array(np.zeros((20, 20, 5)))
    with pytest.raises(InputError, match="dtype"):
        images.as_rgb_array(np.array([["a"]]))


# ------------------------------------------------------------------- modes and orientation


def test_greyscale(tmp_path, photo):
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    rgb = images.load_rgb(write(tmp_path, "g.png", encoded(grey, "PNG")))
    assert rgb.shape == (64, 64, 3)
    assert np.array_equal(rgb[..., 0], grey) and np.array_equal(rgb[..., 2], grey)


def test_palette(tmp_path, photo):
    pal = Image.fromarray(photo).quantize(64)
    rgb = images.load_rgb(write(tmp_path, "p.png", encoded(pal, "PNG")))
    assert np.array_equal(rgb, np.asarray(pal.convert("RGB")))
    assert np.abs(rgb.astype(int) - photo).mean() < 8  # a 64-colour palette is close to the photo


def test_palette_with_transparency_keeps_alpha(tmp_path, photo):
    pal = Image.fromarray(photo).quantize(16)
    pal.info["transparency"] = 0
    rgb, alpha = images.load_rgba(write(tmp_path, "pt.png", encoded(pal, "PNG", transparency=0)))
    assert alpha is not None and set(np.unique(alpha)) <= {0, 255} and (alpha == 0).any()
    assert rgb.shape == (64, 64, 3)


def test_rgba_alpha_kept_aside_and_put_back(tmp_path, photo):
    yy, xx = np.mgrid[:64, :64]
    alpha = np.clip(255 - 4 * np.hypot(yy - 32, xx - 32), 0, 255).astype(np.uint8)
    rgba = np.dstack([photo, alpha])
    rgb, a = images.load_rgba(write(tmp_path, "a.png", encoded(rgba, "PNG")))
    assert np.array_equal(rgb, photo) and np.array_equal(a, alpha)
    out = images.save(rgb, tmp_path / "out.png", a)
    with Image.open(out) as back:
        assert back.mode == "RGBA"
        assert np.array_equal(np.asarray(back)[..., 3], alpha)
    # a smaller output gets the alpha resized to it
    small = images.save(images.resize(rgb.astype(np.float32), (32, 32)), tmp_path / "s.png", a)
    with Image.open(small) as back:
        assert back.size == (32, 32) and back.mode == "RGBA"
        want = np.asarray(Image.fromarray(alpha).resize((32, 32), Image.Resampling.LANCZOS))
        assert np.abs(np.asarray(back)[..., 3].astype(int) - want).max() <= 1


def test_grey_with_alpha(tmp_path, photo):
    la = Image.fromarray(photo).convert("LA")
    rgb, a = images.load_rgba(write(tmp_path, "la.png", encoded(la, "PNG")))
    assert a is not None and (a == 255).all() and rgb.shape == (64, 64, 3)


def test_cmyk_jpeg(tmp_path, photo):
    cmyk = Image.fromarray(photo).convert("CMYK")
    rgb = images.load_rgb(write(tmp_path, "c.jpg", encoded(cmyk, "JPEG", quality=95)))
    assert rgb.shape == photo.shape
    assert np.abs(rgb.astype(int) - photo).mean() < 6  # JPEG noise only, no inverted colours


def test_shared_cmyk_and_grey_photos():
    with Image.open(SHARED_SPECIAL / "astronaut_full.png") as im:
        ref = np.asarray(im.convert("RGB"), np.float64)
    cmyk = images.load_rgb(SHARED_SPECIAL / "cmyk_astronaut.jpg")
    assert cmyk.shape == ref.shape and np.abs(cmyk - ref).mean() < 4
    grey = images.load_rgb(SHARED_SPECIAL / "gray_L_camera.png")
    assert grey.ndim == 3 and (grey[..., 0] == grey[..., 1]).all()
    rgb, alpha = images.load_rgba(SHARED_SPECIAL / "rgba_chelsea_radial_alpha.png")
    assert alpha is not None and alpha.min() == 0 and alpha.max() == 255


def test_16bit_grey_png(tmp_path):
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    data = png(32, 32, 16, 0, (row.astype(">u2").tobytes() for row in ramp))
    rgb = images.load_rgb(write(tmp_path, "g16.png", data))
    want = np.clip(ramp / 257.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(rgb[..., 1], want)


def test_16bit_dark_grey_png_is_not_mistaken_for_8bit(tmp_path):
    dark = np.full((16, 16), 200, np.uint16)  # 200 / 65535: almost black, not 200 / 255
    data = png(16, 16, 16, 0, (row.astype(">u2").tobytes() for row in dark))
    assert images.load_rgb(write(tmp_path, "dark.png", data)).max() <= 1


def test_16bit_rgb_png(tmp_path, photo):
    wide = photo.astype(np.uint16) * 257  # exact 16-bit version of the 8-bit photo
    data = png(64, 64, 16, 2, (row.astype(">u2").tobytes() for row in wide))
    assert np.array_equal(images.load_rgb(write(tmp_path, "rgb16.png", data)), photo)


def exif_jpeg(arr: np.ndarray, orientation: int) -> bytes:
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    return encoded(img, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation,rot", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation(tmp_path, orientation, rot):
    # left half red, right half blue, as stored; the viewer turns it by the EXIF tag
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:, :20, 0] = 255
    stored[:, 20:, 2] = 255
    rgb = images.load_rgb(write(tmp_path, f"o{orientation}.jpg", exif_jpeg(stored, orientation)))
    want = np.rot90(stored, rot)  # np.rot90 k=1 is counter-clockwise
    assert rgb.shape == want.shape
    assert np.abs(rgb.astype(int) - want).mean() < 10


def test_atomic_save_leaves_old_file_on_crash(tmp_path, photo, monkeypatch):
    out = images.save(photo, tmp_path / "out.png")
    before = out.read_bytes()

    def crash(self, fp, *a, **k):
        fp.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(OSError):
        images.save(255 - photo, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left behind


def test_save_refuses_unknown_extension(tmp_path, photo):
    with pytest.raises(InputError, match="extension"):
        images.save(photo, tmp_path / "out.xyz")


# ------------------------------------------------------------------- property-based tests

FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is only a place to write
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"]
FORMATS = {"PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"], "JPEG": ["L", "RGB", "CMYK"],
           "BMP": ["1", "L", "P", "RGB"], "TIFF": MODES, "WEBP": ["RGB", "RGBA"],
           "GIF": ["L", "P"]}
LOSSLESS = {"PNG", "BMP", "TIFF", "GIF"}


@st.composite
def image_files(draw):
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    if mode == "I;16":
        img = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode == "P":
        img = img.quantize(16)
    elif mode != "RGB":
        img = img.convert(mode)
    return fmt, img, encoded(img, fmt)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(image_files())
def test_any_valid_image_loads_as_rgb(tmp_path, case):
    fmt, img, data = case
    p = tmp_path / f"x.{fmt.lower()}"
    p.write_bytes(data)
    rgb, alpha = images.load_rgba(p)
    assert rgb.dtype == np.uint8 and rgb.shape == (img.height, img.width, 3)
    if fmt in LOSSLESS and img.mode in ("RGB", "L", "P", "1"):
        assert np.array_equal(rgb, np.asarray(img.convert("RGB")))
    if alpha is not None:
        assert alpha.shape == (img.height, img.width)


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]


@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.binary(max_size=2048), st.sampled_from(MAGIC))
def test_arbitrary_bytes_give_an_image_or_an_input_error(tmp_path, body, magic):
    p = tmp_path / "fuzz.jpg"
    p.write_bytes(magic + body)
    try:
        rgb = images.load_rgb(p)
    except InputError as e:
        assert "\n" not in str(e) and str(p) in str(e)
    else:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "TIFF"]), st.floats(0.0, 0.98))
def test_truncation_anywhere_is_an_input_error(tmp_path, fmt, frac):
    with Image.open(STYLE) as im:
        data = encoded(im.convert("RGB").resize((48, 40)), fmt)
    cut = data[: int(len(data) * frac)]
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(cut)
    with pytest.raises(InputError):
        images.load_rgb(p)


def test_png_declared_size_is_checked_before_the_data(tmp_path):
    # an IHDR declaring 70 Mpx (over MAX_PIXELS, under Pillow's own bomb limit)
    data = png(10_000, 7_000, 8, 0, [bytes(8)])
    assert struct.unpack(">I", data[16:20])[0] == 10_000
    bad(write(tmp_path, "wide.png", data), "over the limit")


def test_rgb_with_embedded_icc_profile(tmp_path, photo):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = images.load_rgb(write(tmp_path, "icc.png", encoded(photo, "PNG", icc_profile=icc)))
    assert np.abs(rgb.astype(int) - photo).max() <= 2  # sRGB -> sRGB through LittleCMS
