"""Output paths checked before any work: the folder exists and takes a new file, the extension
is an image format Pillow writes, and an existing file is replaced only when asked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from onnxstyle.errors import InputError


def check_writable_dir(path: Path, what: str = "") -> None:
    """Refuse when the directory of `path` is missing or cannot take a new file. Probes with a
    real temporary file, so read-only mounts are caught even for root."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{what}{path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{what}{path}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise InputError(f"{what}{path}: directory {parent} is not writable "
                         f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a bad output image path before any work starts."""
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give an image file name")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise InputError(f"{path}: unknown image extension {path.suffix!r} (use .png or .jpg)")
    check_writable_dir(path, "output ")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (use --overwrite to replace it)")
    return path
