"""Build the fused style-transfer graph: VGG19 forward, the loss, and its hand-written backward.

Each operation is a function that emits its forward nodes and returns, beside its output, a
`backward(g_out) -> g_in` closure that emits the gradient nodes, written right below the
forward so one can be checked against the other (micrograd-style). The closures go on a tape
that `build_model` replays in reverse.

Graph contract (see layout.py for the names):
  image           [H, W, 3] float32, RGB 0..255 (H, W >= 16, any parity)
  weights         [3] float32: content_weight, style_weight, tv_weight
  content_layer_w [13], style_layer_w [13]: per-layer weights
  use_<term>_<l>  bool scalars, content and style per layer: weight * layer weight != 0 (the
                  runtime computes them: an If's condition must be in host memory, so a
                  condition computed in the graph would cost a device-to-host copy on CUDA)
  content_<l>     [1, N, h, w]: content target features (a [1, N, 1, 1] dummy when unused)
  gram_<l>        [K, N, N]: style targets, each style's Gram divided by its M (K = 1 unmasked)
  style_masked    bool scalar: use the masks (else K must be 1 and the plain Gram is used)
  style_masks     [K, H, W]: style k's region in the image (a [1, 1, 1] dummy when unmasked)
  style_blend     [K]: each style's weight in the masked loss
  tiled           bool scalar: evaluate one tile of a tiled run (runtime/tiles.py): the
                  normalisers M come from layer_m (the whole picture's), and gram_<l> holds
                  W_k = blend_k (G_k/S_k - A_k) / (N^2 S_k) from the whole picture, so each
                  style gradient is local: coef * sum_k W_k F diag(m_k); the style loss is 0
  layer_m         [13]: the whole picture's h*w per layer (read when tiled)
  use_<kind>_<l>  bool scalars, kind covariance | scaled | w2 | histogram | sliced: the layer's
                  style loss (none set: gram); with them mean_<l> [K, N, 1] (covariance, tiled: the
                  whole picture's means; w2: the style's means, tiled [K, N, 2]: see
                  tiled_style_term), gram_<l> (w2: the square root of the style's covariance),
                  sorted_<l> [J, P, a, b] (histogram, sliced: the sorted target [1, P, 1, M],
                  masked one per style [K, P, 1, Mt]; tiled each position's matched value
                  [1, P, h, w], masked [2, P, h, w]: see tiled_sorted_term),
                  proj_<l> [N, P] (sliced)
  -> loss, content, style, tv (scalars: total and the three unweighted terms), grad [H, W, 3].

The features graph written beside it (build_features_model) maps image -> feat_<l> [1, N, h, w],
the features after ReLU, from which the runtime computes the targets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxstyle import layout
from onnxstyle.export.weights import VGGWeights
from onnxstyle.layers import ARCH, CHANNELS, LAYERS

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


BIG = np.iinfo(np.int64).max


def circular_pad(b: Builder, x: str) -> tuple[str, Backward]:
    """x [1, C, h, w] padded by one row and column on each side from the opposite edges (the
    picture a torus: --tileable); h, w >= 2."""
    def pad(v: str, axis: int) -> str:
        last, first = (b.op("Slice", [v, b.ints(s), b.ints(e), b.ints(axis)]) for s, e in ((-1, BIG), (0, 1)))
        return b.op("Concat", [last, v, first], axis=axis)

    def unpad(g: str, axis: int) -> str:  # the adjoint: each border row back onto the row it copies
        def cut(v: str, s: int, e: int) -> str:
            return b.op("Slice", [v, b.ints(s), b.ints(e), b.ints(axis)])

        core = cut(g, 1, -1)
        return b.op("Concat", [b.op("Add", [cut(core, 0, 1), cut(g, -1, BIG)]), cut(core, 1, -1),
                               b.op("Add", [cut(core, -1, BIG), cut(g, 0, 1)])], axis=axis)

    y = pad(pad(x, 2), 3)

    def backward(gy: str) -> str:
        return unpad(unpad(gy, 3), 2)

    return y, backward


# Winograd F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
# each 4x4 output tile from a 6x6 input tile with 36 multiplies per input-output channel pair
# instead of 144, the interpolation points 0, +-1, +-2 and infinity (their eq. 7-8 matrices).
WINO_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float32)
WINO_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float32)
WINO_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], np.float32)
# Layers with at least this many input x output channels use it (conv2_2 to conv5_1, which hold
# 84 % of the graph's multiplies at any size): the whole loss+gradient at 512 px took 0.75x the
# all-Conv graph's time (benchmarks/results/winograd.md). conv2_1 and conv1_2 lose: with 64 input
# channels the transforms and memory moves cost more than the products save (one layer, forward
# and backward at 512 px: conv1_2 1.39x Conv's time, conv2_1 1.23x; conv2_2 0.86x, conv3_1 0.75x).
WINOGRAD_MIN = 128 * 128


def winograd_conv(b: Builder, x: str, wname: str, bias: str, hw: str, cin: int, cout: int,
                  name: str, circular: bool = False) -> tuple[str, Backward]:
    """conv3x3(x, w) + bias with zero padding 1, as Winograd F(4x4, 3x3) in four products and
    two memory moves: the 6x6 input tiles (stride 4) gathered and transformed in one Conv, each
    channel a batch item (V = B^T d B: 36 fixed 6x6 kernels, the rows of B^T (x) B^T), multiplied
    by U = G w G^T (computed from w in the graph and folded at load time), summed over the input
    channels (one MatMul batched over the 36 tile positions), transformed back (A^T m A: one
    MatMul) and put in place (DepthToSpace). The backward is this computation's exact adjoint
    (the gather's is a ConvTranspose with the same kernels), so the gradient is that of the loss
    as computed (within ~1e-5 of Conv's). `circular`: x comes padded (circular_pad, [h+2, w+2]),
    so the gather pads only behind (3: whole tiles) and the adjoint returns the padded shape."""
    kb = b.const(np.kron(WINO_BT, WINO_BT).reshape(36, 1, 6, 6), f"{name}_bt")  # vec(B^T d B) = (B^T (x) B^T) vec(d)
    ta = b.const(np.kron(WINO_AT, WINO_AT), f"{name}_at")  # (16, 36)
    # U = G w G^T per channel pair, as one product: (G (x) G) (9 x cout cin) -> 36 x cout x cin.
    # Folded at load time; one MatMul keeps the folding's transient memory to about U's size.
    wt = b.op("Reshape", [b.op("Transpose", [wname], perm=[2, 3, 0, 1]), b.ints(9, -1)])
    u = b.op("Reshape", [b.op("MatMul", [b.const(np.kron(WINO_G, WINO_G)), wt]), b.ints(36, cout, cin)], f"{name}_u")
    tiles = b.op("Div", [b.op("Add", [hw, b.ints(3)]), b.ints(4)], f"{name}_tiles")  # ceil(hw / 4)
    whole = b.op("Mul", [tiles, b.ints(4)])  # the output padded to whole tiles

    # Tile (i, j) is rows 4i-1..4i+4 and the same columns of x; padding 1 in front and 4 behind
    # gives exactly ceil(h / 4) tiles at any h, so the pads are static.
    hw_in = b.op("Add", [hw, b.ints(2)]) if circular else hw  # x's [h, w]
    v = b.op("Conv", [b.op("Reshape", [x, b.op("Concat", [b.ints(cin, 1), hw_in], axis=0)]), kb],
             strides=[4, 4], pads=[0, 0, 3, 3] if circular else [1, 1, 4, 4])  # cin, 36, tiles, tiles
    v = b.op("Reshape", [b.op("Transpose", [v], perm=[1, 0, 2, 3]), b.ints(36, cin, -1)])  # 36, cin, tiles
    m = b.op("MatMul", [u, v], f"{name}_m")  # 36, cout, tiles
    yt = b.op("MatMul", [ta, b.op("Reshape", [m, b.ints(36, -1)])])  # 16, cout * tiles
    grid = b.op("Concat", [b.ints(1, 16 * cout), tiles], axis=0)
    y = b.op("DepthToSpace", [b.op("Reshape", [yt, grid])], blocksize=4, mode="DCR")
    y = b.op("Add", [b.op("Slice", [y, b.ints(0, 0), hw, b.ints(2, 3)]),
                     b.op("Unsqueeze", [bias, b.ints(1, 2)])], name)

    def backward(gy: str) -> str:  # each step's adjoint, in reverse
        g = b.op("Pad", [gy, b.op("Concat", [b.ints(0, 0, 0, 0, 0, 0), b.op("Sub", [whole, hw])], axis=0)])
        g = b.op("Reshape", [b.op("SpaceToDepth", [g], blocksize=4), b.ints(16, -1)])  # 16, cout * tiles
        g = b.op("Reshape", [b.op("MatMul", [b.op("Transpose", [ta]), g]), b.ints(36, cout, -1)], f"g_{name}_m")
        # U^T g as (g^T U)^T: onnxruntime fuses the transposes into the product (a folded U^T
        # would be 3 % faster for another U's memory).
        g = b.op("Transpose", [b.op("MatMul", [b.op("Transpose", [g], perm=[0, 2, 1]), u])], perm=[0, 2, 1])
        g = b.op("Reshape", [g, b.op("Concat", [b.ints(36, cin), tiles], axis=0)])
        g = b.op("ConvTranspose", [b.op("Transpose", [g], perm=[1, 0, 2, 3]), kb],
                 strides=[4, 4], pads=[0, 0, 0, 0] if circular else [1, 1, 0, 0])  # cin, 1, 4 tiles + 1 (+ 1)
        g = b.op("Slice", [g, b.ints(0, 0), hw_in, b.ints(2, 3)])  # (the rows behind x dropped)
        return b.op("Reshape", [g, b.op("Concat", [b.ints(1, cin), hw_in], axis=0)], f"g_{name}_in")

    return y, backward


def conv_relu(b: Builder, x: str, w: np.ndarray, bias: np.ndarray, name: str,
              hw: str | None = None, circular: bool = False) -> tuple[str, Backward]:
    """a = relu(conv3x3(x, w) + bias), zero padding 1 (`circular`: circular_pad). With `hw` (x's
    [h, w]) and enough channels (WINOGRAD_MIN) the conv is winograd_conv's."""
    wname, bname = b.const(w, f"{name}_w"), b.const(bias, f"{name}_b")
    cout, cin = w.shape[:2]
    if circular:
        x, pad_bw = circular_pad(b, x)
    if hw is not None and cin * cout >= WINOGRAD_MIN:
        y, conv_bw = winograd_conv(b, x, wname, bname, hw, cin, cout, name, circular)
    else:
        pads = [0 if circular else 1] * 4
        y = b.op("Conv", [x, wname, bname], name, pads=pads)

        def conv_bw(gy: str) -> str:
            # Conv input-gradient: the same conv with the kernel's in/out swapped and flipped in
            # space, computed inside the graph from the forward kernel (folded at load time);
            # circular: the full correlation (pads 2), the padded input's gradient.
            wt = b.op("Transpose", [wname], perm=[1, 0, 2, 3])
            wflip = b.op("Slice", [wt, b.ints(-1, -1), b.ints(-4, -4), b.ints(2, 3), b.ints(-1, -1)])
            return b.op("Conv", [gy, wflip], f"g_{name}_in", pads=[2 if circular else 1] * 4)
    if circular:
        padded_bw = conv_bw

        def conv_bw(gy: str) -> str:
            return pad_bw(padded_bw(gy))
    a = b.op("Relu", [y], name)

    def backward(ga: str) -> str:
        # ReLU: pass the gradient where the output is positive (a Cast mask beats Where/Sign).
        # The mask reads `a` through a Reshape to ga's shape (no copy) so that it is made here,
        # once ga exists: onnxruntime computes a mask of `a` alone during the forward and keeps
        # it until here (4 bytes a pixel per layer: +1.2 GB at 1024 px).
        late = b.op("Reshape", [a, b.op("Shape", [ga])], f"{name}_late")
        mask = b.op("Cast", [b.op("Greater", [late, b.const(0.0)])], f"{name}_mask", to=FLOAT)
        return conv_bw(b.op("Mul", [ga, mask], f"g_{name}_pre"))

    return a, backward


def halve(b: Builder, hw: str) -> str:
    """A 2x2 stride-2 pool's output size [h, w] (ceil) from its input's (int64 [2])."""
    return b.op("Div", [b.op("Add", [hw, b.ints(1)]), b.ints(2)], "hw")


def avg_pool(b: Builder, x: str, name: str, hw: str, hw2: str) -> tuple[str, Backward]:
    """2x2 stride-2 mean over the valid pixels under each window: TF SAME, out = ceil(H/2).
    `hw`, `hw2`: the input's and output's [h, w] (from the image's shape: a Shape of x or y in the
    backward would keep that activation alive until then)."""
    y = b.op("AveragePool", [x], name, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
             count_include_pad=0)

    def backward(gy: str) -> str:
        # Each input pixel gets g / (number of valid pixels in its window): 4 inside, 2 or 1 on a
        # last odd row/column. inv_count = 1/rows(i) * 1/cols(j) with rows(i) = min(2, H - 2i).
        def inv_count(axis: int) -> str:
            n = b.op("Gather", [hw, b.const(axis, "ax", np.int64)])
            n2 = b.op("Gather", [hw2, b.const(axis, "ax", np.int64)])
            i2 = b.op("Mul", [b.op("Range", [b.const(0, "z", np.int64), n2, b.const(1, "o", np.int64)]),
                              b.const(2, "two", np.int64)])
            cnt = b.op("Min", [b.op("Sub", [n, i2]), b.const(2, "two", np.int64)])
            return b.op("Reciprocal", [b.op("Cast", [cnt], to=FLOAT)])

        rows = b.op("Unsqueeze", [inv_count(0), b.ints(1)])  # [h2, 1]
        inv = b.op("Mul", [rows, inv_count(1)], f"{name}_inv")  # [h2, w2]
        scaled = b.op("Mul", [gy, inv], f"g_{name}_scaled")
        up = b.op("Resize", [scaled, "", b.const([1, 1, 2, 2], "scales")], f"g_{name}_up",
                  mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor")
        return b.op("Slice", [up, b.ints(0, 0), hw, b.ints(2, 3)], f"g_{name}")

    return y, backward


def spatial_size(b: Builder, hw: str) -> str:
    """M = h*w from [h, w], as a float scalar."""
    return b.op("Cast", [b.op("ReduceProd", [hw], keepdims=0)], "M", to=FLOAT)


def content_term(b: Builder, feat: str, target: str, n: int, m: str) -> tuple[str, Backward]:
    """content = sum((F - P)^2) / (2 sqrt(N) sqrt(M))  (the seed's K); M given as `m`."""
    diff = b.op("Sub", [feat, target], "c_diff")
    k = b.op("Sqrt", [b.op("Mul", [m, b.const(float(n))])])  # sqrt(N M)
    loss = b.op("Div", [b.scalar(b.op("Mul", [diff, diff])), b.op("Mul", [k, b.const(2.0)])])

    def backward(coef: str) -> str:  # d/dF = (F - P) / sqrt(N M)
        return b.op("Mul", [diff, b.op("Div", [coef, k])], "g_content")

    return loss, backward


Penalty = Callable[[Builder, str, int, bool], tuple[str, float, str, float]]


def gram_penalty(b: Builder, diff: str, n: int, per_style: bool) -> tuple[str, float, str, float]:
    """Gatys: P = sum(D^2) / (4 N^2) over D = G/M - A ([N, N], or [K, N, N] summed per style).
    Returns (sum(D^2), 1/(4 N^2), E, c) with dP/dF = E F diag(m) / (c S): E = D, c = N^2."""
    sq = b.op("Mul", [diff, diff])
    value = b.op("ReduceSum", [sq, b.ints(1, 2)], keepdims=0) if per_style else b.scalar(sq)
    return value, 1.0 / (4.0 * n * n), diff, float(n * n)


SCALED_EPS = 1e-8  # crowsonkb/style-transfer-pytorch's ScaledMSELoss eps


def scaled_penalty(b: Builder, diff: str, n: int, per_style: bool) -> tuple[str, float, str, float]:
    """crowsonkb's scaled squared error: P = sum(D^2) / (sum|D| + eps) (its gradient's L1 norm is
    about 1 whatever the features' scale). dP/dD = 2 D / S1 - S2 sign(D) / S1^2 =: E (symmetric),
    so dP/dF = 2 E F diag(m) / S: (S2/S1, 1, E, 1/2)."""
    def total(x: str) -> str:
        return b.op("ReduceSum", [x, b.ints(1, 2)], keepdims=1) if per_style else b.scalar(x)

    s2 = total(b.op("Mul", [diff, diff]))
    s1 = b.op("Add", [total(b.op("Abs", [diff])), b.const(SCALED_EPS)], "S1")
    value = b.op("Div", [s2, s1])
    e = b.op("Sub", [b.op("Mul", [diff, b.op("Div", [b.const(2.0), s1])]),
                     b.op("Mul", [b.op("Sign", [diff]), b.op("Div", [s2, b.op("Mul", [s1, s1])])])], "E")
    return (b.op("Reshape", [value, b.ints(-1)]) if per_style else value), 1.0, e, 0.5


def style_term(b: Builder, feat: str, target: str, n: int, penalty: Penalty = gram_penalty,
               centred: bool = False) -> tuple[str, Backward]:
    """style_l = P(G/M - A), G = F F^T with F as N x M (gram_penalty: sum((G/M - A)^2) / (4 N^2)).
    `centred`: F - its mean over positions (G/M is then the covariance). The centring's adjoint
    is omitted: it subtracts the mean over positions of E Fc, which is E mean(Fc) = 0."""
    f = b.op("Reshape", [feat, b.ints(n, -1)], "F")
    if centred:
        f = b.op("Sub", [f, b.op("ReduceMean", [f], axes=[1], keepdims=1)], "Fc")
    m = spatial_size(b, b.op("Slice", [b.op("Shape", [feat]), b.ints(2), b.ints(4)]))
    gram = b.op("Div", [b.op("MatMul", [f, b.op("Transpose", [f], perm=[1, 0])]), m], "gram")
    diff = b.op("Sub", [gram, target], "s_diff")
    value, mult, e, c = penalty(b, diff, n, False)
    loss = b.op("Mul", [value, b.const(mult)])

    def backward(coef: str) -> str:  # d/dF = E F / (c M)   (E symmetric; gram: (G/M - A) F / (N^2 M))
        scale = b.op("Div", [coef, b.op("Mul", [m, b.const(c)])])
        gf = b.op("MatMul", [b.op("Mul", [e, scale]), f], "g_gram")
        return b.op("Reshape", [gf, b.op("Shape", [feat])], "g_style")

    return loss, backward


def masked_style_term(b: Builder, feat: str, masks: str, target: str, blend: str, n: int,
                      penalty: Penalty = gram_penalty, centred: bool = False) -> tuple[str, Backward]:
    """Spatial control: style_l = sum_k blend_k P(G_k - A_k) (gram: sum((G_k - A_k)^2) / (4 N^2))
    with G_k = F diag(m_k) F^T / S_k, m_k style k's mask at this layer's size, S_k = sum(m_k).
    `centred`: F - mu_k, mu_k = F m_k / S_k (the masked covariance; G_k = F diag(m_k) F^T / S_k
    - mu_k mu_k^T, whose gradient is E_k (F - mu_k) diag(m_k) / (c S_k), the mean's part included)."""
    f = b.op("Reshape", [feat, b.ints(n, -1)], "F")  # N x M
    mk = b.op("Reshape", [masks, b.ints(0, 1, -1)], "mk")  # K x 1 x M
    area = b.op("Max", [b.op("ReduceSum", [mk, b.ints(1, 2)], keepdims=1), b.const(1e-8)], "S")
    if centred:
        mean = b.op("Div", [b.op("ReduceSum", [b.op("Mul", [f, mk]), b.ints(2)], keepdims=1), area], "mu")
        fc = b.op("Sub", [f, mean], "Fc")  # K x N x M
        fm = b.op("Mul", [fc, mk], "Fm")
        gram = b.op("Div", [b.op("MatMul", [fm, b.op("Transpose", [fc], perm=[0, 2, 1])]), area], "gram")
    else:
        fm = b.op("Mul", [f, mk], "Fm")  # K x N x M
        gram = b.op("Div", [b.op("MatMul", [fm, b.op("Transpose", [f], perm=[1, 0])]), area], "gram")
    diff = b.op("Sub", [gram, target], "s_diff")  # K x N x N
    per_style, mult, e, c = penalty(b, diff, n, True)
    loss = b.op("Mul", [b.scalar(b.op("Mul", [per_style, blend])), b.const(mult)])

    def backward(coef: str) -> str:  # d/dF = sum_k blend_k E_k F diag(m_k) / (c S_k)
        w = b.op("Unsqueeze", [b.op("Mul", [blend, coef]), b.ints(1, 2)])  # K x 1 x 1
        scale = b.op("Div", [w, b.op("Mul", [area, b.const(c)])])
        gk = b.op("MatMul", [b.op("Mul", [e, scale]), fm], "g_gram_k")  # K x N x M
        gf = b.op("ReduceSum", [gk, b.ints(0)], keepdims=0)
        return b.op("Reshape", [gf, b.op("Shape", [feat])], "g_style")

    return loss, backward


def tiled_style_term(b: Builder, feat: str, masks: str, weight: str, n: int,
                     mean: str | None = None, shift: bool = False) -> tuple[str, Backward]:
    """One tile's style gradient given the whole picture's Grams: d/dF = sum_k W_k F diag(m_k)
    (W_k as fed in gram_<l>, see the module doc), or with `mean` ([K, N, 1], the whole picture's
    mu_k: the covariance) sum_k W_k (F - mu_k) diag(m_k); `shift` (w2): mean is [K, N, 2], mu_k and
    v_k, and d/dF = sum_k (W_k (F - mu_k) + v_k) diag(m_k). The loss is the host's (0 here)."""

    def backward(coef: str) -> str:
        f = b.op("Reshape", [feat, b.ints(n, -1)], "F")
        mk = b.op("Reshape", [masks, b.ints(0, 1, -1)])  # K x 1 x M
        mu, v = mean, None
        if shift:
            mu, v = (b.op("Slice", [mean, b.ints(i), b.ints(i + 1), b.ints(2)]) for i in (0, 1))
        if mu is not None:
            f = b.op("Sub", [f, mu], "Fc")  # K x N x M
        fm = b.op("Mul", [f, mk], "Fm")  # K x N x M
        gk = b.op("MatMul", [b.op("Mul", [weight, coef]), fm], "g_gram_k")
        if v is not None:
            gk = b.op("Add", [gk, b.op("Mul", [b.op("Mul", [v, coef]), mk])])
        return b.op("Reshape", [b.op("ReduceSum", [gk, b.ints(0)], keepdims=0), b.op("Shape", [feat])],
                    "g_style")

    return b.const(0.0), backward


W2_EPS = 1e-4  # crowsonkb/style-transfer-pytorch's StyleLossW2: eps I added to both covariances
W2_ITERATIONS = 12  # its Newton-Schulz iterations (sqrtm_ns_lyap(num_iters=12))


def newton_schulz(b: Builder, x: str, eye: str, iterations: int) -> tuple[str, str]:
    """(Y, Y') for X [K, N, N] symmetric with eigenvalues in (0, 1]: Y = p(X) the coupled
    Newton-Schulz iteration for sqrt(X) (Y0 = X, Z0 = I, T = (3I - Z Y)/2, Y <- Y T, Z <- T Z),
    a polynomial in X, and Y' = p'(X), by the same recurrence differentiated (every iterate is a
    polynomial in X, so they commute and (U V)' = U' V + U V'). d tr(p(X)) / dX = p'(X): the exact
    gradient of the iterated function, whether or not it has converged."""
    eye3 = b.op("Mul", [eye, b.const(3.0, dtype=np.float64)], "I3")
    y, z, yd, zd = x, eye, eye, None
    for i in range(iterations):
        zy = b.op("MatMul", [z, y])
        t = b.op("Mul", [b.op("Sub", [eye3, zy]), b.const(0.5, dtype=np.float64)])
        zdy = b.op("MatMul", [z, yd]) if zd is None else b.op("Add", [b.op("MatMul", [zd, y]), b.op("MatMul", [z, yd])])
        td = b.op("Mul", [zdy, b.const(-0.5, dtype=np.float64)])
        y, yd = b.op("MatMul", [y, t], "ns_y"), b.op("Add", [b.op("MatMul", [yd, t]), b.op("MatMul", [y, td])], "ns_yd")
        if i < iterations - 1:
            tdz = b.op("MatMul", [td, z])
            zd = tdz if zd is None else b.op("Add", [tdz, b.op("MatMul", [t, zd])])
            z = b.op("MatMul", [t, z], "ns_z")
    return y, yd


def w2_term(b: Builder, feat: str, masks: str | None, sqrt_t: str, mean_t: str, blend: str | None,
            n: int) -> tuple[str, Backward]:
    """Wasserstein-2 between Gaussians fitted to the features (crowsonkb's StyleLossW2):
    style_l = sum_k blend_k (|mu_k - m_k|^2 + tr(C_k) + tr(S_k^2) - 2 f(S_k C_k S_k)) / N, mu_k and
    C_k = Fc diag(m_k) Fc^T / S_k + eps I (Fc = F - mu_k) the features' mean and covariance (under
    style k's mask m_k, area S_k; unmasked: one style, m = 1), m_k, S_k (sqrt_t [K, N, N], the square
    root of the style's covariance + eps I) from the style; f(B) = sqrt(|B|) tr(p(B / |B|)), p the
    Newton-Schulz square root (W2_ITERATIONS), |B| Frobenius. Gradient: with X = B / |B|,
    df/dB = (p'(X) + (tr p(X) / 2 - tr(p'(X) X)) X) / sqrt(|B|), dL/dC_k = (I - 2 S_k df/dB S_k) / N,
    dL/dF = sum_k blend_k (2 dL/dC_k Fc diag(m_k) + 2 (mu_k - m_k) m_k^T / N) / S_k (the centring's
    adjoint vanishes: Fc m_k = 0). In float64 from the float32 features on: the covariances'
    eigenvalues span eps = 1e-4 to ~1e2, and float32 sums over the positions perturb the small
    ones by more than eps (the gradient then moved by 2.8e-4 of its largest entry, measured)."""
    def double(v: str) -> str:
        return b.op("Cast", [v], to=TensorProto.DOUBLE)

    f = double(b.op("Reshape", [feat, b.ints(n, -1)], "F"))  # N x M
    sqrt_t, mean_t = double(sqrt_t), double(mean_t)
    if masks is None:
        mk = None
        area = double(spatial_size(b, b.op("Slice", [b.op("Shape", [feat]), b.ints(2), b.ints(4)])))
        mu = b.op("Unsqueeze", [b.op("ReduceMean", [f], axes=[1], keepdims=1), b.ints(0)], "mu")  # 1 x N x 1
        fc = b.op("Sub", [f, mu], "Fc")  # 1 x N x M
        fm = fc
    else:
        mk = double(b.op("Reshape", [masks, b.ints(0, 1, -1)], "mk"))  # K x 1 x M
        tiny = b.const(1e-8, dtype=np.float64)
        area = b.op("Max", [b.op("ReduceSum", [mk, b.ints(1, 2)], keepdims=1), tiny], "S")  # K x 1 x 1
        mu = b.op("Div", [b.op("ReduceSum", [b.op("Mul", [f, mk]), b.ints(2)], keepdims=1), area], "mu")  # K x N x 1
        fc = b.op("Sub", [f, mu], "Fc")  # K x N x M
        fm = b.op("Mul", [fc, mk], "Fm")
    eye = b.op("EyeLike", [b.op("ReduceSum", [sqrt_t, b.ints(0)], keepdims=0)], "I")  # (no N x N constants)
    cov = b.op("Add", [b.op("Div", [b.op("MatMul", [fm, b.op("Transpose", [fc], perm=[0, 2, 1])]), area]),
                       b.op("Mul", [eye, b.const(W2_EPS, dtype=np.float64)])], "C")  # K x N x N
    big = b.op("MatMul", [b.op("MatMul", [sqrt_t, cov]), sqrt_t], "B")
    norm = b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [big, big]), b.ints(1, 2)], keepdims=1)], "normB")
    x = b.op("Div", [big, norm], "X")
    y, yd = newton_schulz(b, x, eye, W2_ITERATIONS)

    def trace(a: str) -> str:  # K x 1 x 1
        return b.op("ReduceSum", [b.op("Mul", [a, eye]), b.ints(1, 2)], keepdims=1)

    root = b.op("Sqrt", [norm])
    tr_y = trace(y)
    dmu = b.op("Sub", [mu, mean_t], "dmu")  # K x N x 1
    per_style = b.op("Add", [b.op("ReduceSum", [b.op("Mul", [dmu, dmu]), b.ints(1, 2)], keepdims=1),
                             b.op("Sub", [b.op("Add", [trace(cov), b.op("ReduceSum", [b.op("Mul", [sqrt_t, sqrt_t]),
                                                                                        b.ints(1, 2)], keepdims=1)]),
                                          b.op("Mul", [b.op("Mul", [root, tr_y]), b.const(2.0, dtype=np.float64)])])])
    per_style = b.op("Div", [b.op("Reshape", [per_style, b.ints(-1)]), b.const(float(n), dtype=np.float64)], "w2")  # K
    loss = b.op("Cast", [b.scalar(per_style if blend is None else b.op("Mul", [per_style, double(blend)]))], to=FLOAT)

    def backward(coef: str) -> str:
        tr_ydx = b.op("ReduceSum", [b.op("Mul", [yd, x]), b.ints(1, 2)], keepdims=1)  # tr(Y' X), Y' X symmetric
        half_tr = b.op("Mul", [tr_y, b.const(0.5, dtype=np.float64)])
        gb = b.op("Div", [b.op("Add", [yd, b.op("Mul", [b.op("Sub", [half_tr, tr_ydx]), x])]),
                          root], "dfdB")
        sgs = b.op("MatMul", [b.op("MatMul", [sqrt_t, gb]), sqrt_t])
        gc = b.op("Sub", [eye, b.op("Mul", [sgs, b.const(2.0, dtype=np.float64)])], "dLdC")  # times N
        w = b.op("Mul", [double(coef), b.const(2.0 / n, dtype=np.float64)])
        if blend is not None:
            w = b.op("Mul", [b.op("Unsqueeze", [double(blend), b.ints(1, 2)]), w])  # K x 1 x 1
        w = b.op("Div", [w, area])
        gk = b.op("Add", [b.op("MatMul", [gc, fm]), dmu if mk is None else b.op("Mul", [dmu, mk])])
        gf = b.op("Cast", [b.op("ReduceSum", [b.op("Mul", [gk, w]), b.ints(0)], keepdims=0)], to=FLOAT)
        return b.op("Reshape", [gf, b.op("Shape", [feat])], "g_style")

    return loss, backward


