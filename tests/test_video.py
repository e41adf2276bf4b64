"""Video: flow against known motion, the temporal term, frame/fps/duration/audio preservation,
resuming at the next frame, temporal consistency against independent frames, one-line errors."""

from __future__ import annotations

import sys
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from conftest import DATA  # noqa: E402

from onnxstyle.options import StyleOptions  # noqa: E402
from onnxstyle.runtime import images  # noqa: E402
from onnxstyle.video import flow as flows  # noqa: E402
from onnxstyle.video import io  # noqa: E402
from onnxstyle.video.run import (  # noqa: E402
    FrameStylizer,
    TemporalObjective,
    TemporalOptions,
    carried,
    frame_name,
    stylize_clip,
)
from onnxstyle.video.synthetic import PanZoom, temporal_error  # noqa: E402
from tests.helpers_video import make_clip  # noqa: E402

PHOTO = DATA / "astronaut.png"  # copies of ../shared/data (tests/data/CREDITS.md)
STYLE = DATA / "starry_night.jpg"
FAST = StyleOptions(size=48, iterations=4, optimizer="lbfgs", threads=1)
CLIP = PanZoom(width=48, height=32, scale=0.2, pan=(4.0, 2.0), zoom=0.02)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return images.load_rgb(PHOTO)


def write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, f in enumerate(frames):
        images.save(f, folder / f"img{i}.png")
    return folder


