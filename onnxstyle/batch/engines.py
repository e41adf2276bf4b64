"""Where batch and service work runs. An engine takes work items, anything with an `index` and
`execute(cancel, worker, progress) -> record dict` (a manifest `Task`, a service job), and runs
each on a worker that keeps its loaded model across items. It reports `Event`s: "started",
"progress" (what the item passed to `progress`, in `record`), "retry" (the worker died; the item
goes to the front of the queue) and "finished" (with the item's record). When `cancel` is set it
dispatches nothing more, asks running items to stop (they write their best image and run state)
and returns once they have. An item may carry its own `cancel` event (a service job's): when it
is set, the worker running that item is asked to stop it. Items come as a sequence (a batch), or
through an `Inbox` that a long-lived caller (the service) fills until it closes it.

`LocalEngine` runs worker processes on this box (spawned, one pipe each, so a dead worker's item
is known and retried); `onnxstyle.batch.rayengine.RayEngine` runs Ray actors.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queues
import signal
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Protocol

from onnxstyle.runtime.guard import CancelToken

POLL_S = 0.2  # how often the driver looks at a cancel request while it waits


class Work(Protocol):
    index: int

    def execute(self, cancel: CancelToken, worker: str, progress: Callable[[Any], None] | None = None) -> dict: ...


@dataclass
class Event:
    kind: str  # started | progress | retry | finished
    item: Any  # the Work
    worker: str = ""
    pid: int | None = None
    record: Any = None  # finished: the item's record; progress: what the item reported; retry: why
    attempt: int = 1


OnEvent = Callable[[Event], None]


class Inbox:
    """Items for a running engine, from any thread; `close()` ends `run` once the running items are done."""

    def __init__(self) -> None:
        self.items: queues.Queue = queues.Queue()
        self.closed = False

    def put(self, item: Work) -> None:
        self.items.put(item)

    def take(self) -> Work | None:
        try:
            return self.items.get_nowait()
        except queues.Empty:
            return None

    def close(self) -> None:
        self.closed = True


def worker_name(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def lost(item: Work, attempt: int, retries: int, worker: str, pid: int | None, why: str,
         queue: deque) -> Event:
    """A worker died running `item`: queue it again at the front while it has retries left."""
    if attempt <= retries:
        queue.appendleft((item, attempt + 1))
        return Event("retry", item, worker, pid, {"error": f"worker {worker} died ({why})"}, attempt)
    error = f"its worker died ({why}) on each of {attempt} attempts"
    return Event("finished", item, worker, pid, {"status": "failed", "error": error, "worker": worker}, attempt)


def default_threads(workers: int) -> int:
    """onnxruntime threads per worker: the box's CPUs shared out."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _serve(conn, cancel, threads: int) -> None:
    """A worker process: run the items sent on `conn` until it gets None or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it sets `cancel`
    os.environ.setdefault("ONNXSTYLE_THREADS", str(threads))
    name = worker_name()
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        conn.send(("finished", item.execute(cancel, name, lambda report: conn.send(("progress", report)))))


@dataclass
class _Slot:
    process: Any  # a spawned multiprocessing.Process
    conn: Any  # its end of the pipe
    stop: Any  # its cancel event (set: stop the item it runs)
    item: Any = None  # the Work it runs now
    attempt: int = 0


class LocalEngine:
    """`workers` processes on this box; a worker that dies has its item retried up to `retries`
    times (each time on a fresh process)."""

    name = "local"

    def __init__(self, workers: int = 1, retries: int = 2, threads: int | None = None) -> None:
        self.workers, self.retries = max(1, workers), retries
        self.threads = threads or default_threads(self.workers)

    def _spawn(self, ctx) -> _Slot:
        parent, child = ctx.Pipe()
        stop = ctx.Event()
        process = ctx.Process(target=_serve, args=(child, stop, self.threads), daemon=True, name="onnxstyle-worker")
        process.start()
        child.close()
        return _Slot(process, parent, stop)

    def run(self, items: Sequence[Work] | Inbox, on_event: OnEvent, cancel: CancelToken) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process holding onnxruntime threads
        inbox = items if isinstance(items, Inbox) else None
        queue: deque = deque() if inbox else deque((item, 1) for item in items)
        slots = [self._spawn(ctx) for _ in range(self.workers if inbox else min(self.workers, len(queue)))]
        try:
            while True:
                while inbox and not cancel.is_set() and sum(s.item is None for s in slots) > len(queue):
                    item = inbox.take()
                    if item is None:
                        break
                    queue.append((item, 1))
                for s in slots:
                    if s.item is None and queue and not cancel.is_set():
                        s.item, s.attempt = queue.popleft()
                        s.stop.clear()
                        on_event(Event("started", s.item, worker_name(s.process.pid), s.process.pid, None, s.attempt))
                        try:
                            s.conn.send(s.item)
                        except OSError:
                            pass  # it died while idle: seen below
                for s in slots:  # after dispatch: an item cancelled while queued stops at once
                    own = getattr(s.item, "cancel", None)
                    if s.item is not None and (cancel.is_set() or (own is not None and own.is_set())):
                        s.stop.set()
                busy = [s for s in slots if s.item is not None]
                if not busy and (inbox is None or inbox.closed or cancel.is_set()):
                    return
                wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=POLL_S)
                for i, s in enumerate(slots):
                    if s.item is not None:
                        slots[i] = self._collect(s, queue, on_event, ctx, cancel)
        finally:
            self._close(slots)

    def _collect(self, s: _Slot, queue: deque, on_event: OnEvent, ctx, cancel) -> _Slot:
        """The slot after looking at its worker: its progress, the item's record, or a replaced worker."""
        while True:
            try:
                kind, record = s.conn.recv() if s.conn.poll() else (None, None)
            except (EOFError, OSError):
                kind = None
            if kind == "progress":
                on_event(Event("progress", s.item, worker_name(s.process.pid), s.process.pid, record, s.attempt))
                continue
            if kind == "finished":
                item, s.item = s.item, None
                on_event(Event("finished", item, record.get("worker", ""), s.process.pid, record, s.attempt))
                return s
            break
        if s.process.is_alive():
            return s
        s.process.join()
        code = s.process.exitcode or 0
        why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        on_event(lost(s.item, s.attempt, self.retries, worker_name(s.process.pid), s.process.pid, why, queue))
        s.conn.close()
        return _Slot(s.process, s.conn, s.stop) if cancel.is_set() else self._spawn(ctx)

    @staticmethod
    def _close(slots: list[_Slot]) -> None:
        for s in slots:
            try:
                s.conn.send(None)
            except OSError:
                pass
        for s in slots:
            s.process.join(timeout=10)
            if s.process.is_alive():
                s.process.kill()
                s.process.join()


def make(kind: str, workers: int | None, retries: int, threads: int | None = None, address: str | None = None,
         cpus_per_job: float = 1.0, gpus_per_job: float | None = None, device: str = "auto"):
    """The engine `--engine KIND` names (batch and serve): local needs `workers`; ray's None fits the cluster."""
    from onnxstyle.errors import InputError

    if kind == "local":
        if address is not None:
            raise InputError("--address is for --engine ray")
        return LocalEngine(workers or 1, retries, threads)
    if kind != "ray":
        raise InputError(f"--engine {kind!r}: expected local or ray")
    from onnxstyle.batch.rayengine import RayEngine, import_ray

    import_ray()  # says how to install it when it is missing
    return RayEngine(address, workers, retries, cpus_per_job, gpus_per_job, device)
