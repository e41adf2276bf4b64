"""Guards around a run: option checks before any work, output-path checks, cancellation,
signal handling for the CLI, NaN/Inf faults that keep the last good image, and a BLAS thread
limit that is safe when many threads run stylize at once."""

from __future__ import annotations

import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from onnxstyle.errors import InputError, NumericalError
from onnxstyle.layers import canonical

MIN_SIZE, MAX_SIZE = 16, 8192  # as stylize.prepare: VGG needs >= 16 px; 8192 bounds the graph
DEVICES = ("auto", "cpu", "cuda")  # as session.DEVICES (not imported: keeps onnxruntime out)
INITS = ("noise", "content", "random")  # as stylize.INITS


# ---------------------------------------------------------------------------------- options


def check_number(name: str, value, low: float = 0.0) -> float:
    """A finite float >= low, or an InputError naming the option."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < low:
        raise InputError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return v


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        within = f"within {low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{name} must be {within}, got {value}")
    return value


def check_layers(what: str, spec: Mapping[str, float] | Sequence[str] | None) -> None:
    if spec is None:
        return
    if isinstance(spec, str):
        raise InputError(f"{what} layers: give a list or a mapping, not the string {spec!r}")
    items = spec.items() if isinstance(spec, Mapping) else ((n, 1.0) for n in spec)
    count = 0
    for name, w in items:
        count += 1
        try:
            canonical(str(name))
        except ValueError as e:
            raise InputError(f"{what} layers: {e}") from None
        check_number(f"{what} layer {name} weight", w)
    if count == 0:
        raise InputError(f"{what} layers: none given")


def check_blend(blend: Sequence[float] | None, n_styles: int) -> None:
    if blend is None:
        return
    values = [check_number("style blend weight", v) for v in blend]
    if len(values) != n_styles:
        raise InputError(f"style blend has {len(values)} weights for {n_styles} style images")
    if sum(values) <= 0:
        raise InputError("style blend weights must not all be zero")


def check_options(*, size: int | None = None, iterations: int | None = None,
                  content_weight: float | None = None, style_weight: float | None = None,
                  tv_weight: float | None = None, device: str | None = None,
                  init: str | None = None, noise_ratio: float | None = None,
                  content_layers=None, style_layers=None,
                  style_blend: Sequence[float] | None = None, n_styles: int = 1,
                  checkpoint_every: int | None = None) -> None:  # fmt: skip
    """Refuse nonsense options before any image is read or model loaded."""
    if size is not None:
        check_int("size", size, MIN_SIZE, MAX_SIZE)
    if iterations is not None:
        check_int("iterations", iterations, 1)
    for name, v in (("content weight", content_weight), ("style weight", style_weight),
                    ("tv weight", tv_weight)):  # fmt: skip
        if v is not None:
            check_number(name, v)
    if noise_ratio is not None and not 0.0 <= check_number("noise ratio", noise_ratio) <= 1.0:
        raise InputError(f"noise ratio {noise_ratio} must be within 0..1")
    if device is not None and device not in DEVICES:
        raise InputError(f"unknown device {device!r}: expected one of {', '.join(DEVICES)}")
    if isinstance(init, str) and init not in INITS:
        raise InputError(f"unknown init {init!r}: expected one of {', '.join(INITS)} or an image")
    check_layers("content", content_layers)
    check_layers("style", style_layers)
    check_blend(style_blend, n_styles)
    if checkpoint_every is not None:
        check_int("checkpoint every", checkpoint_every, 0)


# ------------------------------------------------------------------------------ output path


def check_writable_dir(path: Path, what: str = "") -> None:
    """Refuse when the directory of `path` is missing or cannot take a new file. Probes with a
    real temporary file, so read-only mounts are caught even for root."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{what}{path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{what}{path}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise InputError(f"{what}{path}: directory {parent} is not writable "
                         f"({e.strerror or e})") from None  # fmt: skip
    os.close(fd)
    os.unlink(probe)


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a bad output image path before any work starts."""
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give an image file name")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise InputError(f"{path}: unknown image extension {path.suffix!r} (use .png or .jpg)")
    check_writable_dir(path, "output ")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (use --overwrite to replace it)")
    return path


# ---------------------------------------------------------------------- cancellation, faults


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


def cancel_token() -> threading.Event:
    """A token for stylize(cancel=...): call .set() from any thread to stop the run."""
    return threading.Event()


class RunGuard:
    """Wraps a stylize callback: remembers the last good iterate, stops the run when the
    callback returns False or the cancel token is set, and gives a NumericalError the last good
    image. Not shared between runs."""

    def __init__(self, callback: Callable | None = None, cancel: CancelToken | None = None,
                 offset: int = 0) -> None:  # fmt: skip
        self.user_callback = callback
        self.cancel = cancel
        self.offset = offset  # iterations done before this run (a resumed run)
        self.last = None  # the last Progress seen
        self.cancelled = False

    def callback(self, progress) -> bool | None:
        self.last = progress
        if self.user_callback is not None and self.user_callback(progress) is False:
            return False
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
            return False
        return None

    @property
    def iteration(self) -> int:
        return self.offset + (self.last.iteration if self.last is not None else 0)

    @contextmanager
    def numerics(self) -> Iterator[None]:
        """Fill a NumericalError with the last good image and where the run was."""
        try:
            yield
        except NumericalError as e:
            if self.last is not None:
                e.image = np.clip(self.last.image + 0.5, 0, 255).astype(np.uint8)
            e.iteration = self.iteration
            kept = "; the last good image is kept" if e.image is not None else ""
            what = e.args[0] if e.args else "NaN or Inf"
            e.args = (f"{what} after iteration {e.iteration}{kept}",)
            raise


# ---------------------------------------------------------------------------- CLI signals


class Interrupt:
    """Set by the first SIGINT/SIGTERM: the run stops at its next iteration. `code` is the exit
    status (128 + the signal: 130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self) -> None:
        self.token = threading.Event()
        self.signum: int | None = None

    @property
    def code(self) -> int:
        return 128 + (self.signum or 0)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


@contextmanager
def interruptible(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[Interrupt]:
    """Catch SIGINT/SIGTERM (main thread only) so a run ends cleanly; a second signal stops at
    once with KeyboardInterrupt. Elsewhere this does nothing."""
    state = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame) -> None:
        if state.token.is_set():  # the second one: give up waiting
            raise KeyboardInterrupt
        state.signum = signum
        state.token.set()

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------- BLAS threads

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def blas_single_thread() -> Iterator[None]:
    """threadpoolctl's limit is process-wide: with several runs in threads, the first to finish
    would lift it under the others. This counts users; the last one out restores it."""
    global _blas_users, _blas_limiter
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
