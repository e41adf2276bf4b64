"""Build the fused style-transfer graph: VGG19 forward, the loss, and its hand-written backward.

Each operation is a function that emits its forward nodes and returns, beside its output, a
`backward(g_out) -> g_in` closure that emits the gradient nodes, written right below the
forward so one can be checked against the other (micrograd-style). The closures go on a tape
that `build_model` replays in reverse.

Graph contract (see layout.py for the names):
  image           [H, W, 3] float32, RGB 0..255 (H, W >= 16, any parity)
  weights         [3] float32: content_weight, style_weight, tv_weight
  content_layer_w [13], style_layer_w [13]: per-layer weights; a zero skips that layer's term
  content_<l>     [1, N, h, w]: content target features (a [1, N, 1, 1] dummy when unused)
  gram_<l>        [N, N]: style target Gram divided by its M (any values when unused)
  -> loss, content, style, tv (scalars: total and the three unweighted terms), grad [H, W, 3],
     feat_<l> [1, N, h, w]: the image's features after ReLU (used to compute targets).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxstyle.export.weights import VGGWeights
from onnxstyle.layers import ARCH, CHANNELS, LAYERS
from onnxstyle.runtime import layout

FLOAT = TensorProto.FLOAT
Backward = Callable[[str], str]


class Builder:
    """Collects nodes and initializers; `op` emits one node and returns its output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def op(self, op_type: str, inputs: list[str], hint: str = "", n_out: int = 1, **attrs):
        outs = [self.fresh(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(list(values), "i", np.int64)

    def scalar(self, x: str) -> str:
        return self.op("ReduceSum", [x], "sum", keepdims=0)


# ---------------------------------------------------------------------------------------------
# Operations: forward, then its backward.


def image_to_nchw(b: Builder, image: str) -> tuple[str, Backward]:
    x = b.op("Unsqueeze", [b.op("Transpose", [image], perm=[2, 0, 1]), b.ints(0)], "x")

    def backward(gx: str) -> str:
        return b.op("Transpose", [b.op("Squeeze", [gx, b.ints(0)])], "grad_hwc", perm=[1, 2, 0])

    return x, backward


def pixel_affine(b: Builder, x: str, w: np.ndarray, bias: np.ndarray) -> tuple[str, Backward]:
    """z = w @ rgb + bias per pixel (the weights' input convention), as a 1x1 Conv."""
    y = b.op("Conv", [x, b.const(w.reshape(3, 3, 1, 1), "pre_w"), b.const(bias, "pre_b")], "pre")

    def backward(gy: str) -> str:  # dz/drgb = w^T
        return b.op("Conv", [gy, b.const(w.T.reshape(3, 3, 1, 1), "pre_wt")], "g_pre")

    return y, backward


def conv_relu(b: Builder, x: str, w: np.ndarray, bias: np.ndarray, name: str) -> tuple[str, Backward]:
    """a = relu(conv3x3(x, w) + bias), zero padding 1."""
    wname = b.const(w, f"{name}_w")
    a = b.op("Relu", [b.op("Conv", [x, wname, b.const(bias, f"{name}_b")], name, pads=[1] * 4)], name)

    def backward(ga: str) -> str:
        # ReLU: pass the gradient where the output is positive (a Cast mask beats Where/Sign).
        mask = b.op("Cast", [b.op("Greater", [a, b.const(0.0)])], f"{name}_mask", to=FLOAT)
        gy = b.op("Mul", [ga, mask], f"g_{name}_pre")
        # Conv input-gradient: the same conv with the kernel's in/out swapped and flipped in
        # space, computed inside the graph from the forward kernel (folded at load time).
        wt = b.op("Transpose", [wname], perm=[1, 0, 2, 3])
        wflip = b.op("Slice", [wt, b.ints(-1, -1), b.ints(-4, -4), b.ints(2, 3), b.ints(-1, -1)])
        return b.op("Conv", [gy, wflip], f"g_{name}_in", pads=[1] * 4)

    return a, backward


def avg_pool(b: Builder, x: str, name: str) -> tuple[str, Backward]:
    """2x2 stride-2 mean over the valid pixels under each window: TF SAME, out = ceil(H/2)."""
    y = b.op("AveragePool", [x], name, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
             count_include_pad=0)  # fmt: skip

    def backward(gy: str) -> str:
        # Each input pixel gets g / (number of valid pixels in its window): 4 inside, 2 or 1 on a
        # last odd row/column. inv_count = 1/rows(i) * 1/cols(j) with rows(i) = min(2, H - 2i).
        shape = b.op("Shape", [x])
        hw = b.op("Slice", [shape, b.ints(2), b.ints(4)], "hw")
        hw2 = b.op("Slice", [b.op("Shape", [y]), b.ints(2), b.ints(4)], "hw2")

        def inv_count(axis: int) -> str:
            n = b.op("Gather", [hw, b.const(axis, "ax", np.int64)])
            n2 = b.op("Gather", [hw2, b.const(axis, "ax", np.int64)])
            i2 = b.op("Mul", [b.op("Range", [b.const(0, "z", np.int64), n2, b.const(1, "o", np.int64)]),
                              b.const(2, "two", np.int64)])  # fmt: skip
            cnt = b.op("Min", [b.op("Sub", [n, i2]), b.const(2, "two", np.int64)])
            return b.op("Reciprocal", [b.op("Cast", [cnt], to=FLOAT)])

        rows = b.op("Unsqueeze", [inv_count(0), b.ints(1)])  # [h2, 1]
        inv = b.op("Mul", [rows, inv_count(1)], f"{name}_inv")  # [h2, w2]
        scaled = b.op("Mul", [gy, inv], f"g_{name}_scaled")
        up = b.op("Resize", [scaled, "", b.const([1, 1, 2, 2], "scales")], f"g_{name}_up",
                  mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor")  # fmt: skip
        return b.op("Slice", [up, b.ints(0, 0), hw, b.ints(2, 3)], f"g_{name}")

    return y, backward


def spatial_size(b: Builder, feat: str) -> str:
    """M = h*w of a [1, N, h, w] tensor, as a float scalar."""
    hw = b.op("Slice", [b.op("Shape", [feat]), b.ints(2), b.ints(4)])
    return b.op("Cast", [b.op("ReduceProd", [hw], keepdims=0)], "M", to=FLOAT)


def content_term(b: Builder, feat: str, target: str, n: int) -> tuple[str, Backward]:
    """content = sum((F - P)^2) / (2 sqrt(N) sqrt(M))  (the seed's K)."""
    diff = b.op("Sub", [feat, target], "c_diff")
    k = b.op("Sqrt", [b.op("Mul", [spatial_size(b, feat), b.const(float(n))])])  # sqrt(N M)
    loss = b.op("Div", [b.scalar(b.op("Mul", [diff, diff])), b.op("Mul", [k, b.const(2.0)])])

    def backward(coef: str) -> str:  # d/dF = (F - P) / sqrt(N M)
        return b.op("Mul", [diff, b.op("Div", [coef, k])], "g_content")

    return loss, backward


def style_term(b: Builder, feat: str, target: str, n: int) -> tuple[str, Backward]:
    """style_l = sum((G/M - A)^2) / (4 N^2), G = F F^T with F as N x M."""
    f = b.op("Reshape", [feat, b.ints(n, -1)], "F")
    m = spatial_size(b, feat)
    gram = b.op("Div", [b.op("MatMul", [f, b.op("Transpose", [f], perm=[1, 0])]), m], "gram")
    diff = b.op("Sub", [gram, target], "s_diff")
    loss = b.op("Mul", [b.scalar(b.op("Mul", [diff, diff])), b.const(1.0 / (4.0 * n * n))])

    def backward(coef: str) -> str:  # d/dF = (G/M - A) F / (N^2 M)   (G symmetric)
        scale = b.op("Div", [coef, b.op("Mul", [m, b.const(float(n * n))])])
        gf = b.op("MatMul", [b.op("Mul", [diff, scale]), f], "g_gram")
        return b.op("Reshape", [gf, b.op("Shape", [feat])], "g_style")

    return loss, backward


def tv_term(b: Builder, x: str) -> tuple[str, Backward]:
    """tv = sum of squared vertical and horizontal neighbour differences, pixel units."""
    big = np.iinfo(np.int64).max

    def diff(axis: int) -> str:
        hi = b.op("Slice", [x, b.ints(1), b.ints(big), b.ints(axis)])
        lo = b.op("Slice", [x, b.ints(0), b.ints(-1), b.ints(axis)])
        return b.op("Sub", [hi, lo], "tv_d")

    dv, dh = diff(2), diff(3)
    loss = b.op("Add", [b.scalar(b.op("Mul", [dv, dv])), b.scalar(b.op("Mul", [dh, dh]))], "tv")

    def backward(coef: str) -> str:  # d/dx_i = 2 (d_{i-1} - d_i), d padded with zeros
        def grad(d: str, axis: int) -> str:
            one = [0, 0, int(axis == 2), int(axis == 3)]
            prev = b.op("Pad", [d, b.ints(*one, 0, 0, 0, 0)])  # d_{i-1}, zero at the first row
            nxt = b.op("Pad", [d, b.ints(0, 0, 0, 0, *one)])  # d_i, zero at the last row
            return b.op("Sub", [prev, nxt])

        g = b.op("Add", [grad(dv, 2), grad(dh, 3)])
        return b.op("Mul", [g, b.op("Mul", [coef, b.const(2.0)])], "g_tv")

    return loss, backward


# ---------------------------------------------------------------------------------------------
# Per-layer terms, skipped at run time when their weight is zero (an If on the weight).


def gated_term(
    b: Builder,
    term: Callable[[Builder], tuple[str, Backward]],
    coef: str,
    layer_w: str,
    g_in: str | None,
    like: str,
    kind: str,
) -> tuple[str, str]:
    """If coef != 0: (g_in + backward(coef), layer_w * loss); else (g_in, 0). Returns (g, loss)."""
    sub = Builder()
    sub.count = b.count + 100000 * (len(b.nodes) + 1)  # names unique across the whole graph
    loss, backward = term(sub)
    contrib = backward(coef)
    g_then = sub.op("Add", [g_in, contrib], f"g_{kind}") if g_in else contrib
    loss_then = sub.op("Mul", [loss, layer_w], f"{kind}_loss")
    then_graph = _subgraph(sub, [g_then, loss_then], f"{kind}_then")

    other = Builder()
    other.count = sub.count + 1
    zero = other.const(0.0, "zero")
    g_else = (
        other.op("Identity", [g_in])
        if g_in
        else other.op("ConstantOfShape", [other.op("Shape", [like])], value=numpy_helper.from_array(
            np.zeros(1, np.float32)))  # fmt: skip
    )
    else_graph = _subgraph(other, [g_else, other.op("Identity", [zero])], f"{kind}_else")
    b.count = other.count + 1

    cond = b.op("Not", [b.op("Equal", [coef, b.const(0.0)])], f"{kind}_on")
    g, loss_out = b.op("If", [cond], f"{kind}_if", n_out=2, then_branch=then_graph,
                       else_branch=else_graph)  # fmt: skip
    return g, loss_out


def _subgraph(sub: Builder, outputs: list[str], name: str) -> onnx.GraphProto:
    # Subgraph constants become Constant nodes (If branches take no initializers in ORT).
    consts = [
        helper.make_node("Constant", [], [t.name], name=t.name, value=t) for t in sub.inits
    ]
    return helper.make_graph(
        consts + sub.nodes, name, [], [helper.make_tensor_value_info(o, FLOAT, None) for o in outputs]
    )


# ---------------------------------------------------------------------------------------------


def build_model(weights: VGGWeights) -> onnx.ModelProto:
    weights.check()
    b = Builder()
    tape: list[Backward] = []
    idx = {layer: i for i, layer in enumerate(LAYERS)}

    x, bw = image_to_nchw(b, layout.IMAGE)
    tape.append(bw)
    h, bw = pixel_affine(b, x, weights.pre_w, weights.pre_b)
    tape.append(bw)

    feats: dict[str, str] = {}
    for name, _, _ in ARCH:
        if name.startswith("pool"):
            h, bw = avg_pool(b, h, name)
        else:
            w, bias = weights.convs[name]
            h, bw = conv_relu(b, h, w, bias, name)
            feats[name] = h
        tape.append(bw)

    wvec = layout.WEIGHTS
    w_content, w_style, w_tv = (
        b.op("Gather", [wvec, b.const(i, "k", np.int64)], hint) for i, hint in
        enumerate(("content_weight", "style_weight", "tv_weight"))
    )  # fmt: skip

    # Backward: walk the layers from the deepest, adding each layer's loss gradient at its
    # output before passing the gradient through that layer.
    content_losses, style_losses = [], []
    g: str | None = None
    order = list(zip(ARCH, tape[2:], strict=True))
    for (name, _, _), bw in reversed(order):
        if name in feats:
            feat, n, i = feats[name], CHANNELS[name], idx[name]
            lw_c = b.op("Gather", [layout.CONTENT_LAYER_W, b.const(i, "k", np.int64)])
            lw_s = b.op("Gather", [layout.STYLE_LAYER_W, b.const(i, "k", np.int64)])
            coef_c = b.op("Mul", [w_content, lw_c], f"coef_c_{name}")
            coef_s = b.op("Mul", [w_style, lw_s], f"coef_s_{name}")
            g, lc = gated_term(
                b, lambda s, f=feat, n=n, t=layout.content_target(name): content_term(s, f, t, n),
                coef_c, lw_c, g, feat, f"content_{name}",
            )  # fmt: skip
            g, ls = gated_term(
                b, lambda s, f=feat, n=n, t=layout.gram_target(name): style_term(s, f, t, n),
                coef_s, lw_s, g, feat, f"style_{name}",
            )  # fmt: skip
            content_losses.append(lc)
            style_losses.append(ls)
        g = bw(g)

    g = tape[1](g)  # pixel affine
    tv, tv_bw = tv_term(b, x)
    g = b.op("Add", [g, tv_bw(w_tv)])
    g_hwc = tape[0](g)

    content = b.op("Sum", content_losses, "content")
    style = b.op("Sum", style_losses, "style")
    total = b.op("Sum", [b.op("Mul", [w_content, content]), b.op("Mul", [w_style, style]),
                         b.op("Mul", [w_tv, tv])], "total")  # fmt: skip
    for out, src in ((layout.LOSS, total), (layout.CONTENT, content), (layout.STYLE, style),
                     (layout.TV, tv), (layout.GRAD, g_hwc)):  # fmt: skip
        b.nodes.append(helper.make_node("Identity", [src], [out], name=out))
    for name, feat in feats.items():
        b.nodes.append(helper.make_node("Identity", [feat], [layout.feature(name)]))

    inputs = [
        helper.make_tensor_value_info(layout.IMAGE, FLOAT, ["H", "W", 3]),
        helper.make_tensor_value_info(layout.WEIGHTS, FLOAT, [3]),
        helper.make_tensor_value_info(layout.CONTENT_LAYER_W, FLOAT, [len(LAYERS)]),
        helper.make_tensor_value_info(layout.STYLE_LAYER_W, FLOAT, [len(LAYERS)]),
    ]
    for name in LAYERS:
        n = CHANNELS[name]
        inputs.append(helper.make_tensor_value_info(layout.content_target(name), FLOAT,
                                                    [1, n, f"ch_{name}", f"cw_{name}"]))
        inputs.append(helper.make_tensor_value_info(layout.gram_target(name), FLOAT, [n, n]))
    outputs = [helper.make_tensor_value_info(o, FLOAT, []) for o in
               (layout.LOSS, layout.CONTENT, layout.STYLE, layout.TV)]  # fmt: skip
    outputs.append(helper.make_tensor_value_info(layout.GRAD, FLOAT, ["H", "W", 3]))
    for name in LAYERS:
        outputs.append(helper.make_tensor_value_info(
            layout.feature(name), FLOAT, [1, CHANNELS[name], f"fh_{name}", f"fw_{name}"]))

    graph = helper.make_graph(b.nodes, "onnxstyle_gatys", inputs, outputs, b.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", layout.OPSET)],
        producer_name="onnxstyle",
    )
    model.ir_version = layout.IR_VERSION
    return model