def audio_packets(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as box:
        return [(p.pts, bytes(p)) for p in box.demux(box.streams.audio[0]) if p.size]


def test_flow_matches_known_pan_and_zoom(photo):
    pz = PanZoom(width=96, height=64, scale=0.4, pan=(3.0, 1.5), zoom=0.02)
    frames = pz.frames(photo, 3)
    # DIS to within a tenth of a pixel: its preset stops at half resolution, 0.13 to 0.16 px here,
    # and the warped start's error grows as EPE^2 |grad x|^2 (docs/video.md, "Sharpness")
    for method, limit in (("dis", 0.1), ("farneback", 0.4)):
        truth = pz.flow(2, 1, photo.shape[:2])
        est = flows.flow(frames[2], frames[1], method)
        assert flows.endpoint_error(est, truth, pz.visible(truth)) < limit
        assert np.linalg.norm(truth, axis=-1).mean() > 1.0  # real motion, not a trivial zero flow
    # the warp by the true flow brings frame 1 onto frame 2 far better than no warp
    truth = pz.flow(2, 1, photo.shape[:2])
    m = pz.visible(truth) > 0
    warped = flows.warp(frames[1], truth)
    assert ((warped - frames[2]) ** 2)[m].mean() < 0.2 * ((frames[1].astype(float) - frames[2]) ** 2)[m].mean()


def test_reliability_drops_occlusions_and_keeps_smooth_motion():
    rng = np.random.default_rng(0)
    bg = rng.uniform(0, 255, (64, 64, 3)).astype(np.float32)
    bg = np.asarray(images.resize(bg, (64, 64)))
    a, b = bg.copy(), bg.copy()
    a[20:40, 10:30] = 255.0  # a white block moving 8 px right over a still background
    b[20:40, 18:38] = 255.0
    truth_b = np.zeros((64, 64, 2), np.float32)
    truth_b[20:40, 18:38, 0] = -8.0
    truth_f = np.zeros((64, 64, 2), np.float32)
    truth_f[20:40, 10:30, 0] = 8.0
    c = flows.reliability(truth_f, truth_b)
    assert c[20:40, 10:17].max() == 0  # background uncovered behind the block: disoccluded
    assert c[:10].min() == 1 and c[50:].min() == 1  # static background away from the block
    assert c[25:35, 22:34].min() == 1  # inside the block, consistent motion
    # the temporal term still holds the disoccluded pixels, weakly, and lets go only of what came from
    # outside the previous frame (here the left column, if the whole scene also moved 1 px right)
    held = flows.hold(truth_f, truth_b)
    assert (held[20:40, 10:17] == flows.UNRELIABLE_HOLD).all() and (held[c == 1] == 1).all()
    shift = np.array([1, 0], np.float32)
    panned = flows.hold(truth_f + shift, truth_b - shift)
    assert (panned[:, 0] == 0).all() and panned[:, 1:].min() == flows.UNRELIABLE_HOLD


def test_a_pixel_the_temporal_term_drops_amid_held_ones_does_not_become_a_speck(photo):
    # A still scene whose estimated flow has a few isolated bumps (flow noise, no motion): Ruder's
    # motion-boundary test drops the pixels around each. L-BFGS moves a dropped pixel amid held ones
    # with steps scaled for the held ones' stiffness: it ran off by up to 177 levels (a speck the
    # next frame carries on). Held at c = 0.1 it may settle 1 / c = 10x as far as a held pixel.
    h, w = 32, 48
    content = images.resize(photo.astype(np.float32), (h, w))
    stylizer = FrameStylizer([images.load_rgb(STYLE)], FAST, content)
    first = stylizer(content, 10)[0].astype(np.float32)
    backward = np.zeros((h, w, 2), np.float32)
    for y, x in [(8, 10), (8, 30), (20, 20), (24, 38), (16, 6)]:
        backward[y, x] = (0.3, 0.0)
    forward = np.zeros_like(backward)
    dropped = flows.reliability(forward, backward) == 0
    assert 5 <= dropped.sum() <= 40  # a few small spots
    change = {}
    for name, c in (("dropped", (~dropped).astype(np.float32)), ("held", flows.hold(forward, backward))):
        out = stylizer(content, 10, (first, c), 1e3)[0].astype(np.float32)
        change[name] = np.abs(out - first).max(-1)
    assert change["dropped"][dropped].max() > 50  # the scene makes specks where nothing holds the pixels
    assert change["held"][dropped].max() <= 10 * max(1.0, change["held"][~dropped].max()), change["held"][dropped]


def test_a_carried_frame_keeps_its_contents_detail_and_fills_what_came_from_outside():
    # content with detail at the finest scale (columns alternating 0 / 200), panned half a pixel
    h, w = 24, 32
    content = np.zeros((h, w, 3), np.float32)
    content[:, ::2] = 200.0
    backward = np.zeros((h, w, 2), np.float32)
    backward[..., 0] = 0.5  # frame t's pixel x came from x + 0.5 in frame t-1 (the last column from outside)
    fill = np.full((h, w, 3), 77.0, np.float32)
    # an output equal to its content: the whole-output bilinear warp (before) averaged each pair of
    # columns into a flat 100 (a half-pixel shift has no response at the finest scale) and
    # replicated the edge into the last column; the carried frame is the content itself, and fill
    # where frame t-1 had nothing
    before = flows.warp(content, backward)
    assert np.abs(before[:, :-1] - 100.0).max() < 1e-3
    start = carried(content, content, content, backward, fill)
    assert np.array_equal(start[:, :-1], content[:, :-1]) and (start[:, -1] == 77.0).all()
    # the style (output minus content) goes through a Lanczos warp: a half-pixel shift keeps a
    # wave of period 4 px at >= 0.9 of its amplitude, where bilinear keeps cos(pi / 4) = 0.71
    x = np.arange(w, dtype=np.float32)
    wave = np.broadcast_to((40.0 * np.sin(np.pi / 2 * x))[None, :, None], (h, w, 3)).astype(np.float32)
    flat = np.full((h, w, 3), 100.0, np.float32)
    inner = slice(8, w - 8)  # away from the edges, whole periods

    def amplitude(v: np.ndarray) -> float:  # of the period-4 wave along a row
        row = v[h // 2, inner, 0]
        return float(2 * np.abs((row * np.exp(-1j * np.pi / 2 * x[inner])).sum()) / row.size)

    assert amplitude(wave) == pytest.approx(40.0, rel=1e-4)
    assert amplitude(carried(flat + wave, flat, flat, backward, fill) - flat) >= 0.9 * 40.0
    assert amplitude(flows.warp(wave, backward)) == pytest.approx(40.0 * np.cos(np.pi / 4), rel=1e-3)


class Quadratic:
    """A stand-in base objective: 0.5 * |x|^2."""

    provider = "test"

    def evaluate(self, x):
        return {"total": 0.5 * float((x.astype(np.float64) ** 2).sum())}, x.astype(np.float64)


def test_temporal_term_value_and_gradient():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (5, 7, 3))
    target = rng.uniform(0, 255, (5, 7, 3))
    mask = (rng.uniform(size=(5, 7)) > 0.4).astype(np.float32)
    obj = TemporalObjective(Quadratic(), target, mask, weight=30.0)
    terms, grad = obj.evaluate(x)
    expect = (mask[..., None] * (x - target) ** 2).sum() / x.size
    assert terms["temporal"] == pytest.approx(expect, rel=1e-5)
    assert terms["total"] == pytest.approx(0.5 * (x**2).sum() + 30.0 * expect, rel=1e-5)
    e = np.zeros_like(x)
    for idx in [(0, 0, 0), (2, 3, 1), (4, 6, 2)]:
        e[:] = 0
        e[idx] = 1e-2
        fd = (obj.terms(x + e)["total"] - obj.terms(x - e)["total"]) / 2e-2
        assert grad[idx] == pytest.approx(fd, rel=1e-3, abs=1e-3)


def test_temporal_term_on_the_device_path_equals_the_host_path():
    """lbfgs-device: the temporal term runs on the host beside the base's device evaluation
    (AddedTerm.evaluate_device); the same terms and gradient as evaluate()."""
    import onnxruntime as ort

    class OnDevice(Quadratic):  # evaluate_device over CPU OrtValues, as Objective's
        shape = (5, 7, 3)

        def evaluate_device(self, x, grad_out=None):
            terms, g = self.evaluate(x.numpy())
            return terms, ort.OrtValue.ortvalue_from_numpy(g.astype(np.float32))

    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    obj = TemporalObjective(OnDevice(), rng.uniform(0, 255, (5, 7, 3)), (rng.uniform(size=(5, 7)) > 0.4), 30.0)
    want_terms, want_grad = obj.evaluate(x)
    terms, grad = obj.evaluate_device(ort.OrtValue.ortvalue_from_numpy(x.reshape(-1)))
    assert terms == pytest.approx(want_terms, rel=1e-6)
    np.testing.assert_allclose(grad.numpy().reshape(x.shape), want_grad, rtol=1e-6, atol=1e-3)


def test_video_runs_on_lbfgs_device(tmp_path, photo):
    src = write_folder(tmp_path / "in", CLIP.frames(photo, 3))
    r = stylize_clip(src, tmp_path / "out", [STYLE], FAST.replace(optimizer="lbfgs-device"),
                     TemporalOptions(later_iterations=2))
    assert not r.stopped and r.frames == 3 and len(list((tmp_path / "out").glob("*.png"))) == 3
    assert {rec["optimizer"] for rec in r.records} == {"lbfgs-device"}


def test_video_keeps_frames_rate_duration_and_audio(tmp_path, photo):
    frames = CLIP.frames(photo, 6)
    src = make_clip(tmp_path / "in.mp4", frames, fps=12)
    out = tmp_path / "out.mp4"
    r = stylize_clip(src, out, [STYLE], FAST, TemporalOptions(later_iterations=2))
    assert not r.stopped and not (tmp_path / "out.mp4.frames").exists()
    a, b = io.probe(src), io.probe(out)
    assert (b.count, b.fps, b.width, b.height) == (6, Fraction(12), 48, 32)
    assert b.duration == pytest.approx(a.duration)
    with av.open(str(src)) as x, av.open(str(out)) as y:
        assert y.duration == pytest.approx(x.duration, abs=0.05 * 1e6)
        assert y.streams.audio[0].codec_context.name == "aac"
    assert audio_packets(out) == audio_packets(src)  # bit for bit, same timestamps
    # a frame range keeps the audio of that span, shifted to zero
    part = stylize_clip(src, tmp_path / "part.mkv", [STYLE], FAST,
                        TemporalOptions(frames="2:5", fps="24", later_iterations=2))
    p = io.probe(part.output)
    assert (p.count, p.fps) == (3, Fraction(24))
    got = audio_packets(part.output)
    assert got and all(data in dict(audio_packets(src)).values() for _, data in got)


def test_interrupted_run_resumes_at_the_next_frame(tmp_path, photo):
    src = write_folder(tmp_path / "in", CLIP.frames(photo, 4))
    whole = stylize_clip(src, tmp_path / "whole", [STYLE], FAST, TemporalOptions(later_iterations=2))
    assert len(whole.seconds_per_frame) == 4
    stop = threading.Event()
    seen = []

    def after_two(p) -> None:
        seen.append(p)
        if p.frame == 2:
            stop.set()

    first = stylize_clip(src, tmp_path / "cut", [STYLE], FAST, TemporalOptions(later_iterations=2),
                         progress=after_two, cancel=stop)
    assert first.stopped and sorted(f.name for f in (tmp_path / "cut").glob("frame_*")) == [
        frame_name(0), frame_name(1)]
    assert seen[0].remaining > 0 and seen[-1].frames == 4
    # a frame's loss reads as a still's: the weighted parts (temporal from the second frame) and their total
    assert set(seen[0].loss) == {"content", "style", "tv", "total"}
    assert set(seen[-1].loss) == {"content", "style", "tv", "temporal", "total"} and seen[-1].frame > 0
    for p in seen:
        assert sum(v for k, v in p.loss.items() if k != "total") == pytest.approx(p.loss["total"], rel=1e-5)
    again = stylize_clip(src, tmp_path / "cut", [STYLE], FAST, TemporalOptions(later_iterations=2))
    assert again.resumed_at == 2 and len(again.seconds_per_frame) == 2
    for i in range(4):
        assert np.array_equal(images.load_rgb(tmp_path / "cut" / frame_name(i)),
                              images.load_rgb(tmp_path / "whole" / frame_name(i)))
    from onnxstyle.errors import InputError

    with pytest.raises(InputError, match="different run"):  # other options never mix into these frames
        stylize_clip(src, tmp_path / "cut", [STYLE], FAST.replace(seed=3), TemporalOptions(later_iterations=2))


def test_progress_carries_the_whole_clip(tmp_path, photo, monkeypatch, capsys):
    """The clip-wide step (3 iterations of the first frame, 2 of each later one: 7) rises by one
    each iteration across the frames, and the time left is for the clip, 0 at its end; the CLI
    prints those lines (cli/progress.py)."""
    src = write_folder(tmp_path / "in", CLIP.frames(photo, 3))
    seen = []
    stylize_clip(src, tmp_path / "out", [STYLE], FAST.replace(iterations=3), TemporalOptions(later_iterations=2),
                 progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 8)) and {p.steps for p in seen} == {7}
    assert [p.frame for p in seen] == [0, 0, 0, 1, 1, 2, 2] and {p.frames for p in seen} == {3}
    left = [p.remaining for p in seen]
    assert all(v is not None and v >= 0 for v in left) and left[-1] == 0.0
    # the last iteration of frames 0 and 1 leaves nothing of its own frame: what is left is the frames
    # after it (an order of the estimates would depend on the machine's timing)
    assert left[2] > 0 and left[4] > 0
    from onnxstyle.cli import main

    monkeypatch.setattr(sys, "argv", ["onnxstyle", "video", str(src), str(tmp_path / "cli"), str(STYLE), "--size",
                                      "48", "--iterations", "3", "--later-iterations", "2", "--optimizer", "lbfgs"])
    with pytest.raises(SystemExit) as e:
        main()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("video ")]
    assert e.value.code == 0 and len(lines) == 7, lines
    assert "48x32 frame 1/3 it 1/7 " in lines[0] and "frame 3/3 it 7/7 " in lines[-1]
    assert lines[-1].endswith(" 0:00 left")