def sorted_term(b: Builder, feat: str, target: str, n: int, proj: str | None = None) -> tuple[str, Backward]:
    """Histogram matching (Risser et al. 2017) as a loss: the 1-D optimal transport cost per
    channel, style_l = sum_c sum_j (sort(F_c)_j - T_cj)^2 / (P M), T [1, P, 1, M] the style's
    values sorted (resampled to M positions), P = N rows. With `proj` ([N, P] unit directions):
    the sliced Wasserstein loss (Heitz et al. 2021), the same for the rows of Y = proj^T F.
    Sorting is a permutation, so d/dY = 2 (sort(Y) - T) scattered back by the sort's indices
    (exact wherever no two values tie); d/dF = proj d/dY."""
    f = b.op("Reshape", [feat, b.ints(n, -1)], "F")  # N x M
    y = f if proj is None else b.op("MatMul", [b.op("Transpose", [proj], perm=[1, 0]), f], "Y")  # P x M
    shape = b.op("Shape", [y])
    vals, idx = b.op("TopK", [y, b.op("Slice", [shape, b.ints(1), b.ints(2)])], "sorted", n_out=2,
                     axis=1, largest=0, sorted=1)
    diff = b.op("Sub", [vals, b.op("Reshape", [target, shape])], "h_diff")
    size = b.op("Cast", [b.op("Size", [y])], "PM", to=FLOAT)
    loss = b.op("Div", [b.scalar(b.op("Mul", [diff, diff])), size])

    def backward(coef: str) -> str:
        gd = b.op("Mul", [diff, b.op("Div", [b.op("Mul", [coef, b.const(2.0)]), size])])
        zeros = b.op("ConstantOfShape", [shape], value=numpy_helper.from_array(np.zeros(1, np.float32)))
        g = b.op("ScatterElements", [zeros, idx, gd], "g_sorted", axis=1)  # back to each value's position
        if proj is not None:
            g = b.op("MatMul", [proj, g])
        return b.op("Reshape", [g, b.op("Shape", [feat])], "g_style")

    return loss, backward


