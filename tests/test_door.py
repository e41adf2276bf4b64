"""One door from the options to a run (issue 22): every front end's --tile, --max-memory, --until,
--precision and --cudnn-search change what runs, and the report (stills, batch log, clip result)
records the tile and L-BFGS pairs used. Tiny pictures, few iterations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_reliability import cli

from onnxstyle import batch
from onnxstyle.batch.engines import LocalEngine
from onnxstyle.options import StyleOptions
from onnxstyle.runtime import fit, images, prepare, session

DATA = Path(__file__).parent / "data"
CONTENT, STYLE = DATA / "chelsea.png", DATA / "the_scream.jpg"
SIZE = 48


def lbfgs_only_limit() -> int:
    """A --max-memory under which ours fits untiled with every pair and scipy does not."""
    return fit.estimate(prepare.hw_at(images.load_rgb(CONTENT).shape, SIZE), None, 10, "lbfgs")


@pytest.fixture
def spy(monkeypatch):
    """What reached the runtime: the sessions' precision and cuDNN search, the stopping rules."""
    seen = {"sessions": [], "until": 0}
    load = session.load

    def spy_load(path, device="auto", threads=None, kind="loss", precision="tf32", cudnn_search="heuristic"):
        seen["sessions"].append((kind, precision, cudnn_search))
        return load(path, device, threads, kind, precision, cudnn_search)

    class Until(prepare.Convergence):
        def __init__(self, *a, **kw) -> None:
            seen["until"] += 1
            super().__init__(*a, **kw)

    monkeypatch.setattr(session, "load", spy_load)
    monkeypatch.setattr(prepare, "Convergence", Until)
    return seen


def test_stylize_cli_options_reach_the_run(tmp_path):
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    args = ("stylize", CONTENT, STYLE, "-o", out, "--size", SIZE, "--iterations", 2, "--scales", "none",
            "--report", report)
    p = cli(*args, "--tile", 32, "--until", "iterations")
    assert p.returncode == 0, p.stderr
    r = json.loads(report.read_text())
    assert r["scales"][0]["memory"]["tile"] == 32 and r["scales"][0]["tiled"].startswith("tiled, 32 px")
    assert r["optimizer"] == "scipy" and r["choice"] == "" and r["stop"] == "iterations"
    p = cli(*args, "--max-memory", lbfgs_only_limit(), "--overwrite")
    assert p.returncode == 0, p.stderr
    r = json.loads(report.read_text())
    assert r["optimizer"] == "lbfgs" and r["scales"][0]["memory"] == {
        "tile": None, "lbfgs_pairs": 10, "estimate_bytes": lbfgs_only_limit(), "limit_bytes": lbfgs_only_limit()}
    notes = [line for line in p.stderr.splitlines() if "no optimizer named" in line]
    assert len(notes) == 1 and "lbfgs" in notes[0]
    p = cli(*args, "--max-memory", "2M", "--overwrite")
    assert p.returncode == 1 and "needs about" in p.stderr and "Traceback" not in p.stderr


def test_report_records_the_tile_and_pairs_of_each_scale(tmp_path):
    """--tile 32 and a --max-memory that leaves 5 pairs at 48 px (all 10 untiled at 32 px): the
    report says what ran at each scale, and at the top the largest scale's (the 2048 px run's
    report had no top-level tile and pairs)."""
    big = prepare.hw_at(images.load_rgb(CONTENT).shape, SIZE)
    limit = fit.estimate(big, 32, 5, "lbfgs")
    report = tmp_path / "r.json"
    p = cli("stylize", CONTENT, STYLE, "-o", tmp_path / "o.png", "--scales", f"32,{SIZE}", "--iterations", 1,
            "--optimizer", "lbfgs", "--tile", 32, "--max-memory", limit, "--report", report)
    assert p.returncode == 0, p.stderr
    r = json.loads(report.read_text())
    assert [(s["memory"]["tile"], s["memory"]["lbfgs_pairs"]) for s in r["scales"]] == [(None, 10), (32, 5)]
    assert (r["tile"], r["pairs"]) == (32, 5)


