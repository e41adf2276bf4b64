"""The run guard: cancellation (a token any thread can set) and NaN/Inf faults that keep the last
good image. Output checks are in outputs.py, BLAS threads in blas.py, the CLI's signals in
cli/signals.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from onnxstyle.errors import NumericalError


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