def masked_sorted_term(b: Builder, feat: str, masks: str, target: str, blend: str, n: int,
                       proj: str | None = None) -> tuple[str, Backward]:
    """Spatial control of the histogram/sliced loss: each style matched on its own region,
    style_l = sum_k blend_k sum_i m_k(i) (y_i - Q_k(u_k(i)))^2 / (P S_k) over the rows y of F
    (or proj^T F), m_k style k's mask at this layer, S_k = sum(m_k), u_k(i) the mid-rank of y_i
    among the positions weighted by m_k ((the weights of the smaller values + m_k(i)/2) / S_k) and
    Q_k style k's quantile function: its sorted values T_k [K, P, 1, Mt] (Mt >= 2) at
    (j + 1/2) / Mt, linear between, flat beyond. With every mask 1 and K = 1 it is sorted_term's
    loss. The matched values Q_k(u_k(i)) change only where two values swap ranks, so
    d/dy_i = sum_k blend_k 2 m_k(i) (y_i - Q_k(u_k(i))) / (P S_k) (exact wherever no two tie)."""
    f = b.op("Reshape", [feat, b.ints(n, -1)], "F")  # N x M
    y = f if proj is None else b.op("MatMul", [b.op("Transpose", [proj], perm=[1, 0]), f], "Y")  # P x M
    shape = b.op("Shape", [y])
    vals, idx = b.op("TopK", [y, b.op("Slice", [shape, b.ints(1), b.ints(2)])], "sorted", n_out=2,
                     axis=1, largest=0, sorted=1)
    mk = b.op("Reshape", [masks, b.ints(0, -1)], "mk")  # K x M
    area = b.op("Max", [b.op("ReduceSum", [mk, b.ints(1)], keepdims=1), b.const(1e-8)], "S")  # K x 1
    area = b.op("Unsqueeze", [area, b.ints(2)])  # K x 1 x 1
    ms = b.op("Gather", [mk, idx], "m_sorted", axis=1)  # K x P x M: each sorted value's weight
    u = b.op("Div", [b.op("Sub", [b.op("CumSum", [ms, b.const(2, "ax", np.int64)]),
                                  b.op("Mul", [ms, b.const(0.5)])]), area], "u")
    t = b.op("Reshape", [target, b.op("Concat", [b.ints(0), b.op("Slice", [shape, b.ints(0), b.ints(1)]),
                                                 b.ints(-1)], axis=0)], "T")  # K x P x Mt
    mt_i = b.op("Slice", [b.op("Shape", [t]), b.ints(2), b.ints(3)])
    mt = b.op("Cast", [mt_i], to=FLOAT)
    pos = b.op("Min", [b.op("Max", [b.op("Sub", [b.op("Mul", [u, mt]), b.const(0.5)]), b.const(0.0)]),
                       b.op("Sub", [mt, b.const(1.0)])], "pos")  # in [0, Mt - 1]
    j0 = b.op("Min", [b.op("Cast", [b.op("Floor", [pos])], to=TensorProto.INT64),
                      b.op("Sub", [mt_i, b.ints(2)])], "j0")
    frac = b.op("Sub", [pos, b.op("Cast", [j0], to=FLOAT)])
    t0 = b.op("GatherElements", [t, j0], axis=2)
    t1 = b.op("GatherElements", [t, b.op("Add", [j0, b.ints(1)])], axis=2)
    matched = b.op("Add", [t0, b.op("Mul", [frac, b.op("Sub", [t1, t0])])], "matched")  # K x P x M
    diff = b.op("Sub", [vals, matched], "h_diff")
    wd = b.op("Mul", [ms, diff])
    rows = b.op("Cast", [b.op("Gather", [shape, b.const(0, "k", np.int64)])], to=FLOAT)  # P
    per_style = b.op("Div", [b.op("ReduceSum", [b.op("Mul", [wd, diff]), b.ints(1, 2)], keepdims=1), area])
    loss = b.op("Div", [b.scalar(b.op("Mul", [b.op("Reshape", [per_style, b.ints(-1)]), blend])), rows])

    def backward(coef: str) -> str:
        w = b.op("Div", [b.op("Mul", [b.op("Unsqueeze", [blend, b.ints(1, 2)]), b.op("Mul", [coef, b.const(2.0)])]),
                         b.op("Mul", [area, rows])])  # K x 1 x 1
        gd = b.op("ReduceSum", [b.op("Mul", [wd, w]), b.ints(0)], keepdims=0)  # P x M, sorted order
        zeros = b.op("ConstantOfShape", [shape], value=numpy_helper.from_array(np.zeros(1, np.float32)))
        g = b.op("ScatterElements", [zeros, idx, gd], "g_sorted", axis=1)
        if proj is not None:
            g = b.op("MatMul", [proj, g])
        return b.op("Reshape", [g, b.op("Shape", [feat])], "g_style")

    return loss, backward


