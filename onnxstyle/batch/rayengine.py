"""The Ray engine: each worker is a Ray actor that keeps one loaded model (sessions are cached per
process) and runs one item at a time; Ray places the actors by the resources each job declares
(`num_cpus`, `num_gpus`: 0.25 packs four jobs per GPU). An actor that dies (killed process, lost
node) has its item retried on a fresh actor, up to `retries` times. Ray is optional:
`pip install 'onnxstyle[ray]'`."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onnxstyle.batch.engines import POLL_S, Event, Inbox, OnEvent, Work, lost, worker_name
from onnxstyle.errors import InputError
from onnxstyle.runtime.guard import CancelToken

RAY_MISSING = "the ray engine needs Ray: pip install 'onnxstyle[ray]'"
START_S = 300  # how long an actor may take to start (a busy cluster, a new node)


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


def ray_tmp() -> str:
    """Where a local Ray instance keeps its session: RAY_TMPDIR, else Ray's usual /tmp/ray (not TMPDIR,
    which serve points into its working folder)."""
    return os.environ.get("RAY_TMPDIR") or "/tmp/ray"


class StyleWorker:
    """The actor (made one by `ray.remote` in RayEngine.run). Threaded (max_concurrency 3) so that
    `stop` and `reports` reach it while `run` works. Each run has its number, so a `stop` for a
    run the actor has not begun yet still stops it."""

    def __init__(self, threads: int) -> None:
        os.environ.setdefault("ONNXSTYLE_THREADS", str(threads))
        self.name = worker_name()
        self.lock = threading.Lock()
        self.cancels: dict[int, threading.Event] = {}
        self.queued: list = []  # progress reports not yet taken by the engine

    def hello(self) -> tuple[str, int]:
        return self.name, os.getpid()

    def _cancel(self, run: int) -> threading.Event:
        with self.lock:
            return self.cancels.setdefault(run, threading.Event())

    def run(self, item: Work, run: int) -> dict:
        def progress(report) -> None:
            with self.lock:
                self.queued.append(report)

        try:
            return item.execute(self._cancel(run), self.name, progress)
        finally:
            with self.lock:
                self.cancels.pop(run, None)

    def reports(self) -> list:
        """The progress reports since the last call."""
        with self.lock:
            taken, self.queued = self.queued, []
        return taken

    def stop(self, run: int) -> None:
        self._cancel(run).set()


@dataclass
class _Actor:
    handle: Any
    name: str
    pid: int


class RayEngine:
    """`address`: None starts a local Ray instance (`num_cpus` of this box, default all), else
    "auto" or "ray://head:10001". `workers`: actors (default: as many as the cluster fits).
    `gpus_per_job` None: 1 when the cluster has GPUs and `device` is not "cpu", else 0."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, retries: int = 2,
                 cpus_per_job: float = 1.0, gpus_per_job: float | None = None, device: str = "auto",
                 num_cpus: int | None = None) -> None:
        self.address, self.retries, self.num_cpus = address, retries, num_cpus
        self.cpus, self.gpus = cpus_per_job, gpus_per_job
        self.workers, self.device = workers, device
        self.started = False  # this engine started Ray, so it shuts it down

    def connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if self.address:
                    ray.init(address=self.address, **quiet)
                else:
                    # its sockets live in its session folder: a short path (AF_UNIX allows 107 bytes)
                    ray.init(num_cpus=self.num_cpus, _node_ip_address="127.0.0.1", _temp_dir=ray_tmp(), **quiet)
            except Exception as e:  # no cluster there, a bad address, a port in use
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                why = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise InputError(f"cannot start or reach {where}: {why}") from None
            self.started = True
        return ray

    def actor_count(self, ray, items: int) -> int:
        have = ray.cluster_resources()
        cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
        if self.gpus is None:
            self.gpus = 1.0 if gpus and self.device != "cpu" else 0.0
        fits = min(cpus // self.cpus if self.cpus else items, gpus // self.gpus if self.gpus else items)
        if fits < 1:
            raise InputError(f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs; a job asks for "
                             f"{self.cpus:g} CPUs and {self.gpus:g} GPUs")
        return int(max(1, min(self.workers or fits, fits, items)))

    def run(self, items: Sequence[Work] | Inbox, on_event: OnEvent, cancel: CancelToken) -> None:
        ray = self.connect()
        try:
            self._run(ray, items, on_event, cancel)
        finally:
            if self.started:
                ray.shutdown()
                self.started = False

    def _run(self, ray, items: Sequence[Work] | Inbox, on_event: OnEvent, cancel: CancelToken) -> None:
        from ray.exceptions import GetTimeoutError, RayActorError, RayError

        inbox = items if isinstance(items, Inbox) else None
        queue: deque = deque() if inbox else deque((item, 1) for item in items)
        if not queue and not inbox:
            return
        count = self.actor_count(ray, self.workers or 1 if inbox else len(queue))
        actor_class = ray.remote(StyleWorker).options(num_cpus=self.cpus, num_gpus=self.gpus, max_concurrency=3,
                                                      max_restarts=0, max_task_retries=0)
        threads = max(1, int(self.cpus))

        def start(n: int) -> list[_Actor]:
            handles = [actor_class.remote(threads) for _ in range(n)]
            try:
                hellos = ray.get([h.hello.remote() for h in handles], timeout=START_S)
            except GetTimeoutError:
                raise InputError(f"Ray started no worker within {START_S} s: does the cluster have "
                                 f"{self.cpus:g} CPUs and {self.gpus:g} GPUs free?") from None
            return [_Actor(h, name, pid) for h, (name, pid) in zip(handles, hellos, strict=True)]

        def report(actor: _Actor, item: Work, attempt: int) -> None:
            """Pass on the actor's progress reports (none when it died: its run's result says so)."""
            try:
                taken = ray.get(actor.handle.reports.remote(), timeout=START_S)
            except RayError:
                return
            for record in taken:
                on_event(Event("progress", item, actor.name, actor.pid, record, attempt))

        idle = start(count)
        running: dict[Any, tuple[_Actor, Work, int, int]] = {}  # result ref -> actor, item, attempt, run number
        stopped: set[int] = set()  # run numbers asked to stop
        runs = 0
        try:
            while True:
                while inbox and not cancel.is_set() and len(idle) > len(queue):
                    item = inbox.take()
                    if item is None:
                        break
                    queue.append((item, 1))
                while idle and queue and not cancel.is_set():
                    actor = idle.pop()
                    item, attempt = queue.popleft()
                    runs += 1
                    on_event(Event("started", item, actor.name, actor.pid, None, attempt))
                    running[actor.handle.run.remote(item, runs)] = (actor, item, attempt, runs)
                for actor, item, _, run in running.values():  # after dispatch: a cancelled item stops at once
                    own = getattr(item, "cancel", None)
                    if run not in stopped and (cancel.is_set() or (own is not None and own.is_set())):
                        stopped.add(run)
                        actor.handle.stop.remote(run)
                if not running and (inbox is None or inbox.closed or cancel.is_set()):
                    return
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S) if running else ([], [])
                if not running:
                    time.sleep(POLL_S)
                for actor, item, attempt, _ in list(running.values()):
                    report(actor, item, attempt)
                for ref in done:
                    actor, item, attempt, _ = running.pop(ref)
                    try:
                        record = ray.get(ref)
                    except RayActorError as e:
                        on_event(lost(item, attempt, self.retries, actor.name, actor.pid, type(e).__name__, queue))
                        if not cancel.is_set() and (queue or inbox):
                            idle += start(1)  # Ray places it where there is room
                        continue
                    except RayError as e:  # the task itself broke (e.g. a KeyboardInterrupt in the actor)
                        why = getattr(e, "cause", None) or e
                        error = (f"{type(why).__name__}: {why}".strip().splitlines() or ["?"])[0][:300]
                        record = {"status": "interrupted" if cancel.is_set() else "failed", "error": error,
                                  "worker": actor.name}
                    report(actor, item, attempt)  # the reports sent before it finished
                    idle.append(actor)
                    on_event(Event("finished", item, actor.name, actor.pid, record, attempt))
        finally:
            for actor, _, _, _ in running.values():
                ray.kill(actor.handle)
            for actor in idle:
                ray.kill(actor.handle)
