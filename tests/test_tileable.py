"""--tileable: the picture is a torus. Untiled, the circular graphs (circular padding in every
convolution, forward and backward); tiled, the zero-padding graphs on regions that run on across
the edges (runtime/tiles.py take): two independent ways, compared here."""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from conftest import load
from test_graph import directional_errors, rel

from onnxstyle import Objective
from onnxstyle.errors import InputError
from onnxstyle.runtime import images, tiles
from onnxstyle.runtime.stylize import initial_canvas

LAYERS = {"conv1_1": 0.4, "conv2_1": 0.3, "conv3_1": 0.3}
CONTENT = {"conv2_2": 1.0}


@pytest.fixture(scope="module")
def pair():
    c = images.resize(load("chelsea.png"), (32, 48))
    s = images.resize(load("starry_night.jpg"), (40, 52))
    return c, s


def test_terms_match_circular_oracle(pair, weights):
    c, s = pair
    obj = Objective(c, s, content_weight=1.0, style_weight=1e3, tv_weight=1e-3, content_layers=CONTENT,
                    style_layers=LAYERS, tileable=True)
    x = initial_canvas(c, "noise", seed=1)
    got = obj.terms(x)
    fx, fc = oracle.features(x, weights, circular=True), oracle.features(c, weights, circular=True)
    fs = oracle.features(s, weights)  # the painting is not a torus
    n, m = fx["conv2_2"].shape[0], fx["conv2_2"][0].size
    content = ((fx["conv2_2"] - fc["conv2_2"]) ** 2).sum() / (2 * np.sqrt(n * m))
    style = sum(w * ((oracle.gram(fx[k]) - oracle.gram(fs[k])) ** 2).sum() / (4 * fx[k].shape[0] ** 2)
                for k, w in LAYERS.items())
    x64 = x.astype(np.float64)
    tv = sum(((np.roll(x64, 1, axis=a) - x64) ** 2).sum() for a in (0, 1))  # across the edges too
    for key, want in (("content", content), ("style", style), ("tv", tv)):
        assert rel(got[key], want) < 1e-4, (key, got[key], want)  # test_graph's float32 tolerance
    # zero padding gives a different picture's loss: the check can tell them apart
    plain = Objective(c, s, content_weight=1.0, style_weight=1e3, content_layers=CONTENT, style_layers=LAYERS)
    assert rel(plain.terms(x)["style"], style) > 1e-3


def test_gradient_matches_finite_differences(pair):
    c, s = pair
    obj = Objective(c, s, content_weight=1.0, style_weight=1e3, tv_weight=1e-3, content_layers=CONTENT,
                    style_layers=LAYERS, tileable=True)
    x = initial_canvas(c, "random", seed=3).astype(np.float64)
    assert max(directional_errors(obj, x)) < 5e-3


@pytest.mark.parametrize("loss", ["gram", "histogram"])
def test_tiled_equals_one_tile(pair, loss):
    c, s = pair
    kw = {"content_layers": CONTENT, "style_layers": LAYERS, "tileable": True, "style_loss": loss,
          "style_weight": 1e3, "tv_weight": 1e-3}
    one, tiled = Objective(c, s, **kw), Objective(c, s, tile=16, **kw)
    assert len(tiled._plan(c.shape[:2], 16, True)) == 6
    rng = np.random.default_rng(7)
    x = np.clip(c + rng.normal(0, 40, c.shape), 0, 255).astype(np.float32)
    a, ga = one.evaluate(x)
    b, gb = tiled.evaluate(x)
    for k in a:
        assert rel(a[k], b[k]) < 3e-5, (k, a[k], b[k])  # test_tiles' tolerances
    assert np.abs(ga - gb).max() <= 1e-4 * np.abs(ga).max()


def test_sides_must_be_on_the_grid(pair):
    c, s = pair
    with pytest.raises(InputError, match="multiples of 16"):
        Objective(c[:30], s, tileable=True)
    assert tiles.on_grid((30, 57)) == (32, 64) and tiles.on_grid((5, 210)) == (32, 208)


def test_take_wraps():
    a = np.arange(20).reshape(4, 5)
    assert (tiles.take(a, slice(-1, 5), slice(3, 7)) == a[np.ix_([3, 0, 1, 2, 3, 0], [3, 4, 0, 1])]).all()
    assert np.shares_memory(tiles.take(a, slice(1, 3), slice(0, 5)), a)  # inside: a view


def test_wrapped_resize_is_a_resize_of_the_torus():
    """resize(wrap=True) commutes with a circular shift (a 2x upscale: a shift of s pixels is one of
    2s there); the plain resize, whose filter stops at the edges, does not."""
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (24, 40, 3)).astype(np.float32)
    shifted = np.roll(img, (5, -7), axis=(0, 1))
    for wrap, same in ((True, True), (False, False)):
        a = np.roll(images.resize(img, (48, 80), wrap=wrap), (10, -14), axis=(0, 1))
        assert np.array_equal(a, images.resize(shifted, (48, 80), wrap=wrap)) == same


def test_texture_on_the_ladder_has_no_seam():
    """The output of `texture --tileable` on a two-rung ladder repeats without a seam. Per axis, the
    mean absolute difference across the wrap edge (last column or row against the first) over the
    mean of the same between neighbouring columns (rows) inside: on a torus the edge is one draw
    from the inside's spread (4 seeds here: 0.94-1.54 per axis, 1.08-1.27 averaged over the two;
    the inside's own p95 is 1.1-1.2x its mean, so 1.6 averaged is about 4 sd up); the ladder's
    plain resize between rungs, whose filter stops at the edges, gave 2.26-2.53."""
    import onnxstyle

    s = load("starry_night.jpg")
    r = onnxstyle.stylize(s, s, size=96, scales=(48, 96), iterations=[40, 20], until="iterations",
                          content_weight=0.0, noise_ratio=1.0, tileable=True, device="cpu", threads=1)
    x, ratios = r.image.astype(np.float64), []
    for axis in (0, 1):
        inner = np.abs(np.diff(x, axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
        ratios.append(np.abs(np.take(x, 0, axis=axis) - np.take(x, -1, axis=axis)).mean() / inner.mean())
    assert np.mean(ratios) <= 1.6, ratios