def tiled_sorted_term(b: Builder, feat: str, target: str, n: int, m: str,
                      proj: str | None = None, weighted: bool = False) -> tuple[str, Backward]:
    """One tile's histogram/sliced gradient: each position's matched value R (the sorted target
    at its rank in the whole picture, fed as sorted_<l> [1, P, h, w] over the tile's region) is
    fixed, so d/dF = proj 2 (proj^T F - R) / (P M), M the whole picture's; the loss is the host's.
    `weighted` (masked): sorted_<l> [2, P, h, w] holds B = M sum_k blend_k m_k R_k / S_k and
    A = M sum_k blend_k m_k / S_k (masked_sorted_term's gradient), d/dF = proj 2 (A Y - B) / (P M)."""

    def backward(coef: str) -> str:
        f = b.op("Reshape", [feat, b.ints(n, -1)], "F")
        y = f if proj is None else b.op("MatMul", [b.op("Transpose", [proj], perm=[1, 0]), f], "Y")
        shape = b.op("Shape", [y])
        if weighted:
            planes = b.op("Reshape", [target, b.op("Concat", [b.ints(2), shape], axis=0)])  # 2 x P x M
            first, second = (b.op("Squeeze", [b.op("Slice", [planes, b.ints(i), b.ints(i + 1)]), b.ints(0)])
                             for i in (0, 1))
            diff = b.op("Sub", [b.op("Mul", [y, second]), first], "h_diff")
        else:
            diff = b.op("Sub", [y, b.op("Reshape", [target, shape])], "h_diff")
        rows = b.op("Cast", [b.op("Slice", [shape, b.ints(0), b.ints(1)])], to=FLOAT)  # [1]
        scale = b.op("Div", [b.op("Mul", [coef, b.const(2.0)]), b.op("Mul", [rows, m])])
        g = b.op("Mul", [diff, scale])
        if proj is not None:
            g = b.op("MatMul", [proj, g])
        return b.op("Reshape", [g, b.op("Shape", [feat])], "g_style")

    return b.const(0.0), backward


