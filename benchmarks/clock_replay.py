"""The time left against the real remainder: runs of time_to_picture.py replayed through the Clock.

For each run in benchmarks/results/time_to_picture_{256,512}.json (onnxstyle's default command:
the ladder, each scale until converged, cap 500), its Progress trace is replayed through
`Clock(pixels, iterations, until)`; the time left it shows after the 20th iteration of each
scale is compared with the real remainder of the run. A run whose JSON holds its trace
("trace": [[scale, iteration, elapsed, evaluations], ...]) replays that; the others replay a
trace made from each scale's totals (its seconds and evaluations spread evenly over its
iterations), which keeps the schedule, the stops and the time per scale and loses the noise
within a scale. Compared:
  old        the cap as the iterations to go, later scales by their pixels (exponent 1);
  new        the Clock's defaults (the measured stops, CLOCK_EXPONENT);
  new, held out   the same with each run's own stops left out of the measured stops (the stops
             pool holds this rule's runs: an honest figure for a run the pool did not see).

    python benchmarks/clock_replay.py      # writes benchmarks/results/clock_replay.{json,md}
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from time_to_picture import RULE  # noqa: E402

from onnxstyle import defaults  # noqa: E402
from onnxstyle.options import StyleOptions  # noqa: E402
from onnxstyle.runtime.prepare import evaluated_pixels  # noqa: E402
from onnxstyle.runtime.stylize import Clock, Progress  # noqa: E402

RESULTS = HERE / "results"
AT = 20  # the iteration of each scale where the issue reads the time left


def trace(run: dict) -> tuple[list[tuple[int, int, float, int, float]], float]:
    """(scale, iteration, elapsed, evaluations, wall) for each iteration of the run, and its wall
    time. A recorded trace (time_to_picture.py's rows: scale, iteration, evaluations, wall time
    since the run's start, the time left shown) gives the wall time, not the scale's own elapsed
    time: that is taken from the previous scale's last callback, which shifts only the first
    iteration's estimate (the Clock measures from the end of each scale's first iteration)."""
    o = run["onnxstyle"]
    if "trace" in o:
        out, start, last = [], {}, 0.0
        for scale, iteration, evaluations, wall, _ in o["trace"]:
            k = int(scale)
            start.setdefault(k, last)
            out.append((k, int(iteration), wall - start[k], int(evaluations), wall))
            last = wall
        return out, o["seconds"]
    out, before = [], 0.0
    for k, sc in enumerate(o["scales"]):
        n, e, s = sc["iterations"], sc["evaluations"], sc["seconds"]
        out += [(k, i, s * i / n, max(i, round(e * i / n)), before + s * i / n) for i in range(1, n + 1)]
        before += s
    return out, before


def replay(clock: Clock, steps: list[tuple[int, int, float, int, float]]) -> list[float | None]:
    """The clock's time left after each step, in order."""
    return [clock.remaining(Progress(i, 0, {}, lambda: None, elapsed, evaluations=ev, scale=k))
            for k, i, elapsed, ev, _ in steps]


def errors(run: dict, clock: Clock) -> list[float]:
    """Per scale: time left shown after its AT-th iteration / the real remainder - 1."""
    steps, total = trace(run)
    return [left / (total - wall) - 1 for (_, i, _, _, wall), left in zip(steps, replay(clock, steps), strict=True)
            if i == AT]


def current_rule(run: dict) -> bool:
    """Whether the run stopped under the rule as it is now (the rule each row records)."""
    return run.get("rule") == RULE


def main() -> None:
    runs = [(size, run) for size in (256, 512)
            for run in json.loads((RESULTS / f"time_to_picture_{size}.json").read_text())]
    rows = []
    for size, run in runs:
        sc = run["onnxstyle"]["scales"]
        caps = [defaults.ITERATIONS] * len(sc)  # each scale's pixels evaluated, the look term's where it ran
        pixels = [evaluated_pixels(StyleOptions(look_size=defaults.LOOK_SIZE if "look" in s["final"] else None),
                                   s["size"], s["size"]) for s in sc]
        own = [s["iterations"] for s in sc]
        pool = list(defaults.CONVERGED_STOPS)
        if current_rule(run):
            for s in own:
                pool.remove(s)
        rows.append({
            "size": size, "pair": run["pair"], "shape": run["size"], "rule": current_rule(run),
            "note": run.get("note", ""), "stops": own, "seconds": [round(s["seconds"], 1) for s in sc],
            "replayed": "trace" if "trace" in run["onnxstyle"] else "scale totals",
            "old": errors(run, Clock(pixels, caps, "iterations", exponent=1.0)),
            "new": errors(run, Clock(pixels, caps, "converged")),
            "held_out": errors(run, Clock(pixels, caps, "converged", stops=pool)),
        })
    summary = {}
    for name, keep in (("current rule", lambda r: r["rule"]), ("all runs", lambda r: True)):
        chosen = [r for r in rows if keep(r)]
        summary[name] = {"points": sum(len(r["old"]) for r in chosen)} | {
            k: {"median_abs": statistics.median(abs(e) for r in chosen for e in r[k]),
                "median": statistics.median(e for r in chosen for e in r[k]),
                "within_30": sum(abs(e) <= 0.3 for r in chosen for e in r[k])}
            for k in ("old", "new", "held_out")}
    commit = subprocess.run(["git", "-C", str(HERE), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    (RESULTS / "clock_replay.json").write_text(json.dumps({"at": AT, "commit": commit, "rows": rows,
                                                           "summary": summary}, indent=1))
    lines = [
        "# The time left against the real remainder (issue 25)",
        "",
        f"`python benchmarks/clock_replay.py` (onnxstyle commit {commit}): each run of `time_to_picture_256.json`",
        "and `time_to_picture_512.json`"
        f" replayed through `Clock`; the time left shown after iteration {AT} of each scale / the real remainder - 1",
        "(+: too high). A run without a recorded trace (column 'from'): each scale's totals (seconds, evaluations)",
        "spread evenly over",
        "its iterations (the schedule, the stops and the time per scale kept; the noise within a scale lost).",
        "old: the cap (500) as the iterations to go, later scales by their pixels; new: the measured stops",
        "(`defaults.CONVERGED_STOPS`) and `CLOCK_EXPONENT`; held out: new with the run's own stops taken out",
        "of the pool.",
        "",
        "| size | pair | from | stops | old | new | new, held out |",
        "|---|---|---|---|---|---|---|",
    ]
    fmt = lambda es: ", ".join(f"{e:+.0%}" for e in es)  # noqa: E731
    for r in rows:
        tag = "" if r["rule"] else " (earlier rule)"
        lines.append(f"| {r['size']} | {r['pair']} {r['shape'][1]}x{r['shape'][0]}{tag} | {r['replayed']} | "
                     f"{', '.join(map(str, r['stops']))} | {fmt(r['old'])} | {fmt(r['new'])} | {fmt(r['held_out'])} |")
    lines += ["", "| runs | points | median abs. error: old / new / held out | within 30 %: old / new / held out |",
              "|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['points']} | {s['old']['median_abs']:.0%} / {s['new']['median_abs']:.0%} / "
                     f"{s['held_out']['median_abs']:.0%} | {s['old']['within_30']} / {s['new']['within_30']} / "
                     f"{s['held_out']['within_30']} |")
    (RESULTS / "clock_replay.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
