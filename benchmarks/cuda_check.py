"""The CUDA figures (issue 10), run by benchmarks/gpu_check.sh on a GPU box that has only this
checkout, Python, onnxruntime-gpu and the CUDA libraries PyTorch brings (nothing is installed):

  lossgrad   loss+gradient at 512 and 1024 px, onnxstyle vs PyTorch autograd of the same math on
             the same GPU, fp32 and tf32 (medians; ratio = onnxstyle / PyTorch)
  agree      CUDA vs the CPU provider: terms and gradient at 512 px and an odd 301x217
  first      the first call at a new size (cuDNN search: heuristic vs exhaustive) and a 256->512
             ladder
  stylize    500 iterations at 512 px per optimiser (scipy: 50, extrapolated), with and without a
             callback that reads the image; the split between onnxruntime, the optimiser and the rest
  placement  where every node of the loss graph ran (onnxruntime's profile): CPU nodes, copies
  convgraph  the default loss graph (Winograd products) against the all-Conv one (cuDNN's
             convolutions) at 512 and 1024 px, where models/vgg19_gatys.conv.onnx was exported
             beside it before packing:
             python -c "from onnxstyle.export import pair; pair.export('models/vgg19_gatys.conv.onnx', winograd=False)"

  python benchmarks/cuda_check.py [--device cuda] [--quick] [--out benchmarks/results]

Writes OUT/bench_cuda.json and OUT/bench_cuda.md. `--device cpu --quick` runs every path on the
CPU provider (a dry run of this script on a machine without a GPU).
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

import bench  # noqa: E402  (prepare, bench_stylize, Timers, machine)

from onnxstyle.runtime import objective as objective_mod  # noqa: E402
from onnxstyle.runtime import session  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402


def log(msg: str) -> None:
    print(f"[cuda_check] {msg}", file=sys.stderr, flush=True)


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
    """PyTorch's objective on `device` with TF32 as `precision` says; None without torch."""
    if importlib.util.find_spec("torch") is None:
        return None, None
    import torch
    from torch_ref import TorchObjective

    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if device == "cuda" and not torch.cuda.is_available():
        return None, None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return TorchObjective(c, styles, device=device), sync


def lossgrad(args) -> list[dict]:
    rows = []
    for size in args.sizes:
        c, styles = bench.prepare(size)
        x = c * 0.9 + 10
        for precision in ("fp32", "tf32"):
            ours = Objective(c, styles, device=args.device, precision=precision)
            t_ours = median_time(lambda o=ours, x=x: o.evaluate(x), args.repeats)
            row = {"size": size, "precision": precision, "onnxstyle_s": t_ours, "provider": ours.provider}
            ref, sync = torch_objective(c, styles, args.device, precision)
            if ref is not None:
                row["torch_s"] = median_time(lambda r=ref, x=x: r(x), args.repeats, sync)
                row["ratio"] = t_ours / row["torch_s"]
                loss_t, g_t = ref(x)
                terms, g = ours.evaluate(x)
                row["loss_rel_diff"] = abs(terms["total"] - loss_t) / abs(loss_t)
                row["grad_rel_diff"] = float(np.abs(g - g_t).max() / np.abs(g_t).max())
            log(f"lossgrad {size} {precision}: {row}")
            rows.append(row)
    return rows


def agree(args) -> list[dict]:
    from onnxstyle.runtime import images

    rows = []
    for hw in args.agree_sizes:
        c, styles = bench.prepare(max(hw))
        c = images.resize(c, hw)
        x = c * 0.9 + 10
        ref_terms, ref_g = Objective(c, styles, device="cpu").evaluate(x)
        for precision in ("fp32", "tf32"):
            terms, g = Objective(c, styles, device=args.device, precision=precision).evaluate(x)
            row = {"size": f"{hw[1]}x{hw[0]}", "precision": precision,
                   "terms_rel_diff": {k: abs(terms[k] - v) / max(abs(v), 1e-30) for k, v in ref_terms.items()},
                   "grad_rel_diff": float(np.abs(g - ref_g).max() / np.abs(ref_g).max())}
            log(f"agree {row}")
            rows.append(row)
    return rows