def tv_term(b: Builder, x: str, circular: bool = False) -> tuple[str, Backward]:
    """tv = sum of squared vertical and horizontal neighbour differences, pixel units
    (`circular`: across the edges too, d_i = x_(i+1 mod n) - x_i)."""
    big = np.iinfo(np.int64).max

    def roll(v: str, axis: int, k: int) -> str:  # v_(i+k mod n), k = 1 or -1
        a, c = (b.op("Slice", [v, b.ints(s), b.ints(e), b.ints(axis)]) for s, e in ((k, big), (0, k)))
        return b.op("Concat", [a, c], axis=axis)

    def diff(axis: int) -> str:
        if circular:
            return b.op("Sub", [roll(x, axis, 1), x], "tv_d")
        hi = b.op("Slice", [x, b.ints(1), b.ints(big), b.ints(axis)])
        lo = b.op("Slice", [x, b.ints(0), b.ints(-1), b.ints(axis)])
        return b.op("Sub", [hi, lo], "tv_d")

    dv, dh = diff(2), diff(3)
    loss = b.op("Add", [b.scalar(b.op("Mul", [dv, dv])), b.scalar(b.op("Mul", [dh, dh]))], "tv")

    def backward(coef: str) -> str:  # d/dx_i = 2 (d_{i-1} - d_i), d padded with zeros
        def grad(d: str, axis: int) -> str:
            if circular:
                return b.op("Sub", [roll(d, axis, -1), d])
            one = [0, 0, int(axis == 2), int(axis == 3)]
            prev = b.op("Pad", [d, b.ints(*one, 0, 0, 0, 0)])  # d_{i-1}, zero at the first row
            nxt = b.op("Pad", [d, b.ints(0, 0, 0, 0, *one)])  # d_i, zero at the last row
            return b.op("Sub", [prev, nxt])

        g = b.op("Add", [grad(dv, 2), grad(dh, 3)])
        return b.op("Mul", [g, b.op("Mul", [coef, b.const(2.0)])], "g_tv")

    return loss, backward


