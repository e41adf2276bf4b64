"""The onnxruntime session: device choice, threads, model checks. Sessions are cached and shared
(InferenceSession.run is thread-safe), so a service loads the model once."""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from onnxstyle import layout
from onnxstyle.errors import DeviceError, ModelError

DEVICES = ("auto", "cpu", "cuda")
_lock = threading.Lock()
_cache: dict[tuple, Engine] = {}


@dataclass(frozen=True)
class Engine:
    session: ort.InferenceSession
    provider: str  # the execution provider that runs the graph
    path: Path
    metadata: dict[str, str]


def cuda_usable() -> bool:
    """True when the CUDA provider is built in and an NVIDIA driver is present (no log spam)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def cpu_threads() -> int:
    """Physical cores by default (onnxruntime's own choice), overridable by ONNXSTYLE_THREADS."""
    env = os.environ.get("ONNXSTYLE_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return 0  # 0 = let onnxruntime pick


def _options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # clearly fastest
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # Memory patterns pre-plan one block per input shape; with dynamic sizes they over-allocate:
    # measured at 512 px, peak 1444 -> 849 MB without them, and no slower (benchmarks/README.md).
    so.enable_mem_pattern = False
    # No second, prepacked copy of the weights: measured at 512 px, peak 937 -> 817 MB at the
    # same speed (1.961 s both); the features session drops from 129 to 54 MB resident.
    so.add_session_config_entry("session.disable_prepacking", "1")
    so.log_severity_level = 3
    return so


def load(path: Path, device: str = "auto", threads: int | None = None, kind: str = "loss") -> Engine:
    """Load (or reuse) a checked session for the model at `path` on `device`; `kind` is "loss"
    (loss and gradient) or "features" (the graph beside it that computes targets)."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}: expected one of {', '.join(DEVICES)}")
    path = Path(path).resolve()
    threads = cpu_threads() if threads is None else threads
    try:
        stat = path.stat()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model ({e.strerror})") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size, device, threads, kind)
    with _lock:
        if key in _cache:
            return _cache[key]
        engine = _create(path, device, threads, kind)
        _cache[key] = engine
        return engine


def _create(path: Path, device: str, threads: int, kind: str) -> Engine:
    want_cuda = device == "cuda" or (device == "auto" and cuda_usable())
    if device == "cuda" and not cuda_usable():
        raise DeviceError("device cuda asked for, but no CUDA GPU or onnxruntime-gpu is usable here")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file, not an ONNX model")
    so = _options(threads)
    # The features graph runs once per objective: no arena, so its memory goes back to the
    # system instead of sitting beside the loss graph's for the whole run.
    so.enable_cpu_mem_arena = kind != "features"
    if want_cuda:
        so.log_severity_level = 4  # a failed CUDA start falls back quietly; we report it
    try:
        session = ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        # onnxruntime (>= 1.31) also refuses external data outside the model's directory
        raise ModelError(f"{path}: not an ONNX model onnxruntime can load ({msg[:200]})") from None
    provider = session.get_providers()[0]
    if device == "cuda" and provider != "CUDAExecutionProvider":
        raise DeviceError("device cuda asked for, but onnxruntime could not start its CUDA provider")
    meta = dict(session.get_modelmeta().custom_metadata_map)
    check_interface(session, meta, path, kind)
    return Engine(session, provider, path, meta)


def check_interface(session: ort.InferenceSession, meta: dict[str, str], path: Path, kind: str = "loss") -> None:
    got = meta.get(layout.META_LAYOUT)
    if got is None:
        raise ModelError(f"{path}: not an onnxstyle model (no {layout.META_LAYOUT} metadata)")
    if got != layout.LAYOUT_VERSION:
        raise ModelError(
            f"{path}: graph layout {got}, this onnxstyle needs {layout.LAYOUT_VERSION}: re-export it"
        )
    digest = meta.get(layout.META_WEIGHTS_SHA256, "")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ModelError(f"{path}: no valid {layout.META_WEIGHTS_SHA256} metadata: re-export it")
    if meta.get(layout.META_KIND) != kind:
        raise ModelError(f"{path}: a {meta.get(layout.META_KIND)!r} graph where a {kind!r} graph belongs")
    names = {i.name for i in session.get_inputs()}
    need = {layout.IMAGE, layout.WEIGHTS} if kind == "loss" else {layout.IMAGE}
    if not need <= names:
        raise ModelError(f"{path}: model lacks the onnxstyle inputs")
