"""The style losses (issue 27): each term and its gradient against an independent float64 NumPy
implementation and finite differences, in the full graph at an odd size, tiled = untiled, and the
default Gram graph bit-identical to the graph before the losses."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import oracle
import pytest
from conftest import load
from onnx import TensorProto, helper

from onnxstyle import Objective, layout
from onnxstyle.errors import InputError
from onnxstyle.export import graph
from onnxstyle.options import StyleOptions, style_losses
from onnxstyle.runtime import objective
from onnxstyle.runtime.stylize import initial_canvas

KINDS = ("gram", "covariance", "scaled", "w2", "histogram", "sliced")
N, H, W, K = 6, 5, 7, 2  # odd feature sizes
TERM_RTOL = 1e-5  # float32 sums of ~N*M = 210 terms: ~1e-6 relative rounding
GRAD_RTOL = 1e-4  # of the largest gradient entry, against float64 central differences


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


# ---------------------------------------------------------------- float64 oracles, F [N, M]


def gram_loss(f, a):
    return ((f @ f.T / f.shape[1] - a) ** 2).sum() / (4 * f.shape[0] ** 2)


def cov_loss(f, a):
    return ((np.cov(f, bias=True) - a) ** 2).sum() / (4 * f.shape[0] ** 2)


def scaled_loss(f, a):
    d = f @ f.T / f.shape[1] - a
    return (d**2).sum() / (np.abs(d).sum() + graph.SCALED_EPS)


def hist_loss(f, t):
    return ((np.sort(f, axis=1) - t) ** 2).mean()


def sliced_loss(f, t, p):
    return hist_loss(p.T @ f, t)


def masked_loss(f, masks, targets, blend, centred, scaled=False):
    total = 0.0
    for m, a, w in zip(masks, targets, blend, strict=True):
        g = np.cov(f, aweights=m, bias=True) if centred else (f * m) @ f.T / m.sum()
        d = g - a
        total += w * ((d**2).sum() / (np.abs(d).sum() + graph.SCALED_EPS) if scaled else
                      (d**2).sum() / (4 * f.shape[0] ** 2))
    return total


def numeric_grad(fn, f, h=1e-6):
    g = np.zeros_like(f)
    for i in np.ndindex(f.shape):
        e = np.zeros_like(f)
        e[i] = h
        g[i] = (fn(f + e) - fn(f - e)) / (2 * h)
    return g


def masked_sorted_loss(y, masks, targets, blend):
    """sum_k blend_k sum_i m_k(i) (y_i - Q_k(u_k(i)))^2 / (P S_k), u_k(i) = (weight of the smaller
    values in the row + m_k(i) / 2) / S_k, Q_k through targets[k] at (j + 1/2) / Mt (flat beyond)."""
    total = 0.0
    for m, t, w in zip(masks, targets, blend, strict=True):
        grid = (np.arange(t.shape[1]) + 0.5) / t.shape[1]
        for row, trow in zip(y, t, strict=True):
            u = np.array([(m[row < v].sum() + m[i] / 2) / m.sum() for i, v in enumerate(row)])
            total += w * (m * (row - np.interp(u, grid, trow)) ** 2).sum() / (len(y) * m.sum())
    return total


def sqrt_ns(b, iterations=graph.W2_ITERATIONS):
    """Newton-Schulz square root of b (crowsonkb's sqrtm_ns), float64."""
    norm = np.linalg.norm(b)
    y, z = b / norm, np.eye(len(b))
    for _ in range(iterations):
        t = (3 * np.eye(len(b)) - z @ y) / 2
        y, z = y @ t, t @ z
    return y * np.sqrt(norm)


def w2_loss(f, masks, roots, means, blend):
    """sum_k blend_k (|mu_k - m_k|^2 + tr(C_k + S_k^2 - 2 sqrt_ns(S_k C_k S_k))) / N."""
    n, total = len(f), 0.0
    for m, r, mt, w in zip(masks, roots, means, blend, strict=True):
        c = np.cov(f, aweights=m, bias=True) + graph.W2_EPS * np.eye(n)
        mu = f @ m / m.sum()
        total += w * (((mu - mt) ** 2).sum() + np.trace(c + r @ r - 2 * sqrt_ns(r @ c @ r))) / n
    return total


def sqrtm(a):
    vals, vecs = np.linalg.eigh(a)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


# ------------------------------------------------- the graph's term alone, fed features


def run_term(emit, feeds: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
    """A graph of one term: `emit(b)` -> (loss, backward); returns (loss, d loss / d feat)."""
    b = graph.Builder()
    loss, backward = emit(b)
    g = backward(b.const(1.0))
    b.nodes += [helper.make_node("Identity", [loss], ["loss"]), helper.make_node("Identity", [g], ["g"])]
    info = helper.make_tensor_value_info
    inputs = [info(k, TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()]
    outputs = [info("loss", TensorProto.FLOAT, []), info("g", TensorProto.FLOAT, None)]
    model = helper.make_model(helper.make_graph(b.nodes, "term", inputs, outputs, b.inits),
                              opset_imports=[helper.make_opsetid("", layout.OPSET)])
    model.ir_version = layout.IR_VERSION
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    loss, g = sess.run(None, {k: v.astype(np.float32) for k, v in feeds.items()})
    return float(loss), g.astype(np.float64)


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(1)
    f = np.maximum(rng.normal(0.3, 1.0, (N, H * W)), 0) + rng.uniform(0, 0.01, (N, H * W))  # no ties
    f = f.astype(np.float32).astype(np.float64)
    style = np.maximum(rng.normal(0.5, 1.2, (N, 3 * H * W)), 0)
    return f, style


def check(loss, grad, oracle_fn, f):
    want = oracle_fn(f)
    assert rel(loss, want) < TERM_RTOL, (loss, want)
    fd = numeric_grad(oracle_fn, f)
    assert np.abs(grad.reshape(fd.shape) - fd).max() <= GRAD_RTOL * np.abs(fd).max()
    assert np.abs(fd).max() > 0


@pytest.mark.parametrize("kind", ["gram", "covariance", "scaled"])
def test_gram_like_terms_match_oracle(feats, kind):
    f, style = feats
    cov = kind == "covariance"
    a = (np.cov(style, bias=True) if cov else style @ style.T / style.shape[1]).astype(np.float32)
    penalty = graph.scaled_penalty if kind == "scaled" else graph.gram_penalty
    loss, grad = run_term(lambda b: graph.style_term(b, "feat", "a", N, penalty, cov),
                          {"feat": f.reshape(1, N, H, W), "a": a})
    fn = {"gram": gram_loss, "covariance": cov_loss, "scaled": scaled_loss}[kind]
    check(loss, grad, lambda x: fn(x, a.astype(np.float64)), f)


@pytest.mark.parametrize("kind", ["gram", "covariance", "scaled"])
def test_masked_gram_like_terms_match_oracle(feats, kind):
    f, style = feats
    rng = np.random.default_rng(2)
    masks = rng.uniform(0, 1, (K, H * W))  # fractional masks: the covariance's mean counts
    a = np.stack([np.cov(style, bias=True), style @ style.T / style.shape[1] * 0.5]).astype(np.float32)
    blend = np.array([0.7, 0.3])
    cov = kind == "covariance"
    penalty = graph.scaled_penalty if kind == "scaled" else graph.gram_penalty
    loss, grad = run_term(
        lambda b: graph.masked_style_term(b, "feat", b.op("Unsqueeze", ["m", b.ints(1)]), "a", "blend", N,
                                          penalty, cov),
        {"feat": f.reshape(1, N, H, W), "m": masks.reshape(K, H, W), "a": a, "blend": blend})
    masks32 = masks.astype(np.float32).astype(np.float64)
    check(loss, grad, lambda x: masked_loss(x, masks32, a.astype(np.float64), blend, cov, kind == "scaled"), f)


def projections(rng: np.random.Generator) -> np.ndarray:
    """N unit directions as columns, float32 values held in float64 (as the graph reads them)."""
    p = rng.standard_normal((N, N))
    return (p / np.linalg.norm(p, axis=0)).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("sliced", [False, True])
def test_sorted_terms_match_oracle(feats, sliced):
    f, style = feats
    p = projections(np.random.default_rng(3))
    rows = p.T @ style if sliced else style
    # the style's quantiles at M = H*W positions: every third of its sorted values
    t = np.sort(rows, axis=1)[:, 1::3].astype(np.float32).astype(np.float64)
    feeds = {"feat": f.reshape(1, N, H, W), "t": t.reshape(1, N, 1, H * W)}
    if sliced:
        feeds["p"] = p
    loss, grad = run_term(lambda b: graph.sorted_term(b, "feat", "t", N, "p" if sliced else None), feeds)
    check(loss, grad, (lambda x: sliced_loss(x, t, p)) if sliced else (lambda x: hist_loss(x, t)), f)


@pytest.mark.parametrize("sliced", [False, True])
def test_masked_sorted_terms_match_oracle(feats, sliced):
    f, style = feats
    rng = np.random.default_rng(4)
    p = projections(rng)
    masks = rng.uniform(0, 1, (K, H * W))  # fractional: the weighted ranks count
    masks[0, :9] = 0.0  # and positions outside a style's region
    rows = p.T @ style if sliced else style
    # style k's quantiles at Mt points (not M: the graph interpolates): every 2nd / 5th sorted value
    t = [np.sort(rows, axis=1)[:, ::s].astype(np.float32).astype(np.float64) for s in (2, 5)]
    mt = min(x.shape[1] for x in t)
    t = np.stack([x[:, :mt] + k for k, x in enumerate(t)])  # K x P x Mt, the second shifted
    blend = np.array([0.7, 0.3])
    feeds = {"feat": f.reshape(1, N, H, W), "m": masks.reshape(K, H, W), "t": t.reshape(K, N, 1, mt), "blend": blend}
    if sliced:
        feeds["p"] = p
    loss, grad = run_term(lambda b: graph.masked_sorted_term(b, "feat", b.op("Unsqueeze", ["m", b.ints(1)]), "t",
                                                             "blend", N, "p" if sliced else None), feeds)
    m32 = masks.astype(np.float32).astype(np.float64)
    proj = p if sliced else np.eye(N)
    check(loss, grad, lambda x: masked_sorted_loss(proj.T @ x, m32, t, blend), f)


@pytest.mark.parametrize("masked", [False, True])
def test_w2_term_matches_oracle(feats, masked):
    """The loss against a float64 NumPy Newton-Schulz, the gradient against its central
    differences: the graph's gradient is that of the iterated function, converged or not."""
    f, style = feats
    rng = np.random.default_rng(5)
    k = K if masked else 1
    cs = [np.cov(style, bias=True), np.cov(style[:, ::2] * 1.5, bias=True)][:k]
    roots = np.stack([sqrtm(c + graph.W2_EPS * np.eye(N)) for c in cs]).astype(np.float32).astype(np.float64)
    means = np.stack([style.mean(axis=1), style[:, ::2].mean(axis=1) * 1.5])[:k]
    means = means.astype(np.float32).astype(np.float64)
    feeds = {"feat": f.reshape(1, N, H, W), "s": roots, "mu": means[:, :, None]}
    if masked:
        masks = rng.uniform(0, 1, (K, H * W))
        masks[0, :9] = 0.0
        blend = np.array([0.7, 0.3])
        feeds |= {"m": masks.reshape(K, H, W), "blend": blend}
        masks = masks.astype(np.float32).astype(np.float64)
    else:
        masks, blend = np.ones((1, H * W)), np.ones(1)
    loss, grad = run_term(lambda b: graph.w2_term(b, "feat", b.op("Unsqueeze", ["m", b.ints(1)]) if masked else None,
                                                  "s", "mu", "blend" if masked else None, N), feeds)
    check(loss, grad, lambda x: w2_loss(x, masks, roots, means, blend), f)
    # the host's copy (tiles: runtime/objective.py w2_parts) of the graph's constants
    assert (objective.W2_EPS, objective.W2_ITERATIONS) == (graph.W2_EPS, graph.W2_ITERATIONS)


def test_masked_sorted_is_sorted_with_one_whole_mask(feats):
    """Every mask 1 and one style: masked_sorted_term's loss and gradient are sorted_term's."""
    f, style = feats
    t = np.sort(style, axis=1)[:, 1::3].astype(np.float32)
    feeds = {"feat": f.reshape(1, N, H, W), "t": t.reshape(1, N, 1, H * W)}
    a = run_term(lambda b: graph.sorted_term(b, "feat", "t", N), feeds)
    feeds |= {"m": np.ones((1, H, W)), "blend": np.ones(1)}
    b_ = run_term(lambda b: graph.masked_sorted_term(b, "feat", b.op("Unsqueeze", ["m", b.ints(1)]), "t",
                                                     "blend", N), feeds)
    assert rel(a[0], b_[0]) < TERM_RTOL
    assert np.abs(a[1] - b_[1]).max() <= GRAD_RTOL * np.abs(a[1]).max()


# ---------------------------------------------------------------- the full graph


@pytest.fixture(scope="module")
def images():
    content = np.ascontiguousarray(load("astronaut.png")[:41, :35])  # odd sizes
    style = np.ascontiguousarray(load("starry_night.jpg")[:48, :60])
    return content, style


LAYERS = {"conv1_1": 0.5, "conv3_1": 0.3, "conv5_1": 0.2}


@pytest.mark.parametrize("kind", KINDS[1:])
def test_full_graph_terms_match_oracle(images, weights, kind):
    from onnxstyle import defaults
    from onnxstyle.runtime.objective import resample

    content, style = images
    obj = Objective(content, style, content_weight=0.0, style_weight=1.0, style_layers=LAYERS,
                    style_loss=kind, seed=4)
    x = initial_canvas(content, "noise", seed=1)
    fx, fs = oracle.features(x, weights), oracle.features(style, weights)
    want = 0.0
    for name, lw in LAYERS.items():
        f, s = fx[name].reshape(fx[name].shape[0], -1), fs[name].reshape(fs[name].shape[0], -1)
        if kind in ("histogram", "sliced"):
            p = obj._proj[name].astype(np.float32).astype(np.float64) if kind == "sliced" else np.eye(len(f))
            loss = hist_loss(p.T @ f, resample(np.sort(p.T @ s, axis=1), f.shape[1]))
        elif kind == "w2":
            root = sqrtm(np.cov(s, bias=True) + graph.W2_EPS * np.eye(len(s)))
            loss = w2_loss(f, np.ones((1, f.shape[1])), [root], [s.mean(axis=1)], [1.0])
        else:
            a = np.cov(s, bias=True) if kind == "covariance" else s @ s.T / s.shape[1]
            loss = {"covariance": cov_loss, "scaled": scaled_loss}[kind](f, a)
        want += lw * defaults.STYLE_LOSS_SCALE[kind] * loss
    got = obj.terms(x)["style"]
    # float32 features and sums against float64: measured 1e-7 to 1.1e-6 (scaled) at 41 x 35
    assert rel(got, want) < TERM_RTOL, (got, want)


@pytest.mark.parametrize("kind", KINDS[1:])
def test_full_graph_gradient_matches_finite_differences(images, kind):
    from test_graph import directional_errors

    content, style = images
    obj = Objective(content, style, content_weight=1.0, style_weight=1e3, style_loss=kind)
    x = initial_canvas(content, "random", seed=3).astype(np.float64)
    assert max(directional_errors(obj, x)) < 5e-3


def test_gram_is_the_graph_before_the_losses(tmp_path, weights, images):
    """The default (gram everywhere) gives bit for bit the outputs of the graph built with gram
    alone, which is node for node the graph before the losses (checked when they were added)."""
    from onnxstyle.export import pair

    old = pair.export(tmp_path / "gram.onnx", weights, kinds=("gram",))
    content, style = images
    x = initial_canvas(content, "noise", seed=5)
    h, w = content.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[:, : w // 2] = 1.0
    for kw in ({}, {"style_masks": [mask, 1 - mask]}):
        styles = style if not kw else [style, style[::-1].copy()]
        a, ga = Objective(content, styles, model=old, **kw).evaluate(x)
        b, gb = Objective(content, styles, **kw).evaluate(x)
        assert a == b
        assert np.array_equal(ga, gb)


def test_style_loss_option():
    layers = ["conv1_1", "conv5_1"]
    assert style_losses("histogram,relu5_1:gram", layers) == {"conv1_1": "histogram", "conv5_1": "gram"}
    assert style_losses({"conv1_1": "scaled"}, layers) == {"conv1_1": "scaled", "conv5_1": "gram"}
    assert StyleOptions().style_loss == "gram"
    for bad in ("hist", "gram,scaled", "conv4_2:histogram", "conv9_1:gram"):
        with pytest.raises(InputError):
            StyleOptions(style_loss=bad)
