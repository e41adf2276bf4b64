"""onnxstyle performance benchmark: one run measures, on the real VGG19 weights,

  lossgrad  loss+gradient per call at each --sizes for onnxstyle (Objective.__call__) and a
            PyTorch autograd reference of the same math (torch_ref.py): median of --repeats
            calls after one warm-up, the time ratio, the peak memory of the whole process
            (VmHWM; every case runs in a fresh subprocess), and a check that both give the
            same loss (~1e-4 relative) and gradient;
  stylize   a stylize at --stylize-size px, split into time in onnxruntime, in the optimiser
            and elsewhere, for scipy's L-BFGS-B, our lbfgs and lbfgs-device;
  overhead  the optimiser's own time per iteration at --overhead-size px (n = 3 s^2) for scipy
            unbounded, scipy with bounds, ours and ours on the device (lbfgs-device, on
            --device; its synthetic objective is an onnxruntime graph, built with onnx), on a
            cheap synthetic objective whose time is not counted;
  threads   loss+gradient time at --threads-size px during a scipy run with the BLAS limited to
            1 thread (what stylize does) and at its default.

It writes JSON and a Markdown table to --out (benchmarks/results/) with the machine described.
PyTorch is a benchmark-only dependency: pip install torch==2.13.0

    python benchmarks/bench.py            # the full run (minutes; on a quiet machine)
    python benchmarks/bench.py --quick    # a smoke run: 128 px, 2 repeats
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import numpy as np  # noqa: E402

TORCH_HINT = "PyTorch is a benchmark-only dependency: pip install torch==2.13.0"
SECTIONS = ("lossgrad", "stylize", "overhead", "threads")
LOSS_RTOL = 1e-4  # the loss must match the reference to this relative tolerance


def content_style() -> tuple[Path, Path]:
    data = ROOT / "onnxstyle" / "data"  # the bundled demo pair (public domain)
    return data / "astronaut.png", data / "starry_night.jpg"


def prepare(size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The demo pair as stylize(size=size) sees it: each resized to `size` on its longer side."""
    from onnxstyle.runtime import images

    out = []
    for path in content_style():
        img = images.load_rgb(path).astype(np.float32)
        out.append(images.resize(img, images.fit_size(img.shape, size)))
    return out[0], out[1:]


def torch_importable() -> bool:
    """Whether torch imports, checked in a subprocess so this process never loads it."""
    if importlib.util.find_spec("torch") is None:
        return False
    proc = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return proc.returncode == 0


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec: VmHWM on Linux (ru_maxrss keeps the
    forking parent's size across exec, which inflates a small child's figure)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(v.split()[1]) for v in f if v.startswith("VmHWM")) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------------------------------------
# Child process: one loss+gradient case, timed, with its peak memory.


def child_lossgrad(args: argparse.Namespace) -> dict:
    base_mb = peak_rss_mb()
    from onnxstyle.runtime.stylize import initial_canvas

    c, styles = prepare(args.size)
    x = initial_canvas(c, "noise", 0)
    info: dict = {}
    if args.framework == "onnxstyle":
        from onnxstyle.runtime.objective import Objective

        obj = Objective(c, styles, model=args.model, device=args.device, threads=args.threads)
        info["provider"] = obj.provider
    else:
        import torch
        from torch_ref import TorchObjective

        if args.threads:
            torch.set_num_threads(args.threads)
        dev = "cuda" if args.device == "cuda" else "cpu"
        if dev == "cuda" and not torch.cuda.is_available():
            raise SystemExit("torch has no CUDA here")
        obj = TorchObjective(c, styles, device=dev)
        info["torch_threads"] = torch.get_num_threads()
    loss, grad = obj(x)  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        loss, grad = obj(x)
        times.append(time.perf_counter() - t)
    if args.grad_out:
        np.save(args.grad_out, np.asarray(grad, np.float32))
    return {"framework": args.framework, "size": list(c.shape[:2]), "loss": loss,
            "median_s": statistics.median(times), "times_s": times,
            "peak_rss_mb": peak_rss_mb(), "import_rss_mb": base_mb, **info}