def first_call(args) -> list[dict]:
    from onnxstyle import stylize

    rows = []
    for search in ("heuristic", "exhaustive"):
        for size in args.first_sizes:  # sizes no earlier section ran
            c, styles = bench.prepare(size)
            obj = Objective(c, styles, device=args.device, cudnn_search=search)
            t = time.perf_counter()
            obj.evaluate(c)
            first = time.perf_counter() - t
            steady = median_time(lambda o=obj, c=c: o.evaluate(c), 3)
            rows.append({"what": "first call", "cudnn_search": search, "size": size, "first_s": first,
                         "steady_s": steady})
            log(f"first call {rows[-1]}")
    content, style = bench.content_style()
    for search in ("heuristic", "exhaustive"):
        t = time.perf_counter()
        r = stylize(content, style, scales=args.ladder, iterations=[20, 10], optimizer="lbfgs",
                    device=args.device, cudnn_search=search)
        rows.append({"what": f"ladder {args.ladder} (20+10 iterations, lbfgs)", "cudnn_search": search,
                     "seconds": time.perf_counter() - t, "final_loss": r.final["total"]})
        log(f"ladder {rows[-1]}")
    return rows


def stylize_rows(args) -> list[dict]:
    rows = []
    for optimizer in ("lbfgs-device", "lbfgs", "scipy"):
        iters = args.iterations if optimizer != "scipy" else max(1, args.iterations // 10)
        for reads in (False, True):
            ns = argparse.Namespace(stylize_size=args.size, stylize_iterations=iters, model=None,
                                    device=args.device, threads=None, optimizers=[optimizer],
                                    read_image=reads)
            row = bench.bench_stylize(ns)[0]
            per_it = row["optimize_s"] / max(row["iterations"], 1)
            row.update(callback_reads_image=reads, extrapolated_500_s=per_it * 500)
            log(f"stylize {optimizer} reads={reads}: {row['optimize_s']:.2f} s for {row['iterations']} it, "
                f"final {row['final_loss']:.6g}")
            rows.append(row)
    return rows


def placement(args) -> dict:
    """Which provider ran each node of one loss+gradient call, from onnxruntime's profile."""
    import onnxruntime as ort

    c, styles = bench.prepare(args.size)
    obj = Objective(c, styles, device=args.device)
    so = session._options(0)
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(args.out) / "ort_profile")
    providers = [(session.CUDA, session.cuda_options("tf32", "heuristic")), "CPUExecutionProvider"]
    sess = ort.InferenceSession(str(obj.engine.path), so, providers=providers if args.device == "cuda" else
                                ["CPUExecutionProvider"])
    feed = {**obj._feed, "image": np.ascontiguousarray(c, np.float32)}
    sess.run(None, feed)
    sess.run(None, feed)
    profile = Path(sess.end_profiling())
    events = [e for e in json.loads(profile.read_text()) if e.get("cat") == "Node"]
    profile.unlink()
    by_provider: dict[str, int] = {}
    cpu_nodes, copies = set(), set()
    for e in events:
        a = e.get("args", {})
        prov, op = a.get("provider", "?"), a.get("op_name", "?")
        by_provider[prov] = by_provider.get(prov, 0) + 1
        if "Memcpy" in op:
            copies.add(e["name"])
        elif prov == "CPUExecutionProvider" and args.device == "cuda":
            cpu_nodes.add(f"{op}:{e['name']}")
    out = {"node_runs_by_provider": by_provider, "cpu_nodes": sorted(cpu_nodes)[:60],
           "copy_nodes": sorted(copies)}
    log(f"placement {out['node_runs_by_provider']}, {len(cpu_nodes)} CPU nodes, {len(copies)} copies")
    return out


CONV_GRAPH = HERE.parent / "models" / "vgg19_gatys.conv.onnx"


def convgraph(args) -> list[dict]:
    """Loss+gradient with the default graph and with the all-Conv graph, same inputs (medians)."""
    if not CONV_GRAPH.exists():
        raise FileNotFoundError(f"{CONV_GRAPH} (export it with winograd=False before packing)")
    rows = []
    for size in args.sizes:
        c, styles = bench.prepare(size)
        x = c * 0.9 + 10
        for precision in ("fp32", "tf32"):
            row: dict = {"size": size, "precision": precision}
            for kind, model in (("winograd", None), ("conv", CONV_GRAPH)):
                obj = Objective(c, styles, model=model, device=args.device, precision=precision)
                row[f"{kind}_s"] = median_time(lambda o=obj, x=x: o.evaluate(x), args.repeats)
            row["ratio"] = row["winograd_s"] / row["conv_s"]
            log(f"convgraph {row}")
            rows.append(row)
    return rows


