"""`onnxstyle batch`: the manifest, both engines (worker processes and a real local Ray instance
with 2 CPUs), failures, dead workers, interruption and resume. Tiny images, few iterations."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_reliability import assert_one_line, cli, env
from PIL import Image
from test_reliability import interrupt_after_checkpoint

from onnxstyle import batch
from onnxstyle.batch.engines import LocalEngine
from onnxstyle.errors import InputError
from onnxstyle.options import StyleOptions

DATA = Path(__file__).parent / "data"
REF = {"size": 40, "iterations": 4}  # the job every engine must make exactly as `stylize` does


def write_manifest(folder: Path, rows: list[dict], name: str = "jobs.csv") -> Path:
    """A CSV manifest beside copies of the pictures (so relative paths are exercised)."""
    for picture in ("chelsea.png", "the_scream.jpg", "astronaut.png", "starry_night.jpg"):
        if not (folder / picture).exists():
            (folder / picture).write_bytes((DATA / picture).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    path = folder / name
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([columns] + [[row.get(c, "") for c in columns] for row in rows])
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> np.ndarray:
    """The REF job made by a single `onnxstyle stylize` (one onnxruntime thread, as each worker)."""
    out = tmp_path_factory.mktemp("ref") / "ref.png"
    proc = cli("stylize", DATA / "chelsea.png", DATA / "the_scream.jpg", "-o", out, "--size", REF["size"],
               "--iterations", REF["iterations"])
    assert proc.returncode == 0, proc.stderr
    return pixels(out)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"ONNXSTYLE_HOME": os.environ["ONNXSTYLE_HOME"]}})
    yield ray
    ray.shutdown()


def make_engine(kind: str, request) -> object:
    if kind == "ray":
        request.getfixturevalue("ray_local")
        from onnxstyle.batch.rayengine import RayEngine

        return RayEngine(workers=2, retries=2)
    return LocalEngine(workers=2, retries=2, threads=1)


# ------------------------------------------------------------------------------ manifest


def test_manifest_columns_values_paths_and_outputs(tmp_path):
    out = tmp_path / "out"
    path = write_manifest(tmp_path, [
        {"content": "chelsea.png", "style": "the_scream.jpg", "style_weight": "1e4", "output": "a.jpg"},
        {"content": "chelsea.png", "style": "the_scream.jpg;starry_night.jpg", "style_blend": "0.7,0.3"},
        {"content": "chelsea.png", "style": "the_scream.jpg;starry_night.jpg", "size": "abc"},
        {"content": "chelsea.png", "style": "the_scream.jpg;starry_night.jpg"},
        {"content": "astronaut.png", "style": "", "output": "a.jpg"},
    ])
    tasks = batch.read(path, out, StyleOptions(iterations=7))
    assert tasks[0].content == tmp_path / "chelsea.png" and tasks[0].output == out / "a.jpg"
    assert tasks[0].options.style_weight == 1e4 and tasks[0].options.iterations == 7  # row over base
    assert tasks[1].styles == [tmp_path / "the_scream.jpg", tmp_path / "starry_night.jpg"]
    assert tasks[1].options.style_blend == (0.7, 0.3) and tasks[1].error is None
    assert tasks[2].error == "jobs.csv line 4, size: size must be a number, got 'abc'"  # row and column
    names = [t.output.name for t in tasks[1:4]]  # derived, unique in manifest order
    assert names == ["chelsea_the_scream+starry_night.png", "chelsea_the_scream+starry_night_2.png",
                     "chelsea_the_scream+starry_night_3.png"]
    assert tasks[4].error == "jobs.csv line 6: no style given"
    # a misspelt column refuses the whole manifest, naming the line and the likely column
    bad = write_manifest(tmp_path, [{"content": "chelsea.png", "style": "the_scream.jpg", "styel_weight": "1"}],
                         "bad.csv")
    with pytest.raises(InputError, match=r"bad.csv line 2: unknown column 'styel_weight' \(did you mean style_weight"):
        batch.read(bad, out)
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text(json.dumps({"content": "chelsea.png", "style": ["the_scream.jpg"], "size": 64}) + "\n\n")
    (task,) = batch.read(jsonl, out)
    assert task.options.size == 64 and task.output == out / "chelsea_the_scream.png"


# ------------------------------------------------------------------------------- engines


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_engine_runs_jobs_in_workers_survives_a_bad_image_and_a_killed_worker(kind, request, tmp_path, reference):
    out = tmp_path / "out"
    rows = [
        {"content": "chelsea.png", "style": "the_scream.jpg", "output": "ref.png", **REF},
        {"content": "astronaut.png", "style": "starry_night.jpg", "size": 40, "iterations": 4},
        {"content": "broken.png", "style": "the_scream.jpg", "size": 40, "iterations": 4},
        {"content": "chelsea.png", "style": "starry_night.jpg", "output": "killed.png", "size": 48,
         "iterations": 40},
    ]
    tasks = batch.read(write_manifest(tmp_path, rows), out)
    killed: list[str] = []

    def on_event(event, summary) -> None:  # SIGKILL the worker of the last job a moment after it starts
        if event.kind == "started" and event.item.output.name == "killed.png" and not killed:
            killed.append(event.worker)
            threading.Timer(1.0, os.kill, (event.pid, signal.SIGKILL)).start()

    summary = batch.run(tasks, make_engine(kind, request), out / "batch.jsonl", on_event)
    records = {Path(r["output"]).name: r for r in map(json.loads, (out / "batch.jsonl").read_text().splitlines())}
    assert (summary.ok, summary.failed) == (3, 1)
    bad = records["broken_the_scream.png"]
    assert bad["status"] == "failed" and "broken.png" in bad["error"] and "\n" not in bad["error"]
    again = records["killed.png"]
    assert again["status"] == "ok" and again["attempt"] == 2 and again["iterations"] == 40
    assert again["worker"] != killed[0] and killed[0] in again["retried_after"][0]
    assert (out / "killed.png").is_file() and not (out / "killed.ckpt.npz").exists()
    assert len({r["worker"] for r in records.values() if r["status"] == "ok"}) >= 2  # more than one process
    assert np.array_equal(pixels(out / "ref.png"), reference)  # pixel for pixel a single stylize

    # the same batch again: finished jobs are skipped, nothing is redone
    started: list[str] = []
    summary = batch.run(batch.read(write_manifest(tmp_path, rows), out), make_engine(kind, request),
                        out / "batch.jsonl", lambda e, s: started.append(e.item.output.name) if e.kind == "started"
                        else None)
    assert (summary.skipped, summary.failed, summary.ok) == (3, 1, 0) and started == ["broken_the_scream.png"]


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_cancel_keeps_running_work_and_a_rerun_resumes_it(kind, request, tmp_path):
    out = tmp_path / "out"
    rows = [{"content": "chelsea.png", "style": "the_scream.jpg", "size": 32, "iterations": 3},
            {"content": "astronaut.png", "style": "starry_night.jpg", "size": 32, "iterations": 40}]
    manifest = write_manifest(tmp_path, rows)
    long_state = out / "astronaut_starry_night.ckpt.npz"
    cancel = threading.Event()

    def watch() -> None:  # "Ctrl-C" once the long job has a checkpoint
        deadline = time.time() + 120
        while not long_state.exists() and time.time() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=watch, daemon=True).start()
    first = batch.run(batch.read(manifest, out, checkpoint_every=5), make_engine(kind, request),
                      out / "batch.jsonl", cancel=cancel)
    assert first.interrupted >= 1 and first.ok + first.interrupted == 2  # the short one may be running too
    assert (out / "astronaut_starry_night.png").is_file() and long_state.is_file()
    second = batch.run(batch.read(manifest, out, checkpoint_every=5), make_engine(kind, request), out / "batch.jsonl")
    assert (second.ok + second.skipped, second.failed, second.interrupted) == (2, 0, 0)
    records = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    last = [r for r in records if r["output"].endswith("astronaut_starry_night.png")][-1]
    assert last["status"] == "ok"
    assert last["resumed_from"] >= 5 and last["iterations"] == 40 and not long_state.exists()


# ------------------------------------------------------------------------------------ CLI


def test_cli_ctrl_c_exits_130_and_the_same_command_finishes(tmp_path):
    out = tmp_path / "out"
    manifest = write_manifest(tmp_path, [
        {"content": "chelsea.png", "style": "the_scream.jpg", "iterations": 2},
        {"content": "astronaut.png", "style": "starry_night.jpg", "iterations": 30}])
    args = ["batch", manifest, "--out", out, "--size", "32", "--workers", "1", "--checkpoint-every", "5"]
    done = interrupt_after_checkpoint([sys.executable, "-m", "onnxstyle", *args],
                                      out / "astronaut_starry_night.ckpt.npz", signal.SIGINT)
    assert_one_line(done, 130, "interrupted by SIGINT", "run the same command again")
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert "1 ok, 0 failed, 1 skipped" in again.stdout and "Traceback" not in again.stderr


def test_cli_refuses_a_misspelt_column_before_anything_runs(tmp_path):
    manifest = write_manifest(tmp_path, [{"content": "chelsea.png", "style": "the_scream.jpg", "sise": "32"}])
    proc = cli("batch", manifest, "--out", tmp_path / "out")
    assert_one_line(proc, 1, "jobs.csv line 2", "unknown column 'sise'", "did you mean size")
    assert not (tmp_path / "out").exists()


def test_cli_ray_engine_without_ray_says_how_to_get_it(tmp_path):
    fake = tmp_path / "site"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    manifest = write_manifest(tmp_path, [{"content": "chelsea.png", "style": "the_scream.jpg"}])
    proc = cli("batch", manifest, "--out", tmp_path / "out", "--engine", "ray",
               PYTHONPATH=str(fake) + os.pathsep + env()["PYTHONPATH"])
    assert_one_line(proc, 1, "pip install 'onnxstyle[ray]'")


def test_ray_engine_spreads_clips_over_workers(request, tmp_path):
    """Clip rows (content a video file) run whole, one clip per Ray actor, frame by frame with the
    temporal term, and come out as clips; a rerun skips them."""
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from helpers_video import make_clip

    from onnxstyle.runtime.images import load_rgb
    from onnxstyle.video import io
    from onnxstyle.video.synthetic import PanZoom

    frames = PanZoom(width=40, height=32, scale=0.2, pan=(3.0, 1.0)).frames(load_rgb(DATA / "astronaut.png"), 3)
    for name in ("a.mp4", "b.mp4"):
        make_clip(tmp_path / name, frames, audio=False)
    rows = [{"content": n, "style": "starry_night.jpg", "size": 32, "iterations": 3, "optimizer": "lbfgs"}
            for n in ("a.mp4", "b.mp4")]
    out = tmp_path / "out"
    summary = batch.run(batch.read(write_manifest(tmp_path, rows), out), make_engine("ray", request),
                        out / "batch.jsonl")
    records = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    assert summary.ok == 2 and all(r["status"] == "ok" and r["frames"] == 3 for r in records), records
    assert len({r["worker"] for r in records}) == 2  # one clip per actor, not frames
    for name in ("a_starry_night.mp4", "b_starry_night.mp4"):
        assert io.probe(out / name).count == 3 and not (out / f"{name}.frames").exists()
    again = batch.run(batch.read(write_manifest(tmp_path, rows), out), make_engine("ray", request),
                      out / "batch.jsonl")
    assert again.skipped == 2
