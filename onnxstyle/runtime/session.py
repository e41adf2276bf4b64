"""The onnxruntime session: device choice, threads, model checks. Sessions are cached and shared
(InferenceSession.run is thread-safe), so a service loads the model once.

CUDA: onnxruntime-gpu 1.31 is a CUDA 13 build whose provider library has no RPATH, so the CUDA,
cuBLAS and cuDNN libraries are preloaded (onnxruntime.preload_dlls(): from the nvidia-* Python
packages that `onnxruntime-gpu[cuda,cudnn]` or PyTorch install) before a CUDA session starts.
Why CUDA cannot run is found out, not hidden: `--device cuda` fails with the reason, and `auto`
runs on the CPU and carries the reason in Engine.note when a GPU driver is present."""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from onnxstyle import layout
from onnxstyle.errors import DeviceError, ModelError
from onnxstyle.options import CUDNN_SEARCHES, DEVICES, PRECISIONS, check_choice

CUDA = "CUDAExecutionProvider"
_lock = threading.Lock()
_cache: dict[tuple, Engine] = {}


@dataclass(frozen=True)
class Engine:
    session: ort.InferenceSession
    provider: str  # the execution provider that runs the graph
    path: Path
    metadata: dict[str, str]
    gpu: str = ""  # the GPU's name when on CUDA
    precision: str = "fp32"  # what convolutions and matrix products run in ("tf32" on CUDA only)
    note: str = ""  # device "auto" on a machine with a GPU driver: why it runs on the CPU


@functools.cache
def cuda_problem() -> tuple[str, bool] | None:
    """None when a CUDA session can start here, else (why not, whether a GPU driver is present).
    Loads the CUDA libraries (once) as a side effect."""
    if CUDA not in ort.get_available_providers():
        return "onnxruntime has no CUDA provider (install onnxruntime-gpu, not onnxruntime)", False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver here (libcuda.so.1 not found)", False
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # CUDA, cuBLAS, cuDNN from the nvidia-* packages, if installed
        except Exception:  # noqa: BLE001 - a missing package shows up just below, with its name
            pass
    capi = Path(ort.__file__).parent / "capi"
    try:
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(capi / "libonnxruntime_providers_cuda.so"))
    except OSError as e:
        return (f"onnxruntime's CUDA provider cannot load ({e}); onnxruntime-gpu {ort.__version__} "
                "needs the CUDA 13 and cuDNN 9 libraries: pip install 'onnxruntime-gpu[cuda,cudnn]', "
                "or put them on LD_LIBRARY_PATH"), True
    return None


@functools.cache
def gpu_name(device_id: int = 0) -> str:
    """The GPU's name from the CUDA driver API (no nvidia-smi needed)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        dev, name = ctypes.c_int(), ctypes.create_string_buffer(256)
        if cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(dev), device_id):
            return "unknown GPU"
        cuda.cuDeviceGetName(name, 256, dev)
        return name.value.decode(errors="replace")
    except OSError:
        return "unknown GPU"


def gpu_free_memory(device_id: int = 0) -> int | None:
    """Free bytes on the GPU: from the CUDA driver (its primary context, the one onnxruntime's
    CUDA provider uses), else nvidia-smi's memory.free, else None (onnxruntime's Python API does not
    expose it). None means no GPU limit is known: the plan then uses --max-memory alone."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        if not (cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(dev), device_id)
                or cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)):
            try:
                if not cuda.cuCtxPushCurrent_v2(ctx):
                    ok = not cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total))
                    cuda.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
                    if ok:
                        return int(free.value)
            finally:
                cuda.cuDevicePrimaryCtxRelease_v2(dev)
    except (OSError, AttributeError):
        pass
    try:
        out = subprocess.run(["nvidia-smi", f"--id={device_id}", "--query-gpu=memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
        return int(out.stdout.split()[0]) << 20 if out.returncode == 0 else None  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def runs_on_cuda(device: str) -> bool:
    """Whether a session for `device` ("cpu", "cuda", "auto") asks for the CUDA provider here."""
    return device != "cpu" and cuda_problem() is None


def cuda_options(precision: str, cudnn_search: str) -> dict[str, str]:
    """The CUDA provider's options: TF32 (onnxruntime's default) or strict FP32 for convolutions
    and GEMMs; cuDNN's algorithm search (heuristic: no timing run at each new image size)."""
    return {"device_id": "0", "use_tf32": "1" if precision == "tf32" else "0",
            "cudnn_conv_algo_search": cudnn_search.upper(), "cudnn_conv_use_max_workspace": "1",
            "do_copy_in_default_stream": "1"}


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


def load(path: Path, device: str = "auto", threads: int | None = None, kind: str = "loss",
         precision: str = "tf32", cudnn_search: str = "heuristic") -> Engine:
    """Load (or reuse) a checked session for the model at `path` on `device`; `kind` is "loss"
    (loss and gradient) or "features" (the graph beside it that computes targets); `precision`
    and `cudnn_search` apply on CUDA (onnxstyle.options says what each means)."""
    check_choice("device", device, DEVICES)
    check_choice("precision", precision, PRECISIONS)
    check_choice("cudnn search", cudnn_search, CUDNN_SEARCHES)
    path = Path(path).resolve()
    threads = cpu_threads() if threads is None else threads
    try:
        stat = path.stat()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model ({e.strerror})") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size, device, threads, kind, precision, cudnn_search)
    with _lock:
        if key in _cache:
            return _cache[key]
        engine = _create(path, device, threads, kind, precision, cudnn_search)
        _cache[key] = engine
        return engine


def _create(path: Path, device: str, threads: int, kind: str, precision: str, cudnn_search: str) -> Engine:
    problem = cuda_problem() if device != "cpu" else None
    if device == "cuda" and problem:
        raise DeviceError(f"device cuda: {problem[0]}")
    want_cuda = runs_on_cuda(device)
    note = problem[0] if device == "auto" and problem and problem[1] else ""
    providers: list = [(CUDA, cuda_options(precision, cudnn_search))] if want_cuda else []
    providers.append("CPUExecutionProvider")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file, not an ONNX model")
    so = _options(threads)
    # The features graph runs once per objective: no arena, so its memory goes back to the
    # system instead of sitting beside the loss graph's for the whole run.
    so.enable_cpu_mem_arena = kind != "features"
    try:
        session = ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        # onnxruntime (>= 1.31) also refuses external data outside the model's directory
        raise ModelError(f"{path}: not an ONNX model onnxruntime can load ({msg[:200]})") from None
    provider = session.get_providers()[0]
    if want_cuda and provider != CUDA:
        why = "onnxruntime could not start its CUDA provider (its log above says why)"
        if device == "cuda":
            raise DeviceError(f"device cuda: {why}")
        note = why
    meta = dict(session.get_modelmeta().custom_metadata_map)
    check_interface(session, meta, path, kind)
    on_gpu = provider == CUDA
    return Engine(session, provider, path, meta, gpu_name() if on_gpu else "",
                  precision if on_gpu else "fp32", note)


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
