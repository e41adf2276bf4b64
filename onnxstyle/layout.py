"""Names and versions of the exported graph's interface, shared by exporter and runtime."""

from __future__ import annotations

LAYOUT_VERSION = "6"  # bump when inputs, outputs or their meaning change
OPSET = 17  # loads in onnxruntime 1.31 (gpu) and 1.32
IR_VERSION = 8  # onnx 1.23 writes IR 11 by default; onnxruntime-gpu 1.31 refuses it

IMAGE = "image"
WEIGHTS = "weights"  # [content_weight, style_weight, tv_weight]
CONTENT_LAYER_W = "content_layer_weights"
STYLE_LAYER_W = "style_layer_weights"
STYLE_MASKED = "style_masked"  # bool: use STYLE_MASKS
STYLE_MASKS = "style_masks"  # [K, H, W] each style's region
STYLE_BLEND = "style_blend"  # [K] each masked style's weight
TILED = "tiled"  # bool: one tile of a tiled evaluation (export/graph.py)
LAYER_M = "layer_m"  # [13] the whole picture's h*w per layer (when tiled)
LOSS, CONTENT, STYLE, TV, GRAD = "loss", "content", "style", "tv", "grad"
META_POOL = "onnxstyle.pool"
META_KIND = "onnxstyle.kind"  # "loss" (loss and gradient) or "features" (targets)
CIRCULAR_SUFFIX = ".circular.onnx"  # the circular-padding pair beside each (--tileable)
FEATURES_SUFFIX = ".features.onnx"  # the features graph beside each loss graph
WEIGHTS_SUFFIX = ".weights"  # the VGG19 tensors both graphs read (ONNX external data)

# Metadata keys written into the model.
META_LAYOUT = "onnxstyle.layout"
META_WEIGHTS = "onnxstyle.weights"
META_WEIGHTS_SHA256 = "onnxstyle.weights_sha256"
# A static loss graph (export/static.py): what it was made for, and the dynamic graph it came from
# (whose features graph serves it: targets are computed at other sizes).
META_STATIC = "onnxstyle.static"
META_STATIC_OF = "onnxstyle.static_of"


def static_key(hw: tuple[int, int], content: list[str], style: list[str], order: list[str]) -> str:
    """META_STATIC's value: "WxH content=conv4_2;style=conv1_1,..." (layers in `order`)."""
    def names(layers: list[str]) -> str:
        return ",".join(sorted(layers, key=order.index))

    return f"{hw[1]}x{hw[0]} content={names(content)};style={names(style)}"


def content_target(layer: str) -> str:
    return f"content_{layer}"


def gate(term: str, layer: str) -> str:
    """bool scalar: whether `term` ("content" or "style") at `layer` runs (its coefficient is
    not 0); fed from the host so an If reads it with no device-to-host copy."""
    return f"use_{term}_{layer}"


def gram_target(layer: str) -> str:
    return f"gram_{layer}"


# The style losses (export/graph.py): "gram" (Gatys) and the others, each chosen per layer by
# its gate (gate(kind, layer)), gram where none is set.
STYLE_LOSSES = ("gram", "covariance", "scaled", "w2", "histogram", "sliced")


def mean_target(layer: str) -> str:
    """[K, N, 1]: the whole picture's feature means per style (a tiled covariance's gradient); w2:
    the style's means, tiled [K, N, 2] (the picture's means and the mean term's gradient)."""
    return f"mean_{layer}"


def sorted_target(layer: str) -> str:
    """[J, P, a, b]: histogram/sliced target, the style's sorted values [1, P, 1, M] (untiled; masked
    each style's [K, P, 1, Mt]) or each position's matched value [1, P, h, w] (tiled; masked the
    two planes of export/graph.py tiled_sorted_term)."""
    return f"sorted_{layer}"


def projection(layer: str) -> str:
    """[N, P]: the sliced loss's unit directions."""
    return f"proj_{layer}"


def feature(layer: str) -> str:
    return f"feat_{layer}"


# The L-BFGS step graphs (export/lbfgs_graph.py, shipped in onnxstyle/data/; runtime/
# device_lbfgs.py runs them): one small model each, no weights, vectors of dynamic size n.
LBFGS_VERSION = "2"  # bump when the graphs' inputs, outputs or meaning change
META_LBFGS = "onnxstyle.lbfgs"  # metadata: "<graph> <LBFGS_VERSION>"
LBFGS_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # graph: (inputs, outputs)
    "direction": (("x", "g", "S", "Y", "rho", "gamma", "newest", "lo", "hi"),
                  ("d", "gd", "dnorm", "pgmax")),
    "segment": (("x", "d", "g", "p", "lo", "hi"), ("ds", "gd", "tmax")),
    "trial": (("x", "d", "g", "t", "lo", "hi"), ("xt", "gs")),
    "slope": (("x", "xt", "gt"), ("gts",)),
    "pair": (("x", "xt", "g", "gt"), ("s", "y", "sy", "yy")),
}


def lbfgs_file(graph: str) -> str:
    return f"lbfgs_{graph}.onnx"
