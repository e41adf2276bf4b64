"""The CUDA figures (issues 10 and 24), run by benchmarks/gpu_check.sh on a GPU box that has only
this checkout, Python, onnxruntime-gpu and the CUDA libraries PyTorch brings (nothing installed).

Sections (each a list of steps; the results file is written after every row, so a run killed at
its time limit still returns what it measured):

  quick         (about 2-4 minutes on an H100) does CUDA load; loss+gradient at 512 px, fp32 and
                TF32, against PyTorch on the same GPU in this process; CUDA vs CPU terms and
                gradient; 100 iterations of lbfgs-device and scipy at 512 px; the same
                lbfgs-device run on the CPU provider and its final loss against CUDA's
  lossgrad1024  loss+gradient at 1024 px against PyTorch
  stylize500    500 iterations at 512 px with each optimiser (and the callback that reads the image)
  picture       time to the default's finished picture (stylize with every default) on CUDA
  placement     where every node ran and the copies per evaluation (onnxruntime's profile)
  first         the first call at a new size (cuDNN search: heuristic vs exhaustive), a 256->512 ladder
  agree         CUDA vs CPU at an odd size (301x217)
  convgraph     the default (Winograd) graph against the all-Conv one (models/vgg19_gatys.conv.onnx,
                made by benchmarks/gpu_prepare.sh) at 512 and 1024 px

  python benchmarks/cuda_check.py [--sections quick,placement] [--device cuda] [--quick] [--out DIR]

Writes bench_cuda.json/.md into benchmarks/results, /tmp/gpu (where it exists) and --out (the
device's $OUT); rows of earlier calls on the same machine since its boot are kept (one section per command fits the
device's 10-minute limit). `--device cpu --quick` runs every step on the CPU provider at small
sizes, as files bench_cuda_cpu_dry_run.* (gpu_check.sh's ONNXSTYLE_GPU_DRYRUN=1).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import bench  # noqa: E402  (prepare, bench_stylize, machine)

from onnxstyle.runtime import session  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402

SECTIONS = {
    "quick": ["provider", "lossgrad", "agree", "stylize", "cpu_stylize"],
    "lossgrad1024": ["lossgrad"],
    "stylize500": ["stylize"],
    "picture": ["picture"],
    "placement": ["placement"],
    "first": ["first"],
    "agree": ["agree"],
    "convgraph": ["convgraph"],
}
CONV_GRAPH = HERE.parent / "models" / "vgg19_gatys.conv.onnx"
KEEP = Path("/tmp/gpu")  # unpack.sh's folder on the device


def log(msg: str) -> None:
    print(f"[cuda_check] {msg}", file=sys.stderr, flush=True)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class Record:
    """The results, saved as JSON and Markdown into each folder after every row."""

    def __init__(self, dirs: list[Path], name: str, head: dict) -> None:
        self.paths = [d / name for d in dirs]
        self.res = {**head, "boot_id": boot_id(), "errors": {}}
        try:  # an earlier call's rows on this machine (same boot): one file for all sections
            old = json.loads(self.paths[0].with_suffix(".json").read_text())
            if old.get("boot_id") == self.res["boot_id"] and old.get("device") == head["device"]:
                self.res = {**old, **{k: v for k, v in head.items() if k != "machine"}}
        except (OSError, ValueError):
            pass

    def add(self, key: str, row) -> None:
        self.res.setdefault(key, []).append(row)
        log(f"{key}: {json.dumps(row, default=str)[:400]}")
        self.save()

    def error(self, key: str, e: BaseException) -> None:
        self.res["errors"][key] = f"{type(e).__name__}: {e}"[:500]
        log(f"{key} failed: {self.res['errors'][key]}")
        self.save()

    def save(self) -> None:
        for p in self.paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.with_suffix(".json").write_text(json.dumps(self.res, indent=2, default=str))
            p.with_suffix(".md").write_text(markdown(self.res))


def median_time(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up (and cuDNN's choice for this size)
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_objective(c, styles, device: str, precision: str):
    """PyTorch's objective on `device` with TF32 as `precision` says, and its sync."""
    if importlib.util.find_spec("torch") is None:
        raise ModuleNotFoundError("no torch here")
    import torch
    from torch_ref import TorchObjective

    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return TorchObjective(c, styles, device=device), sync


# ---------------------------------------------------------------------------------------------
# Steps: each adds its rows to the record as it measures them.