def markdown(res: dict) -> str:
    m = res["machine"]
    nan = float("nan")
    lines = [f"# CUDA check ({res['device']}, {res['gpu']})", "", f"{m}", "", "## loss+gradient", "",
             "| size | precision | onnxstyle s | PyTorch s | ratio | loss diff | grad diff |",
             "|---|---|---|---|---|---|---|"]
    for r in res.get("lossgrad", []):
        lines.append(f"| {r['size']} | {r['precision']} | {r['onnxstyle_s']:.4f} | {r.get('torch_s', nan):.4f} | "
                     f"{r.get('ratio', nan):.2f} | {r.get('loss_rel_diff', nan):.1e} | "
                     f"{r.get('grad_rel_diff', nan):.1e} |")
    lines += ["", "## CUDA vs CPU provider", "", "| size | precision | worst term diff | grad diff |",
              "|---|---|---|---|"]
    for r in res.get("agree", []):
        worst = max(r["terms_rel_diff"].values())
        lines.append(f"| {r['size']} | {r['precision']} | {worst:.1e} | {r['grad_rel_diff']:.1e} |")
    lines += ["", "## First call at a new size, ladder", ""]
    lines += [f"- {json.dumps(r)}" for r in res.get("first", [])]
    lines += ["", "## stylize", "", "| optimiser | image read | iterations | s | 500-it s | ms/it optimiser | "
              "ort s | final loss |", "|---|---|---|---|---|---|---|---|"]
    for r in res.get("stylize", []):
        lines.append(f"| {r['optimizer']} | {r['callback_reads_image']} | {r['iterations']} | {r['optimize_s']:.2f} | "
                     f"{r['extrapolated_500_s']:.2f} | {r['optimiser_ms_per_it']:.2f} | {r['onnxruntime_s']:.2f} | "
                     f"{r['final_loss']:.6g} |")
    if res.get("convgraph"):
        lines += ["", "## Winograd graph against the all-Conv graph", "",
                  "| size | precision | Winograd s | Conv s | ratio |", "|---|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['precision']} | {r['winograd_s']:.4f} | {r['conv_s']:.4f} | {r['ratio']:.2f} |"
                  for r in res["convgraph"]]
    if "placement" in res:
        p = res["placement"]
        lines += ["", "## Node placement", "", f"runs by provider: {p['node_runs_by_provider']}",
                  f"CPU nodes: {p['cpu_nodes']}", f"copy nodes: {p['copy_nodes']}"]
    if res.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--sections", default="lossgrad,agree,first,stylize,placement,convgraph")
    p.add_argument("--quick", action="store_true", help="small sizes and few iterations (a dry run)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    args.sizes, args.size, args.iterations, args.repeats = [512, 1024], 512, 500, 10
    args.agree_sizes, args.first_sizes, args.ladder = ((512, 512), (217, 301)), (384, 448), [256, 512]
    if args.quick:
        args.sizes, args.size, args.iterations, args.repeats = [64], 64, 10, 2
        args.agree_sizes, args.first_sizes, args.ladder = ((64, 64), (33, 47)), (48, 56), [32, 64]
    args.out.mkdir(parents=True, exist_ok=True)
    problem = session.cuda_problem()
    if args.device == "cuda" and problem:
        log(f"CUDA cannot run here: {problem[0]}")
        return 1
    res: dict = {"device": args.device, "machine": bench.machine(argparse.Namespace(device=args.device,
                 threads=None)), "gpu": session.gpu_name() if args.device == "cuda" else "", "errors": {}}
    sections = {"lossgrad": lossgrad, "agree": agree, "first": first_call, "stylize": stylize_rows,
                "placement": placement, "convgraph": convgraph}
    for name in args.sections.split(","):
        t = time.perf_counter()
        try:
            res[name] = sections[name](args)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
            res["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"{name} failed: {res['errors'][name]}")
        log(f"{name}: {time.perf_counter() - t:.1f} s")
        suffix = "" if args.device == "cuda" else "_cpu_dry_run"
        (args.out / f"bench_cuda{suffix}.json").write_text(json.dumps(res, indent=2, default=str))
        (args.out / f"bench_cuda{suffix}.md").write_text(markdown(res))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    objective_mod  # noqa: B018 - imported for its side effect of loading onnxruntime first
    sys.exit(main())
