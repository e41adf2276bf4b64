"""Batch throughput and scheduling overhead: `python benchmarks/batch.py [--jobs 6] [--iterations 8]`.

The same N jobs at 256 px (content and style pictures from tests/data) run
  - one after another in this process through job.run (the baseline: the model loaded once),
  - on the local engine with 1 worker (2 onnxruntime threads) and 2 workers (1 thread each),
  - on the Ray engine (a local Ray instance) with 1 actor (2 CPUs) and 2 actors (1 CPU each).
Each figure is the wall time of the whole batch, worker start and model loading included; the
overhead per job is the 1-worker batch's wall time less the time its jobs spent inside job.run
(from the log), over the jobs: what the engine adds, robust to a shared, busy machine. Ray's own
start (ray.init) is timed apart: it is paid once per batch, not per job. Writes benchmarks/results/batch.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PAIRS = [("chelsea.png", "the_scream.jpg"), ("astronaut.png", "starry_night.jpg"),
         ("chelsea.png", "woman_with_hat.jpg"), ("astronaut.png", "the_scream.jpg"),
         ("chelsea.png", "starry_night.jpg"), ("astronaut.png", "woman_with_hat.jpg")]


def manifest(folder: Path, jobs: int, iterations: int) -> Path:
    lines = ["content,style,output,size,iterations"]
    for i in range(jobs):
        content, style = PAIRS[i % len(PAIRS)]
        lines.append(f"{DATA / content},{DATA / style},job{i}.png,256,{iterations}")
    path = folder / "jobs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_engine(path: Path, engine, out: Path, inside: dict[str, float], key: str) -> float:
    """Wall time of the batch; `inside[key]`: the seconds its jobs spent in job.run (the log's)."""
    from onnxstyle import batch

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    summary = batch.run(batch.read(path, out), engine, out / "batch.jsonl")
    seconds = time.perf_counter() - t
    assert summary.ok == summary.total, summary
    records = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    inside[key] = sum(r["seconds"] for r in records)
    return seconds


def baseline(path: Path, out: Path, threads: int) -> float:
    """The same jobs one after another in this process (job.run, no engine)."""
    from onnxstyle import batch
    from onnxstyle.runtime import job

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    t = time.perf_counter()
    for task in batch.read(path, out):
        job.run(job.Job(task.content, task.styles, task.output, task.options.replace(threads=threads)),
                cancel=threading.Event())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    from onnxstyle.batch.engines import LocalEngine

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="onnxstyle-batch-bench-"))
    path = manifest(work, args.jobs, args.iterations)
    n = args.jobs
    rows: dict[str, float] = {}
    inside: dict[str, float] = {}
    rows["one process, one after another (2 threads)"] = baseline(path, work / "base", 2)
    rows["local engine, 1 worker (2 threads)"] = run_engine(path, LocalEngine(1, threads=2), work / "l1", inside,
                                                            "local")
    rows["local engine, 2 workers (1 thread each)"] = run_engine(path, LocalEngine(2, threads=1), work / "l2", {}, "")
    ray_init = None
    if not args.no_ray:
        import ray

        from onnxstyle.batch.rayengine import RayEngine

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_init = time.perf_counter() - t
        rows["ray engine, 1 actor (2 CPUs)"] = run_engine(path, RayEngine(workers=1, cpus_per_job=2), work / "r1",
                                                          inside, "ray")
        rows["ray engine, 2 actors (1 CPU each)"] = run_engine(path, RayEngine(workers=2), work / "r2", {}, "")
        ray.shutdown()
    one = {"local": rows["local engine, 1 worker (2 threads)"], "ray": rows.get("ray engine, 1 actor (2 CPUs)")}
    results = {
        "jobs": n, "size": 256, "iterations": args.iterations, "cpus": os.cpu_count(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "seconds": rows, "pictures_per_min": {k: round(60 * n / v, 2) for k, v in rows.items()},
        "job_s": {k: v / n for k, v in inside.items()}, "ray_init_s": ray_init,
        "load_average": [load_before, os.getloadavg()[0]],
        "overhead_s_per_job": {k: (one[k] - v) / n for k, v in inside.items()},
    }
    lines = [f"# Batch throughput at 256 px ({args.iterations} iterations a job, {n} jobs)", "",
             f"`python benchmarks/batch.py --jobs {n} --iterations {args.iterations}` on {results['machine']}; "
             "wall time of the whole batch, worker start and model loading included; the box's load average "
             f"was {load_before:.1f} before and {results['load_average'][1]:.1f} after (other work shared its "
             "CPUs: compare the rows with each other, not with bench.md).", "",
             "| how | seconds | pictures / min |", "|---|---|---|"]
    for k, v in rows.items():
        lines.append(f"| {k} | {v:.1f} | {60 * n / v:.2f} |")
    lines += ["", "Scheduling overhead per job, with 1 worker: (batch wall time - the time its jobs spent in "
              "job.run, as logged) / jobs; what the engine adds to running the jobs one after another (worker "
              "start, dispatch, results; the model load is inside the first job in both).", ""]
    for k, v in results["overhead_s_per_job"].items():
        job_s = results["job_s"][k]
        lines.append(f"- {k} engine: {v:.2f} s per job = {100 * v / job_s:.1f}% of a job ({job_s:.1f} s)")
    if ray_init is not None:
        lines.append(f"- starting the local Ray instance (once per batch, not per job): {ray_init:.1f} s")
    out = ROOT / "benchmarks" / "results"
    (out / "batch.md").write_text("\n".join(lines) + "\n")
    (out / "batch.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