def provider(args, rec: Record) -> None:
    img = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    t = time.perf_counter()
    obj = Objective(img, img, device=args.device)
    terms, _ = obj.evaluate(img)
    rec.add("provider", {"provider": obj.provider, "gpu": obj.engine.gpu, "precision": obj.engine.precision,
                         "note": obj.engine.note, "first_objective_s": time.perf_counter() - t,
                         "gpu_free_bytes": session.gpu_free_memory() if args.device == "cuda" else None,
                         "loss_64px": terms["total"]})


def lossgrad(args, rec: Record) -> None:
    for size in args.lossgrad_sizes:
        c, styles = bench.prepare(size)
        x = c * 0.9 + 10
        for precision in ("fp32", "tf32"):
            ours = Objective(c, styles, device=args.device, precision=precision)
            row = {"size": size, "precision": precision, "provider": ours.provider,
                   "onnxstyle_s": median_time(lambda o=ours, x=x: o.evaluate(x), args.repeats)}
            try:  # the reference's absence or failure must not lose onnxstyle's own figure
                ref, sync = torch_objective(c, styles, args.device, precision)
                row["torch_s"] = median_time(lambda r=ref, x=x: r(x), args.repeats, sync)
                row["ratio"] = row["onnxstyle_s"] / row["torch_s"]
                loss_t, g_t = ref(x)
                terms, g = ours.evaluate(x)
                row["loss_rel_diff"] = abs(terms["total"] - loss_t) / abs(loss_t)
                row["grad_rel_diff"] = float(np.abs(g - g_t).max() / np.abs(g_t).max())
            except Exception as e:  # noqa: BLE001
                row["torch_error"] = f"{type(e).__name__}: {e}"[:300]
            rec.add("lossgrad", row)


def agree(args, rec: Record) -> None:
    from onnxstyle.runtime import images

    for hw in args.agree_sizes:
        c, styles = bench.prepare(max(hw))
        c = images.resize(c, hw)
        x = c * 0.9 + 10
        ref_terms, ref_g = Objective(c, styles, device="cpu").evaluate(x)
        for precision in ("fp32", "tf32"):
            terms, g = Objective(c, styles, device=args.device, precision=precision).evaluate(x)
            rec.add("agree", {"size": f"{hw[1]}x{hw[0]}", "precision": precision,
                              "terms_rel_diff": {k: abs(terms[k] - v) / max(abs(v), 1e-30)
                                                 for k, v in ref_terms.items()},
                              "grad_rel_diff": float(np.abs(g - ref_g).max() / np.abs(ref_g).max())})


def _stylize_row(args, device: str, optimizer: str, iterations: int, reads: bool) -> dict:
    ns = argparse.Namespace(stylize_size=args.size, stylize_iterations=iterations, model=None, device=device,
                            threads=None, optimizers=[optimizer], read_image=reads)
    row = bench.bench_stylize(ns)[0]
    row.update(device=device, callback_reads_image=reads,
               per_iteration_ms=1e3 * row["optimize_s"] / max(row["iterations"], 1))
    return row


def stylize_rows(args, rec: Record) -> None:
    for optimizer in args.optimizers:
        for reads in args.reads:
            rec.add("stylize", _stylize_row(args, args.device, optimizer, args.iterations, reads))


def cpu_stylize(args, rec: Record) -> None:
    """lbfgs-device on the CPU provider, the same run as on CUDA: the final losses compared."""
    row = _stylize_row(args, "cpu", "lbfgs-device", args.iterations, False)
    gpu = [r for r in rec.res.get("stylize", []) if r["optimizer"] == "lbfgs-device"
           and r["iterations"] == row["iterations"] and r["size"] == row["size"]]
    if gpu:
        row["gpu_final_rel_diff"] = abs(gpu[-1]["final_loss"] - row["final_loss"]) / abs(row["final_loss"])
    rec.add("cpu_stylize", row)


def picture(args, rec: Record) -> None:
    from onnxstyle import stylize

    content, style = bench.content_style()
    t = time.perf_counter()
    r = stylize(content, style, device=args.device, **args.picture_kw)
    rec.add("picture", {"seconds": time.perf_counter() - t, "iterations": r.iterations, "evaluations": r.evaluations,
                        "final_loss": r.final["total"], "provider": r.provider, "reason": r.reason,
                        "options": args.picture_kw or "defaults"})


