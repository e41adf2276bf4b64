"""Where a sorted loss's extra time goes: onnxruntime's profile of one loss+gradient evaluation of
the loss graph, gram against histogram and sliced, summed per operator type (the nodes inside If
branches included, the If nodes themselves left out: they contain the others).

    python benchmarks/losses_profile.py --size 256

astronaut x The Starry Night at --size, default options, CPU, one evaluation after a warm-up.
Writes benchmarks/results/losses_profile.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from losses import PAIRS, pair  # noqa: E402

from onnxstyle import defaults, layout  # noqa: E402
from onnxstyle.runtime import models  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402
from onnxstyle.runtime.stylize import initial_canvas  # noqa: E402

HERE = Path(__file__).resolve().parent
KINDS = ("gram", "histogram", "sliced")


def profile(kind: str, c: np.ndarray, s: np.ndarray, x: np.ndarray, tmp: str) -> tuple[float, dict[str, float]]:
    """(seconds, {op type: ms}) of one evaluation."""
    o = Objective(c, s, style_loss=kind, device="cpu")
    so = ort.SessionOptions()
    so.enable_profiling, so.profile_file_prefix = True, f"{tmp}/{kind}"
    sess = ort.InferenceSession(str(models.resolve(None)), so, providers=["CPUExecutionProvider"])
    feed = {**o._feed, layout.IMAGE: x}
    sess.run([layout.LOSS, layout.GRAD], feed)  # warm-up (also profiled: halved below)
    t = time.perf_counter()
    sess.run([layout.LOSS, layout.GRAD], feed)
    seconds = time.perf_counter() - t
    ops: dict[str, float] = {}
    for e in json.loads(Path(sess.end_profiling()).read_text()):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["args"]["op_name"] != "If":
            ops[e["args"]["op_name"]] = ops.get(e["args"]["op_name"], 0.0) + e["dur"] / 2e3
    return seconds, ops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    c, s = pair(*PAIRS[0], a.size)
    x = initial_canvas(c, defaults.INIT, defaults.SEED, defaults.NOISE_RATIO).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        res = {k: profile(k, c, s, x, tmp) for k in KINDS}
    ops = sorted({op for _, o in res.values() for op in o}, key=lambda op: -max(o.get(op, 0) for _, o in res.values()))
    top = [op for op in ops if max(o.get(op, 0) for _, o in res.values()) >= 10]
    lines = ["# Where the sorted losses' time goes (`benchmarks/losses_profile.py`)", "",
             f"`python benchmarks/losses_profile.py --size {a.size}` at commit {commit}, CPU, load "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: one loss+gradient evaluation, astronaut x The "
             "Starry Night, onnxruntime's profile summed per operator type (ms; the nodes inside If branches, "
             "not the Ifs; operators under 10 ms in every loss left out).", "",
             "| operator | " + " | ".join(KINDS) + " |", "|---" * (len(KINDS) + 1) + "|",
             *(f"| {op} | " + " | ".join(f"{o.get(op, 0):.0f}" for _, o in res.values()) + " |" for op in top),
             "| wall, s | " + " | ".join(f"{t:.2f}" for t, _ in res.values()) + " |"]
    (HERE / "results" / "losses_profile.md").write_text("\n".join(lines) + "\n")
    (HERE / "results" / "losses_profile.json").write_text(json.dumps(
        {"commit": commit, "size": a.size, "wall_s": {k: t for k, (t, _) in res.items()},
         "op_ms": {k: o for k, (_, o) in res.items()}}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