def test_temporal_error_is_a_fraction_of_independent_frames(tmp_path, photo):
    pz = PanZoom(width=64, height=48, scale=0.3, pan=(3.0, 1.5), zoom=0.02)
    n = 4
    frames = pz.frames(photo, n)
    src = write_folder(tmp_path / "in", frames)
    options = StyleOptions(size=64, iterations=25, optimizer="lbfgs", threads=1)
    truth = [pz.flow(t, t - 1, photo.shape[:2]) for t in range(1, n)]
    vis = [pz.visible(f) for f in truth]
    errors = {}
    for name, temporal in (("independent", TemporalOptions(independent=True)),
                           ("temporal", TemporalOptions(later_iterations=12))):
        stylize_clip(src, tmp_path / name, [STYLE], options, temporal)
        out = [images.load_rgb(tmp_path / name / frame_name(i)) for i in range(n)]
        errors[name] = temporal_error(out, truth, vis)
    # The content frames, consistent by construction, score `floor` (resampling a sharp frame by
    # the true flow costs that much): a video as sharp as its content cannot score below it, and
    # one that did (the whole output warped bilinearly each frame) was blurred (docs/video.md,
    # "Sharpness"). Flicker is what lies above the floor.
    floor = temporal_error(frames, truth, vis)
    assert errors["temporal"] - floor <= 0.3 * (errors["independent"] - floor), (errors, floor)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from onnxstyle.cli import main

    monkeypatch.setattr(sys, "argv", ["onnxstyle", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err.strip()


def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, photo):
    (tmp_path / "notes.mp4").write_text("not a video")
    src = write_folder(tmp_path / "in", CLIP.frames(photo, 2))
    cases = [((str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"), str(STYLE)), "no such file"),
             ((str(tmp_path / "notes.mp4"), str(tmp_path / "o.mp4"), str(STYLE)), "not a video"),
             ((str(src), str(tmp_path / "o.mp4"), str(STYLE), "--frames", "5:x"), "--frames"),
             ((str(src), str(tmp_path / "o.mp4"), str(STYLE), "--frames", "1:1"), "selects no frames")]
    for args, words in cases:
        code, err = run_main(monkeypatch, capsys, "video", *args)
        assert code != 0 and len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "o.mp4").exists()
    monkeypatch.setitem(sys.modules, "av", None)  # the extra not installed
    code, err = run_main(monkeypatch, capsys, "video", str(src), str(tmp_path / "o.mp4"), str(STYLE))
    assert code == 1 and "pip install 'onnxstyle[video]'" in err and len(err.splitlines()) == 1