def placement(args, rec: Record) -> None:
    """Which provider ran each node of the loss graph, and the copies per evaluation (profile)."""
    import onnxruntime as ort

    c, styles = bench.prepare(args.size)
    obj = Objective(c, styles, device=args.device)
    so = session._options(0)
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(args.out) / "ort_profile")
    providers = ([(session.CUDA, session.cuda_options("tf32", "heuristic"))] if args.device == "cuda" else []) + [
        "CPUExecutionProvider"]
    sess = ort.InferenceSession(str(obj.engine.path), so, providers=providers)
    feed = {**obj._feed, "image": np.ascontiguousarray(c, np.float32)}
    runs = 3
    for _ in range(runs + 1):  # the first is a warm-up, counted apart
        sess.run(None, feed)
    profile = Path(sess.end_profiling())
    events = [e for e in json.loads(profile.read_text()) if e.get("cat") == "Node"]
    profile.unlink()
    by_provider: dict[str, int] = {}
    cpu_nodes, copies = set(), {}
    for e in events:
        a = e.get("args", {})
        prov, op = a.get("provider", "?"), a.get("op_name", "?")
        by_provider[prov] = by_provider.get(prov, 0) + 1
        if "Memcpy" in op:
            copies[op] = copies.get(op, 0) + 1
        elif prov == "CPUExecutionProvider" and args.device == "cuda":
            cpu_nodes.add(f"{op}:{e['name']}")
    # kernel-time events come once per node run; the totals cover warm-up + `runs` runs
    rec.add("placement", {"node_runs_by_provider": by_provider, "cpu_nodes": sorted(cpu_nodes)[:60],
                          "copy_nodes_per_evaluation": {k: v / (runs + 1) for k, v in copies.items()},
                          "device_to_host_per_evaluation": copies.get("MemcpyToHost", 0) / (runs + 1)})


def first_call(args, rec: Record) -> None:
    from onnxstyle import stylize

    for search in ("heuristic", "exhaustive"):
        for size in args.first_sizes:  # sizes no earlier step ran
            c, styles = bench.prepare(size)
            obj = Objective(c, styles, device=args.device, cudnn_search=search)
            t = time.perf_counter()
            obj.evaluate(c)
            first = time.perf_counter() - t
            rec.add("first", {"what": "first call", "cudnn_search": search, "size": size, "first_s": first,
                              "steady_s": median_time(lambda o=obj, c=c: o.evaluate(c), 3)})
    content, style = bench.content_style()
    for search in ("heuristic", "exhaustive"):
        t = time.perf_counter()
        r = stylize(content, style, scales=args.ladder, iterations=[20, 10], optimizer="lbfgs",
                    device=args.device, cudnn_search=search)
        rec.add("first", {"what": f"ladder {args.ladder} (20+10 iterations, lbfgs)", "cudnn_search": search,
                          "seconds": time.perf_counter() - t, "final_loss": r.final["total"]})


def convgraph(args, rec: Record) -> None:
    """Loss+gradient with the default graph and with the all-Conv graph, same inputs (medians)."""
    if not CONV_GRAPH.exists():
        raise FileNotFoundError(f"{CONV_GRAPH} (benchmarks/gpu_prepare.sh exports it)")
    for size in args.lossgrad_sizes:
        c, styles = bench.prepare(size)
        x = c * 0.9 + 10
        for precision in ("fp32", "tf32"):
            row: dict = {"size": size, "precision": precision}
            for kind, model in (("winograd", None), ("conv", CONV_GRAPH)):
                obj = Objective(c, styles, model=model, device=args.device, precision=precision)
                row[f"{kind}_s"] = median_time(lambda o=obj, x=x: o.evaluate(x), args.repeats)
            row["ratio"] = row["winograd_s"] / row["conv_s"]
            rec.add("convgraph", row)


STEPS = {"provider": provider, "lossgrad": lossgrad, "agree": agree, "stylize": stylize_rows,
         "cpu_stylize": cpu_stylize, "picture": picture, "placement": placement, "first": first_call,
         "convgraph": convgraph}


