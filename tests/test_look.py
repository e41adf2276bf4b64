"""The look held across sizes (issue 27 item 6, runtime/look.py): the content and style terms
on the picture shrunk to look_size, times look_weight; its value against the float64 oracle,
its gradient against finite differences, where it applies, and on every optimiser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import oracle
import pytest
from test_graph import directional_errors, rel

from onnxstyle import defaults
from onnxstyle.options import StyleOptions
from onnxstyle.runtime import images, prepare
from onnxstyle.runtime.look import LookObjective, box_matrix
from onnxstyle.runtime.stylize import initial_canvas

DATA = Path(__file__).parent / "data"
CONTENT, STYLE = (images.load_rgb(DATA / n) for n in ("chelsea.png", "the_scream.jpg"))


@pytest.mark.parametrize("n_in,n_out", [(64, 32), (57, 23), (300, 256)])
def test_box_matrix_averages_the_area_each_output_covers(n_in, n_out):
    # oracle: each input sample repeated n_out times, so that every output's interval is whole
    # samples of the repeated signal: the mean over those is the area average
    rng = np.random.default_rng(0)
    col = rng.uniform(0, 255, n_in)
    want = np.repeat(col, n_out).reshape(n_out, n_in).mean(axis=1)
    # float32 weights and sums of up to ceil(n_in / n_out) + 1 terms of 0..255: well under 1e-3
    np.testing.assert_allclose(box_matrix(n_out, n_in) @ col.astype(np.float32), want, atol=1e-3)


def prepared(size: int, look: int | None, content: np.ndarray = CONTENT, **kw) -> prepare.Prepared:
    opts = StyleOptions(size=size, look_size=look, device="cpu", style_weight=1e3, **kw)
    return prepare.prepare(opts, content, [STYLE], size)


def test_look_term_is_the_oracles_loss_of_the_shrunk_picture(weights):
    astronaut = images.load_rgb(DATA / "astronaut.png")
    p = prepared(64, 32, astronaut, look_weight=2.0)  # square: 64 -> 32, whole 2 x 2 boxes
    obj = p.objective
    assert isinstance(obj, LookObjective) and obj.coarse.shape[:2] == (32, 32)
    x = initial_canvas(p.content, "random", seed=1)
    got = obj.terms(x)
    h, w = obj.coarse.shape[:2]
    seen = x.reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
    style = images.resize(STYLE, images.fit_size(STYLE.shape, 32))
    targets = {k: oracle.gram(f) for k, f in oracle.features(style, weights).items()}
    photo = images.resize(astronaut, (h, w))
    want = oracle.terms(seen, oracle.features(photo, weights), targets, weights, defaults.CONTENT_LAYERS,
                        defaults.STYLE_LAYERS)
    # test_graph's bound for the graph's float32 terms
    assert rel(got["look"], want["content"] + 1e3 * want["style"]) < 1e-4
    base = obj.base.terms(x)
    assert got["total"] == pytest.approx(base["total"] + 2.0 * got["look"], rel=1e-6)
    assert obj.parts(got)["look"] == 2.0 * got["look"]


def test_look_gradient_matches_finite_differences():
    p = prepared(60, 28, look_weight=2.5)  # 60 x 40 seen at 28 x 19: boxes straddle pixels; weighted
    x = initial_canvas(p.content, "random", seed=3).astype(np.float64)
    assert max(directional_errors(p.objective, x)) < 5e-3  # test_graph's bound


def test_look_applies_only_above_its_size():
    assert not isinstance(prepared(32, 32).objective, LookObjective)
    assert not isinstance(prepared(64, None).objective, LookObjective)
    assert isinstance(prepared(64, 48).objective, LookObjective)


def test_lbfgs_device_takes_the_look_term(monkeypatch):
    """On the device path the look term runs on the host: the same terms and gradient as the host
    path (one graph, the same inputs), with the image's three copies per evaluation counted."""
    import onnxruntime as ort

    from onnxstyle.runtime import device_lbfgs

    p = prepared(64, 32, optimizer="lbfgs-device")
    assert isinstance(p.objective, LookObjective)
    x = initial_canvas(p.content, "random", seed=4).astype(np.float32)
    want_terms, want_grad = p.objective.evaluate(x)
    copies = {"to_host": 0, "to_device": 0}
    for name in copies:
        orig = getattr(device_lbfgs, name)
        monkeypatch.setattr(device_lbfgs, name, lambda *a, _n=name, _f=orig: copies.__setitem__(
            _n, copies[_n] + 1) or _f(*a))
    xd = ort.OrtValue.ortvalue_from_numpy(x.reshape(-1), "cpu", 0)
    terms, grad = p.objective.evaluate_device(xd)
    assert copies == {"to_host": 2, "to_device": 1}
    assert set(terms) == set(want_terms) and terms["look"] > 0
    for k, v in want_terms.items():  # the same computation: float32 rounding of one sum at most
        assert abs(terms[k] - v) <= 1e-6 * abs(v), k
    g = grad.numpy().reshape(want_grad.shape)
    assert np.abs(g - want_grad).max() <= 1e-6 * np.abs(want_grad).max()
    copies.update(to_host=0, to_device=0)
    r = p.run(x, 4)  # end to end: the stylize loop's device optimiser with the look term
    # on the device optimiser: x0 and the empty history S, Y down, then each evaluation's gradient
    assert r.iterations == 4 and r.final["look"] > 0 and copies["to_device"] == 3 + r.evaluations
    assert r.final["total"] < want_terms["total"]


def test_tiled_picture_keeps_the_same_look_term():
    x = initial_canvas(prepared(64, 32).content, "random", seed=5)
    whole, tiled = (prepared(64, 32, tile=t).objective.terms(x) for t in (None, 32))
    assert tiled["look"] == whole["look"]  # the look size's picture is never tiled
    assert tiled["total"] == pytest.approx(whole["total"], rel=1e-4)  # test_tiles' float32 bound


def test_a_run_reports_the_look_part():
    from onnxstyle import stylize

    r = stylize(CONTENT, STYLE, size=64, look_size=32, iterations=2, until="iterations", device="cpu")
    assert r.parts["look"] > 0 and r.final["look"] > 0
    assert sum(v for k, v in r.parts.items() if k != "total") == pytest.approx(r.final["total"], rel=1e-5)
