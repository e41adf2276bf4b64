"""Guards around a run: output-path checks before any work, cancellation,
signal handling for the CLI, NaN/Inf faults that keep the last good image, and a BLAS thread
limit that is safe when many threads run stylize at once."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from onnxstyle.errors import InputError, NumericalError

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
                         f"({e.strerror or e})") from None
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

    def __init__(self, callback: Callable | None = None, cancel: CancelToken | None = None) -> None:
        self.user_callback = callback
        self.cancel = cancel
        self.last = None  # the last Progress seen

    def callback(self, progress) -> bool | None:
        self.last = progress
        if self.user_callback is not None and self.user_callback(progress) is False:
            return False
        if self.cancel is not None and self.cancel.is_set():
            return False
        return None

    @property
    def iteration(self) -> int:
        return self.last.step if self.last is not None else 0

    @contextmanager
    def numerics(self) -> Iterator[None]:
        """Fill a NumericalError with the last good image and where the run was."""
        try:
            yield
        except NumericalError as e:
            try:  # (lbfgs-device: unless read during its callback, the image is gone by now)
                e.image = None if self.last is None else np.clip(self.last.image + 0.5, 0, 255).astype(np.uint8)
            except RuntimeError:
                e.image = None
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
