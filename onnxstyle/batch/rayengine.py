"""The Ray engine: each worker is a Ray actor that keeps one loaded model (sessions are cached per
process) and runs one item at a time; Ray places the actors by the resources each job declares
(`num_cpus`, `num_gpus`: 0.25 packs four jobs per GPU). An actor that dies (killed process, lost
node) has its item retried on a fresh actor, up to `retries` times. Ray is optional:
`pip install 'onnxstyle[ray]'`."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onnxstyle.batch.engines import POLL_S, Event, OnEvent, Work, lost, worker_name
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


class StyleWorker:
    """The actor (made one by `ray.remote` in RayEngine.run). Threaded (max_concurrency 2) so that
    `stop` reaches it while `run` works."""

    def __init__(self, threads: int) -> None:
        os.environ.setdefault("ONNXSTYLE_THREADS", str(threads))
        self.cancel = threading.Event()
        self.name = worker_name()

    def hello(self) -> tuple[str, int]:
        return self.name, os.getpid()

    def run(self, item: Work) -> dict:
        return item.execute(self.cancel, self.name)

    def stop(self) -> None:
        self.cancel.set()


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
                    ray.init(num_cpus=self.num_cpus, **quiet)
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

    def run(self, items: Sequence[Work], on_event: OnEvent, cancel: CancelToken) -> None:
        ray = self.connect()
        try:
            self._run(ray, items, on_event, cancel)
        finally:
            if self.started:
                ray.shutdown()
                self.started = False

    def _run(self, ray, items: Sequence[Work], on_event: OnEvent, cancel: CancelToken) -> None:
        from ray.exceptions import GetTimeoutError, RayActorError, RayError

        queue: deque = deque((item, 1) for item in items)
        if not queue:
            return
        count = self.actor_count(ray, len(queue))
        actor_class = ray.remote(StyleWorker).options(num_cpus=self.cpus, num_gpus=self.gpus, max_concurrency=2,
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

        idle = start(count)
        running: dict[Any, tuple[_Actor, Work, int]] = {}
        stopping = False
        try:
            while True:
                if cancel.is_set() and not stopping:
                    stopping = True
                    for actor, _, _ in running.values():
                        actor.handle.stop.remote()
                while idle and queue and not stopping:
                    actor = idle.pop()
                    item, attempt = queue.popleft()
                    on_event(Event("started", item, actor.name, actor.pid, None, attempt))
                    running[actor.handle.run.remote(item)] = (actor, item, attempt)
                if not running:
                    return
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in done:
                    actor, item, attempt = running.pop(ref)
                    try:
                        record = ray.get(ref)
                    except RayActorError as e:
                        on_event(lost(item, attempt, self.retries, actor.name, actor.pid, type(e).__name__, queue))
                        if not stopping and queue:
                            idle += start(1)  # Ray places it where there is room
                        continue
                    except RayError as e:  # the task itself broke (e.g. a KeyboardInterrupt in the actor)
                        why = getattr(e, "cause", None) or e
                        error = (f"{type(why).__name__}: {why}".strip().splitlines() or ["?"])[0][:300]
                        record = {"status": "interrupted" if stopping else "failed", "error": error,
                                  "worker": actor.name}
                    idle.append(actor)
                    on_event(Event("finished", item, actor.name, actor.pid, record, attempt))
        finally:
            for actor, _, _ in running.values():
                ray.kill(actor.handle)
            for actor in idle:
                ray.kill(actor.handle)