# ---------------------------------------------------------------------------------------------
# Run-time branches: a term whose weight is zero costs nothing (an If on the weight).


def branch(b: Builder, cond: str, then_fn: Callable[[Builder], list[str]],
           else_fn: Callable[[Builder], list[str]], hint: str) -> list[str]:
    """If(cond) with both branches built by functions of a sub-builder; returns the outputs."""
    graphs = []
    for fn, side in ((then_fn, "then"), (else_fn, "else")):
        sub = Builder()
        sub.count = b.count + 1
        outs = fn(sub)
        b.count = sub.count + 1
        # Subgraph constants become Constant nodes (If branches take no initializers in ORT).
        consts = [helper.make_node("Constant", [], [t.name], name=t.name, value=t) for t in sub.inits]
        finals = [sub.op("Identity", [o], f"{hint}_{side}_out") for o in outs]
        graphs.append(helper.make_graph(consts + sub.nodes, f"{hint}_{side}", [],
                                        [helper.make_tensor_value_info(o, FLOAT, None) for o in finals]))
    n_out = len(graphs[0].output)
    outs = b.op("If", [cond], hint, n_out=n_out, then_branch=graphs[0], else_branch=graphs[1])
    return outs if n_out > 1 else [outs]


def gated_term(b: Builder, term: Callable[[Builder, str], tuple[str, str]], coef: str, use: str,
               layer_w: str, g_in: str | None, like: str, hint: str) -> tuple[str, str]:
    """If `use` (coef != 0): (g_in + coef * dterm, layer_w * term), else (g_in, 0).
    `term(sub, coef)` emits (loss, coef * its gradient) into the branch."""

    def then_fn(sub: Builder) -> list[str]:
        loss, g = term(sub, coef)
        return [sub.op("Add", [g_in, g]) if g_in else g, sub.op("Mul", [loss, layer_w])]

    def else_fn(sub: Builder) -> list[str]:
        zeros = np.zeros(1, np.float32)
        g = g_in or sub.op("ConstantOfShape", [sub.op("Shape", [like])],
                           value=numpy_helper.from_array(zeros))
        return [g, sub.const(0.0)]

    g, loss = branch(b, use, then_fn, else_fn, hint)
    return g, loss


