"""SIGINT/SIGTERM for the command line: the first stops the run at its next iteration (the work
is kept), a second gives up at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


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
