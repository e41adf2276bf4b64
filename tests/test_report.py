"""benchmarks/report.py: the figure tables in README.md and docs/*.md equal their results files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
report = sys.modules["report"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(report)


def test_every_table_equals_its_results_file():
    assert report.check() == []
    marked = [m["name"] for doc in report.DOCS for m in report.MARK.finditer(doc.read_text())]
    assert {"winograd", "time_to_picture_256", "batch"} <= set(marked)


def test_a_changed_number_fails_the_check(tmp_path):
    readme = (ROOT / "README.md").read_text()
    m, row = next((m, ln) for m in report.MARK.finditer(readme) for ln in m["body"].splitlines()
                  if ln.startswith("| ") and any(c.isdigit() for c in ln))  # the first table row with a number
    i = next(k for k, c in enumerate(row) if c.isdigit())
    changed = row[:i] + str((int(row[i]) + 1) % 10) + row[i + 1:]
    doc = tmp_path / "README.md"
    doc.write_text(readme.replace(row, changed, 1))
    assert report.check([doc]) == [f"README.md: figures:{m['name']} differs from its results file "
                                   "(python benchmarks/report.py --tables)"]
    doc.write_text(readme.replace(m["body"], "", 1))  # an emptied table too
    assert len(report.check([doc])) == 1
    doc.write_text(report.rewrite(doc.read_text(), report.load_provenance()))  # --tables puts it back
    assert report.check([doc]) == []


def test_unknown_table_and_missing_provenance_fail(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- figures:nonesuch -->\n<!-- /figures:nonesuch -->\n")
    assert "no table named" in report.check([doc])[0]
    doc.write_text("<!-- figures:winograd -->\n<!-- /figures:winograd -->\n")
    assert "no entry" in report.check([doc], prov={})[0]


def test_a_cited_results_file_needs_its_provenance(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("see [it](benchmarks/results/nonesuch.md) and benchmarks/results/schedule.md\n")
    prov = report.load_provenance()
    assert report.check([doc], prov) == ["x.md: cites benchmarks/results/nonesuch.md, which is not there"]
    del prov["schedule.md"]
    assert "schedule.md, which has no entry" in report.check([doc], prov)[1]


def test_a_table_never_measured_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)  # no results file at all
    doc = tmp_path / "x.md"
    doc.write_text("<!-- figures:batch -->\n<!-- /figures:batch -->\n")
    doc.write_text(report.rewrite(doc.read_text(), {}))
    assert "No results yet: its benchmark writes `batch.json`" in doc.read_text()
    assert report.check([doc], {}) == []
    assert "No such file" in report.check([doc], {"batch.json": {}})[0]  # measured once: must be there


def test_check_command_is_quick_and_runs_no_benchmark():
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - start < 30


def test_busy_machine_refuses_to_run(monkeypatch, capsys):
    monkeypatch.setattr(report.os, "getloadavg", lambda: (report.cores() + 1.0, 0.0, 0.0))
    monkeypatch.setattr(report.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    assert report.run("bench_quick", busy_ok=False) is False
    assert "refused" in capsys.readouterr().err


def test_the_losses_gallery_shows_every_planned_picture_with_its_command(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import argparse

    import losses_gallery

    a = argparse.Namespace(size=512, scales=(256, 512), iterations=(200, 100), pairs=losses_gallery.PAIRS,
                           losses="gram,w2,sliced")
    plan = losses_gallery.plan(a)
    runs = {k: {**{f: v[f] for f in ("kind", "pair", "loss", "command") if f in v}, "load": 1.0}
            for k, v in plan.items()}
    seam = {"columns": {"seam": 1.0, "inner_mean": 2.0, "inner_p95": 3.0}}
    (tmp_path / "losses_gallery.json").write_text(report.json.dumps(
        {"size": 512, "runs": runs, "seam": {k: seam for k in runs if k.startswith("texture")}}))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    prov = {"losses_gallery.json": {"commit": "abc", "loads": [1.0], "machine": {"cores": 2}}}
    text = "\n".join(report.losses_gallery_table(prov))
    assert len(plan) == 3 * 3 + 3 and all(f"(gallery/losses/{k}.jpg)" in text for k in plan)
    assert "--size 512 --scales 256,512 --iterations 200,100 --until iterations --style-loss <loss>" in text
    assert "`onnxstyle texture starry_night -o tex.jpg" in text and "--tileable` (shown repeated 2 x 2)" in text
    assert "| **astronaut x the_scream** |" in text and "--style-per-scale" in text
    del runs["astronaut_the_scream_w2"]  # a picture not made (yet) is a dash, not a broken link
    (tmp_path / "losses_gallery.json").write_text(report.json.dumps({"size": 512, "runs": runs, "seam": {}}))
    assert "astronaut_the_scream_w2" not in "\n".join(report.losses_gallery_table(prov))
    assert len(report.losses_seam_table(prov)) == 4  # caption, blank, head, rule: no texture measured


def test_busy_is_other_processes_cpu_not_the_benchmarks_own(monkeypatch, tmp_path):
    """A two-thread benchmark on two cores ends at a load of 2 by itself: it is busy only when
    other processes took CPU while it ran (the machine's busy seconds less the benchmark's own)."""
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "PROVENANCE", tmp_path / "provenance.json")
    monkeypatch.setitem(report.BENCHES, "toy", report.Bench("toy", [["toy.py"]], ["toy.json"]))
    (tmp_path / "toy.json").write_text("{}")
    monkeypatch.setattr(report.subprocess, "run", lambda *a, **k: report.subprocess.CompletedProcess(a, 0))
    monkeypatch.setattr(report, "git", lambda *a, **k: "abc")
    monkeypatch.setattr(report, "machine", lambda: {"cores": 2})
    n = report.cores()

    def run(own_s: float, machine_s: float) -> dict:  # a 10 s run: its own CPU, the machine's busy CPU
        for name, obj, values in (
                ("monotonic", report.time, [0.0, 10.0]), ("cpu_busy_s", report, [1000.0, 1000.0 + machine_s]),
                ("times", report.os, [report.os.times_result((0, 0, 0, 0, 0)),
                                      report.os.times_result((0, 0, own_s, 0, 0))]),
                ("getloadavg", report.os, [(0.1, 0, 0), (n + 0.2, 0, 0)])):  # after: its own load
            monkeypatch.setattr(obj, name, iter(values).__next__)
        assert report.run("toy", busy_ok=False)
        return report.load_provenance()["toy.json"]

    quiet = run(10.0 * n, 10.0 * n + 1.0)  # all cores its own, others 0.1 s a second
    assert quiet["busy"] is False and quiet["others_cpu"] == 0.1
    assert "other processes used 0.10 cores" in report.caption("toy.json", {"toy.json": quiet})
    shared = run(10.0, 10.0 + 5.0)  # one core its own, others half a core
    assert shared["busy"] is True and shared["others_cpu"] == 0.5
    assert "**busy machine**" in report.caption("toy.json", {"toy.json": shared})
    untimed = report.caption("toy.json", {"toy.json": shared}, timed=False)  # distances: the load changes none
    assert "busy" not in untimed and "shows no times" in untimed


def test_results_and_docs_written_by_a_run_do_not_make_the_commit_dirty(tmp_path):
    """report.py runs several benchmarks in one call: the results and tables the first writes are
    not code, so the next one's commit is not "-dirty" for them; a changed script is."""
    def git(*a: str) -> str:
        return report.subprocess.run(["git", *a], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    for d in ("benchmarks/results", "docs"):
        (tmp_path / d).mkdir(parents=True)
    files = ["benchmarks/results/x.json", "docs/x.md", "README.md", "benchmarks/x.py"]
    for f in files:
        (tmp_path / f).write_text("a")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    dirty = lambda: report.dirty(tmp_path)  # noqa: E731
    for f in files[:3]:
        (tmp_path / f).write_text("b")
    assert not dirty()
    (tmp_path / files[3]).write_text("b")
    assert dirty()


def test_time_to_picture_sentences_follow_their_rows():
    def row(ours_s, ours_loss, scipy_s, scipy_loss, torch):
        ours = {"seconds": ours_s, "final": ours_loss, "evaluations_s": 0.9 * ours_s, "optimizer_s": 0.08 * ours_s,
                "elsewhere_s": 0.02 * ours_s}
        return {"wins": ours_s < scipy_s and ours_loss <= 1.05 * scipy_loss, "onnxstyle": ours,
                "scipy500": {"seconds": scipy_s, "final": scipy_loss}, "torch": torch}
    reached = {"seconds": 240.0, "reached": True, "best": 90.0, "best_clamped": 95.0, "range": [-5.0, 260.0],
               "unclamped": {"seconds": 100.0}}
    missed = {"seconds": 241.0, "reached": False, "best": 150.0, "best_clamped": float("inf"), "range": [0.0, 255.0]}
    text = "\n".join(report.time_to_picture_summary([row(80.0, 100.0, 100.0, 100.0, reached),
                                                     row(120.0, 110.0, 100.0, 100.0, missed)]))
    assert "wins on 1 of 2 pairs: 0.80-1.20x the time of 500 iterations, at 1.00-1.10x their loss" in text
    assert "graph 90 %, the optimiser and the stopping rule 8 %, the rest (targets, resizing, sessions) 2 %" in text
    assert "reached the default's loss on 1 of 2 pairs (best 95, 150 unclamped against 100, 110)" in text
    assert "its unclamped loss on 1 (after 100 s, its pixels within -5 to 260" in text


def test_a_run_waits_for_the_load_its_predecessor_left(monkeypatch):
    n = report.cores()
    loads = iter([n + 1.0, n + 0.5, n - 0.5])
    monkeypatch.setattr(report.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    monkeypatch.setattr(report.time, "sleep", lambda s: None)
    assert report.settled(n, 60.0) == n - 0.5  # fell within the wait
    loads = iter([n + 1.0] * 100)
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(report.time, "monotonic", lambda: next(clock))
    assert report.settled(n, 60.0) == n + 1.0  # never fell: the caller refuses
