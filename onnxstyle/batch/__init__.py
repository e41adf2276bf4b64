"""Many stylize jobs from one manifest (`onnxstyle batch`): bad rows and finished jobs are sorted
out first, the rest run on an engine (worker processes here, or Ray actors), and each job leaves
one line in the folder's batch.jsonl log: status, output, times, final loss, worker, attempt."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onnxstyle.batch.engines import Event, LocalEngine
from onnxstyle.batch.manifest import Task, read
from onnxstyle.runtime.guard import CancelToken

LOG_NAME = "batch.jsonl"


@dataclass
class Summary:
    """Counts over the batch, kept up to date as events arrive (for the progress display)."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    interrupted: int = 0
    skipped: int = 0
    redone: int = 0  # finished before, run again: their inputs or options changed (also counted as they end)
    running: set[int] = field(default_factory=set)
    seconds: list[float] = field(default_factory=list)  # of the jobs that ran to the end
    workers: int = 1  # the most jobs seen running at once
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.interrupted + self.skipped

    def left_s(self) -> float | None:
        """Time left: the mean job time, times the jobs not finished, over the workers."""
        if not self.seconds:
            return None
        return sum(self.seconds) / len(self.seconds) * (self.total - self.done) / max(1, self.workers)


def fingerprints(log: Path) -> dict[str, str]:
    """The fingerprint of each output's newest ok record in `log` (none: made by an older version)."""
    found: dict[str, str] = {}
    if not log.is_file():
        return found
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(rec, dict) and rec.get("status") == "ok" and "output" in rec:
                found[str(rec["output"])] = rec.get("fingerprint", "")
    return found


def run(tasks: Sequence[Task], engine, log: Path, on_event: Callable[[Event, Summary], None] | None = None,
        cancel: CancelToken | None = None) -> Summary:
    """Run `tasks` on `engine` (LocalEngine, RayEngine): rows with an error are recorded as
    failed, finished jobs made from the same inputs and options (the fingerprint of their newest ok
    record) as skipped, and the rest run, a changed finished job as redone; every job appends one
    line to `log`."""
    summary = Summary(total=len(tasks))
    log.parent.mkdir(parents=True, exist_ok=True)
    made = fingerprints(log)
    redo: set[int] = set()
    with open(log, "a", encoding="utf-8") as f:

        def write(record: dict) -> None:
            f.write(json.dumps({"engine": engine.name, **record}, default=str) + "\n")
            f.flush()

        todo = []
        for t in tasks:
            if t.error is not None:
                summary.failed += 1
                write(t.record(status="failed", error=t.error))
            elif t.finished() and made.get(str(t.output)) == _fingerprint(t):
                summary.skipped += 1
                write(t.record(status="skipped"))
            else:
                if t.finished():
                    summary.redone += 1
                    redo.add(t.index)
                todo.append(t)

        retried: dict[int, list[str]] = {}  # item -> why its workers died

        def handle(event: Event) -> None:
            if event.kind == "started":
                summary.running.add(event.item.index)
                summary.workers = max(summary.workers, len(summary.running))
            elif event.kind == "retry":
                summary.running.discard(event.item.index)
                retried.setdefault(event.item.index, []).append(event.record["error"])
            elif event.kind == "finished":
                summary.running.discard(event.item.index)
                record = {**event.item.record(), **event.record, "attempt": event.attempt}
                if event.item.index in retried:
                    record["retried_after"] = retried[event.item.index]
                if event.item.index in redo:
                    record["redone"] = "inputs or options changed"
                status = record["status"]
                setattr(summary, status, getattr(summary, status) + 1)
                if status == "ok":
                    summary.seconds.append(record.get("seconds", 0.0))
                write(record)
            if on_event is not None:
                on_event(event, summary)

        engine.run(todo, handle, cancel or threading.Event())
    return summary


def _fingerprint(task: Task) -> str | None:
    try:
        return task.fingerprint()
    except OSError:
        return None  # an input gone: run it, and its record says why it fails


__all__ = ["Task", "read", "run", "Summary", "LocalEngine", "LOG_NAME"]
