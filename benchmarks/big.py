"""Big pictures in bounded memory (issue 11): whole-process peak memory and time.

  python benchmarks/big.py proof 2048 2.5G --iterations 1 --init small.png     # a CLI stylize
  python benchmarks/big.py eval 1024 --tile 512                                 # one evaluation
  python benchmarks/big.py proof 1024 "" --scales none --look-size none --optimizer scipy  # the look's cost

Each case runs in a fresh process; the peak is the child's ru_maxrss (VmHWM). Each result, with its
commit, replaces the same case's row in benchmarks/results/big.json (the tables in docs/big.md:
`python benchmarks/report.py big`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
CONTENT, STYLE = DATA / "content" / "astronaut.png", DATA / "style" / "starry_night.jpg"
RESULTS = ROOT / "benchmarks" / "results" / "big.json"

EVAL = """
import sys, time, numpy as np
from onnxstyle.runtime.images import fit_size, load_rgb, resize
from onnxstyle.runtime.objective import Objective
size, tile = int(sys.argv[1]), int(sys.argv[2]) or None
c = load_rgb(sys.argv[3]).astype(np.float32); c = resize(c, fit_size(c.shape, size))
s = load_rgb(sys.argv[4]).astype(np.float32); s = resize(s, fit_size(s.shape, size))
o = Objective(c, s, tile=tile)
t = time.perf_counter(); o.evaluate(c); print(time.perf_counter() - t)
"""


def child(cmd: list[str]) -> tuple[str, float, float]:
    """(stdout, seconds, peak MiB) of a fresh process."""
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out.stdout, time.perf_counter() - t, peak


def record(row: dict) -> None:
    """Add a row stamped with its commit; it replaces an earlier row of the same case."""
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    case = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "peak_mib", "tiled", "commit")}  # noqa: E731
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    row["commit"] = head.stdout.strip() or "unknown"
    rows = [r for r in rows if case(r) != case(row)] + [row]
    RESULTS.write_text(json.dumps(rows, indent=1))
    print(json.dumps(row))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("proof", "eval"))
    ap.add_argument("size", type=int)
    ap.add_argument("limit", nargs="?", default="")
    ap.add_argument("--tile", type=int, default=0)
    ap.add_argument("--iterations", default="1")
    ap.add_argument("--scales", default="")
    ap.add_argument("--optimizer", default="lbfgs")
    ap.add_argument("--init", default="")
    ap.add_argument("--look-size", default="", help="the CLI's --look-size (default: its default)")
    ap.add_argument("--threads", default="", help="the CLI's --threads (default: its default)")
    ap.add_argument("--output", default="/tmp/onnxstyle_big.jpg")
    ap.add_argument("--content", type=Path, default=CONTENT)
    ap.add_argument("--style", type=Path, default=STYLE)
    a = ap.parse_args()
    if a.mode == "eval":
        out, _, peak = child([sys.executable, "-c", EVAL, str(a.size), str(a.tile), str(a.content), str(a.style)])
        record({"mode": "eval", "size": a.size, "tile": a.tile or None, "seconds": float(out.split()[-1]),
                "peak_mib": round(peak)})
        return
    report = Path(a.output).with_suffix(".json")
    cmd = [sys.executable, "-m", "onnxstyle", "stylize", str(a.content), str(a.style), "-o", a.output,
           "--size", str(a.size), "--iterations", a.iterations, "--optimizer", a.optimizer,
           "--report", str(report), "--overwrite"] + (["--max-memory", a.limit] if a.limit else [])
    if a.scales:
        cmd += ["--scales", a.scales]
    if a.init:
        cmd += ["--init", a.init]
    for flag, value in (("--look-size", a.look_size), ("--threads", a.threads)):
        cmd += [flag, value] if value else []
    _, seconds, peak = child(cmd)
    rep = json.loads(report.read_text())
    record({"mode": "proof", "size": a.size, "limit": a.limit, "iterations": a.iterations,
            "content": a.content.name, "scales": a.scales, "init": Path(a.init).name, "optimizer": a.optimizer,
            "look_size": a.look_size or "default", "threads": a.threads or "default",
            "seconds": round(seconds, 1), "peak_mib": round(peak), "tiled": [s["tiled"] for s in rep["scales"]]})


if __name__ == "__main__":
    main()
