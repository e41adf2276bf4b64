"""The options users of jcjohnson's and anishathalye's neural-style reach for, each for its effect:
Adam with a learning rate, the L-BFGS history, a progress interval and --quiet, a style scale
per style image and the style layers' weight exponent."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, load
from test_stylize import run_cli

import onnxstyle
from onnxstyle import Objective
from onnxstyle.options import OptionError, StyleOptions
from onnxstyle.runtime import adam, images
from onnxstyle.runtime.stylize import initial_canvas


@pytest.fixture(scope="module")
def imgs():
    return load("astronaut.png")[:64, :64], load("starry_night.jpg"), load("the_scream.jpg")


def textbook_adam(grad, x, steps: int, lr: float, lo: float, hi: float) -> np.ndarray:
    """Kingma & Ba 2015, Algorithm 1, in float64, projected onto [lo, hi] after each step."""
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad(x)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = np.clip(x - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8), lo, hi)
    return x


def test_adam_matches_the_textbook_algorithm():
    rng = np.random.default_rng(0)
    target = rng.uniform(-40, 300, 500)  # some optima outside the box: the projection binds
    scale = rng.uniform(0.01, 10, 500)  # badly scaled: Adam's per-variable steps matter
    grad = lambda x: scale * (x - target)  # noqa: E731
    x0 = rng.uniform(0, 255, 500)
    seen = []
    res = adam.minimize(lambda x: (float(0.5 * (scale * (x - target) ** 2).sum()), grad(x.astype(np.float64))),
                        x0, 30, lr=3.0, callback=lambda it: seen.append(it.nit))
    want = textbook_adam(grad, x0, 30, 3.0, 0.0, 255.0)
    # float32 iterates near 255 round by 255 * 2^-24 ~ 1.5e-5 per step; the folded bias
    # correction moves eps by a factor <= 1: far below 1e-3 over 30 steps
    np.testing.assert_allclose(res.x, want, atol=1e-3)
    assert seen == list(range(1, 31)) and res.nit == 30 and res.nfev == 31
    assert (res.x >= 0).all() and (res.x <= 255).all() and (res.x == 0).any() and (res.x == 255).any()


def test_stylize_with_adam_and_its_learning_rate(imgs, model_path):
    c, s1, _ = imgs
    x0 = initial_canvas(c, "noise", 0)
    one = onnxstyle.stylize(c, s1, size=64, iterations=1, optimizer="adam", learning_rate=2.0, until="iterations")
    step = np.abs(one.iterate - x0)
    # Adam's first step is lr * g / (|g| + eps) per pixel: lr where the gradient is not tiny
    assert step.max() <= 2.0 + 1e-3 and np.median(step) == pytest.approx(2.0, abs=1e-2)
    run = onnxstyle.stylize(c, s1, size=64, iterations=15, optimizer="adam", until="iterations")
    assert run.iterations == 15 and run.evaluations == 16
    assert run.final["total"] < 0.5 * run.initial["total"]
    with pytest.raises(OptionError, match="learning rate"):
        StyleOptions(learning_rate=0)


def test_history_sets_the_lbfgs_pairs(imgs, model_path):
    c, s1, _ = imgs
    kw = {"size": 64, "iterations": 8, "until": "iterations"}
    few = onnxstyle.stylize(c, s1, optimizer="lbfgs", history=3, **kw)
    assert few.optimizer_state.S.shape[0] == 3 and few.scales[0]["memory"]["lbfgs_pairs"] == 3
    many = onnxstyle.stylize(c, s1, optimizer="lbfgs", **kw)
    assert many.optimizer_state.S.shape[0] == 10
    assert not np.array_equal(few.image, many.image)  # from the 4th iteration on they differ
    scipy3 = onnxstyle.stylize(c, s1, history=3, **kw)
    assert scipy3.scales[0]["memory"]["lbfgs_pairs"] == 3
    assert not np.array_equal(scipy3.image, onnxstyle.stylize(c, s1, **kw).image)
    with pytest.raises(OptionError, match="lbfgs-device"):
        StyleOptions(optimizer="lbfgs-device", history=5)
    with pytest.raises(OptionError, match="history"):
        StyleOptions(history=0)


def test_style_scale_per_style(imgs, model_path):
    c, s1, s2 = imgs
    r = onnxstyle.stylize(c, [s1, s2], size=64, iterations=1, style_scale=(1.0, 0.5))
    x0 = initial_canvas(c, "noise", 0)
    want = Objective(c, [images.resize(s1, images.fit_size(s1.shape, 64)),
                         images.resize(s2, images.fit_size(s2.shape, 32))]).terms(x0)["style"]
    assert r.initial["style"] == pytest.approx(want, rel=1e-5)
    same = onnxstyle.stylize(c, [s1, s2], size=64, iterations=1, style_scale=1.0)
    assert r.initial["style"] != pytest.approx(same.initial["style"], rel=1e-3)
    assert StyleOptions.parse({"style_scale": "1,0.5"}).style_scale == (1.0, 0.5)
    assert StyleOptions.parse({"style_scale": "0.5"}).style_scale == 0.5
    with pytest.raises(OptionError, match="3 values for 2 style images"):
        onnxstyle.stylize(c, [s1, s2], size=64, iterations=1, style_scale=(1, 1, 1))
    with pytest.raises(OptionError, match="within 0.05..8"):
        StyleOptions(style_scale=(1, 9))


def test_style_layer_weight_exponent(imgs, model_path):
    # anishathalye's weights: 1, e, e^2, ... over the style layers shallow to deep, summing to 1
    w = StyleOptions(style_layer_weight_exp=2).style_layer_weights()
    assert w == pytest.approx({"conv1_1": 1 / 31, "conv2_1": 2 / 31, "conv3_1": 4 / 31, "conv4_1": 8 / 31,
                               "conv5_1": 16 / 31})
    assert StyleOptions().style_layer_weights() == StyleOptions().style_layers
    # given weights keep their ratios times e^i by depth, whatever order they are written in
    o = StyleOptions(style_layers={"conv3_1": 0.3, "conv1_1": 0.1}, style_layer_weight_exp=0.5)
    assert o.style_layer_weights() == pytest.approx({"conv1_1": 0.1 * 0.4 / 0.25, "conv3_1": 0.15 * 0.4 / 0.25})
    c, s1, _ = imgs
    r = onnxstyle.stylize(c, s1, size=64, iterations=1, style_layer_weight_exp=2)
    x0, s64 = initial_canvas(c, "noise", 0), images.resize(s1, images.fit_size(s1.shape, 64))
    assert r.initial["style"] == pytest.approx(Objective(c, s64, style_layers=w).terms(x0)["style"], rel=1e-5)
    assert r.initial["style"] != pytest.approx(Objective(c, s64).terms(x0)["style"], rel=1e-2)


def test_cli_print_every_and_quiet(tmp_path, model_path):
    args = ("stylize", DATA / "astronaut.png", DATA / "starry_night.jpg", "--size", 32, "--iterations", 6,
            "--until", "iterations", "--scales", "none", "--overwrite")
    p = run_cli(*args, "-o", tmp_path / "a.png", "--print-every", 2, "--optimizer", "adam",
                "--learning-rate", 5, "--history", 4, "--style-scale", "0.5", "--style-layer-weight-exp", 1.5)
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stdout.splitlines() if x.startswith("stylize ")]
    assert len(lines) == 3 and all(f" {n}/6" in x for n, x in zip((2, 4, 6), lines, strict=True)), p.stdout
    q = run_cli(*args, "-o", tmp_path / "b.png", "--quiet")
    assert q.returncode == 0 and q.stdout == "" and (tmp_path / "b.png").is_file(), q.stderr


def test_blend_count_message_is_singular_where_it_should_be(imgs, model_path):
    c, s1, s2 = imgs
    with pytest.raises(OptionError, match="has 1 weight for 2 style images"):
        onnxstyle.stylize(c, [s1, s2], size=32, iterations=1, style_blend=[1.0])
