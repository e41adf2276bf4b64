"""Batch against one process, in one run: `python benchmarks/batch.py [--jobs 4] [--size 128] [--iterations 30]`.

The same N jobs (pictures from tests/data, each exactly `--iterations` iterations: `until=iterations`) run
  - one after another in one process: a fresh process that runs each row as a worker does (Task.execute),
    with no engine (the baseline),
  - on the local engine with 1 worker, and with 2 workers,
the box's CPUs shared out alike (the baseline and 1 worker: all of them; 2 workers: half each). A figure is
the wall time of the whole batch, from before its processes start to after its last job: process start,
imports and model loading are in all three. The three run interleaved, `--rounds` rounds, each round in a
rotated order (none always first); each figure is the median over the rounds, and both ratios are of
medians of this one run: 2 workers / one process, and 1 worker / one process (what the engine adds: its
overhead per job is the difference of the two medians over N). Writes OUT/batch.{json,md} (OUT: --out,
default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PAIRS = [("chelsea.png", "the_scream.jpg"), ("astronaut.png", "starry_night.jpg"),
         ("chelsea.png", "woman_with_hat.jpg"), ("astronaut.png", "the_scream.jpg")]
ONE = "one process, one after another"


def manifest(folder: Path, jobs: int, size: int, iterations: int) -> Path:
    lines = ["content,style,output,size,iterations,until"]
    for i in range(jobs):
        content, style = PAIRS[i % len(PAIRS)]
        lines.append(f"{DATA / content},{DATA / style},job{i}.png,{size},{iterations},iterations")
    path = folder / "jobs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def sequential(path: str, out: str, threads: int) -> None:
    """The baseline's process: every row one after another, as a worker runs it, with no engine."""
    os.environ["ONNXSTYLE_THREADS"] = str(threads)
    from onnxstyle import batch

    for task in batch.read(path, out):
        rec = task.execute(threading.Event(), ONE)
        if rec["status"] != "ok":
            sys.exit(f"{task.where}: {rec.get('error', rec['status'])}")


def measure(workers: int, threads: int, path: Path, out: Path) -> float:
    """Wall time of the batch in `out` (emptied first); workers 0: the one-process baseline."""
    from onnxstyle import batch
    from onnxstyle.batch.engines import LocalEngine

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    if workers == 0:
        p = mp.get_context("spawn").Process(target=sequential, args=(str(path), str(out), threads))
        p.start()
        p.join()
        if p.exitcode:
            sys.exit(f"batch.py: the one-process baseline failed (exit {p.exitcode})")
    else:
        summary = batch.run(batch.read(path, out), LocalEngine(workers, threads=threads), out / "batch.jsonl")
        if summary.ok != summary.total:
            sys.exit(f"batch.py: {workers} worker(s): {summary.ok} of {summary.total} jobs ok")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    os.environ.pop("ONNXSTYLE_THREADS", None)  # the threads below, not the caller's
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    hows = {ONE: (0, cpus), "local engine, 1 worker": (1, cpus), "local engine, 2 workers": (2, max(1, cpus // 2))}
    n, names = args.jobs, list(hows)
    work = Path(tempfile.mkdtemp(prefix="onnxstyle-batch-bench-"))
    path = manifest(work, n, args.size, args.iterations)
    load_before = os.getloadavg()[0]
    runs = []
    for r in range(args.rounds):
        for how in names[r % len(names):] + names[:r % len(names)]:
            seconds = measure(*hows[how], path, work / "out")
            runs.append({"round": r + 1, "how": how, "seconds": round(seconds, 3),
                         "load": round(os.getloadavg()[0], 2)})
            print(f"round {r + 1}: {how}: {seconds:.1f} s", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    median = {how: statistics.median(x["seconds"] for x in runs if x["how"] == how) for how in names}
    command = (f"python benchmarks/batch.py --jobs {n} --size {args.size} --iterations {args.iterations} "
               f"--rounds {args.rounds}")
    results = {
        "command": command, "jobs": n, "size": args.size, "iterations": args.iterations, "rounds": args.rounds,
        "cpus": cpus, "threads": {how: t for how, (_, t) in hows.items()}, "runs": runs,
        "median_s": median, "pictures_per_min": {how: round(60 * n / s, 2) for how, s in median.items()},
        "ratio_to_one_process": {how: round(s / median[ONE], 3) for how, s in median.items()},
        "overhead_s_per_job": round((median["local engine, 1 worker"] - median[ONE]) / n, 3),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    ratio = results["ratio_to_one_process"]
    lines = [f"# Batch: {n} jobs at {args.size} px, {args.iterations} iterations each", "",
             f"`{command}` on {cpus} CPUs, load average {load_before:.1f} before and "
             f"{results['load_average'][1]:.1f} after. Wall time of the whole batch (process start, imports and "
             f"model loading included), {args.rounds} round(s) interleaved, each in a rotated order; medians.", "",
             "| how | threads each | seconds, by round | median s | pictures / min | / one process |",
             "|---|---|---|---|---|---|"]
    for how in names:
        each = ", ".join(f"{x['seconds']:.1f}" for x in runs if x["how"] == how)
        lines.append(f"| {how} | {results['threads'][how]} | {each} | {median[how]:.1f} | "
                     f"{results['pictures_per_min'][how]:.2f} | {ratio[how]:.3f} |")
    lines += ["", f"- 2 workers take {ratio['local engine, 2 workers']:.3f}x the one process's time "
              f"({1 / ratio['local engine, 2 workers']:.2f}x its throughput)",
              f"- the engine's overhead, 1 worker against one process: {results['overhead_s_per_job']:+.3f} s per job "
              f"({ratio['local engine, 1 worker']:.3f}x)"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch.md").write_text("\n".join(lines) + "\n")
    (args.out / "batch.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
