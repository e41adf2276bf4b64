"""Each artistic control measured for what it promises."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, load
from PIL import Image

import onnxstyle
from onnxstyle import Objective
from onnxstyle.runtime import color, images
from onnxstyle.runtime.stylize import initial_canvas


@pytest.fixture(scope="module")
def imgs():
    return load("astronaut.png")[:64, :64], load("starry_night.jpg"), load("the_scream.jpg")


def test_blend_one_zero_equals_single_style(imgs, model_path):
    c, s1, s2 = imgs
    x = initial_canvas(c, "noise", 0)
    single = Objective(c, s1).terms(x)
    blended = Objective(c, [s1, s2], style_blend=[1.0, 0.0]).terms(x)
    half = Objective(c, [s1, s2], style_blend=[0.5, 0.5]).terms(x)
    assert blended["style"] == pytest.approx(single["style"], rel=1e-5)
    assert half["style"] != pytest.approx(single["style"], rel=1e-3)
    other = Objective(c, [s1, s2], style_blend=[0.0, 1.0]).terms(x)  # each weight goes to its own style
    assert other["style"] == pytest.approx(Objective(c, s2).terms(x)["style"], rel=1e-5)


def test_blend_pulls_the_picture_towards_the_heavier_style(imgs, model_path):
    """More weight on a style: a picture whose Grams are nearer that style's (each style's loss
    measured on its own, so their scales cancel in the ratio)."""
    c, s1, s2 = imgs
    c48 = images.resize(c, (48, 48))
    to1, to2 = (Objective(c48, images.resize(s, images.fit_size(s.shape, 48))) for s in (s1, s2))

    def ratio(blend):
        img = onnxstyle.stylize(c, [s1, s2], size=48, iterations=15, style_blend=blend).iterate
        return to1.terms(img)["style"] / to2.terms(img)["style"]

    assert ratio([0.8, 0.2]) < ratio([0.2, 0.8])


def test_style_scale_resizes_the_style(imgs, model_path):
    c, s1, _ = imgs
    r = onnxstyle.stylize(c, s1, size=64, iterations=1, style_scale=0.5)
    small = images.resize(s1, images.fit_size(s1.shape, 32))
    x0 = initial_canvas(c, "noise", 0)
    assert r.initial["style"] == pytest.approx(Objective(c, small).terms(x0)["style"], rel=1e-5)
    assert r.initial["style"] != pytest.approx(Objective(c, s1).terms(x0)["style"], rel=1e-3)


def test_layer_weights_scale_their_terms(imgs, model_path):
    c, s1, _ = imgs
    x = initial_canvas(c, "noise", 0)
    a = Objective(c, s1, style_layers={"relu1_1": 1.0}, content_layers={"conv3_1": 1.0}).terms(x)
    b = Objective(c, s1, style_layers={"conv1_1": 0.2}, content_layers={"conv3_1": 0.5}).terms(x)
    assert a["style"] == pytest.approx(5 * b["style"], rel=1e-5)
    assert a["content"] == pytest.approx(2 * b["content"], rel=1e-5)
    with pytest.raises(onnxstyle.errors.InputError):
        Objective(c, s1, style_layers={"conv9_9": 1.0})


def ycc(img):
    return color.rgb_to_ycbcr(img)


@pytest.fixture(scope="module")
def plain(imgs, model_path):
    """The run the colour controls are measured against: no colour preserved."""
    c, s1, _ = imgs
    return onnxstyle.stylize(c, s1, size=64, iterations=10)


def test_luminance_transfer_keeps_content_chroma(imgs, plain):
    c, s1, _ = imgs
    r = onnxstyle.stylize(c, s1, size=64, iterations=10, preserve_colors="luminance")
    diff = np.abs(ycc(r.image)[..., 1:] - ycc(c)[..., 1:])
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 4.0
    assert np.abs(ycc(plain.image)[..., 1:] - ycc(c)[..., 1:]).mean() > 3 * diff.mean()
    # and the luminance is the stylized one, not the content's
    assert np.abs(ycc(r.image)[..., 0] - ycc(c)[..., 0]).mean() > 3 * diff.mean()


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two pictures' colour statistics are: mean RGB and RGB covariance."""
    a, b = (np.asarray(v, np.float64).reshape(-1, 3) for v in (a, b))
    return float(np.linalg.norm(a.mean(0) - b.mean(0)) + np.sqrt(np.linalg.norm(np.cov(a.T) - np.cov(b.T))))