def sizes(section: str, quick: bool) -> dict:
    """Each section's sizes and counts; --quick shrinks them for a dry run on the CPU."""
    full = {"lossgrad_sizes": [512], "size": 512, "iterations": 100, "repeats": 10, "optimizers": ["lbfgs-device",
            "scipy"], "reads": [False], "agree_sizes": [(512, 512)], "first_sizes": (384, 448),
            "ladder": [256, 512], "picture_kw": {}}
    full.update({"lossgrad1024": {"lossgrad_sizes": [1024]},
                 "stylize500": {"iterations": 500, "optimizers": ["lbfgs-device", "lbfgs", "scipy"],
                                "reads": [False, True]},
                 "agree": {"agree_sizes": [(217, 301)]},
                 "convgraph": {"lossgrad_sizes": [512, 1024]}}.get(section, {}))
    if quick:
        full.update(lossgrad_sizes=[64], size=64, iterations=5, repeats=2, first_sizes=(48, 56),
                    agree_sizes=[(33, 47)] if section == "agree" else [(64, 64)],
                    ladder=[32, 64], picture_kw={"size": 64, "iterations": 5})
    return full


def markdown(res: dict) -> str:
    m = res.get("machine", {})
    nan = float("nan")
    lines = [f"# CUDA check ({res['device']}, {res.get('gpu', '')})", "",
             f"commit {m.get('git_commit')}, {m.get('date')}, "
             f"onnxruntime {m.get('versions', {}).get('onnxruntime-gpu')}",
             "", "## loss+gradient (median)", "",
             "| size | precision | provider | onnxstyle s | PyTorch s | ratio | loss diff | grad diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res.get("lossgrad", []):
        lines.append(f"| {r['size']} | {r['precision']} | {r['provider']} | {r['onnxstyle_s']:.4f} | "
                     f"{r.get('torch_s', nan):.4f} | {r.get('ratio', nan):.2f} | {r.get('loss_rel_diff', nan):.1e} | "
                     f"{r.get('grad_rel_diff', nan):.1e} |" + (f" {r['torch_error']}" if "torch_error" in r else ""))
    lines += ["", "## CUDA vs CPU provider", "", "| size | precision | worst term diff | grad diff |",
              "|---|---|---|---|"]
    for r in res.get("agree", []):
        lines.append(f"| {r['size']} | {r['precision']} | {max(r['terms_rel_diff'].values()):.1e} | "
                     f"{r['grad_rel_diff']:.1e} |")
    lines += ["", "## stylize", "", "| device | optimiser | image read | size | iterations | s | ms/it | "
              "optimiser ms/it | ort s | final loss | vs CUDA |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res.get("stylize", []) + res.get("cpu_stylize", []):
        lines.append(f"| {r['device']} | {r['optimizer']} | {r['callback_reads_image']} | {r['size']} | "
                     f"{r['iterations']} | {r['optimize_s']:.2f} | {r['per_iteration_ms']:.1f} | "
                     f"{r['optimiser_ms_per_it']:.2f} | {r['onnxruntime_s']:.2f} | {r['final_loss']:.6g} | "
                     f"{r.get('gpu_final_rel_diff', nan):.2%} |")
    for key in ("provider", "picture", "placement", "first", "convgraph"):
        if res.get(key):
            lines += ["", f"## {key}", ""] + [f"- {json.dumps(r, default=str)}" for r in res[key]]
    if res.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--sections", default="quick", help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="small sizes and few iterations (a dry run)")
    p.add_argument("--out", type=Path, default=None, help="also write the results here (the device's $OUT)")
    args = p.parse_args()
    unknown = [s for s in args.sections.split(",") if s not in SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    problem = session.cuda_problem()
    if args.device == "cuda" and problem:
        log(f"CUDA cannot run here: {problem[0]}")
        return 1
    keep = [KEEP] if KEEP.is_dir() else []  # the device's /tmp/gpu outlasts the tree between calls
    dirs = keep + [HERE / "results"] + ([args.out] if args.out else [])
    args.out = args.out or HERE / "results"
    name = "bench_cuda" if args.device == "cuda" else "bench_cuda_cpu_dry_run"
    head = {"device": args.device, "gpu": session.gpu_name() if args.device == "cuda" else "",
            "machine": bench.machine(argparse.Namespace(device=args.device, threads=None))}
    rec = Record(dirs, name, head)
    failed = False
    for section in args.sections.split(","):
        vars(args).update(sizes(section, args.quick))
        for step in SECTIONS[section]:
            t = time.perf_counter()
            try:
                STEPS[step](args, rec)
            except Exception as e:  # noqa: BLE001 - one broken step must not lose the others
                rec.error(f"{section}.{step}", e)
                failed = True
            log(f"{section}.{step}: {time.perf_counter() - t:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
