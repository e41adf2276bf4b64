"""The job side of the service, free of any web framework: a bounded queue whose jobs run on an
engine (`onnxstyle.batch.engines`, as `batch` runs its tasks: workers that keep their loaded
model, a dead worker's job retried once), progress and the best picture so far, cancellation,
expiry, and the figures /metrics shows. The event loop only reads what is here."""

from __future__ import annotations

import io
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxstyle.errors import OnnxStyleError
from onnxstyle.files import atomic_write
from onnxstyle.options import StyleOptions

log = logging.getLogger("onnxstyle.serve")
RETRIES = 1  # a job whose worker died runs once more, then fails with the reason
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class Settings:
    """What `onnxstyle serve` takes; see docs/serve.md."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_queue: int = 8  # jobs waiting (not running) before 429
    token: str | None = None  # Bearer token for /v1/jobs (None: open)
    max_upload: int = 20_000_000  # bytes of one request body
    max_pixels: int = 16_000_000  # per uploaded image, checked from its header
    max_size: int = 1024  # largest `size` (and scale) a job may ask for
    max_iterations: int = 1000  # most iterations per scale a job may ask for
    keep: float = 60.0  # minutes a finished job and its picture are kept
    workdir: Path = Path("onnxstyle-serve")  # the only folder the server writes to
    model: str | None = None
    device: str = "auto"
    threads: int | None = None  # onnxruntime intra-op threads per run (None: the CPUs shared out among workers)
    engine: str = "local"  # where jobs run: local (worker processes) | ray (Ray actors)
    address: str | None = None  # ray: the cluster (None: a local Ray instance)
    cpus_per_job: float = 1.0  # ray: CPUs each job declares
    gpus_per_job: float | None = None  # ray: GPUs each job declares (None: 1 where the cluster has GPUs)


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("the queue is full; retry later")
        self.retry_after = retry_after


class Unavailable(Exception):
    """Not taking jobs: still loading the model, failed to load it, or shutting down."""


@dataclass
class Job:
    id: str
    options: StyleOptions
    content: np.ndarray | None  # uint8 H x W x 3; dropped once the run ends
    styles: list[np.ndarray] | None
    iterations: int  # over all scales
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    iteration: int = 0  # iterations done over all scales (the run's Progress.step)
    remaining: float | None = None  # seconds left (the run's Progress.remaining)
    terms: dict[str, float] = field(default_factory=dict)  # weighted parts and their total (Progress.loss)
    error: str | None = None
    image: np.ndarray | None = None  # the latest picture (uint8) while running
    version: int = 0  # bumped with every new picture
    png: tuple[int, bytes] | None = None  # (version, PNG) cache of `image`
    path: Path | None = None  # the kept picture once finished
    ran: dict = field(default_factory=dict)  # once finished: optimizer, tile, pairs, stop (prepare.summary)
    cancel: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict:
        """The JSON status."""
        now = self.finished or time.time()
        left = 0.0 if self.status in FINISHED else None if self.remaining is None else round(self.remaining, 1)
        return {"id": self.id, "status": self.status, "iteration": self.iteration,
                "iterations": self.iterations, "terms": self.terms, "seconds_left": left,
                "seconds": round(now - self.started, 3) if self.started else None,
                "error": self.error, "image": self.path is not None or self.image is not None,
                **{k: self.ran.get(k) for k in ("optimizer", "tile", "pairs", "stop")}}


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)  # speed over size
    return buf.getvalue()


class Service:
    """Jobs, workers, expiry and metrics. Every method is safe from any thread."""

    def __init__(self, settings: Settings) -> None:
        from onnxstyle.batch.engines import Inbox, make

        self.settings = settings
        self.engine = make(settings.engine, settings.workers, RETRIES, settings.threads, settings.address,
                           settings.cpus_per_job, settings.gpus_per_job, settings.device)
        self.inbox = Inbox()
        self.base = StyleOptions(model=settings.model, device=settings.device, threads=settings.threads)
        self.base = self.base.replace(size=min(self.base.size, settings.max_size))  # a job's default
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.draining = False
        self.busy = 0  # workers running a job
        self.finished_total = dict.fromkeys(FINISHED, 0)
        self.rejected_total = 0
        self.iteration_seconds = [0.0, 0]  # sum, count: seconds per iteration
        self.job_seconds = [0.0, 0]  # sum, count: seconds per finished job (Retry-After)
        self._stop = threading.Event()
        self._last: dict[str, float] = {}  # job id -> when its latest iteration ended
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------- lifecycle

    def connect(self) -> None:
        """Start or reach Ray (--engine ray) now, on the main thread; a failure is one line."""
        connect = getattr(self.engine, "connect", None)
        if connect is not None:
            connect()

    def start(self) -> None:
        self.settings.workdir.mkdir(parents=True, exist_ok=True)
        for i, target in enumerate([self._engine, self._expire]):
            t = threading.Thread(target=target, name=f"onnxstyle-{target.__name__[1:]}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._load()

    def _load(self) -> None:
        """Check the graphs and load the model on a worker with a one-iteration run, so /healthz means ready."""
        from onnxstyle.runtime import models
        from onnxstyle.serve.work import Run

        try:
            models.resolve(self.base.model, pool=self.base.pool)  # the graphs are there (never exported here)
        except Exception as e:  # /healthz and every submission say why, in one line
            self._load_failed(e)
            return
        tiny = np.full((32, 32, 3), 128, np.uint8)
        self.inbox.put(Run(-1, "", self.base.replace(size=32, iterations=1, scales=None), tiny, [tiny]))

    def _load_failed(self, e: Exception | str) -> None:
        self.load_error = e if isinstance(e, str) else str(e) if isinstance(e, OnnxStyleError) \
            else f"unexpected {type(e).__name__}: {e}"
        log.error("cannot load the model: %s", self.load_error)

    def _engine(self) -> None:
        try:
            self.engine.run(self.inbox, self._on_event, self._stop)
        except Exception as e:  # the engine itself broke (no worker could start): say why
            log.exception("engine")
            self._load_failed(e)

    def drain(self) -> None:
        """Stop taking jobs; cancel the queued and running ones (each keeps its best picture)."""
        with self.lock:
            self.draining = True
            jobs = [j for j in self.jobs.values() if j.status in ("queued", "running")]
        for job in jobs:
            self.cancel(job.id)

    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def idle(self) -> bool:
        with self.lock:
            return self.busy == 0

    def stop(self, timeout: float = 2.0) -> None:
        """End the engine; a run still going after `timeout` keeps its latest picture."""
        self.drain()
        self._stop.set()
        self.inbox.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            stuck = [j for j in self.jobs.values() if j.status == "running"]
        for job in stuck:
            self._finish(job, "cancelled", job.image, None, "the server stopped")

    # ------------------------------------------------------------------------------ jobs

    def admit(self) -> None:
        """Raise Unavailable or QueueFull unless a job can be queued now."""
        with self.lock:
            self._admit()

    def _admit(self) -> None:
        if self.draining:
            raise Unavailable("the server is shutting down")
        if not self.ready.is_set():
            raise Unavailable(f"the model failed to load: {self.load_error}" if self.load_error
                              else "the model is still loading; retry shortly")
        waiting = sum(j.status == "queued" for j in self.jobs.values())
        if waiting >= self.settings.max_queue:
            self.rejected_total += 1
            raise QueueFull(self._retry_after(waiting))

    def submit(self, options: StyleOptions, content: np.ndarray, styles: list[np.ndarray]) -> Job:
        iterations = sum(options.iteration_list(content.shape))
        with self.lock:
            self._admit()  # again: others may have filled the queue meanwhile
            job = Job(secrets.token_urlsafe(12), options, content, styles, iterations)
            self.jobs[job.id] = job
        from onnxstyle.serve.work import Run

        self.inbox.put(Run(len(self.jobs), job.id, options, content, styles, job.cancel))
        return job

    def _retry_after(self, waiting: int) -> int:
        total, count = self.job_seconds
        per_job = total / count if count else 10.0
        return max(1, math.ceil(per_job * (waiting + 1) / self.settings.workers))

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """A queued job ends now; a running one at its next iteration."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            job.cancel.set()
            queued = job.status == "queued"
        if queued:
            self._finish(job, "cancelled", None, None, None)
        return job

    def picture(self, job: Job) -> tuple[Path | None, bytes | None]:
        """The finished picture's file, or the latest picture as PNG (or neither yet)."""
        with self.lock:
            path, image, version, cached = job.path, job.image, job.version, job.png
        if path is not None or image is None:
            return path, None
        if cached is not None and cached[0] == version:
            return None, cached[1]
        png = encode_png(image)
        with self.lock:
            job.png = (version, png)
        return None, png

    def _on_event(self, event) -> None:
        """The engine's events (on its thread) into the job's status."""
        run, record = event.item, event.record
        if not run.job:  # the warm-up run
            if event.kind == "finished":
                if record.get("status") == "done":
                    self.ready.set()
                    log.info("model loaded; ready")
                else:
                    self._load_failed(record.get("error") or "the warm-up run did not finish")
            return
        job = self.get(run.job)
        if job is None:
            return
        now = time.perf_counter()
        if event.kind == "started":
            with self.lock:
                if job.status == "queued":  # not cancelled while waiting (then the worker stops it at once)
                    job.status, job.started = "running", time.time()
                self.busy += 1
            self._last[job.id] = now
        elif event.kind == "progress":
            with self.lock:
                job.image, job.terms, job.version = record["image"], record["terms"], job.version + 1
                job.iteration, job.iterations, job.remaining = record["step"], record["steps"], record["remaining"]
                self.iteration_seconds[0] += now - self._last.get(job.id, now)
                self.iteration_seconds[1] += 1
            self._last[job.id] = now
        elif event.kind == "retry":
            log.warning("job %s: %s; retrying", job.id, record["error"])
            with self.lock:
                self.busy -= 1
        elif event.kind == "finished":
            self._last.pop(job.id, None)
            with self.lock:
                self.busy -= 1
            image = record.get("image")
            self._finish(job, record["status"], job.image if image is None else image, record.get("terms"),
                         record.get("error"), record.get("ran"))

    def _finish(self, job: Job, status: str, image: np.ndarray | None, terms: dict | None,
                error: str | None, ran: dict | None = None) -> None:
        """Keep the picture in the working folder and free what the run held."""
        path = None
        if image is not None:
            png = encode_png(image)
            path = atomic_write(self.settings.workdir / f"{job.id}.png", lambda f: f.write(png))
        with self.lock:
            if job.status in FINISHED:  # stop() and the worker may both get here
                return
            job.status, job.error, job.finished = status, error, time.time()
            job.path, job.image, job.png, job.content, job.styles = path, None, None, None, None
            if terms is not None:
                job.terms = dict(terms)
            job.ran = ran or {}
            self.finished_total[status] += 1
            if job.started is not None:
                self.job_seconds[0] += job.finished - job.started
                self.job_seconds[1] += 1

    def _expire(self) -> None:
        """Forget finished jobs and delete their pictures `keep` minutes after they ended."""
        keep = self.settings.keep * 60
        while not self._stop.wait(min(30.0, max(0.2, keep / 4))):
            cutoff = time.time() - keep
            with self.lock:
                old = [j for j in self.jobs.values() if j.status in FINISHED and j.finished < cutoff]
                for job in old:
                    del self.jobs[job.id]
            for job in old:
                if job.path is not None:
                    job.path.unlink(missing_ok=True)

    # --------------------------------------------------------------------------- metrics

    def metrics(self) -> str:
        """Prometheus text format."""
        with self.lock:
            by_status = dict.fromkeys(STATUSES, 0)
            for job in self.jobs.values():
                by_status[job.status] += 1
            lines = [
                "# HELP onnxstyle_jobs Jobs the server holds, by status.",
                "# TYPE onnxstyle_jobs gauge",
                *(f'onnxstyle_jobs{{status="{s}"}} {n}' for s, n in by_status.items()),
                "# HELP onnxstyle_jobs_finished_total Jobs ended since start, by how they ended.",
                "# TYPE onnxstyle_jobs_finished_total counter",
                *(f'onnxstyle_jobs_finished_total{{status="{s}"}} {n}' for s, n in self.finished_total.items()),
                "# HELP onnxstyle_jobs_rejected_total Submissions refused because the queue was full.",
                "# TYPE onnxstyle_jobs_rejected_total counter",
                f"onnxstyle_jobs_rejected_total {self.rejected_total}",
                "# HELP onnxstyle_queue_length Jobs waiting for a worker.",
                "# TYPE onnxstyle_queue_length gauge",
                f"onnxstyle_queue_length {by_status['queued']}",
                "# HELP onnxstyle_workers_busy Workers running a job.",
                "# TYPE onnxstyle_workers_busy gauge",
                f"onnxstyle_workers_busy {self.busy}",
                "# HELP onnxstyle_iteration_seconds Seconds per L-BFGS iteration.",
                "# TYPE onnxstyle_iteration_seconds summary",
                f"onnxstyle_iteration_seconds_sum {self.iteration_seconds[0]:.6f}",
                f"onnxstyle_iteration_seconds_count {self.iteration_seconds[1]}",
                "# HELP onnxstyle_ready 1 once the model is loaded.",
                "# TYPE onnxstyle_ready gauge",
                f"onnxstyle_ready {int(self.ready.is_set())}",
            ]
        return "\n".join(lines) + "\n"
