"""Where exported graphs live: `models/` in a checkout, else a per-user cache directory."""

from __future__ import annotations

import os
from pathlib import Path

from onnxstyle.errors import InputError, ModelError
from onnxstyle.runtime import layout

DEFAULT_NAME = "vgg19_gatys.onnx"
NAMES = {"avg": DEFAULT_NAME, "max": "vgg19_gatys_maxpool.onnx"}  # one graph per pooling
ENV_HOME = "ONNXSTYLE_HOME"  # overrides the directory for exported graphs


def models_dir() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "models").is_dir():
        return checkout / "models"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "onnxstyle"


def default_model(pool: str = "avg") -> Path:
    if pool not in NAMES:
        raise InputError(f"unknown pool {pool!r}: expected avg or max")
    return models_dir() / NAMES[pool]


def features_path(path: str | os.PathLike) -> Path:
    """The features graph written beside a loss graph (`x.onnx` -> `x.features.onnx`)."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".onnx") + layout.FEATURES_SUFFIX)


def resolve(model: str | os.PathLike | None, export_missing: bool = True, pool: str = "avg") -> Path:
    """The model to load: `model` as given, or the default graph (exported on first use)."""
    if model is not None:
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        return path
    path = default_model(pool)
    if path.is_file() and features_path(path).is_file():
        return path
    if not export_missing:
        raise ModelError(f"{path}: no exported graph; run `onnxstyle export`")
    try:
        from onnxstyle.export import export  # needs onnx: only where exporting is installed
    except ImportError:
        raise ModelError(
            f"{path}: no exported graph, and exporting needs `pip install 'onnxstyle[export]'`"
            " (or copy an exported .onnx here)"
        ) from None
    return export(path, pool=pool)