@pytest.mark.parametrize("mode", ["chol", "pca"])
def test_color_match_moves_the_colours_towards_the_content(imgs, plain, mode):
    c, s1, _ = imgs
    r = onnxstyle.stylize(c, s1, size=64, iterations=10, preserve_colors="match", color_match=mode)
    assert colour_distance(r.image, c) < colour_distance(plain.image, c)


@pytest.mark.parametrize("mode", ["chol", "pca", "sym"])
def test_color_match_gives_style_the_content_statistics(imgs, mode):
    c, s1, _ = imgs
    m = color.match_colors(s1, c, mode, clip=False).reshape(-1, 3).astype(np.float64)
    cc = c.reshape(-1, 3).astype(np.float64)
    assert np.allclose(m.mean(0), cc.mean(0), atol=1e-2)
    assert np.allclose(np.cov(m, rowvar=False), np.cov(cc, rowvar=False), rtol=1e-3, atol=1e-1)


def test_tv_weight_smooths(imgs, model_path):
    c, s1, _ = imgs
    rough = onnxstyle.stylize(c, s1, size=48, iterations=15, tv_weight=0.0)
    smooth = onnxstyle.stylize(c, s1, size=48, iterations=15, tv_weight=1e-2)
    assert smooth.final["tv"] < 0.7 * rough.final["tv"]


def test_inits(imgs, tmp_path, model_path):
    c, s1, _ = imgs
    # ~0, not 0: the targets come from the features graph's Conv, the loss from Winograd products
    assert Objective(c, s1).terms(initial_canvas(c, "content", 0))["content"] < 1e-6
    rnd = initial_canvas(c, "random", 0)
    assert rnd.min() >= 0 and rnd.max() <= 255 and np.abs(rnd - c).mean() > 40
    path = tmp_path / "init.png"
    Image.fromarray(s1.astype(np.uint8)).save(path)
    r = onnxstyle.stylize(c, s1, size=None, iterations=1, init=str(path))
    x0 = images.resize(s1, c.shape[:2])
    assert r.initial["total"] == pytest.approx(Objective(c, s1).terms(x0)["total"], rel=1e-4)


def test_zero_mask_keeps_that_styles_loss_constant(imgs, model_path):
    c, s1, s2 = imgs
    zero = np.zeros(c.shape[:2], np.float32)
    obj = Objective(c, [s1, s2], style_masks=[zero, None], style_blend=[1.0, 0.0])
    a = obj.terms(initial_canvas(c, "noise", 0))["style"]
    b = obj.terms(initial_canvas(c, "random", 1))["style"]
    assert a == pytest.approx(b, rel=1e-6) and a > 0
    full = Objective(c, [s1, s2], style_masks=[np.ones_like(zero), None], style_blend=[1.0, 0.0])
    assert full.terms(initial_canvas(c, "noise", 0))["style"] == pytest.approx(
        Objective(c, s1).terms(initial_canvas(c, "noise", 0))["style"], rel=1e-4)