def run_child(args: argparse.Namespace, framework: str, size: int, grad_out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "lossgrad", "--framework",
           framework, "--size", str(size), "--repeats", str(args.repeats), "--device", args.device,
           "--grad-out", str(grad_out)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", str(args.model)]
    # Prepend: a GPU box's PYTHONPATH carries onnxruntime-gpu (shared/gpu/unpack.sh's env.sh).
    path = [str(ROOT), str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        return {"framework": framework, "error": lines[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_lossgrad(args: argparse.Namespace, have_torch: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            row: dict = {"size": size}
            for fw in ("onnxstyle", "torch") if have_torch else ("onnxstyle",):
                log(f"lossgrad {size} px: {fw}")
                row[fw] = run_child(args, fw, size, Path(tmp) / f"{fw}_{size}.npy")
            o, t = row["onnxstyle"], row.get("torch")
            if t and "error" not in o and "error" not in t:
                go = np.load(Path(tmp) / f"onnxstyle_{size}.npy").astype(np.float64)
                gt = np.load(Path(tmp) / f"torch_{size}.npy")
                row["time_ratio"] = o["median_s"] / t["median_s"]
                row["mem_ratio"] = o["peak_rss_mb"] / t["peak_rss_mb"]
                row["loss_rel_diff"] = abs(o["loss"] - t["loss"]) / abs(t["loss"])
                row["grad_rel_err"] = float(np.linalg.norm(go - gt) / np.linalg.norm(gt))
                row["same_math"] = row["loss_rel_diff"] <= LOSS_RTOL
                if not row["same_math"]:
                    log(f"WARNING: at {size} px the losses differ by "
                        f"{row['loss_rel_diff']:.2e} relative (> {LOSS_RTOL}): "
                        "the reference is not the same math")
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# stylize, split into onnxruntime / optimiser / elsewhere.


class Timers:
    """Wraps the session's run and the optimisers' fun/callback to add up where time goes."""

    def __init__(self) -> None:
        self.t = {"ort": 0.0, "minimize": 0.0, "fun": 0.0, "callback": 0.0}

    def timed(self, key: str, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[key] += time.perf_counter() - start

        return wrapper

    def minimizer(self, orig):
        def wrapper(fun, x0, *a, **k):
            if k.get("callback") is not None:
                cb = self.timed("callback", k["callback"])

                def callback(intermediate_result):  # the name scipy looks for
                    return cb(intermediate_result)

                k["callback"] = callback
            return self.timed("minimize", orig)(self.timed("fun", fun), x0, *a, **k)

        return wrapper


def bench_stylize(args: argparse.Namespace) -> list[dict]:
    from onnxstyle.runtime import device_lbfgs, host_lbfgs
    from onnxstyle.runtime import stylize as st
    from onnxstyle.runtime.objective import Objective

    c, styles = prepare(args.stylize_size)
    x0 = st.initial_canvas(c, "noise", 0)
    Objective(c, styles, model=args.model, device=args.device, threads=args.threads)  # load once
    rows = []
    read = (lambda p: p.image) if getattr(args, "read_image", False) else None  # a callback that looks
    for opt in getattr(args, "optimizers", ("scipy", "lbfgs", "lbfgs-device")):
        log(f"stylize {args.stylize_size} px, {args.stylize_iterations} iterations: {opt}")
        timers = Timers()
        t0 = time.perf_counter()
        obj = Objective(c, styles, model=args.model, device=args.device, threads=args.threads)
        setup = time.perf_counter() - t0
        sess = obj.engine.session
        orig_scipy, orig_ours, orig_dev = st.minimize, host_lbfgs.minimize, device_lbfgs.minimize
        sess.run = timers.timed("ort", sess.run)
        sess.run_with_iobinding = timers.timed("ort", sess.run_with_iobinding)  # lbfgs-device
        st.minimize, host_lbfgs.minimize = timers.minimizer(orig_scipy), timers.minimizer(orig_ours)
        device_lbfgs.minimize = timers.minimizer(orig_dev)
        if opt == "lbfgs-device":  # load its step graphs outside the timing
            device_lbfgs.step_sessions(*obj.ort_device, args.threads)
        try:
            t1 = time.perf_counter()
            res = st.optimize(obj, x0, args.stylize_iterations, callback=read, optimizer=opt)
            total = time.perf_counter() - t1
        finally:
            st.minimize, host_lbfgs.minimize, device_lbfgs.minimize = orig_scipy, orig_ours, orig_dev
            del sess.run, sess.run_with_iobinding
        t = timers.t
        optimiser = t["minimize"] - t["fun"] - t["callback"]
        rows.append({
            "optimizer": opt, "size": list(c.shape[:2]), "iterations": res.iterations,
            "evaluations": res.evaluations, "final_loss": res.final["total"],
            "setup_s": setup, "optimize_s": total, "onnxruntime_s": t["ort"],
            "optimiser_s": optimiser, "elsewhere_s": total - t["ort"] - optimiser,
            "optimiser_ms_per_it": 1e3 * optimiser / max(res.iterations, 1),
            "provider": res.provider, "message": res.message,
        })
    return rows


# ---------------------------------------------------------------------------------------------
# Optimiser overhead on a cheap synthetic objective.


def bench_overhead(args: argparse.Namespace) -> list[dict]:
    from scipy.optimize import Bounds, minimize
    from threadpoolctl import threadpool_limits

    from onnxstyle import defaults
    from onnxstyle.runtime import device_lbfgs, host_lbfgs

    n = 3 * args.overhead_size**2
    rng = np.random.default_rng(0)
    # A separable quadratic 0.5 sum a (x - c)^2 with curvatures over two decades and minima
    # partly outside [0, 255], so some bounds are active as in a real run.
    a64 = rng.uniform(0.1, 10.0, n)
    c64 = rng.uniform(-40.0, 295.0, n)
    a32, c32 = a64.astype(np.float32), c64.astype(np.float32)
    r64, r32 = np.empty(n), np.empty(n, np.float32)
    x0 = rng.uniform(0.0, 255.0, n)
    its = args.overhead_iterations

    def quad(a, c, r):
        def fun(x):
            np.subtract(x, c, out=r)
            g = a * r
            return 0.5 * float(np.dot(g, r)), g

        return fun

    cases = {
        "scipy L-BFGS-B, unbounded": lambda f: minimize(
            f, x0, jac=True, method="L-BFGS-B", options=opts),
        "scipy L-BFGS-B, bounds [0, 255]": lambda f: minimize(
            f, x0, jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 255.0), options=opts),
        "onnxstyle lbfgs, bounds [0, 255]": lambda f: host_lbfgs.minimize(
            f, x0.astype(np.float32), its, bounds=(0.0, 255.0)),
        "onnxstyle lbfgs, segment end point, bounds [0, 255]": lambda f: host_lbfgs.minimize(
            f, x0.astype(np.float32), its, bounds=(0.0, 255.0), rule="segment"),
    }
    opts = {"maxiter": its, "maxfun": 4 * its + 20, "ftol": 0.0, "gtol": 0.0,
            "maxcor": defaults.LBFGS_MEMORY}
    device_fun = device_quadratic(a32, c32, args.device, args.threads)
    if device_fun is not None:
        device_lbfgs.step_sessions(args.device, 0, args.threads)  # loaded outside the timing
        cases[f"onnxstyle lbfgs-device ({args.device}), bounds [0, 255]"] = lambda f: (
            device_lbfgs.minimize(f, x0.astype(np.float32), its, bounds=(0.0, 255.0),
                                  device=(args.device, 0), threads=args.threads))
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):  # as in stylize
        for name, run in cases.items():
            log(f"overhead n={n:,}: {name}")
            ours = name.startswith("onnxstyle")
            fun_t = Timers()
            fun = fun_t.timed("fun", device_fun if "device" in name else
                              quad(a32, c32, r32) if ours else quad(a64, c64, r64))
            t = time.perf_counter()
            res = run(fun)
            total = time.perf_counter() - t
            nit = int(res.nit)
            at_bound = float(np.mean((res.x <= 0) | (res.x >= 255)))
            rows.append({"optimizer": name, "n": n, "iterations": nit,
                         "evaluations": int(res.nfev), "overhead_ms_per_it":
                         1e3 * (total - fun_t.t["fun"]) / max(nit, 1),
                         "fraction_at_bounds": at_bound, "final_loss": float(res.fun)})
    ours = next(r["overhead_ms_per_it"] for r in rows if r["optimizer"].startswith("onnxstyle lbfgs,"))
    for row in rows:
        row["vs_ours"] = row["overhead_ms_per_it"] / ours
    return rows


def device_quadratic(a: np.ndarray, c: np.ndarray, device: str, threads: int | None):
    """The synthetic quadratic 0.5 sum a (x - c)^2 as an onnxruntime graph on `device`, in
    lbfgs-device's form fun(x, grad_out) -> loss with x and the gradient bound by device pointer;
    None (and a note) when onnx, which builds the graph, is missing."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        log("onnx is not installed: skipping the lbfgs-device overhead row (pip install onnx)")
        return None
    import onnxruntime as ort

    from onnxstyle import layout

    f, n = TensorProto.FLOAT, a.size
    nodes = [helper.make_node("Sub", ["x", "c"], ["r"]), helper.make_node("Mul", ["a", "r"], ["g"]),
             helper.make_node("MatMul", ["g", "r"], ["gr"]),
             helper.make_node("Mul", ["gr", "half"], ["loss"])]
    vec = [helper.make_tensor_value_info(k, f, ["n"]) for k in ("x", "a", "c")]
    graph = helper.make_graph(nodes, "quadratic", vec,
                              [helper.make_tensor_value_info("loss", f, []),
                               helper.make_tensor_value_info("g", f, ["n"])],
                              [helper.make_tensor("half", f, [], [0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", layout.OPSET)])
    model.ir_version = layout.IR_VERSION
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    # Its idle threads would spin on the cores the optimiser runs on next, charging it for them.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = (["CUDAExecutionProvider"] if device == "cuda" else []) + ["CPUExecutionProvider"]
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=providers)
    io = sess.io_binding()
    keep = [ort.OrtValue.ortvalue_from_numpy(v, device, 0) for v in (a, c)]
    io.bind_ortvalue_input("a", keep[0])
    io.bind_ortvalue_input("c", keep[1])
    loss = np.zeros((), np.float32)
    keep.append(ort.OrtValue.ortvalue_from_numpy(loss))
    io.bind_ortvalue_output("loss", keep[-1])

    def fun(x, grad_out):
        io.bind_input("x", device, 0, np.float32, [n], x.data_ptr())
        io.bind_output("g", device, 0, np.float32, [n], grad_out.data_ptr())
        sess.run_with_iobinding(io)
        return float(loss)

    fun.keep = keep  # the bound OrtValues live as long as fun
    return fun


# ---------------------------------------------------------------------------------------------
# BLAS threads during a scipy run.


def bench_threads(args: argparse.Namespace) -> list[dict]:
    from scipy.optimize import Bounds, minimize
    from threadpoolctl import threadpool_info, threadpool_limits

    from onnxstyle.runtime import stylize as st
    from onnxstyle.runtime.objective import Objective

    c, styles = prepare(args.threads_size)
    obj = Objective(c, styles, model=args.model, device=args.device, threads=args.threads)
    x0 = st.initial_canvas(c, "noise", 0).ravel().astype(np.float64)
    obj(x0.reshape(c.shape))  # warm-up
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    default = max(blas, default=0)
    rows = []
    for limit in (None, 1, None, 1):  # twice each, interleaved, against drift
        log(f"threads {args.threads_size} px: BLAS limit {limit or 'default'}")
        times: list[float] = []

        def fun(x, times=times):
            t = time.perf_counter()
            loss, grad = obj(x.reshape(c.shape))
            times.append(time.perf_counter() - t)
            return loss, grad.ravel()

        with threadpool_limits(limits=limit, user_api="blas"):
            t = time.perf_counter()
            res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 255.0),
                           options={"maxiter": args.threads_iterations, "ftol": 0, "gtol": 0})
            total = time.perf_counter() - t
        rows.append({"blas_threads": limit or default,
                     "lossgrad_median_s": statistics.median(times),
                     "optimiser_ms_per_it": 1e3 * (total - sum(times)) / max(res.nit, 1),
                     "iterations": int(res.nit)})
    merged = []
    for threads in dict.fromkeys(r["blas_threads"] for r in rows):
        same = [r for r in rows if r["blas_threads"] == threads]
        merged.append({
            "blas_threads": threads, "size": list(c.shape[:2]),
            "lossgrad_median_s": statistics.median(r["lossgrad_median_s"] for r in same),
            "optimiser_ms_per_it": statistics.median(r["optimiser_ms_per_it"] for r in same),
            "runs": len(same), "iterations_per_run": same[0]["iterations"],
        })
    return merged


# ---------------------------------------------------------------------------------------------
# Machine description and report.


def git_commit() -> str | None:
    """The checkout's short commit: $ONNXSTYLE_COMMIT where set (a GPU box gets a copied tree, with
    no repository and maybe no git: gpu_prepare.sh's command sets it), else git's, else None."""
    if os.environ.get("ONNXSTYLE_COMMIT"):
        return os.environ["ONNXSTYLE_COMMIT"]
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine(args: argparse.Namespace) -> dict:
    cpu, cores = platform.processor() or platform.machine(), set()
    try:
        phys = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if key == "model name":
                cpu = val
            elif key == "physical id":
                phys = val
            elif key == "core id":
                cores.add((phys, val))
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass

    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    import onnxruntime as ort
    import scipy.optimize  # noqa: F401  (loads scipy's own OpenBLAS, so it is listed too)
    from threadpoolctl import threadpool_info

    gpu = None
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True)
        gpu = q.stdout.strip() or None
    return {
        "cpu": cpu, "logical_cpus": os.cpu_count(), "physical_cores": len(cores) or None,
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem, "gpu": gpu, "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("onnxstyle", "numpy", "scipy", "onnxruntime-gpu",
                                             "onnxruntime", "torch", "threadpoolctl")},
        "ort_providers": ort.get_available_providers(),
        "blas": [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                 for p in threadpool_info() if p["user_api"] == "blas"],
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "device": args.device, "threads": args.threads or "default (physical cores)",
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def fmt(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def markdown(res: dict) -> str:
    m, a = res["machine"], res["args"]
    out = [f"# onnxstyle benchmark ({'quick' if a['quick'] else 'full'})", "",
           f"`{res['command']}`", ""]
    if res.get("busy"):
        out += [f"**The machine was busy ({res['busy']}): these timings are unreliable.**", ""]
    if res.get("torch_missing"):
        out += [f"**PyTorch is not installed: no reference column.** {TORCH_HINT}", ""]
    if "lossgrad" in res:
        out += [f"## Loss + gradient per call (median of {a['repeats']} after 1 warm-up; "
                "peak memory of the whole process, each case in a fresh process)", "",
                "| size | onnxstyle s | torch s | time ratio | onnxstyle peak MB | torch peak MB "
                "| memory ratio | loss rel. diff | grad rel. err |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in res["lossgrad"]:
            o, t = r["onnxstyle"], r.get("torch") or {}
            if "error" in o or "error" in t:
                out.append(f"| {r['size']} | {o.get('error', fmt(o.get('median_s')))} | "
                           f"{t.get('error', fmt(t.get('median_s')))} | | | | | | |")
                continue
            out.append(
                f"| {r['size']} | {fmt(o['median_s'])} | {fmt(t.get('median_s'))} "
                f"| {fmt(r.get('time_ratio'), '.2f')} | {fmt(o['peak_rss_mb'], '.0f')} "
                f"| {fmt(t.get('peak_rss_mb'), '.0f')} | {fmt(r.get('mem_ratio'), '.2f')} "
                f"| {fmt(r.get('loss_rel_diff'), '.1e')} | {fmt(r.get('grad_rel_err'), '.1e')} |"
            )
        out.append("")
    if "stylize" in res:
        s0 = res["stylize"][0]
        out += [f"## stylize {s0['size'][1]}x{s0['size'][0]} px, {a['stylize_iterations']} "
                f"iterations on {s0['provider']}", "",
                "| optimizer | iterations | evaluations | final loss | total s | onnxruntime s "
                "| optimiser s | elsewhere s | optimiser ms/it | setup s |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["stylize"]:
            out.append(
                f"| {r['optimizer']} | {r['iterations']} | {r['evaluations']} "
                f"| {r['final_loss']:.6g} | {r['optimize_s']:.2f} | {r['onnxruntime_s']:.2f} "
                f"| {r['optimiser_s']:.2f} | {r['elsewhere_s']:.2f} "
                f"| {r['optimiser_ms_per_it']:.1f} | {r['setup_s']:.2f} |"
            )
        out.append("")
    if "overhead" in res:
        n = res["overhead"][0]["n"]
        out += [f"## Optimiser overhead per iteration (n = {n:,}, synthetic objective, its time "
                "excluded; BLAS on 1 thread)", "",
                "| optimizer | iterations | evaluations | ms / iteration | × ours |",
                "|---|---|---|---|---|"]
        for r in res["overhead"]:
            out.append(f"| {r['optimizer']} | {r['iterations']} | {r['evaluations']} "
                       f"| {r['overhead_ms_per_it']:.1f} | {r['vs_ours']:.1f} |")
        out.append("")
    if "threads" in res:
        t0 = res["threads"][0]
        out += [f"## BLAS threads during a scipy run ({t0['size'][1]} px, "
                f"{t0['runs']} runs of {t0['iterations_per_run']} iterations each)", "",
                "| BLAS threads | loss+grad median s | optimiser ms/it |", "|---|---|---|"]
        for r in res["threads"]:
            out.append(f"| {r['blas_threads']} | {r['lossgrad_median_s']:.3f} "
                       f"| {r['optimiser_ms_per_it']:.1f} |")
        out.append("")
    v = m["versions"]
    out += ["## Machine", "",
            f"- CPU: {m['cpu']}, {m['physical_cores']} physical cores, {m['logical_cpus']} "
            f"logical CPUs ({m['usable_cpus']} usable), {m['memory_gib']} GiB RAM",
            f"- GPU: {m['gpu'] or 'none'}; device {m['device']}, threads {m['threads']}",
            f"- {m['platform']}, Python {m['python']}",
            "- " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
            "- BLAS: " + ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, "
                                   f"{b['num_threads']} threads)" for b in m["blas"]),
            f"- load average at start: {m['load_average_at_start']}",
            f"- onnxstyle commit {m['git_commit']}, {m['date']}", ""]
    return "\n".join(out)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="128,256,512,1024", help="loss+grad sizes, comma-separated")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case (after a warm-up)")
    p.add_argument("--quick", action="store_true", help="smoke run: 128 px, 2 repeats, short runs")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {', '.join(SECTIONS)}")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="onnxruntime and torch threads")
    p.add_argument("--model", type=Path, default=None, help="an exported .onnx (default: models/)")
    p.add_argument("--stylize-size", type=int, default=512)
    p.add_argument("--stylize-iterations", type=int, default=100)
    p.add_argument("--overhead-size", type=int, default=512)
    p.add_argument("--overhead-iterations", type=int, default=30)
    p.add_argument("--threads-size", type=int, default=256)
    p.add_argument("--threads-iterations", type=int, default=5)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--out", type=Path, default=HERE / "results")
    # internal: one loss+grad case in a fresh process
    p.add_argument("--child", choices=("lossgrad",), help=argparse.SUPPRESS)
    p.add_argument("--framework", choices=("onnxstyle", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--grad-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = "128", 2
        args.stylize_size, args.stylize_iterations = 128, 10
        args.overhead_iterations, args.threads_size, args.threads_iterations = 10, 128, 3
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = set(args.sections) - set(SECTIONS)
    if bad:
        p.error(f"unknown sections {', '.join(sorted(bad))}: expected any of {', '.join(SECTIONS)}")
    if args.repeats < 1 or min(args.sizes, default=0) < 16:
        p.error("--repeats must be >= 1 and every size >= 16")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        print(json.dumps(child_lossgrad(args)))
        return 0
    have_torch = not args.no_torch and "lossgrad" in args.sections and torch_importable()
    if not have_torch and not args.no_torch and "lossgrad" in args.sections:
        log(f"PyTorch is not installed: skipping the reference columns. {TORCH_HINT}")
    cmdline = " ".join(sys.argv[1:] if argv is None else argv)
    res: dict = {"command": f"python benchmarks/bench.py {cmdline}".strip(),
                 "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                 "torch_missing": not have_torch and not args.no_torch
                 and "lossgrad" in args.sections}
    res["machine"] = machine(args)
    load = (res["machine"]["load_average_at_start"] or [0.0])[0]
    if load > 0.5 * (os.cpu_count() or 1):
        res["busy"] = f"load average {load:.1f} on {os.cpu_count()} CPUs at the start"
        log(f"WARNING: the machine is busy ({res['busy']}): timings will be unreliable")
    t0 = time.perf_counter()
    runs = {"lossgrad": lambda: bench_lossgrad(args, have_torch),
            "stylize": lambda: bench_stylize(args), "overhead": lambda: bench_overhead(args),
            "threads": lambda: bench_threads(args)}
    for section in SECTIONS:
        if section in args.sections:
            res[section] = runs[section]()
    res["wall_s"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_quick" if args.quick else ("bench_cuda" if args.device == "cuda" else "bench")
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    (args.out / f"{stem}.md").write_text(md + "\n")
    print(md)
    log(f"wrote {args.out / stem}.json and .md in {res['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
