"""Progress lines of the command line: the clock and one whole line per iteration, read from the
run's Progress (which carries the run-wide step, steps and time left), and how a run shows them."""

from __future__ import annotations

import contextlib

from onnxstyle.runtime.stylize import Progress

LOG_LINES = 20  # progress lines per run when stdout is not a terminal


def clock(seconds: float | None) -> str:
    """1:02:03 / 4:05 (h:mm:ss or m:ss); "?" when unknown."""
    if seconds is None:
        return "?"
    m, sec = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def describe(p: Progress, about: bool = False) -> str:
    """One whole progress line: where the run is, the loss as its weighted parts (they add up to
    the total), time per iteration and time left (`about`: until="converged", an estimate from the measured stops)."""
    h, w = p.image.shape[:2]
    where = f" scale {p.scale + 1}/{p.scales}" if p.scales > 1 else ""
    where += f" frame {p.frame + 1}/{p.frames}" if p.frames else ""
    parts = " + ".join(f"{k} {v:.4g}" for k, v in p.parts.items() if v)
    per = p.elapsed / p.iteration if p.iteration else 0.0
    return (f"{w}x{h}{where} it {p.step}/{p.steps}  loss {p.terms['total']:.4g} = {parts or '0'}  "
            f"{per:.2f} s/it  {'about ' if about else ''}{clock(p.remaining)} left")


class Shown(contextlib.AbstractContextManager):
    """A run's progress on stdout, called with each Progress: a bar on a terminal, else whole lines
    headed `label` (about LOG_LINES per run, and each scale's or frame's first: CI and log files get
    lines nothing cuts); `every` N: a line every N steps instead; `quiet`: nothing. `steps`: the
    run's, as its last Progress said."""

    def __init__(self, label: str, about: bool = False, every: int = 0, quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.label, self.about, self.every, self.fixed = label, about, every, bool(every)
        self.steps = 0
        self.bar = None
        if not quiet and Console().is_terminal and not every:
            left = TextColumn(("~" if about else "") + "{task.fields[left]} left")
            self.bar = Bar(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           left, TextColumn("{task.fields[losses]}"), transient=False)
            self.task = self.bar.add_task("run", total=None, losses="loading...", left="?")
        self.lines = not quiet and self.bar is None

    def __enter__(self) -> Shown:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, p: Progress) -> None:
        self.steps = p.steps
        self.every = self.every or max(1, round(p.steps / LOG_LINES))
        if self.bar is not None:
            self.bar.update(self.task, total=p.steps, completed=p.step, left=clock(p.remaining),
                            losses=describe(p).split("  ")[1])
        elif self.lines and (p.step % self.every == 0 or (not self.fixed and (p.step == 1 or p.iteration == 1))):
            print(f"{self.label} {describe(p, self.about)}", flush=True)
