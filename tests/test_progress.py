"""Progress that tells the truth: time left, weighted parts that add up, whole log lines."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import DATA
from typer.testing import CliRunner

import onnxstyle
from onnxstyle import defaults
from onnxstyle.cli.app import app
from onnxstyle.cli.progress import clock
from onnxstyle.errors import InputError
from onnxstyle.runtime import prepare
from onnxstyle.runtime.stylize import Clock, Progress


def test_time_left_decreases_and_is_near_the_real_time_left(model_path):
    seen: list[tuple[float, Progress]] = []
    r = onnxstyle.stylize(DATA / "chelsea.png", DATA / "the_scream.jpg", scales=[48, 96], iterations=[6, 10],
                          size=None, callback=lambda p: seen.append((time.perf_counter(), p)))
    end = time.perf_counter()
    assert r.iterations == 16 and [p.scale for _, p in seen] == [0] * 6 + [1] * 10
    left = [p.remaining for _, p in seen]
    assert all(v is not None and v >= 0 for v in left)
    assert left[-1] == 0.0
    # falls over the run (not necessarily each step: it is re-measured every iteration)
    assert left[0] > left[10] > left[-1] and max(left[6:]) < max(left[:6])
    # a shared CPU is noisy; the estimate must still be the right magnitude at each scale's start
    # (tiny sizes: a fixed cost per call makes the pixel scaling of the next scale pessimistic)
    for (at, p), factor in ((seen[2], 6), (seen[8], 3)):
        real = end - at
        assert real / factor < p.remaining < real * factor, (p.scale, p.iteration, p.remaining, real)
    assert all(p.scales == 2 and p.evaluations >= p.iteration for _, p in seen)
    # the clock is a pure function of the Progress values and the schedule: replayed offline, the
    # recorded trace gives the very estimates the run showed
    hws = [seen[0][1].image.shape[:2], seen[-1][1].image.shape[:2]]
    clock = Clock([h * w for h, w in hws], [6, 10], "converged")
    assert [clock.remaining(p) for _, p in seen] == left


def test_the_clock_costs_the_look_terms_evaluation(model_path):
    # above the look size each evaluation also scores the picture at that size: the Clock is given
    # those pixels too (replayed with them, the run's very estimates; with h x w alone, others)
    seen: list[Progress] = []
    onnxstyle.stylize(DATA / "chelsea.png", DATA / "the_scream.jpg", scales=[32, 64], iterations=[3, 3],
                      size=None, look_size=32, callback=seen.append)
    hws = [seen[0].image.shape[:2], seen[-1].image.shape[:2]]
    opts = onnxstyle.StyleOptions(look_size=32)
    shape = (300, 451)  # chelsea.png's
    pixels = [prepare.evaluated_pixels(opts, shape, hw) for hw in hws]
    assert pixels == [32 * 21, 64 * 43 + 32 * 21]
    early = [p for p in seen if p.scale == 0]
    costed, plain = Clock(pixels, [3, 3], "converged"), Clock([h * w for h, w in hws], [3, 3], "converged")
    assert [costed.remaining(p) for p in early] == [p.remaining for p in early]
    assert [plain.remaining(p) for p in early] != [p.remaining for p in early]


def test_weighted_parts_add_up_to_the_total(model_path):
    seen: list[Progress] = []
    onnxstyle.stylize(DATA / "astronaut.png", DATA / "starry_night.jpg", size=40, iterations=3,
                      tv_weight=1e-2, style_weight=3e4, callback=seen.append)
    for p in seen:
        assert set(p.parts) == {"content", "style", "tv"}
        assert sum(p.parts.values()) == pytest.approx(p.terms["total"], rel=1e-5)
        assert p.parts["style"] == pytest.approx(3e4 * p.terms["style"], rel=1e-6)
        assert p.parts["tv"] == pytest.approx(1e-2 * p.terms["tv"], rel=1e-6)


def unread() -> np.ndarray:  # Progress.read_image: the clock must not pay for a copy of the image
    raise AssertionError("the clock read the image")


def test_clock_scales_later_sizes_by_their_pixels():
    c = Clock([100, 400], [10, 10], "iterations", exponent=1.0)
    p = Progress(5, 10, {"total": 1.0}, unread, elapsed=10.0, evaluations=5, scale=0, scales=2)
    # 5 more at 2 s/it here; 10 at 4x the pixels (8 s/it) and two setup evaluations there
    assert c.remaining(p) == pytest.approx(5 * 2 + 10 * 8 + 2 * 2 * 4)
    assert c.remaining(Progress(0, 10, {}, unread, 0.0)) is None
    # from iteration 1 on, the start (here 6 s of the first iteration) no longer counts
    c.remaining(Progress(1, 10, {}, unread, elapsed=6.0, evaluations=2, scale=0, scales=2))
    p = Progress(3, 10, {}, unread, elapsed=10.0, evaluations=4, scale=0, scales=2)
    assert c.remaining(p) == pytest.approx(7 * 2 + 10 * 8 + 2 * 2 * 4)
    # the measured growth per pixel: 4x the pixels cost 4 ** CLOCK_EXPONENT
    c = Clock([100, 400], [10, 10], "iterations")
    c.remaining(Progress(1, 10, {}, unread, elapsed=6.0, evaluations=2, scale=0, scales=2))
    f = 4 ** defaults.CLOCK_EXPONENT
    assert c.remaining(p) == pytest.approx(7 * 2 + (10 * 2 + 2 * 2) * f)
    assert clock(None) == "?" and clock(65) == "1:05" and clock(3725) == "1:02:05"


def synthetic(pixels: list[int], stops: list[int], per_pixel: float, exponent: float) -> list[Progress]:
    """A run's trace: one evaluation per iteration after a first that pays for the start (3
    evaluations), each `per_pixel` x pixels ** exponent seconds; scale k stops at stops[k]."""
    out = []
    for k, (px, n) in enumerate(zip(pixels, stops, strict=True)):
        per = per_pixel * px ** exponent
        out += [Progress(i, n, {}, unread, elapsed=per * (i + 2), evaluations=i + 2, scale=k, scales=len(pixels))
                for i in range(1, n + 1)]
    return out


def errors_at_20(clock: Clock, trace: list[Progress]) -> list[float]:
    """Per scale: time left shown after its 20th iteration / the real remainder - 1."""
    ends = {p.scale: p.elapsed for p in trace}
    shown = [clock.remaining(p) for p in trace]
    return [left / (ends[p.scale] - p.elapsed + sum(v for k, v in ends.items() if k > p.scale)) - 1
            for p, left in zip(trace, shown, strict=True) if p.iteration == 20]


def test_clock_under_converged_expects_the_measured_stops_not_the_cap():
    # 128 -> 256 -> 512 px, cap 500, each scale stopped by the rule where the default runs stopped
    # (280, 300, 400: astronaut x starry_night, time_to_picture_512.json); time per evaluation grows
    # 3.5x per doubling (those runs: 3.2-3.6x, the lead's benchmark machine)
    pixels, caps, stops = [128 * 128, 256 * 256, 512 * 512], [500] * 3, [280, 300, 400]
    trace = synthetic(pixels, stops, 1e-5, np.log(3.5) / np.log(4))
    old = errors_at_20(Clock(pixels, caps, "iterations", exponent=1.0), trace)  # the cap, pixel-linear
    new = errors_at_20(Clock(pixels, caps, "converged"), trace)
    assert sorted(old)[1] > 0.3 and min(old) > 0.2, old  # the most left: far too high (median 47 %)
    assert max(abs(e) for e in new) < 0.3, new
    # replayed, the same trace gives the same estimates; a fresh clock after a replay too
    a, b = Clock(pixels, caps, "converged"), Clock(pixels, caps, "converged")
    assert [a.remaining(p) for p in trace] == [b.remaining(p) for p in trace] == [a.remaining(p) for p in trace]
    with pytest.raises(InputError):
        Clock(pixels, caps, "soon")


def test_clock_never_shows_0_while_a_scale_may_go_on():
    c = Clock([64 * 64], [500], "converged")
    mean = sum(defaults.CONVERGED_STOPS) / len(defaults.CONVERGED_STOPS)
    assert c.stop(0) == pytest.approx(mean)  # before the run: the mean of the measured stops
    pool = sorted(defaults.CONVERGED_STOPS)
    at = pool[-2] - 10  # past most of them: the mean of those ahead
    ahead = [s for s in pool if s >= at]
    assert len(ahead) < len(pool) and c.stop(0, at) == pytest.approx(sum(ahead) / len(ahead))
    window = defaults.CONVERGED_WINDOW
    past = pool[-1] + 10  # past them all: the next check
    assert c.stop(0, past) == (past // window + 1) * window > past
    assert Clock([64 * 64], [100], "converged").stop(0, 50) == 100  # never past the cap
    left = [c.remaining(Progress(i, 500, {}, unread, elapsed=0.5 * i, evaluations=i)) for i in range(1, 501)]
    assert all(v > 0 for v in left[:-1]) and left[-1] == 0.0  # 0 only at the cap, where the scale must end


def test_progress_reads_the_image_once_and_only_when_asked():
    reads = []
    img = np.zeros((10, 10, 3), np.float32)
    p = Progress(1, 10, {}, lambda: reads.append(1) or img.copy(), elapsed=1.0)
    assert reads == []
    assert p.image is p.image and reads == [1]


def test_cli_log_lines_are_whole_when_not_a_terminal(tmp_path, model_path):
    out = tmp_path / "o.png"
    res = CliRunner().invoke(app, ["stylize", str(DATA / "astronaut.png"), str(DATA / "starry_night.jpg"),
                                   "-o", str(out), "--size", "40", "--iterations", "4", "--tv-weight", "1e-3",
                                   "--style-weight", "123456"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("stylize ")]
    assert len(lines) == 4  # fewer than LOG_LINES iterations: one line each
    for i, ln in enumerate(lines, 1):
        # whole: nothing cut by a console width, every part present
        assert f"it {i}/4" in ln and ln.endswith(" left") and " about " in ln and "…" not in ln
        assert " = content " in ln and " + style " in ln and " + tv " in ln and " s/it " in ln
    assert out.is_file()
