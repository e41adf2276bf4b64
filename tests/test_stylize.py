"""End to end: the API and the CLI stylize real images."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA, load

import onnxstyle
from onnxstyle.runtime.stylize import initial_canvas


def test_api_stylize_lowers_loss_by_a_large_factor(model_path):
    seen = []
    r = onnxstyle.stylize(DATA / "chelsea.png", DATA / "starry_night.jpg", size=64, iterations=40,
                          callback=lambda p: seen.append(p.iteration))
    assert r.image.shape == (43, 64, 3) and r.image.dtype == np.uint8
    assert r.final["total"] < r.initial["total"] / 5
    assert r.iterations == 40 and seen == list(range(1, 41))
    assert len(r.history) == 40 and r.history[-1] == r.final
    # device "auto": CUDA where onnxruntime can run it on this box, else the CPU
    from onnxstyle.runtime.session import runs_on_cuda

    assert r.provider == ("CUDAExecutionProvider" if runs_on_cuda("auto") else "CPUExecutionProvider")
    assert set(r.final) == {"content", "style", "tv", "total"}


def test_callback_stops_the_run(model_path):
    r = onnxstyle.stylize(DATA / "astronaut.png", DATA / "the_scream.jpg", size=48, iterations=50,
                          callback=lambda p: False if p.iteration == 3 else None)
    assert r.stopped and r.iterations == 3


def test_objective_call_matches_terms(model_path):
    c, s = load("astronaut.png"), load("starry_night.jpg")
    obj = onnxstyle.Objective(c, s, content_weight=1.0, style_weight=1e4, tv_weight=1e-4)
    x = initial_canvas(c, "noise", 0)
    loss, grad = obj(x)
    t = obj.terms(x)
    assert grad.dtype == np.float64 and grad.shape == c.shape
    assert loss == pytest.approx(t["total"], rel=1e-6)
    assert t["total"] == pytest.approx(t["content"] + 1e4 * t["style"] + 1e-4 * t["tv"], rel=1e-5)


def test_seed_canvas_is_the_seed_programs_noise_blend():
    c = load("astronaut.png")
    x = initial_canvas(c, "noise", seed=7)
    noise = (x - 0.9 * c) / 0.1
    m, s = c.mean(), c.std()
    assert noise.min() >= m - s - 1e-2 and noise.max() <= m + s + 1e-2
    assert np.array_equal(x, initial_canvas(c, "noise", seed=7))
    assert not np.array_equal(x, initial_canvas(c, "noise", seed=8))


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnxstyle", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_cli_stylize_writes_image_and_report(tmp_path, model_path):
    out, rep = tmp_path / "out.png", tmp_path / "report.json"
    p = run_cli("stylize", DATA / "astronaut.png", DATA / "starry_night.jpg", "-o", out,
                "--size", 48, "--iterations", 8, "--report", rep, "--checkpoint-every", 4, "--device", "cpu")
    assert p.returncode == 0, p.stderr
    from PIL import Image

    assert Image.open(out).size == (48, 48)
    assert (tmp_path / "out_00004.png").is_file() and (tmp_path / "out_00008.png").is_file()
    d = json.loads(rep.read_text())
    assert d["iterations"] == 8 and d["provider"] == "CPUExecutionProvider"  # as asked, on any box
    assert set(d["initial"]) == set(d["final"]) == {"content", "style", "tv", "total"}
    assert d["final"]["total"] < d["initial"]["total"]
    assert d["evaluations"] >= 8 and d["seconds"] > 0 and d["size"] == [48, 48]


def test_cli_demo(tmp_path, model_path):
    out = tmp_path / "demo.png"
    p = run_cli("demo", "-o", out, "--size", 40, "--iterations", 3)
    assert p.returncode == 0, p.stderr
    assert out.is_file()


def test_cli_errors_are_one_line(tmp_path, model_path):
    p = run_cli("stylize", tmp_path / "missing.jpg", DATA / "starry_night.jpg", "-o", tmp_path / "o.png")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "missing.jpg" in p.stderr


def test_library_writes_no_files(tmp_path, model_path):
    """A stylize through the library leaves nothing in HOME or TMPDIR (onnxruntime's telemetry
    files included: `import onnxstyle` turns them off)."""
    import os

    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    code = ("import onnxstyle, sys; r = onnxstyle.stylize(sys.argv[1], sys.argv[2], size=32, iterations=2,"
            " device='cpu'); print(r.iterations)")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(home / ".cache"))
    p = subprocess.run([sys.executable, "-c", code, str(DATA / "chelsea.png"), str(DATA / "starry_night.jpg")],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "2", p.stderr[-2000:]
    assert [f for f in tmp_path.rglob("*") if f.is_file()] == []
