"""Projected L-BFGS with every vector on the onnxruntime device (`--optimizer lbfgs-device`).

lbfgs.drive (the same iterations, line search, ring bookkeeping and stops as runtime/lbfgs.py)
on DeviceVectors: the image x, its gradient g, the search direction and the history S, Y live
in OrtValues on the objective's device; the vector work runs as the small graphs of
export/lbfgs_graph.py (shipped in onnxstyle/data/) through I/O binding, by device pointer, into
buffers allocated once (the history rows are overwritten in place). Per line-search step only
scalars cross between host and device: the step length, the bounds and the ring's
rho/gamma/newest go down; the loss, g's, g(t)'s, s'y and y'y come back. The image comes to the
host at the start (x0), at the end (the result) and when a callback reads Iterate.x: that read
is a copy of the whole image from the device, so use callback_every (or do not read x) to keep
it off the critical path. The state cannot be exported (Iterate.state and the result's state
are None).

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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxstyle import layout
from onnxstyle.errors import ModelError
from onnxstyle.runtime.lbfgs import MAX_LS, Iterate, LbfgsResult, Ring, drive, limits

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


def step_sessions(kind: str = "cpu", device_id: int = 0,
                  threads: int | None = None) -> dict[str, ort.InferenceSession]:
    """The five step graphs loaded on a device (cached: sessions are thread-safe to run).
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
                                     f"{graph} {layout.LBFGS_VERSION}")
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


