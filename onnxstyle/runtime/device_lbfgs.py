"""Projected L-BFGS with every vector on the onnxruntime device (`--optimizer lbfgs-device`).

The same algorithm, line search (lbfgs.LineSearch) and results as runtime/lbfgs.py, but the
image x, its gradient g, the search direction and the history S, Y live in OrtValues on the
objective's device; the vector work runs as the small graphs of export/lbfgs_graph.py (shipped
in onnxstyle/data/) through I/O binding, by device pointer, into buffers allocated once (the
history rows are overwritten in place). Per line-search step only scalars cross between host and
device: the step length, the bounds and the ring's rho/gamma/newest go down; the loss, g's, g(t)'s,
s'y and y'y come back. The image comes to the host at the start (x0), at the end (the result)
and when a callback reads Iterate.x: that read is a copy of the whole image from the device, so
use callback_every (or do not read x) to keep it off the critical path.

On the CPU provider the same code runs with device ("cpu", 0); it is how this module is tested
without a GPU, and it is slower than runtime/lbfgs.py there (every step is a session run).

fun(x, grad_out) -> loss, or (loss, info): evaluate at the flat float32 OrtValue x and write the
gradient into grad_out (same size and device); `info` (e.g. the loss terms) travels with the
point and is handed back in Iterate.info and the result's info.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxstyle import layout
from onnxstyle.errors import ModelError
from onnxstyle.runtime.lbfgs import MAX_LS, LbfgsResult, LineSearch, _Stop, store_pair

DeviceFun = Callable[[ort.OrtValue, ort.OrtValue], "float | tuple[float, Any]"]
DATA = Path(__file__).resolve().parents[1] / "data"  # the shipped step graphs
F32 = np.float32
_lock = threading.Lock()
_cache: dict[tuple[str, int, int], dict[str, ort.InferenceSession]] = {}


# Every copy of a vector between host and device goes through these two (tests count them).
def to_device(array: np.ndarray, out: ort.OrtValue) -> None:
    out.update_inplace(np.ascontiguousarray(array, F32))


def to_host(value: ort.OrtValue) -> np.ndarray:
    array = value.numpy()  # a view of a CPU OrtValue's memory, a new array from another device
    return array.copy() if value.device_name().lower() == "cpu" else array


@dataclass(frozen=True)
class Iterate:
    """What the callback gets after an iteration, like lbfgs.Iterate. Reading `x` copies the
    image from the device (once per Iterate), and only works during the callback."""

    _buffer: list  # [the device OrtValue x], emptied when the callback returns
    fun: float
    nit: int
    nfev: int
    info: Any = None  # what fun returned beside the loss at this point

    @property
    def x(self) -> np.ndarray:
        if not self._buffer:
            raise RuntimeError("Iterate.x is only readable during the callback")
        if isinstance(self._buffer[0], ort.OrtValue):
            self._buffer[0] = to_host(self._buffer[0])
        return self._buffer[0]


@dataclass
class DeviceResult(LbfgsResult):
    info: Any = None  # fun's info at the result's x


def step_sessions(kind: str = "cpu", device_id: int = 0,
                  threads: int | None = None) -> dict[str, ort.InferenceSession]:  # fmt: skip
    """The four step graphs loaded on a device (cached: sessions are thread-safe to run).
    `threads`: intra-op threads on the CPU provider; None: 1, as their element-wise ops are
    memory-bound (at n = 786,432: 23 ms per iteration on 1 thread, 45 ms on 2, on 2 cores)."""
    threads = 1 if threads is None else threads
    key = (kind, device_id, threads)
    with _lock:
        if key not in _cache:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            # Short runs between the loss graph's: idle threads sleep instead of spinning on
            # the cores the loss graph needs next.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            providers: list = ["CPUExecutionProvider"]
            if kind == "cuda":
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
            out = {}
            for graph in layout.LBFGS_IO:
                path = DATA / layout.lbfgs_file(graph)
                try:
                    sess = ort.InferenceSession(str(path), so, providers=providers)
                except Exception as e:
                    msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    raise ModelError(f"{path}: cannot load the L-BFGS step graph ({msg})") from None
                meta = sess.get_modelmeta().custom_metadata_map.get(layout.META_LBFGS)
                if meta != f"{graph} {layout.LBFGS_VERSION}":
                    raise ModelError(f"{path}: L-BFGS step graph {meta!r}, this onnxstyle needs "
                                     f"{graph} {layout.LBFGS_VERSION}")  # fmt: skip
                if kind == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
                    raise ModelError(f"{path}: onnxruntime could not run it on CUDA")
                out[graph] = sess
            _cache[key] = out
        return _cache[key]


def memory(sessions: dict[str, ort.InferenceSession]) -> int:
    """The history length m the direction graph was built for."""
    return int(next(i for i in sessions["direction"].get_inputs() if i.name == "S").shape[0])


class _Step:
    """One step graph and its binding: vectors by device pointer, scalars through numpy arrays
    shared with host OrtValues (bound once; ORT copies them to and from the device)."""

    def __init__(self, sess: ort.InferenceSession, kind: str, device_id: int, n: int) -> None:
        self.sess, self.kind, self.device_id, self.n = sess, kind, device_id, n
        self.io = sess.io_binding()
        self.host: dict[str, np.ndarray] = {}
        self._keep: list[ort.OrtValue] = []  # host OrtValues must outlive the binding
        self.scalar_outputs: list[str] = []

    def scalar_in(self, name: str, shape: tuple[int, ...] = (), dtype=F32) -> np.ndarray:
        arr = np.zeros(shape, dtype)
        value = ort.OrtValue.ortvalue_from_numpy(arr)
        self.io.bind_ortvalue_input(name, value)
        self._keep.append(value)
        self.host[name] = arr
        return arr

    def scalar_out(self, name: str) -> None:
        arr = np.zeros((), F32)
        value = ort.OrtValue.ortvalue_from_numpy(arr)
        self.io.bind_ortvalue_output(name, value)
        self._keep.append(value)
        self.host[name] = arr
        self.scalar_outputs.append(name)

    def vec_in(self, name: str, ptr: int) -> None:
        self.io.bind_input(name, self.kind, self.device_id, F32, [self.n], ptr)

    def vec_out(self, name: str, ptr: int) -> None:
        self.io.bind_output(name, self.kind, self.device_id, F32, [self.n], ptr)

    def run(self) -> tuple[float, ...]:
        """Run it; its scalar outputs, now on the host, in the order they were declared."""
        self.sess.run_with_iobinding(self.io)
        return tuple(float(self.host[name]) for name in self.scalar_outputs)


def minimize(
    fun: DeviceFun,
    x0: np.ndarray,
    maxiter: int,
    bounds: tuple[float, float] = (0.0, 255.0),
    m: int | None = None,
    callback: Callable[[Iterate], None] | None = None,
    maxfun: int | None = None,
    max_ls: int = MAX_LS,
    gtol: float = 0.0,
    device: tuple[str, int] = ("cpu", 0),
    threads: int | None = None,
    callback_every: int = 1,
) -> DeviceResult:
    """lbfgs.minimize on the device (see the module docstring for fun): minimise over the box
    `bounds` from x0 for at most `maxiter` iterations, with the same stops and results.
    `device`: onnxruntime's (type, id) of the buffers fun takes, e.g. Objective.ort_device;
    `m`: the history length, which must be the shipped graph's (None: that one); the callback
    runs after every `callback_every`-th iteration."""
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds ({lo}, {hi}): the lower bound must be below the upper")
    if maxiter < 1 or callback_every < 1:
        raise ValueError("maxiter and callback_every must be >= 1")
    kind, dev = device
    sessions = step_sessions(kind, dev, threads)
    mg = memory(sessions)
    if m is not None and m != mg:
        raise ValueError(f"m = {m}: the shipped L-BFGS graph keeps {mg} pairs")
    m = mg
    maxfun = maxfun if maxfun is not None else 4 * maxiter + 20
    n = int(np.size(x0))

    def alloc(*shape: int) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), F32, kind, dev)

    # All device buffers, allocated once; the names are swapped, never the contents copied.
    x, xt, xb, g, gt, gb, d = (alloc(n) for _ in range(7))  # xb, gb: the line search's best
    S, Y = alloc(m, n), alloc(m, n)
    to_device(np.clip(np.asarray(x0, np.float64).reshape(-1), lo, hi), x)
    zeros = np.zeros((m, n), F32)  # empty slots must hold finite numbers (0 * NaN is NaN)
    to_device(zeros, S)
    to_device(zeros, Y)
    del zeros

    steps = {k: _Step(sessions[k], kind, dev, n) for k in layout.LBFGS_IO}
    for k, step in steps.items():  # scalar outputs come to the host; vectors are bound per run
        for name in layout.LBFGS_IO[k][1]:
            if name not in ("d", "xt", "s", "y"):
                step.scalar_out(name)
    direction, trial, slope, pair = steps.values()
    for step in (direction, trial):
        step.scalar_in("lo")[...] = lo
        step.scalar_in("hi")[...] = hi
    direction.io.bind_ortvalue_input("S", S)
    direction.io.bind_ortvalue_input("Y", Y)
    rho_in = direction.scalar_in("rho", (m,))  # 1 / s'y of the ring's pairs, 0 elsewhere
    gamma_in = direction.scalar_in("gamma")
    newest_in = direction.scalar_in("newest", dtype=np.int64)
    t_in = trial.scalar_in("t")

    rho = np.zeros(m, np.float64)
    start, count = 0, 0  # the ring: pairs start, start+1, ... (mod m), `count` of them
    gamma = 1.0
    nfev = 0

    def evaluate(point: ort.OrtValue, grad_out: ort.OrtValue) -> tuple[float, Any]:
        nonlocal nfev
        if nfev >= maxfun:
            raise _Stop("maximum number of function evaluations reached")
        nfev += 1
        out = fun(point, grad_out)
        value, info = out if isinstance(out, tuple) else (out, None)
        value = float(value)
        return (value if math.isfinite(value) else math.inf), info

    def two_loop() -> tuple[float, float, float]:
        """d <- -P H P g; (g'd, ||d||, max |P g|)."""
        rho_in[:] = 0.0
        for j in range(count):
            i = (start + j) % m
            rho_in[i] = rho[i]
        gamma_in[...] = gamma
        newest_in[...] = (start + count - 1) % m
        direction.vec_in("x", x.data_ptr())
        direction.vec_in("g", g.data_ptr())
        direction.vec_out("d", d.data_ptr())
        return direction.run()

    f, info = evaluate(x, g)
    if not math.isfinite(f):
        raise ValueError("the loss or its gradient is not finite at the starting point")
    nit, message, success = 0, "maximum number of iterations reached", True
    try:
        while nit < maxiter:
            # 1-2. the projected direction; the gtol stop; lost descent: restart the memory.
            gd, dnorm, pgmax = two_loop()
            if not math.isfinite(gd):  # only the starting gradient is unchecked so far
                raise ValueError("the loss or its gradient is not finite at the starting point")
            if pgmax <= gtol:
                message = "projected gradient below gtol"
                break
            if count and gd >= 0:
                start, count, gamma = 0, 0, 1.0
                gd, dnorm, pgmax = two_loop()

            # 3. line search along the projected path x(t) = clip(x + t d, lo, hi).
            ls = LineSearch(1.0 if count else min(1.0, 1.0 / max(dnorm, 1e-30)), probe=nit == 0)
            accepted, info_t, info_b = False, None, None
            trial.vec_in("x", x.data_ptr())
            trial.vec_in("d", d.data_ptr())
            trial.vec_in("g", g.data_ptr())
            for _ in range(max_ls):
                t_in[...] = ls.t
                trial.vec_out("xt", xt.data_ptr())
                (gs,) = trial.run()  # xt <- x(t); gs = g'(xt - x)
                if gs >= 0:  # the step rounds to nothing
                    break
                ft, info_t = evaluate(xt, gt)
                gts = math.inf
                if ft < math.inf:
                    for name, v in (("x", x), ("xt", xt), ("gt", gt)):
                        slope.vec_in(name, v.data_ptr())
                    (gts,) = slope.run()
                    if not math.isfinite(gts):  # NaN or Inf in the gradient
                        ft = gts = math.inf
                accepted, keep = ls.judge(f, gs, ft, gts)
                if accepted:
                    break
                if keep:  # the best decrease so far: keep its buffers, trial into the old ones
                    xt, xb, gt, gb, info_b = xb, xt, gb, gt, info_t
            if not accepted:
                if ls.f_best == math.inf:
                    if count:  # the memory misled us: forget it and try steepest descent
                        start, count, gamma = 0, 0, 1.0
                        continue
                    message, success = "line search cannot decrease the loss", False
                    break
                xt, xb, gt, gb = xb, xt, gb, gt  # settle for the best sufficient decrease seen
                ft, info_t = ls.f_best, info_b

            # 4. the pair (s, y) straight into the ring's next slot; keep it only with
            # positive curvature.
            slot = (start + count) % m
            for name, v in (("x", x), ("xt", xt), ("g", g), ("gt", gt)):
                pair.vec_in(name, v.data_ptr())
            pair.vec_out("s", S.data_ptr() + 4 * slot * n)
            pair.vec_out("y", Y.data_ptr() + 4 * slot * n)
            sy, yy = pair.run()
            start, count, gamma = store_pair(rho, slot, sy, yy, start, count, gamma)
            x, xt = xt, x
            g, gt = gt, g
            f, info = ft, info_t
            nit += 1
            if callback is not None and nit % callback_every == 0:
                box = [x]
                try:
                    callback(Iterate(box, f, nit, nfev, info))
                except StopIteration:
                    message = "stopped by the callback"
                    break
                finally:
                    box.clear()
    except _Stop as e:
        message = str(e)
    return DeviceResult(x=to_host(x).reshape(-1), fun=f, nit=nit, nfev=nfev, success=success,
                        message=message, info=info)  # fmt: skip