def max_pool(b: Builder, x: str, name: str, hw: str, channels: int) -> tuple[str, Backward]:
    """2x2 stride-2 max over the valid pixels under each window (out = ceil(H/2))."""
    y, idx = b.op("MaxPool", [x], name, n_out=2, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)

    def backward(gy: str) -> str:
        # The gradient goes to the argmax alone: scatter g into zeros at MaxPool's flat indices
        # (windows do not overlap, so no index repeats).
        shape = b.op("Concat", [b.ints(1, channels), hw], axis=0)  # x's, not from x (see avg_pool)
        flat = b.op("ConstantOfShape", [b.op("ReduceProd", [shape], keepdims=1)],
                    value=numpy_helper.from_array(np.zeros(1, np.float32)))
        flat_idx = b.op("Reshape", [idx, b.ints(-1)])
        scattered = b.op("ScatterElements", [flat, flat_idx, b.op("Reshape", [gy, b.ints(-1)])],
                         axis=0)
        return b.op("Reshape", [scattered, shape], f"g_{name}")

    return y, backward


def content_for(feat: str, target: str, n: int, m: str) -> Callable[[Builder, str], tuple[str, str]]:
    def term(s: Builder, coef: str) -> tuple[str, str]:
        loss, backward = content_term(s, feat, target, n, m)
        return loss, backward(coef)

    return term


def choose(b: Builder, options: list[tuple[str, Callable[[Builder], list[str]]]],
           fallback: Callable[[Builder], list[str]], hint: str) -> list[str]:
    """The first option whose condition holds (nested Ifs), else `fallback`."""
    if not options:
        return fallback(b)
    (cond, fn), rest = options[0], options[1:]
    return branch(b, cond, fn, lambda s: choose(s, rest, fallback, hint), f"{hint}_{cond}")


def style_for(feat: str, mask: str, n: int, name: str, m: str,
              kinds: tuple[str, ...] = layout.STYLE_LOSSES) -> Callable[[Builder, str], tuple[str, str]]:
    """The style term of one layer: the loss whose gate (layout.gate(kind, name)) is set, gram
    where none is; each behind Ifs on tiled and style_masked."""
    target = layout.gram_target(name)

    def term(s: Builder, coef: str) -> tuple[str, str]:
        def gram_like(penalty: Penalty, centred: bool) -> Callable[[Builder], list[str]]:
            def tiled(ss: Builder) -> list[str]:
                mean = layout.mean_target(name) if centred else None
                loss, backward = tiled_style_term(ss, feat, mask, target, n, mean)
                return [loss, backward(coef)]

            def untiled(ss: Builder) -> list[str]:
                return branch(ss, layout.STYLE_MASKED, masked, plain, f"style_{name}_mask")

            def plain(ss: Builder) -> list[str]:
                loss, backward = style_term(ss, feat, ss.op("Reshape", [target, ss.ints(n, n)]), n, penalty, centred)
                return [loss, backward(coef)]

            def masked(ss: Builder) -> list[str]:
                loss, backward = masked_style_term(ss, feat, mask, target, layout.STYLE_BLEND, n, penalty, centred)
                return [loss, backward(coef)]

            return lambda ss: branch(ss, layout.TILED, tiled, untiled, f"style_{name}_tiled")

        def sorted_kind(sliced: bool) -> Callable[[Builder], list[str]]:
            proj = layout.projection(name) if sliced else None
            target = layout.sorted_target(name)

            def tiled(weighted: bool) -> Callable[[Builder], list[str]]:
                def emit(ss: Builder) -> list[str]:
                    loss, backward = tiled_sorted_term(ss, feat, target, n, m, proj, weighted)
                    return [loss, backward(coef)]
                return emit

            def plain(ss: Builder) -> list[str]:
                loss, backward = sorted_term(ss, feat, target, n, proj)
                return [loss, backward(coef)]

            def masked(ss: Builder) -> list[str]:
                loss, backward = masked_sorted_term(ss, feat, mask, target, layout.STYLE_BLEND, n, proj)
                return [loss, backward(coef)]

            def masked_or_not(on_mask: Callable[[Builder], list[str]], off: Callable[[Builder], list[str]],
                              hint: str) -> Callable[[Builder], list[str]]:
                return lambda ss: branch(ss, layout.STYLE_MASKED, on_mask, off, hint)

            return lambda ss: branch(ss, layout.TILED, masked_or_not(tiled(True), tiled(False), f"style_{name}_tmask"),
                                     masked_or_not(masked, plain, f"style_{name}_mask"), f"style_{name}_tiled")

        def w2() -> Callable[[Builder], list[str]]:
            mean = layout.mean_target(name)

            def tiled(ss: Builder) -> list[str]:
                loss, backward = tiled_style_term(ss, feat, mask, target, n, mean, shift=True)
                return [loss, backward(coef)]

            def plain(ss: Builder) -> list[str]:
                loss, backward = w2_term(ss, feat, None, target, mean, None, n)
                return [loss, backward(coef)]

            def masked(ss: Builder) -> list[str]:
                loss, backward = w2_term(ss, feat, mask, target, mean, layout.STYLE_BLEND, n)
                return [loss, backward(coef)]

            return lambda ss: branch(ss, layout.TILED, tiled,
                                     lambda s3: branch(s3, layout.STYLE_MASKED, masked, plain, f"style_{name}_mask"),
                                     f"style_{name}_tiled")

        make = {"covariance": lambda: gram_like(gram_penalty, True), "w2": w2,
                "scaled": lambda: gram_like(scaled_penalty, False),
                "histogram": lambda: sorted_kind(False), "sliced": lambda: sorted_kind(True)}
        options = [(layout.gate(k, name), make[k]()) for k in kinds if k != "gram"]
        loss, g = choose(s, options, gram_like(gram_penalty, False), f"style_{name}")
        return loss, g

    return term


# ---------------------------------------------------------------------------------------------


POOLS = ("avg", "max")


def forward(b: Builder, weights: VGGWeights, pool: str, masks: str | None = None, winograd: bool = False,
            circular: bool = False):
    """The VGG19 forward: (nchw image, tape of backward closures, features, masks per layer,
    [h, w] per layer, computed from the image's shape). `winograd`: the convs with enough
    channels as winograd_conv (the loss graph's, where they take most of the time)."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}")
    weights.check()
    tape: list[Backward] = []
    x, bw = image_to_nchw(b, layout.IMAGE)
    tape.append(bw)
    h, bw = pixel_affine(b, x, weights.pre_w, weights.pre_b)
    tape.append(bw)
    feats: dict[str, str] = {}
    layer_masks: dict[str, str] = {}
    hw = b.op("Slice", [b.op("Shape", [layout.IMAGE]), b.ints(0), b.ints(2)], "hw")
    sizes: dict[str, str] = {}
    for name, _, cout in ARCH:
        if name.startswith("pool"):
            hw2 = halve(b, hw)
            h, bw = avg_pool(b, h, name, hw, hw2) if pool == "avg" else max_pool(b, h, name, hw, cout)
            if masks is not None:  # style masks follow the image down, average-pooled
                masks, _ = avg_pool(b, masks, f"mask_{name}", hw, hw2)
            hw = hw2
        else:
            w, bias = weights.convs[name]
            h, bw = conv_relu(b, h, w, bias, name, hw if winograd else None, circular)
            feats[name], sizes[name] = h, hw
            if masks is not None:
                layer_masks[name] = masks
        tape.append(bw)
    return x, tape, feats, layer_masks, sizes


def _model(b: Builder, inputs, outputs, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, name, inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", layout.OPSET)],
                              producer_name="onnxstyle")
    model.ir_version = layout.IR_VERSION
    return model


def build_features_model(weights: VGGWeights, pool: str = "avg", circular: bool = False) -> onnx.ModelProto:
    """Forward only: the image's features after ReLU at every layer (to compute targets)."""
    b = Builder()
    _, _, feats, _, _ = forward(b, weights, pool, circular=circular)
    for name, feat in feats.items():
        b.nodes.append(helper.make_node("Identity", [feat], [layout.feature(name)]))
    info = helper.make_tensor_value_info
    outputs = [info(layout.feature(n), FLOAT, [1, CHANNELS[n], f"fh_{n}", f"fw_{n}"]) for n in LAYERS]
    return _model(b, [info(layout.IMAGE, FLOAT, ["H", "W", 3])], outputs, "onnxstyle_vgg19_features")