def test_api_precision_search_and_until_reach_the_run(spy):
    from onnxstyle import stylize

    kw = {"size": SIZE, "iterations": 2, "scales": None, "device": "cpu"}
    stylize(CONTENT, STYLE, precision="fp32", cudnn_search="exhaustive", until="converged", **kw)
    assert set(spy["sessions"]) == {("loss", "fp32", "exhaustive"), ("features", "fp32", "exhaustive")}
    assert spy["until"] == 1
    stylize(CONTENT, STYLE, until="iterations", **kw)
    assert spy["until"] == 1 and ("loss", "tf32", "heuristic") in spy["sessions"]


def test_video_options_reach_every_frame(tmp_path, spy):
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from onnxstyle.video.run import TEMPORAL_PICTURES, FrameStylizer, TemporalOptions, stylize_clip
    from onnxstyle.video.synthetic import PanZoom

    frames = PanZoom(width=48, height=32, scale=0.2, pan=(4.0, 2.0), zoom=0.02).frames(images.load_rgb(CONTENT), 3)
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, f in enumerate(frames):
        images.save(f, clip / f"img{i}.png")
    opts = StyleOptions(size=48, iterations=2, threads=1, tile=32, precision="fp32", cudnn_search="exhaustive",
                        until="converged")
    r = stylize_clip(clip, tmp_path / "out", [STYLE], opts, TemporalOptions(later_iterations=2))
    assert len(r.records) == 3 and all(x["memory"]["tile"] == 32 for x in r.records)
    assert {s[1:] for s in spy["sessions"]} == {("fp32", "exhaustive")} and spy["until"] == 3
    stylizer = FrameStylizer([images.load_rgb(STYLE)], StyleOptions(size=48, iterations=2, optimizer="lbfgs"),
                             frames[0].astype("float32"))
    assert stylizer(frames[0].astype("float32"), 2)[1].optimizer_state is None  # not held into the next frame
    limit = fit.estimate((32, 48), None, 10, "lbfgs", pictures=TEMPORAL_PICTURES)  # a frame's plan counts its own
    r = stylize_clip(clip, tmp_path / "out2", [STYLE], StyleOptions(size=48, iterations=2, max_memory=limit),
                     TemporalOptions(later_iterations=2))
    assert r.optimizer == "lbfgs" and "no optimizer named" in r.choice
    assert all(x["optimizer"] == "lbfgs" and x["memory"]["lbfgs_pairs"] == 10 for x in r.records)
    with pytest.raises(Exception, match="needs about"):
        stylize_clip(clip, tmp_path / "out3", [STYLE], StyleOptions(size=48, max_memory="2M"))


def test_batch_rows_options_reach_the_run(tmp_path):
    base = StyleOptions(size=SIZE, iterations=2, scales=None)
    rows = [{"content": str(CONTENT), "style": str(STYLE), "output": "a.png", "tile": "32"},
            {"content": str(CONTENT), "style": str(STYLE), "output": "b.png", "max_memory": str(lbfgs_only_limit())}]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = batch.read(manifest, tmp_path / "out", base)
    s = batch.run(tasks, LocalEngine(1), tmp_path / "out" / batch.LOG_NAME)
    assert s.ok == 2, (tmp_path / "out" / batch.LOG_NAME).read_text()
    log = [json.loads(line) for line in (tmp_path / "out" / batch.LOG_NAME).read_text().splitlines()]
    by = {Path(r["output"]).name: r for r in log}
    assert by["a.png"]["memory"]["tile"] == 32 and by["a.png"]["optimizer"] == "scipy"
    assert by["b.png"]["memory"]["tile"] is None and by["b.png"]["optimizer"] == "lbfgs"
    assert [(by[n]["tile"], by[n]["pairs"], by[n]["stop"]) for n in ("a.png", "b.png")] == [
        (32, 10, "iterations"), (None, 10, "iterations")]
