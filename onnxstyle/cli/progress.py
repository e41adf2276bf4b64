"""Progress lines of the command line: the clock and one whole line per iteration, read from the
run's Progress (which carries the run-wide step, steps and time left)."""

from __future__ import annotations

from onnxstyle.runtime.stylize import Progress


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
    scale = f" scale {p.scale + 1}/{p.scales}" if p.scales > 1 else ""
    parts = " + ".join(f"{k} {v:.4g}" for k, v in p.parts.items() if v)
    per = p.elapsed / p.iteration if p.iteration else 0.0
    return (f"{w}x{h}{scale} it {p.step}/{p.steps}  loss {p.terms['total']:.4g} = {parts or '0'}  "
            f"{per:.2f} s/it  {'about ' if about else ''}{clock(p.remaining)} left")