class DeviceVectors:
    """lbfgs.Vectors in OrtValues on the device, worked on by the step graphs: the buffers are
    allocated once, and their names swapped, never their contents copied."""

    def __init__(self, fun: DeviceFun, x0: np.ndarray, lo: float, hi: float,
                 sessions: dict[str, ort.InferenceSession], kind: str, dev: int) -> None:
        self.fun, self.m, n = fun, memory(sessions), int(np.size(x0))
        self.info = self.info_t = self.info_b = None  # fun's info at x, xt and xb

        def alloc(*shape: int) -> ort.OrtValue:
            return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), F32, kind, dev)

        # xb, gb: the line search's best trial, kept while it goes on.
        # d2: where the segment graph writes d's replacement (no graph runs in place).
        self.x, self.xt, self.xb, self.g, self.gt, self.gb, self.d, self.d2 = (alloc(n) for _ in range(8))
        self.S, self.Y = alloc(self.m, n), alloc(self.m, n)
        to_device(np.clip(np.asarray(x0, np.float64).reshape(-1), lo, hi), self.x)
        zeros = np.zeros((self.m, n), F32)  # empty slots must hold finite numbers (0 * NaN is NaN)
        to_device(zeros, self.S)
        to_device(zeros, self.Y)
        self.n, self.slot = n, 0  # slot: the ring's next, where pair() writes

        self.steps = {k: _Step(sessions[k], kind, dev, n) for k in layout.LBFGS_IO}
        for k, step in self.steps.items():  # scalar outputs come to the host; vectors are bound per run
            for name in layout.LBFGS_IO[k][1]:
                if name not in ("d", "ds", "xt", "s", "y"):
                    step.scalar_out(name)
        direction, segment, trial = self.steps["direction"], self.steps["segment"], self.steps["trial"]
        for step in (direction, segment, trial):
            step.scalar_in("lo")[...] = lo
            step.scalar_in("hi")[...] = hi
        direction.io.bind_ortvalue_input("S", self.S)
        direction.io.bind_ortvalue_input("Y", self.Y)
        self.rho_in = direction.scalar_in("rho", (self.m,))  # 1 / s'y of the ring's pairs, 0 elsewhere
        self.gamma_in = direction.scalar_in("gamma")
        self.newest_in = direction.scalar_in("newest", dtype=np.int64)
        self.p_in = segment.scalar_in("p")
        self.t_in = trial.scalar_in("t")

    def _run(self, graph: str, out: dict[str, int] | None = None, **vectors: ort.OrtValue) -> tuple[float, ...]:
        """Run a step graph on these input vectors, into the output pointers `out`."""
        step = self.steps[graph]
        for name, v in vectors.items():
            step.vec_in(name, v.data_ptr())
        for name, ptr in (out or {}).items():
            step.vec_out(name, ptr)
        return step.run()

    def _eval(self, point: ort.OrtValue, grad_out: ort.OrtValue) -> tuple[float, Any]:
        out = self.fun(point, grad_out)
        value, info = out if isinstance(out, tuple) else (out, None)
        value = float(value)
        return (value if math.isfinite(value) else math.inf), info

    def start(self) -> float:
        f, self.info = self._eval(self.x, self.g)
        return f

    def direction(self, ring: Ring) -> tuple[float, float, float]:
        self.rho_in[:] = 0.0
        for i in ring.slots():
            self.rho_in[i] = ring.rho[i]
        self.gamma_in[...] = ring.gamma
        self.newest_in[...] = (ring.start + ring.count - 1) % self.m
        self.slot = ring.slot
        gd, dnorm, pgmax = self._run("direction", {"d": self.d.data_ptr()}, x=self.x, g=self.g)
        if not math.isfinite(gd):  # only the starting gradient is unchecked (the slope checks gt)
            raise ValueError("the loss or its gradient is not finite at the starting point")
        return gd, dnorm, pgmax

    def segment(self, p: float) -> tuple[float, float]:
        self.p_in[...] = p
        gd, t_max = self._run("segment", {"ds": self.d2.data_ptr()}, x=self.x, d=self.d, g=self.g)
        self.d, self.d2 = self.d2, self.d
        for name, v in (("x", self.x), ("d", self.d), ("g", self.g)):  # fixed for the line search
            self.steps["trial"].vec_in(name, v.data_ptr())
        return gd, t_max

    def trial(self, t: float) -> float:
        self.t_in[...] = t
        return self._run("trial", {"xt": self.xt.data_ptr()})[0]

    def evaluate(self) -> tuple[float, float]:
        ft, self.info_t = self._eval(self.xt, self.gt)
        if ft == math.inf:
            return ft, math.inf
        (gts,) = self._run("slope", x=self.x, xt=self.xt, gt=self.gt)
        return (ft, gts) if math.isfinite(gts) else (math.inf, math.inf)  # NaN or Inf in gt

    def keep(self) -> None:  # trial into the old best's buffers
        self.xt, self.xb, self.gt, self.gb, self.info_b = self.xb, self.xt, self.gb, self.gt, self.info_t

    def settle(self) -> None:
        self.xt, self.xb, self.gt, self.gb, self.info_t = self.xb, self.xt, self.gb, self.gt, self.info_b

    def pair(self) -> tuple[float, float]:
        at = 4 * self.slot * self.n  # the slot's row, in bytes
        rows = {"s": self.S.data_ptr() + at, "y": self.Y.data_ptr() + at}
        return self._run("pair", rows, x=self.x, xt=self.xt, g=self.g, gt=self.gt)

    def accept(self) -> None:
        self.x, self.xt, self.g, self.gt, self.info = self.xt, self.x, self.gt, self.g, self.info_t

    def view(self) -> Callable[[], np.ndarray]:
        return partial(to_host, self.x)

    def vectors(self) -> None:
        return None

    def result(self) -> np.ndarray:
        return to_host(self.x).reshape(-1)


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
    cold: bool = False,
) -> LbfgsResult:
    """host_lbfgs.minimize on the device (see the module docstring for fun): minimise over the box
    `bounds` from x0 for at most `maxiter` iterations, with the same stops and results.
    `device`: onnxruntime's (type, id) of the buffers fun takes, e.g. Objective.ort_device;
    `m`: the history length, which must be the shipped graph's (None: that one); the callback
    runs after every `callback_every`-th iteration; `cold` as host_lbfgs.minimize."""
    lo, hi = limits(bounds, maxiter, callback_every)
    sessions = step_sessions(*device, threads)
    if m is not None and m != memory(sessions):
        raise ValueError(f"m = {m}: the shipped L-BFGS graph keeps {memory(sessions)} pairs")
    vec = DeviceVectors(fun, x0, lo, hi, sessions, *device)
    return drive(vec, maxiter, callback, maxfun, max_ls, gtol, every=callback_every, cold=cold)
