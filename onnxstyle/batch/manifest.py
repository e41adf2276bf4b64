"""A batch manifest (CSV or JSON Lines, one job a row) read into `Task`s, and what one task does
on a worker: plan the job from the files present (skip, resume, start afresh) and run it
through `onnxstyle.runtime.job.run`, so a batch job makes exactly what `onnxstyle stylize` makes.

Columns: `content`, `style` (several separated by `;`), optional `output`, and any stylize option
by its StyleOptions name. Relative content, style and init paths resolve against the manifest's
folder, relative outputs against the output folder; an output not given is derived from the two
names (`chelsea_the_scream.png`) and made unique. An unknown column refuses the whole manifest
before anything runs; a bad value fails its row alone (the `error` of its Task), also before
anything runs.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from onnxstyle.errors import InputError, OnnxStyleError, one_line
from onnxstyle.options import FIELDS, INITS, StyleOptions
from onnxstyle.video import is_clip, work_folder

JOB_COLUMNS = ("content", "style", "output")
COLUMNS = JOB_COLUMNS + tuple(FIELDS)
OUTPUT_SUFFIXES = {False: ".png", True: ".mp4"}  # derived outputs: a picture, or a clip for a clip


@dataclass
class Task:
    """One row of a manifest. `error`: why the row cannot run (it is then never dispatched)."""

    index: int  # position in the manifest, from 0
    where: str  # "jobs.csv line 3", for messages
    content: Path | None
    styles: list[Path]
    output: Path
    options: StyleOptions = field(default_factory=StyleOptions)
    checkpoint_every: int = 0
    error: str | None = None

    @property
    def clip(self) -> bool:
        return self.content is not None and is_clip(self.content)

    @property
    def state(self) -> Path:
        """What an unfinished job leaves: its run state (a clip: its folder of finished frames)."""
        from onnxstyle.runtime import checkpoint

        return work_folder(self.output) if self.clip else checkpoint.path_for(self.output)

    def finished(self) -> bool:
        """Written by an earlier run to the end: outputs are written atomically, and a finished
        job leaves no run state (an interrupted one does, beside its best image)."""
        return self.output.is_file() and not self.state.exists()

    def fingerprint(self) -> str:
        """sha256 over what makes the output: the content's, each style's bytes and the options
        that change the result (checkpoint.recorded, as a resume or a clip's frames compare them, and
        the stopping rule and graph)."""
        from onnxstyle.runtime import checkpoint

        h = hashlib.sha256()
        for path in [self.content, *self.styles]:
            with open(path, "rb") as f:
                h.update(f"{os.fstat(f.fileno()).st_size}:".encode())  # each file's length: no bytes shift across
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        # a resume may change these (UNRECORDED), but a finished picture is what they made
        made = {k: v for k, v in self.options.to_dict().items() if k in ("iterations", "until", "model")}
        h.update(json.dumps({**checkpoint.recorded(self.options), **made}, sort_keys=True, default=str).encode())
        return h.hexdigest()

    def record(self, **fields) -> dict:
        """A batch.jsonl line for this task."""
        return {"row": self.where, "content": str(self.content), "style": [str(s) for s in self.styles],
                "output": str(self.output), **fields}

    def execute(self, cancel, worker: str, progress=None) -> dict:
        """Run on a worker (its sessions cached across tasks); never raises for a bad job: the
        record says `status` ok | failed | interrupted, with a one-line `error`. Reports no progress."""
        from onnxstyle.runtime import job as jobs
        from onnxstyle.runtime.prepare import summary

        started = time.time()
        rec = self.record(worker=worker, started=_stamp(started))
        try:
            rec["fingerprint"] = self.fingerprint()  # of the inputs as this run reads them
        except OSError:
            pass  # a missing file: the run below says so
        if self.clip:
            return self._execute_clip(cancel, rec, started)
        try:
            resume = self.state if self.state.is_file() else None
            job = jobs.Job(self.content, self.styles, self.output, self.options, checkpoint_every=self.checkpoint_every,
                           overwrite=True, resume=resume)  # dispatched: unfinished or changed
            out = jobs.run(job, cancel=cancel)
        except Exception as e:  # recorded, and the batch goes on
            status, error, out = "failed", one_line(e), None
        else:
            stopped = out.result is not None and out.result.stopped
            status, error = ("interrupted", None) if stopped else ("ok", None)
            if stopped and out.state is None:  # stopped before its first iteration: nothing to keep
                self.output.unlink(missing_ok=True)
            elif not stopped:
                self.state.unlink(missing_ok=True)  # a finished job leaves no run state
        self._finish(rec, status, error, started)
        if out is not None:
            rec.update(iterations=out.iterations, resumed_from=out.resumed_from)
            if out.result is not None:
                r = out.result
                rec.update(final_loss=r.final.get("total"), final=r.loss, provider=r.provider, **summary(r),
                           memory=r.scales[-1]["memory"] if r.scales else None)
        return rec


    def _execute_clip(self, cancel, rec: dict, started: float) -> dict:
        """A clip on one worker, frame after frame (video.stylize_clip); an interrupted clip keeps
        its finished frames and continues at the next one when run again."""
        from onnxstyle.video import stylize_clip

        try:
            r = stylize_clip(self.content, self.output, self.styles, self.options, overwrite=True, cancel=cancel)
        except Exception as e:  # recorded, and the batch goes on
            return self._finish(rec, "failed", one_line(e), started)
        rec.update(frames=r.frames, resumed_from=r.resumed_at, optimizer=r.optimizer, choice=r.choice,
                   memory=r.records[-1]["memory"] if r.records else None)
        return self._finish(rec, "interrupted" if r.stopped else "ok", None, started)

    @staticmethod
    def _finish(rec: dict, status: str, error: str | None, started: float) -> dict:
        rec.update(status=status, finished=_stamp(time.time()), seconds=round(time.time() - started, 3))
        if error:
            rec["error"] = error
        return rec


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, {column: value}) for each job of a .csv or .jsonl manifest."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path} line {n}: not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path} line {n}: expected a JSON object, one job a line")
                rows.append((n, row))
        return rows
    if path.suffix.lower() != ".csv":
        raise InputError(f"{path}: a manifest is a .csv or a .jsonl file")
    reader = csv.DictReader(text.splitlines())
    rows = []
    for row in reader:
        if None in row:
            raise InputError(f"{path} line {reader.line_num}: more cells than columns")
        if any(v and v.strip() for v in row.values()):
            rows.append((reader.line_num, {k.strip(): v for k, v in row.items() if k is not None}))
    return rows


def check_columns(path: Path, rows: list[tuple[int, dict]]) -> None:
    for n, row in rows:
        for name in row:
            if name not in COLUMNS:
                close = difflib.get_close_matches(name, COLUMNS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise InputError(f"{path} line {n}: unknown column {name!r}{hint}")


def _paths(value, base: Path) -> list[Path]:
    items = value if isinstance(value, list) else str(value).split(";")
    return [base / Path(str(p).strip()).expanduser() for p in items if str(p).strip()]


def derived_name(content: Path | None, styles: list[Path], k: int = 1) -> str:
    stem = content.stem if content else "job"
    suffix = OUTPUT_SUFFIXES[content is not None and is_clip(content)]
    return f"{stem}_{'+'.join(s.stem for s in styles) or 'style'}{f'_{k}' if k > 1 else ''}{suffix}"


def read(path: str | os.PathLike, out_dir: str | os.PathLike, base: StyleOptions | None = None,
         checkpoint_every: int = 0) -> list[Task]:
    """The manifest's tasks, each with its options (`base` overridden by the row's columns)."""
    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    rows = read_rows(path)
    if not rows:
        raise InputError(f"{path}: no jobs in it")
    check_columns(path, rows)
    folder = path.resolve().parent
    tasks = [_task(i, f"{path.name} line {n}", row, folder, out_dir, base, checkpoint_every)
             for i, (n, row) in enumerate(rows)]
    claimed: dict[Path, str] = {}
    for t in tasks:
        if t.output.name:
            claimed.setdefault(t.output, t.where)
    for t in tasks:  # explicit outputs first, then derived ones made unique in manifest order
        if t.output.name:
            if claimed[t.output] != t.where and t.error is None:
                t.error = f"{t.where}: output {t.output} is also written by {claimed[t.output]}"
            continue
        k = 1
        while (name := out_dir / derived_name(t.content, t.styles, k)) in claimed:
            k += 1
        t.output, claimed[name] = name, t.where
    return tasks


def _task(index: int, where: str, row: Mapping, folder: Path, out_dir: Path, base: StyleOptions | None,
          checkpoint_every: int) -> Task:
    given = {k: v for k, v in row.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    content = _paths(given["content"], folder)[0] if "content" in given else None
    styles = _paths(given.get("style", ""), folder)
    output = out_dir / Path(str(given["output"]).strip()).expanduser() if "output" in given else Path("")
    task = Task(index, where, content, styles, output, checkpoint_every=checkpoint_every)
    values = {k: v for k, v in given.items() if k not in JOB_COLUMNS}
    if isinstance(values.get("init"), str) and values["init"] not in INITS:
        values["init"] = str(folder / Path(values["init"]).expanduser())
    try:
        if content is None or not styles:
            raise InputError(f"no {'content' if content is None else 'style'} given")
        task.options = StyleOptions.parse(values, base)
    except OnnxStyleError as e:
        task.error = f"{where}, {e.option}: {e}" if getattr(e, "option", None) else f"{where}: {e}"
    return task
