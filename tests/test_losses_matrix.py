"""Each style loss with the rest of the run (issue 27, item 5): masks with two styles, two styles
blended, the tiled evaluation, resume, and every optimiser, at tiny sizes (40 x 48 px, 2 to 4
iterations). The losses' own accuracy is tests/test_losses.py's."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from test_graph import directional_errors
from test_tiles import GRAD_K, GRAD_K_SORTED, check_same, picture

import onnxstyle
from onnxstyle import Objective, defaults

KINDS = ("gram", "covariance", "scaled", "w2", "histogram", "sliced")
# conv1_1 and conv2_1: plain convolutions in both the loss and the features graph, so the tiles'
# ranks (sorted losses) are the loss graph's (see test_tiles.test_tiled_equals_untiled_style_losses)
RUN = {"content_layers": {"conv2_2": 1.0}, "style_layers": {"conv1_1": 0.5, "conv2_1": 0.5},
       "style_weight": 1e3, "size": None, "scales": None}
# the directional difference of the loss at eps = 0.1 against grad . v: test_graph's bound for
# the whole graph at float32 (5e-3), which ReLU kinks and float32 losses of ~1e3 set
FD_RTOL = 5e-3


@functools.cache
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    c = picture("astronaut.png", (40, 48))
    styles = [picture("starry_night.jpg", (40, 44)), picture("the_scream.jpg", (44, 40))]
    mask = np.zeros(c.shape[:2], np.float32)
    mask[:, :20] = 1.0
    mask[10:30, 16:32] = 0.5  # fractional where the regions meet
    return c, styles[0], styles[1], [mask, 1.0 - mask]


def canvas(c: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.clip(c + rng.normal(0, 40, c.shape), 0, 255).astype(np.float32)


def grad_k(kind: str) -> float:
    """test_tiles' bound on the tiled gradient's difference, in units of the untiled gradient's error."""
    return GRAD_K_SORTED if kind in ("histogram", "sliced") else GRAD_K


def objective_kw(kind: str) -> dict:
    return {k: v for k, v in RUN.items() if k not in ("size", "scales")} | {"style_loss": kind}


@pytest.mark.parametrize("kind", KINDS)
def test_masks_two_styles(kind):
    """Two styles, each on its region: the gradient is the loss's (directional differences), the
    tiled evaluation gives the untiled terms and gradient, and a run lowers the loss."""
    c, s1, s2, masks = pair()
    kw = objective_kw(kind) | {"style_masks": masks, "style_blend": [0.6, 0.4]}
    untiled = Objective(c, [s1, s2], **kw)
    x = canvas(c)
    assert max(directional_errors(untiled, x.astype(np.float64))) < FD_RTOL
    check_same(untiled, Objective(c, [s1, s2], tile=32, **kw), x, grad_k=grad_k(kind))
    r = onnxstyle.stylize(c, [s1, s2], style_masks=masks, style_blend=[0.6, 0.4], iterations=2,
                          optimizer="lbfgs", style_loss=kind, **RUN)
    assert r.final["total"] < r.initial["total"]


@pytest.mark.parametrize("kind", KINDS)
def test_two_styles_blended(kind):
    """Blended targets: a style of weight 0 changes nothing (the blend is each loss's), the other
    weight does; the tiled evaluation gives the untiled terms and gradient."""
    c, s1, s2, _ = pair()
    kw = objective_kw(kind)
    x = canvas(c)
    alone = Objective(c, s1, **kw).terms(x)["style"]
    assert Objective(c, [s1, s2], style_blend=[1.0, 0.0], **kw).terms(x)["style"] == pytest.approx(alone, rel=1e-6)
    blended = Objective(c, [s1, s2], style_blend=[0.5, 0.5], **kw)
    assert abs(blended.terms(x)["style"] / alone - 1) > 1e-3
    check_same(blended, Objective(c, [s1, s2], style_blend=[0.5, 0.5], tile=32, **kw), x, grad_k=grad_k(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_resume_continues_exactly(kind):
    """optimizer="lbfgs": 2 more iterations from the state at iteration 2 of a 4-iteration run
    give that run's image bit for bit."""
    c, s1, _, _ = pair()
    kw = RUN | {"optimizer": "lbfgs", "style_loss": kind}
    states = {}

    def keep(p: onnxstyle.Progress) -> None:
        if p.iteration == 2:
            states[2] = p.optimizer_state()

    full = onnxstyle.stylize(c, s1, iterations=4, callback=keep, **kw)
    rest = onnxstyle.stylize(c, s1, iterations=2, optimizer_state=states[2], **kw)
    assert np.array_equal(rest.image, full.image)
    assert rest.history == full.history[2:]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", ["scipy", "lbfgs", "lbfgs-device", "adam"])
def test_every_optimiser(kind, optimizer):
    c, s1, _, _ = pair()
    # every loss's term at gram's weight, whatever its scale: Adam's fixed step (1e1 in 0..255)
    # raises the content term at once, so a term scaled down (scaled: 0.021) would not outweigh it
    kw = RUN | {"style_weight": RUN["style_weight"] / defaults.STYLE_LOSS_SCALE[kind]}
    r = onnxstyle.stylize(c, s1, iterations=2, optimizer=optimizer, style_loss=kind, **kw)
    assert r.optimizer == optimizer and r.iterations == 2
    assert r.final["total"] < r.initial["total"]