def test_masks_confine_styles_to_regions(imgs, model_path):
    c, s1, s2 = imgs
    h, w = c.shape[:2]
    left = np.zeros((h, w), np.float32)
    left[:, : w // 2] = 1
    r = onnxstyle.stylize(c, [s1, s2], size=64, iterations=25, style_masks=[left, 1 - left],
                          style_weight=1e4)
    assert r.final["style"] < 0.5 * r.initial["style"]
    # each half nearer its own style than the other half is (each style's loss on its own, so
    # their scales cancel in the ratio)
    halves = [(slice(None), slice(0, w // 2)), (slice(None), slice(w // 2, w))]
    ratios = []
    for region in halves:
        part, cp = np.ascontiguousarray(r.iterate[region]), np.ascontiguousarray(c[region])
        to1, to2 = (Objective(cp, images.resize(s, images.fit_size(s.shape, 64))) for s in (s1, s2))
        ratios.append(to1.terms(part)["style"] / to2.terms(part)["style"])
    assert ratios[0] < ratios[1], ratios


def test_max_pool_runs_and_differs(imgs, model_path, maxpool_model_path):
    c, s1, _ = imgs
    avg = onnxstyle.stylize(c, s1, size=48, iterations=3, pool="avg")
    mx = onnxstyle.stylize(c, s1, size=48, iterations=3, pool="max")
    assert mx.final["total"] < mx.initial["total"]
    assert mx.initial["style"] != pytest.approx(avg.initial["style"], rel=1e-3)
    # the run's terms are the max-pool graph's (tested against the oracle in test_graph.py)
    c48, s48 = images.resize(c, (48, 48)), images.resize(s1, images.fit_size(s1.shape, 48))
    x0 = initial_canvas(c48, "noise", 0)
    assert mx.initial["style"] == pytest.approx(Objective(c48, s48, model=maxpool_model_path).terms(x0)["style"],
                                                rel=1e-5)
    assert avg.initial["style"] == pytest.approx(Objective(c48, s48).terms(x0)["style"], rel=1e-5)


def test_coarse_to_fine(imgs, model_path):
    c, s1, _ = imgs
    r = onnxstyle.stylize(c, s1, size=None, scales=[32, 64], iterations=[10, 5])
    assert [s["size"] for s in r.scales] == [[32, 32], [64, 64]]
    assert [s["iterations"] for s in r.scales] == [10, 5] and r.iterations == 15
    assert r.image.shape == (64, 64, 3)
    # The fine scale starts from the upsampled coarse result: far below a fresh start.
    fresh = Objective(c, images.resize(s1, images.fit_size(s1.shape, 64)))
    assert r.scales[1]["final"]["total"] < fresh.terms(initial_canvas(c, "noise", 0))["total"] / 2


def test_auto_ladder_follows_the_size():
    from onnxstyle import defaults
    from onnxstyle.options import StyleOptions

    start = defaults.LADDER_START
    auto = StyleOptions(size=4 * start, scales="auto")
    assert auto.ladder() == [start, 2 * start, 4 * start]
    assert auto.replace(size=2 * start).ladder() == [start, 2 * start]  # moves with the size
    assert auto.replace(size=start + 1).ladder() == [start + 1]  # too small to climb
    assert auto.replace(size=None).ladder() == [None]  # the content's own size: one scale
    assert StyleOptions.parse({"scales": "none"}, auto).ladder() == [4 * start]
    assert auto.replace(scales="none").ladder() == [4 * start]  # the API takes the CLI's word too
    assert StyleOptions.parse({"scales": "auto", "iterations": "7,5,3"}, auto).iteration_list() == [7, 5, 3]
    # a 3:4 content: the first rung's shorter side would be below the start, so it is left out
    # (with its iteration count); a square content keeps every rung
    wide = StyleOptions.parse({"scales": "auto", "iterations": "7,5,3"}, auto)
    assert wide.ladder((3 * start, 4 * start)) == [2 * start, 4 * start]
    assert wide.iteration_list((3 * start, 4 * start, 3)) == [5, 3]
    assert wide.ladder((5, 5)) == [start, 2 * start, 4 * start]


def test_cli_controls_and_contact_sheet(tmp_path, model_path):
    from test_stylize import run_cli

    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.arange(96, dtype=np.uint8) * 2, (96, 1))).save(mask)
    out = tmp_path / "o.png"
    p = run_cli("stylize", DATA / "astronaut.png", DATA / "starry_night.jpg", DATA / "the_scream.jpg",
                "-o", out, "--size", 48, "--iterations", 4, "--style-blend", "0.7,0.3",
                "--style-layers", "conv1_1:0.5,relu3_1:0.5", "--content-layers", "conv4_2",
                "--preserve-colors", "match", "--color-match", "chol", "--scales", "24,48",
                "--style-mask", f"2={mask}", "--checkpoint-every", "2", "--pool", "max")
    assert p.returncode == 0, p.stderr
    assert Image.open(out).size == (48, 48)
    sheet = Image.open(tmp_path / "o_sheet.png")
    assert sheet.width > 48 * 3  # four checkpoints side by side
    assert Image.open(tmp_path / "o_losses.png").size == (640, 360)
    bad = run_cli("stylize", DATA / "astronaut.png", DATA / "starry_night.jpg", "-o", tmp_path / "b.png",
                  "--style-layers", "conv9_1")
    assert bad.returncode != 0 and "conv9_1" in bad.stderr and "Traceback" not in bad.stderr


def test_progress_carries_the_whole_runs_steps(tmp_path):
    # the run-wide step and steps (what the CLI's bar and the service show): the auto ladder of
    # the content's aspect, all scales counted
    from onnxstyle import defaults

    wide = tmp_path / "wide.png"
    Image.fromarray(np.asarray(Image.open(DATA / "astronaut.png").convert("RGB").resize((128, 64)))).save(wide)
    for content, rungs in ((wide, 1), (DATA / "astronaut.png", 2)):  # 2:1: the first rung left out
        seen = []
        onnxstyle.stylize(content, DATA / "starry_night.jpg", size=2 * defaults.LADDER_START, iterations=1,
                style_layers=["conv1_1"], callback=lambda p, seen=seen: seen.append((p.step, p.steps, p.scale)))
        assert seen == [(k + 1, rungs, k) for k in range(rungs)], seen
