"""One reading everywhere: the CLI's lines, the report, the batch log and the service's job status
all give the loss as its weighted parts and the total they add up to (the page: test_serve_page).
32-40 px, 2-3 iterations."""

from __future__ import annotations

import json
import re

import pytest
from conftest import DATA
from test_batch import write_manifest
from typer.testing import CliRunner

from onnxstyle import batch
from onnxstyle.batch.engines import LocalEngine
from onnxstyle.cli.app import app
from onnxstyle.options import StyleOptions
from onnxstyle.runtime import images
from onnxstyle.serve.work import Run

PARTS = {"content", "style", "tv"}
# a style weight far from 1, so unweighted terms could never add up to the total
WEIGHTS = {"style_weight": 123456.0, "tv_weight": 1e-3}


def assert_adds_up(loss: dict[str, float], parts: set[str] = PARTS) -> None:
    """The weighted parts add up to the total (float32 terms summed in float64: 1e-5 relative)."""
    assert set(loss) == parts | {"total"}, loss
    assert sum(v for k, v in loss.items() if k != "total") == pytest.approx(loss["total"], rel=1e-5), loss


def test_the_report_reads_as_the_cli(tmp_path, model_path):
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    res = CliRunner().invoke(app, ["stylize", str(DATA / "astronaut.png"), str(DATA / "starry_night.jpg"),
                                   "-o", str(out), "--size", "40", "--iterations", "3", "--tv-weight", "1e-3",
                                   "--style-weight", "123456", "--report", str(report)])
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    for loss in (rep["initial"], rep["final"], *(s["final"] for s in rep["scales"])):
        assert_adds_up(loss)
    # the CLI's last line (the last iterate) shows the report's final loss, part for part
    last = [ln for ln in res.stdout.splitlines() if ln.startswith("stylize ")][-1]
    shown = re.search(r"loss (\S+) = content (\S+) \+ style (\S+) \+ tv (\S+) ", last).groups()
    final = rep["final"]
    assert [float(v) for v in shown] == pytest.approx([final[k] for k in ("total", "content", "style", "tv")],
                                                      rel=5e-4)  # printed with 4 significant digits


def test_the_batch_log_reads_as_the_cli(tmp_path, model_path):
    rows = [{"content": "chelsea.png", "style": "the_scream.jpg", "output": "a.png", "size": 32, "iterations": 2,
             **WEIGHTS}]
    out = tmp_path / "out"
    s = batch.run(batch.read(write_manifest(tmp_path, rows), out), LocalEngine(workers=1, retries=0, threads=1),
                  out / batch.LOG_NAME)
    assert s.ok == 1
    rec = json.loads((out / batch.LOG_NAME).read_text().splitlines()[-1])
    assert_adds_up(rec["final"])
    assert rec["final"]["total"] == rec["final_loss"]


def test_the_service_status_reads_as_the_cli(model_path):
    seen: list[dict] = []
    run = Run(0, "j", StyleOptions(size=32, iterations=2, **WEIGHTS),
              images.load_rgb(DATA / "chelsea.png"), [images.load_rgb(DATA / "the_scream.jpg")])
    done = run.execute(None, "w", progress=seen.append)
    assert done["status"] == "done" and len(seen) == 2
    for record in (*seen, done):  # while running and when done
        assert_adds_up(record["terms"])
    assert done["terms"] == seen[-1]["terms"]  # the finished job reads as its last iteration
