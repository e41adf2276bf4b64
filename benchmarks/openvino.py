"""OpenVINO on this CPU (issue 26 item 4): the static loss graphs (`onnxstyle export --static`) on
onnxruntime's OpenVINOExecutionProvider with fp32 and bf16 inference precision, against the
product's run (the dynamic graph on onnxruntime's CPU provider). Times are interleaved (one
evaluation of each configuration per round) so that a busy machine slows them alike; the load
average is recorded at the start and the end.

Runs in a separate environment (onnxruntime-openvino conflicts with onnxruntime-gpu):
  python -m venv /work/ov-venv && /work/ov-venv/bin/pip install onnxruntime-openvino numpy scipy pillow threadpoolctl
  python -m onnxstyle export --static 512x512 [--model models/vgg19_gatys.conv.onnx]   # in the project's venv
  PYTHONPATH=. /work/ov-venv/bin/python benchmarks/openvino.py --size 512 --repeats 5 [--iterations 200]

Writes benchmarks/results/openvino.json (the .md is written by hand from it, with the decision).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import bench  # noqa: E402  (prepare, git_commit)
import onnxruntime as ort  # noqa: E402

from onnxstyle import layout  # noqa: E402
from onnxstyle.files import static_path  # noqa: E402
from onnxstyle.runtime import stylize as st  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402

OV = "OpenVINOExecutionProvider"


def log(msg: str) -> None:
    print(f"[openvino] {msg}", file=sys.stderr, flush=True)


def session(path: Path, provider: str, precision: str | None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if provider == OV:
        cfg = json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": precision}})  # bf16 is its default on this CPU
        # OpenVINO takes every Conv, MatMul and elementwise op; about 20 scalar ones (the terms' last
        # Mul/ReduceSum/Sum) fall back to the CPU provider, between its subgraphs (profile, 64 px)
        return ort.InferenceSession(str(path), so, providers=[(OV, {"device_type": "CPU", "load_config": cfg}),
                                                              "CPUExecutionProvider"])
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Static(Objective):
    """The product's Objective with its loss+gradient run by another session (the static graph
    reads only the inputs it declares)."""

    def use(self, sess: ort.InferenceSession) -> Static:
        self.sess, self.names = sess, {i.name for i in sess.get_inputs()}
        return self

    def _run(self, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        feed = {k: v for k, v in self._feed.items() if k in self.names}
        return self.sess.run(outputs, {**feed, layout.IMAGE: x})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iterations", type=int, default=0, help="also run scipy for this many iterations per precision")
    p.add_argument("--graphs", default="winograd,conv")
    p.add_argument("--runs", default="ov_f32_conv,ov_bf16_conv", help="the configurations --iterations runs")
    p.add_argument("--out", type=Path, default=HERE / "results" / "openvino.json")
    args = p.parse_args()
    models = {"winograd": HERE.parent / "models" / "vgg19_gatys.onnx",
              "conv": HERE.parent / "models" / "vgg19_gatys.conv.onnx"}
    c, styles = bench.prepare(args.size)
    hw = c.shape[:2]
    x = (c * 0.9 + 10).astype(np.float32)
    res: dict = {"size": list(hw), "commit": bench.git_commit(), "onnxruntime": ort.__version__,
                 "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                 "cpu_flags": sorted({f for f in Path("/proc/cpuinfo").read_text().split() if "bf16" in f}),
                 "load_average_start": os.getloadavg(), "cpus": os.cpu_count()}
    base = Objective(c, styles, device="cpu")
    if True:
        configs: dict[str, Objective] = {"cpu_ep_dynamic_winograd": base}
        for g in args.graphs.split(","):
            path = static_path(models[g], hw)
            for precision in ("f32", "bf16"):
                t = time.perf_counter()
                sess = session(path, OV, precision)
                configs[f"ov_{precision}_{g}"] = Static(c, styles, device="cpu").use(sess)
                log(f"ov {precision} {g}: session in {time.perf_counter() - t:.1f} s")
        ref_terms, ref_g = base.evaluate(x)
        res["agreement"] = {}
        for name, obj in configs.items():
            terms, g = obj.evaluate(x)  # also the warm-up
            res["agreement"][name] = {"terms_rel_diff": {k: abs(terms[k] - v) / abs(v) for k, v in ref_terms.items()},
                                      "grad_rel_diff": float(np.abs(g - ref_g).max() / np.abs(ref_g).max())}
            log(f"{name}: {res['agreement'][name]}")
        times: dict[str, list[float]] = {name: [] for name in configs}
        for r in range(args.repeats):
            for name, obj in configs.items():
                t = time.perf_counter()
                obj.evaluate(x)
                times[name].append(time.perf_counter() - t)
            log(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()))
        res["times_s"] = times
        res["median_s"] = {k: statistics.median(v) for k, v in times.items()}
        for g in args.graphs.split(","):
            res[f"bf16_speedup_{g}"] = res["median_s"][f"ov_f32_{g}"] / res["median_s"][f"ov_bf16_{g}"]
        res["load_average_timed"] = os.getloadavg()
        args.out.write_text(json.dumps(res, indent=2))  # kept if the long runs below are stopped
        if args.iterations:
            x0 = st.initial_canvas(c, "noise", 0)
            res["runs"] = {}
            for name in args.runs.split(","):
                t = time.perf_counter()
                r = st.optimize(configs[name], x0, args.iterations, optimizer="scipy")
                res["runs"][name] = {"iterations": r.iterations, "evaluations": r.evaluations,
                                     "final_loss": r.final["total"], "seconds": time.perf_counter() - t,
                                     "load_average_end": os.getloadavg()}
                log(f"{name}: {res['runs'][name]}")
                args.out.write_text(json.dumps(res, indent=2))
    res["load_average_end"] = os.getloadavg()
    args.out.write_text(json.dumps(res, indent=2))
    print(json.dumps({k: res[k] for k in res if k.startswith(("median", "bf16", "load"))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
