"""Where onnxstyle keeps files, and how it writes them. Below both `export` and `runtime`.

Exported graphs: `$ONNXSTYLE_HOME` if set; else `models/` of a source checkout (an editable
install or running from the tree, or any install run from inside the checkout: the current
directory); else `$XDG_CACHE_HOME/onnxstyle` (`~/.cache/onnxstyle`).
Downloaded weights: `$ONNXSTYLE_WEIGHTS_CACHE`, else `weights/` in that cache folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from onnxstyle import layout

DEFAULT_NAME = "vgg19_gatys.onnx"
NAMES = {"avg": DEFAULT_NAME, "max": "vgg19_gatys_maxpool.onnx"}  # one graph per pooling
ENV_HOME = "ONNXSTYLE_HOME"  # overrides the directory for exported graphs


def user_cache() -> Path:
    """The per-user cache folder (XDG base directory specification)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onnxstyle"


PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the checkout, when running from one


def checkout_models(root: Path) -> Path | None:
    """`root`/models when `root` is an onnxstyle source checkout (its pyproject.toml names
    onnxstyle and it has a models/ folder), else None."""
    try:
        named = 'name = "onnxstyle"' in (root / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return root / "models" if named and (root / "models").is_dir() else None


def models_dir() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    # the package's own checkout; else the checkout the command runs in (a `pip install .` run
    # from its clone, as the README's demo is, uses the clone's models/ as its tests do)
    return checkout_models(PACKAGE_ROOT) or checkout_models(Path.cwd()) or user_cache()


def default_model(pool: str = "avg") -> Path:
    return models_dir() / NAMES[pool]


def features_path(path: str | os.PathLike) -> Path:
    """The features graph written beside a loss graph (`x.onnx` -> `x.features.onnx`)."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".onnx") + layout.FEATURES_SUFFIX)


def static_path(path: str | os.PathLike, hw: tuple[int, int]) -> Path:
    """The static variant of a loss graph at H x W (`onnxstyle export --static WxH`), beside it:
    `x.onnx` -> `x.static-WxH.onnx`."""
    path = Path(path)
    return path.with_name(f"{path.name.removesuffix('.onnx')}.static-{hw[1]}x{hw[0]}.onnx")


def circular_path(path: str | os.PathLike) -> Path:
    """The circular-padding loss graph (--tileable) written beside a loss graph (`x.onnx` ->
    `x.circular.onnx`, its features graph `x.circular.features.onnx`), reading the same weights."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".onnx") + layout.CIRCULAR_SUFFIX)


def exported(path: str | os.PathLike) -> bool:
    """Whether the graph at `path` and its features graph are there (the weights file, where the
    pair has one, is checked when onnxruntime loads them)."""
    return Path(path).is_file() and features_path(path).is_file()


def weights_path(path: str | os.PathLike) -> Path:
    """The tensors file both graphs of a pair read (`x.onnx` -> `x.weights`)."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".onnx") + layout.WEIGHTS_SUFFIX)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import: os.umask is process-wide and not thread-safe to probe


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call write(binary file) on a temporary file beside `path`, fsync it, then rename it over
    `path`: a crash leaves either the old file or the new one, never a half-written one."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def hash_file(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests in one pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()