def build_model(weights: VGGWeights, pool: str = "avg", winograd: bool = True,
                kinds: tuple[str, ...] = layout.STYLE_LOSSES, circular: bool = False) -> onnx.ModelProto:
    """The loss, its terms and its gradient (no feature outputs: they would pin every
    activation until the end of the run; targets come from build_features_model).
    `winograd` (default): the deeper convs as winograd_conv; False: all as Conv. `kinds`: the
    style losses it holds (("gram",): the graph before them, with no loss gates). `circular`:
    the picture a torus (--tileable): every conv padded circularly, the TV term across the
    edges; H and W must be multiples of 16 (every pooling window whole) and at least 32."""
    b = Builder()
    idx = {layer: i for i, layer in enumerate(LAYERS)}
    masks = b.op("Unsqueeze", [layout.STYLE_MASKS, b.ints(1)], "masks")  # K x 1 x H x W
    x, tape, feats, layer_masks, sizes = forward(b, weights, pool, masks, winograd, circular)

    w_content, w_style, w_tv = (
        b.op("Gather", [layout.WEIGHTS, b.const(i, "k", np.int64)], hint) for i, hint in
        enumerate(("content_weight", "style_weight", "tv_weight"))
    )

    # Backward: walk the layers from the deepest, adding each layer's loss gradient at its
    # output before passing the gradient through that layer.
    content_losses, style_losses = [], []
    g: str | None = None
    for (name, _, _), bw in reversed(list(zip(ARCH, tape[2:], strict=True))):
        if name in feats:
            feat, n, i = feats[name], CHANNELS[name], b.const(idx[name], "k", np.int64)
            lw_c = b.op("Gather", [layout.CONTENT_LAYER_W, i])
            lw_s = b.op("Gather", [layout.STYLE_LAYER_W, i])
            coef_c = b.op("Mul", [w_content, lw_c], f"coef_c_{name}")
            coef_s = b.op("Mul", [w_style, lw_s], f"coef_s_{name}")
            m = b.op("Where", [layout.TILED, b.op("Gather", [layout.LAYER_M, i]), spatial_size(b, sizes[name])])
            content = content_for(feat, layout.content_target(name), n, m)
            style = style_for(feat, layer_masks[name], n, name, m, kinds)
            g, lc = gated_term(b, content, coef_c, layout.gate("content", name), lw_c, g, feat, f"content_{name}")
            g, ls = gated_term(b, style, coef_s, layout.gate("style", name), lw_s, g, feat, f"style_{name}")
            content_losses.append(lc)
            style_losses.append(ls)
        g = bw(g)

    g = tape[1](g)  # pixel affine
    tv, tv_bw = tv_term(b, x, circular)
    g = b.op("Add", [g, tv_bw(w_tv)])
    g_hwc = tape[0](g)

    content = b.op("Sum", content_losses, "content")
    style = b.op("Sum", style_losses, "style")
    total = b.op("Sum", [b.op("Mul", [w_content, content]), b.op("Mul", [w_style, style]),
                         b.op("Mul", [w_tv, tv])], "total")
    for out, src in ((layout.LOSS, total), (layout.CONTENT, content), (layout.STYLE, style),
                     (layout.TV, tv), (layout.GRAD, g_hwc)):
        b.nodes.append(helper.make_node("Identity", [src], [out], name=out))

    info = helper.make_tensor_value_info
    inputs = [
        info(layout.IMAGE, FLOAT, ["H", "W", 3]),
        info(layout.WEIGHTS, FLOAT, [3]),
        info(layout.CONTENT_LAYER_W, FLOAT, [len(LAYERS)]),
        info(layout.STYLE_LAYER_W, FLOAT, [len(LAYERS)]),
        info(layout.STYLE_MASKED, TensorProto.BOOL, []),
        info(layout.STYLE_MASKS, FLOAT, ["K", "MH", "MW"]),
        info(layout.STYLE_BLEND, FLOAT, ["K"]),
        info(layout.TILED, TensorProto.BOOL, []),
        info(layout.LAYER_M, FLOAT, [len(LAYERS)]),
    ]
    inputs += [info(layout.gate(t, name), TensorProto.BOOL, []) for name in LAYERS for t in ("content", "style")]
    extra = [k for k in kinds if k != "gram"]
    inputs += [info(layout.gate(k, name), TensorProto.BOOL, []) for name in LAYERS for k in extra]
    for name in LAYERS:
        n = CHANNELS[name]
        inputs.append(info(layout.content_target(name), FLOAT, [1, n, f"ch_{name}", f"cw_{name}"]))
        inputs.append(info(layout.gram_target(name), FLOAT, ["K", n, n]))
        if "covariance" in kinds or "w2" in kinds:
            inputs.append(info(layout.mean_target(name), FLOAT, ["K", n, f"mc_{name}"]))
        if "histogram" in kinds or "sliced" in kinds:
            dims = [f"s{d}_{name}" for d in "kphw"]
            inputs.append(info(layout.sorted_target(name), FLOAT, dims))
        if "sliced" in kinds:
            inputs.append(info(layout.projection(name), FLOAT, [n, f"P_{name}"]))
    outputs = [info(o, FLOAT, []) for o in (layout.LOSS, layout.CONTENT, layout.STYLE, layout.TV)]
    outputs.append(info(layout.GRAD, FLOAT, ["H", "W", 3]))

    model = _model(b, inputs, outputs, "onnxstyle_gatys")
    scalar_door(model.graph, [i.name for i in inputs if not i.type.tensor_type.shape.dim])
    return model


def scalar_door(graph: onnx.GraphProto, names: list[str]) -> None:
    """Each rank-0 input through a Reshape to rank 0 at the door, read by every node (subgraphs
    included) in its stead. onnxruntime lets a one-element 1-D tensor through where a scalar is
    declared, and [1] would then broadcast to [1] deep inside a branch (a tiled fed as [1] failed
    in the content term's If); here it becomes the scalar, and any other size is refused by the
    node `<input>_is_a_scalar`, whose name onnxruntime's error gives."""
    if not names:
        return
    inner = {n: f"{n}_scalar" for n in names}

    def rewire(g: onnx.GraphProto) -> None:
        for node in g.node:
            for i, v in enumerate(node.input):
                node.input[i] = inner.get(v, v)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    rewire(attr.g)

    rewire(graph)
    rank0 = "rank0_shape"
    graph.initializer.append(numpy_helper.from_array(np.zeros(0, np.int64), rank0))
    nodes = [helper.make_node("Reshape", [n, rank0], [inner[n]], name=f"{n}_is_a_scalar") for n in names]
    nodes += list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
