"""Every figure table in README.md and docs/*.md, from the files in benchmarks/results/ (issue 23).
    python benchmarks/report.py [NAMES...]   run those benchmarks (default: all), then rewrite the tables
    python benchmarks/report.py --tables     rewrite the tables from the results files (no benchmark runs)
    python benchmarks/report.py --check      exit 1 when a table differs from its results file (CI; seconds)
    python benchmarks/report.py --list       the benchmarks and the results files each writes
A benchmark starts only on a quiet machine: with the 1-minute load average above the core count
it refuses (--busy runs it anyway). After it, each results file it wrote gets an entry in
results/provenance.json: the commit, the machine, the load before and after, the CPU that other
processes used while it ran (others_cpu, in cores: the machine's busy time from /proc/stat less
the benchmark's own), and busy: true when the load before was above the core count or others
used more than OTHERS_LIMIT cores on average (the load after counts the benchmark itself: a
two-thread benchmark on two cores ends at a load of 2 on a quiet machine, so it is not the test
where others_cpu is measured); a table built from a busy file says so in its caption.
A table sits between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->` (NAME one of TABLES);
the lines between are this script's, so a number in a table comes from a results file or is not
there (a table whose file was never written, nor has an entry, says so, and fills in when its
benchmark runs). A results file that README.md or docs/*.md cite in prose (`benchmarks/results/NAME`) must
be there and have its entry too, so every figure traces to a file with its commit and load.
Entries for files measured before this script were read from git (the commit that last wrote
the file, and the load it records, if any): "source": "git log".
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PROVENANCE = RESULTS / "provenance.json"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CITE = re.compile(r"benchmarks/results/([\w./-]+\.(?:md|json))")
OTHERS_LIMIT = 0.25  # cores' worth of other work on average: a quarter of a core (this box idles at ~0.02)
MARK = re.compile(r"<!-- figures:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /figures:(?P=name) -->", re.S)


@dataclass
class Bench:
    what: str
    commands: list[list[str]]  # each run from benchmarks/ with this Python
    files: list[str]  # the results files (in results/) it writes


BENCHES: dict[str, Bench] = {
    "bench": Bench("loss+gradient and peak memory against PyTorch at 128-1024 px, the stylize split, the "
                   "optimiser overhead", [["bench.py"]], ["bench.json", "bench.md"]),
    "bench_quick": Bench("bench.py's smoke run (git-ignored)", [["bench.py", "--quick"]],
                         ["bench_quick.json", "bench_quick.md"]),
    "winograd": Bench("Winograd products against onnxruntime's Conv", [["winograd.py", "--sizes", "512,256,128"]],
                      ["winograd.json", "winograd.md"]),
    "lbfgs_vs_scipy": Bench("lbfgs against scipy at equal iterations, six pairs at 64 px", [
        ["convergence.py", "--size", "64", "--optimizer", opt, "--threads", "1", "--out", "results/lbfgs_vs_scipy"]
        for opt in ("scipy", "lbfgs")], ["lbfgs_vs_scipy/convergence_scipy_64.json",
                                         "lbfgs_vs_scipy/convergence_lbfgs_64.json"]),
    **{f"time_to_picture_{s}": Bench(f"time to a finished picture at {s} px",
                                     [["time_to_picture.py", "--size", str(s), "--threads", "1"]],
                                     [f"time_to_picture_{s}.json", f"time_to_picture_{s}.md"]) for s in (256, 512)},
    "big": Bench("one evaluation at 2048 px, untiled and in 1536, 1024, 512 px tiles: time and peak memory",
                 [["big.py", "eval", "2048", *t] for t in ([], *(["--tile", str(n)] for n in (1536, 1024, 512)))],
                 ["big.json"]),
    "batch": Bench("onnxstyle batch: 1 and 2 workers against one process, interleaved, medians of 3", [["batch.py"]],
                   ["batch.json", "batch.md"]),
    "serve": Bench("onnxstyle serve: requests per second, latency, memory", [["serve.py"]], ["serve.json", "serve.md"]),
    "style_weight": Bench("the style-weight sweep behind the default (defaults.md)",
                          [["style_weight.py", "--jobs", "2", "--threads", "1"]],
                          ["style_weight.json", "style_weight.md"]),
    "losses": Bench("the style losses' balance and time", [["losses.py", "--threads", "1"]],
                    ["losses.json", "losses.md"]),
    "losses_gallery": Bench("every style loss on three pairs at 512 px, textures, a painting per scale",
                            [["losses_gallery.py", "--jobs", "2", "--threads", "1"]],
                            ["losses_gallery.json", "losses_gallery.md"]),
    "loss_scale": Bench("each style loss's scale from the balance at the result, three pairs at 256 px (losses.md)",
                        [["loss_scale.py", "--jobs", "2", "--threads", "1", "--tries",
                          "scaled=0.038/0.019,w2=0.065/0.032,histogram=0.165/0.085,sliced=0.35/0.175"]],
                        ["loss_scale.json", "loss_scale.md"]),
    "look_1024": Bench("the default's look at 1024 px, added to look.json's rows; resumable (defaults.md)",
                       [["look.py", "--sizes", "1024", "--threads", "2"]],  # a pair at a time: each one kept
                       ["look.json", "look.md"]),
    "look": Bench("the default's look at 256 and 512 px, six pairs, seen at 256 px (defaults.md)",
                  [["look.py", "--again"]],
                  ["look.json", "look.md"]),
    "losses_profile": Bench("where the sorted losses' time goes: onnxruntime's profile (losses.md)",
                            [["losses_profile.py", "--size", "256"]], ["losses_profile.json", "losses_profile.md"]),
    "tileable_time": Bench("--tileable's circular graph and wrapped tiles against the plain graph (losses.md)",
                           [["tileable_time.py", "--size", "256", "--repeats", "3"]],
                           ["tileable_time.json", "tileable_time.md"]),
    "video": Bench("flow accuracy and the temporal error of stylized video on a clip with known motion (video.md)",
                   [["../docs/make_video.py"]], ["video_make.json"]),
    "clock_replay": Bench("the time left shown against the real remainder: the time_to_picture runs replayed",
                          [["clock_replay.py"]], ["clock_replay.json", "clock_replay.md"]),
}


# ----------------------------------------------------------------------------------- running


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_busy_s() -> float | None:
    """Seconds of busy CPU, all cores together, since boot (Linux's /proc/stat); None elsewhere."""
    try:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_cpu(busy: tuple[float | None, float | None], own_s: float, wall_s: float) -> float | None:
    """Cores' worth of CPU that processes other than the benchmark used while it ran."""
    if None in busy or wall_s <= 0:
        return None
    return max(0.0, (busy[1] - busy[0] - own_s) / wall_s)


def git(*args: str, root: Path = ROOT) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return (out.stdout or "").strip() if out.returncode == 0 else ""


def dirty(root: Path) -> bool:
    """Code changed since the commit. Results, docs and the README (what earlier benchmarks of the same
    call and the tables write) are not code."""
    return bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results", ":!docs",
                    ":!README.md", root=root))


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": cores(), "system": platform.platform(), "python": platform.python_version()}


def load_provenance() -> dict:
    return json.loads(PROVENANCE.read_text()) if PROVENANCE.is_file() else {}


def settled(n: int, wait_s: float) -> float:
    """The 1-minute load, after waiting up to wait_s for it to fall to n (the benchmark before this
    one, in the same call, leaves its own load behind for a minute or two)."""
    load = os.getloadavg()[0]
    if load > n and wait_s > 0:
        end = time.monotonic() + wait_s
        while load > n and time.monotonic() < end:
            time.sleep(5)
            load = os.getloadavg()[0]
    return load


def export_graphs() -> None:
    """The graphs the benchmarks load, exported first where missing: the API writes no
    files, so a fresh clone has none (the CLI's own first-use export)."""
    code = "import onnxstyle.files as f, sys; sys.exit(0 if f.exported(f.default_model('avg')) else 1)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env).returncode != 0:
        subprocess.run([sys.executable, "-m", "onnxstyle", "export"], cwd=ROOT, env=env, check=True)


def run(name: str, busy_ok: bool, wait_s: float = 0.0) -> bool:
    """Run one benchmark; False when it was refused or failed."""
    bench, n = BENCHES[name], cores()
    before = settled(n, wait_s)
    if before > n and not busy_ok:
        print(f"report: {name} refused: load {before:.1f} above {n} cores (--busy to run it anyway)", file=sys.stderr)
        return False
    commit = git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty(ROOT) else "")
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    t0, busy0, own0 = time.monotonic(), cpu_busy_s(), os.times()
    for cmd in bench.commands:
        print("report:", name, ":", " ".join(cmd), file=sys.stderr)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if subprocess.run([sys.executable, *cmd], cwd=HERE, env=env).returncode != 0:
            print(f"report: {name} failed: {' '.join(cmd)}", file=sys.stderr)
            return False
    after, own1 = os.getloadavg()[0], os.times()
    own = own1.children_user + own1.children_system - own0.children_user - own0.children_system
    others = others_cpu((busy0, cpu_busy_s()), own, time.monotonic() - t0)
    entry = {"benchmark": name, "commit": commit, "started": started, "machine": machine(),
             "load_before": round(before, 2), "load_after": round(after, 2),
             "others_cpu": None if others is None else round(others, 3),
             "busy": before > n or (after > n if others is None else others > OTHERS_LIMIT),
             "commands": [" ".join(c) for c in bench.commands], "source": "benchmarks/report.py"}
    prov = load_provenance()
    for f in bench.files:
        if (RESULTS / f).is_file():
            prov[f] = entry
    PROVENANCE.write_text(json.dumps(prov, indent=1, sort_keys=True) + "\n")
    print(f"report: {name}: load {before:.1f} -> {after:.1f} on {n} cores, others' CPU "
          f"{'unknown' if others is None else f'{others:.2f}'} cores"
          + (" (BUSY: marked)" if entry["busy"] else ""), file=sys.stderr)
    return True


# ------------------------------------------------------------------------------------ tables


def caption(file: str, prov: dict, loads: list[float] | None = None, timed: bool = True) -> str:
    """Where a table's numbers come from: file, commit, load on how many cores; busy said loudly where the
    table shows times (timed=False: losses, distances, pictures, counts, which the load does not change)."""
    p = prov.get(file)
    if p is None:
        raise KeyError(f"{file} has no entry in {PROVENANCE.relative_to(ROOT)}")
    if "load_before" in p:
        load = f"load {p['load_before']:.1f} before, {p['load_after']:.1f} after"

    else:
        lo, hi = min(loads or p["loads"]), max(loads or p["loads"])
        load = f"load {lo:.1f}" + (f"-{hi:.1f}" if round(hi, 1) != round(lo, 1) else "")
    busy = "**busy machine**: " if p.get("busy") and timed else ""
    others = f"; other processes used {p['others_cpu']:.2f} cores while it ran" if p.get("others_cpu") is not None \
        else ""
    return f"_{busy}from `benchmarks/results/{file}`, commit {p['commit']}, {load} on {p['machine']['cores']} cores" \
           f"{others}" + ("" if timed else "; it shows no times, which the load would change") + "._"


def read(file: str):
    return json.loads((RESULTS / file).read_text())


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def winograd_table(prov: dict) -> list[str]:
    rows = read("winograd.json")
    body = [[str(r["size"]), f"{r['load']:.1f}", f"{r['seconds']['conv']:.3f}", f"{r['seconds']['winograd']:.3f}",
             f"**{r['time_ratio']:.2f}**", f"{r['peak_mb']['conv']:.0f}", f"{r['peak_mb']['winograd']:.0f}",
             f"{r['loss_rel_diff']:.1e}", f"{r['grad_rel_err']:.1e}"] for r in rows]
    return [caption("winograd.json", prov), "",
            *table(["size px", "load", "Conv s", "Winograd s", "time ratio", "Conv peak MB", "Winograd peak MB",
                    "loss rel. diff", "grad rel. err (largest entry)"], body)]


def torch_best(tr: dict) -> str:
    """The peers' recipe's best loss of its finished (clamped) picture; its unclamped best, said so,
    where the clamped picture was never scored (it is scored once the unclamped loss is at the target)."""
    return f"{tr['best_clamped']:.4g}" if tr["best_clamped"] < math.inf else f"{tr['best']:.4g} unclamped"


def torch_cells(tr: dict | None, seconds: float) -> list[str]:
    """The peers' recipe: its finished picture's time to the default's loss (a lower bound
    when it never got there), the ratio default / torch (an upper bound then), its unclamped time."""
    if tr is None:
        return ["not run", "", ""]
    bound = "" if tr["reached"] else "> "
    cell = f"{bound}{tr['seconds']:.0f} s, {bound}{tr['evaluations']} ev"
    if not tr["reached"]:
        cell += f" (best {torch_best(tr)})"
    un = tr.get("unclamped")
    return [cell, ("" if tr["reached"] else "<= ") + f"{seconds / tr['seconds']:.2f}",
            f"{un['seconds']:.0f} s ({seconds / un['seconds']:.2f})" if un else f"not reached (best {tr['best']:.4g})"]


def time_to_picture_table(size: int) -> Callable[[dict], list[str]]:
    def render(prov: dict) -> list[str]:
        file = f"time_to_picture_{size}.json"
        body = []
        for r in read(file):
            o, s = r["onnxstyle"], r["scipy500"]
            stop = "; ".join(f"{c['size'][1]}x{c['size'][0]}: {c['iterations']} it" for c in o["scales"])
            body.append([r["pair"].replace(":", " x "), f"{r['load']:.1f}-{r['load_after']:.1f}",
                         f"{o['seconds']:.0f} s ({stop})", f"{o['final']:.1f}",
                         f"{s['seconds']:.0f} s, {s['final']:.1f}",
                         f"{o['final'] / s['final']:.3f}", f"**{o['seconds'] / s['seconds']:.2f}**",
                         "yes" if r["wins"] else "**no**", *torch_cells(r.get("torch"), o["seconds"])[:2]])
        return [caption(file, prov), "",
                *table(["pair", "load", "default command", "final loss", "500 scipy iterations: time, loss",
                        "loss ratio", "time ratio", "default wins", "torch LBFGS to that loss", "default / torch"],
                       body), "", *time_to_picture_summary(read(file))]
    return render


def span(xs: list[float], fmt: str) -> str:
    lo, hi = format(min(xs), fmt), format(max(xs), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def time_to_picture_summary(rows: list[dict]) -> list[str]:
    """The sentences under a time-to-picture table, each number from its rows."""
    time = [r["onnxstyle"]["seconds"] / r["scipy500"]["seconds"] for r in rows]
    loss = [r["onnxstyle"]["final"] / r["scipy500"]["final"] for r in rows]
    share = {k: [r["onnxstyle"][f"{k}_s"] / r["onnxstyle"]["seconds"] * 100 for r in rows]
             for k in ("evaluations", "optimizer", "elsewhere")}
    lines = [f"- The default wins on {sum(r['wins'] for r in rows)} of {len(rows)} pairs: {span(time, '.2f')}x "
             f"the time of 500 iterations, at {span(loss, '.2f')}x their loss.",
             f"- Each default run's time: the loss+gradient graph {span(share['evaluations'], '.0f')} %, the "
             f"optimiser and the stopping rule {span(share['optimizer'], '.0f')} %, the rest (targets, resizing, "
             f"sessions) {span(share['elsewhere'], '.0f')} %."]
    ran = [r for r in rows if r.get("torch")]
    if ran:
        got = sum(r["torch"]["reached"] for r in ran)
        un = [r["torch"]["unclamped"]["seconds"] for r in ran if r["torch"].get("unclamped")]
        best = ", ".join(torch_best(r["torch"]) for r in ran)
        ours = ", ".join(f"{r['onnxstyle']['final']:.4g}" for r in ran)
        lo, hi = min(r["torch"]["range"][0] for r in ran), max(r["torch"]["range"][1] for r in ran)
        lines.append(f"- The peers' recipe, {span([r['torch']['seconds'] for r in ran], '.0f')} s a pair: its "
                     f"finished picture reached the default's loss on {got} of {len(ran)} pairs (best {best} "
                     f"against {ours}); its unclamped loss on {len(un)}"
                     + (f" (after {', '.join(f'{x:.0f}' for x in un)} s, its pixels within {lo:.0f} to {hi:.0f} "
                        "where [0, 255] is the picture's range)." if un else "."))
    return lines


def batch_table(prov: dict) -> list[str]:
    d = read("batch.json")
    body = [[how, str(d["threads"][how]), ", ".join(f"{x['seconds']:.1f}" for x in d["runs"] if x["how"] == how),
             f"{sec:.1f}", f"{d['pictures_per_min'][how]:.2f}", f"**{d['ratio_to_one_process'][how]:.3f}**"]
            for how, sec in d["median_s"].items()]
    return [caption("batch.json", prov), "",
            *table([f"{d['jobs']} jobs at {d['size']} px, {d['iterations']} iterations each", "threads each",
                    "seconds, by round", "median s", "pictures / min", "/ one process"], body), "",
            f"- the engine's overhead per job, 1 worker against one process: {d['overhead_s_per_job']:+.3f} s"]


def lossgrad_table(prov: dict) -> list[str]:
    d = read("bench.json")
    rows = [r for r in d["lossgrad"] if r.get("torch")]
    threads = {r["torch"].get("torch_threads") for r in rows}
    body = [[str(r["size"]), f"{r['onnxstyle']['median_s']:.3f}", f"{r['torch']['median_s']:.3f}",
             f"**{r['time_ratio']:.2f}**", f"{r['onnxstyle']['peak_rss_mb']:.0f}", f"{r['torch']['peak_rss_mb']:.0f}",
             f"**{r['mem_ratio']:.2f}**", f"{r['loss_rel_diff']:.1e}", f"{r['grad_rel_err']:.1e}"] for r in rows]
    return [caption("bench.json", prov), "",
            *table(["size px", "onnxstyle s", "torch s", "time ratio", "onnxstyle peak MB", "torch peak MB",
                    "memory ratio", "loss rel. diff", "grad rel. err"], body), "",
            f"Median of {len(d['lossgrad'][0]['onnxstyle']['times_s'])} calls after a warm-up, each case in a fresh "
            f"process (peak: its whole memory), torch at {', '.join(map(str, sorted(threads)))} thread(s), "
            "onnxruntime at onnxstyle's default (the physical cores).", "", lossgrad_sentence(rows)]


def lossgrad_sentence(rows: list[dict]) -> str:
    """The ratios in words, each number from its rows."""
    best = min(rows, key=lambda r: r["time_ratio"])
    mem = ", ".join(f"{r['mem_ratio']:.2f}x at {r['size']} px" for r in rows)
    return (f"onnxstyle's loss+gradient takes {span([r['time_ratio'] for r in rows], '.2f')}x torch's time "
            f"(less at {sum(r['time_ratio'] < 1 for r in rows)} of {len(rows)} sizes; {best['time_ratio']:.2f}x at "
            f"{best['size']} px) and {span([r['mem_ratio'] for r in rows], '.2f')}x its peak memory ({mem}).")


def overhead_table(prov: dict) -> list[str]:
    d = read("bench.json")
    body = [[r["optimizer"], f"{r['n']:,}", str(r["iterations"]), f"{r['overhead_ms_per_it']:.0f}"]
            for r in d["overhead"]]
    body += [[f"{r['optimizer']}: stylize {r['size'][0]}x{r['size'][1]} px, {r['iterations']} iterations",
              f"{3 * r['size'][0] * r['size'][1]:,}", str(r["iterations"]),
              f"{r['optimiser_ms_per_it']:.0f} (of {r['optimize_s']:.0f} s in all)"] for r in d["stylize"]]
    return [caption("bench.json", prov), "", *table(["optimiser", "n", "iterations", "its own ms per iteration"], body)]


def serve_table(prov: dict) -> list[str]:
    d = read("serve.json")
    rows = [("workers idle", d["idle"]), ("two jobs running", d["busy"]), ("workers idle again", d["idle_after"])]
    body = [[how, str(r["requests"]), f"{r['requests_per_s']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
             f"{r['max_ms']:.2f}"] for how, r in rows]
    codes = ", ".join(f"{n} x {code}" for code, n in sorted(d["codes"].items()))
    rss = d["rss_mb"]
    lines = [caption("serve.json", prov), "",
             *table(["GET /v1/jobs/{id}", "requests", "req/s", "p50 ms", "p99 ms", "max ms"], body), "",
             "- the latency the running jobs add (busy minus the mean of the idle rows): "
             f"p50 {d['added_ms']['p50']:.2f} ms, p99 {d['added_ms']['p99']:.2f} ms",
             f"- status codes over the benchmark: {codes}; {d['server_errors']} server errors",
             f"- the server's memory (RSS): {rss['after_5']:.1f} MB after 5 finished jobs, {rss['after_50']:.1f} MB "
             f"after 50 ({rss['change_pct']:+.2f}%)"]
    if "rss_mb_with_workers" in d:  # since the jobs run in worker processes
        w = d["rss_mb_with_workers"]
        lines.append(f"- with its worker processes: {w['after_5']:.1f} MB after 5, {w['after_50']:.1f} MB after 50 "
                     f"({w['change_pct']:+.2f}%)")
    return lines


def style_weight_table(prov: dict) -> list[str]:
    rows = read("style_weight.json")
    runs = list(dict.fromkeys((r.get("size", 256), r["pair"]) for r in rows))  # (a file from before sizes: 256)
    weights = list(dict.fromkeys(r["style_weight"] for r in rows))
    cell = {(r.get("size", 256), r["pair"], r["style_weight"]): f"{r['content']:.3g} / {r['style']:.3g}"
            for r in rows}
    return [caption("style_weight.json", prov, timed=False), "",
            *table(["style_weight", *(f"{p.replace(':', ' x ')}, {s} px: final content / style" for s, p in runs)],
                   [[w, *(cell.get((s, p, w), "-") for s, p in runs)] for w in weights])]


def look_table(prov: dict) -> list[str]:
    res = read("look.json")
    bigger = sorted({int(k) for row in res["pairs"].values() for k in row if k.isdigit() and k != "256"})
    rows, loads = [], []
    for pair, row in res["pairs"].items():
        if "256" not in row or not any(str(s) in row for s in bigger):
            continue
        loads += [r["load"] for k, r in row.items() if k.isdigit() and "load" in r]  # a picture from elsewhere: none
        cells = [f"{row['256']['style']:.4f} / {row['256']['content']:.3f}"]
        for s in map(str, bigger):
            r = row.get(s)
            cells += [f"{r['style']:.4f} / {r['content']:.3f}",
                      f"**{r['ratio']['style']:.2f}x** / **{r['ratio']['content']:.2f}x**"] if r else ["-", "-"]
        rows.append([pair.replace(":", " x "), *cells])
    head = ["pair", "256 px: style / content distance"]
    for s in bigger:
        head += [f"{s} px, seen at 256 px", f"{s} px over 256 px"]
    return [caption("look.json", prov, loads, timed=False), "", *table(head, rows)]


def look_weight_table(prov: dict) -> list[str]:
    res = read("look_weight.json")
    ws = sorted({w for row in res["pairs"].values() for w in row["weights"]}, key=float)
    rows = [[pair.replace(":", " x "), *(f"{row['weights'][w]['ratio']['style']:.2f}x / "
                                         f"{row['weights'][w]['ratio']['content']:.2f}x" if w in row["weights"]
                                         else "-" for w in ws)] for pair, row in res["pairs"].items()]
    loads = [r["load"] for row in res["pairs"].values() for r in row["weights"].values()]
    return [caption("look_weight.json", prov, loads, timed=False), "",
            *table(["512 px over 256 px, style / content", *(f"look weight {float(w):g}" for w in ws)], rows)]


def look_tried_table(prov: dict) -> list[str]:
    res = read("look_tried.json")
    rows = [[v["variant"], f"{v['ratio']['style']:.2f}x", f"{v['ratio']['content']:.2f}x"] for v in res["variants"]]
    return [caption("look_tried.json", prov, [v["load"] for v in res["variants"]], timed=False), "",
            *table([f"{res['pair'].replace(':', ' x ')} at 512 px, over 256 px", "style distance", "content distance"],
                   rows)]


def losses_time_table(prov: dict) -> list[str]:
    t = read("losses.json")["time"]
    return [caption("losses.json", prov, [t["load"], t.get("load_after", t["load"])]), "",
            *table([f"loss, {t['size']} px, {t.get('threads') or 'default'} thread(s)",
                    f"s per loss+gradient (median of {t['repeats']})", "over gram"],
                   [[k, f"{v:.3f}", f"**{t['ratio'][k]:.2f}x**"] for k, v in t["median_s"].items()])]


def losses_gallery_table(prov: dict) -> list[str]:
    """The pictures in docs/losses.md, each from its record: a row per pair, a column per loss."""
    res = read("losses_gallery.json")
    runs = res["runs"]
    pic = lambda stem: f"![{stem}](gallery/losses/{stem}.jpg)" if stem in runs else "-"  # noqa: E731
    losses = list(dict.fromkeys(r["loss"] for r in runs.values() if r["kind"] == "loss"))
    pairs = list(dict.fromkeys(r["pair"] for r in runs.values() if r["kind"] == "loss"))
    stem = {(r["pair"], r["loss"]): k for k, r in runs.items() if r["kind"] == "loss"}
    lines = [caption("losses_gallery.json", prov, [r["load"] for r in runs.values()], timed=False), "",
             *table(["", *losses], [[f"**{p.replace(':', ' x ')}**", *(pic(stem.get((p, loss), "")) for loss in losses)]
                                    for p in pairs])]
    one = next((r for r in runs.values() if r["kind"] == "loss"), None)
    if one:
        lines += ["", f"Each `{one['command'].rsplit(' --style-loss', 1)[0]} --style-loss <loss>` "
                  "(photo and painting named as in the table)."]
    others = [k for k, r in runs.items() if r["kind"] != "loss"]
    if others:
        lines += ["", *table(others, [[pic(k) for k in others]]), "",
                  *(f"- {k}: `{runs[k]['command']}`" + (" (shown repeated 2 x 2)" if runs[k]["kind"] == "texture"
                                                          else "") for k in others)]
    return lines


def losses_seam_table(prov: dict) -> list[str]:
    res = read("losses_gallery.json")
    rows = [[k, axis, f"{v['seam']:.1f}", f"{v['inner_mean']:.1f}", f"{v['inner_p95']:.1f}"]
            for k, axes in res["seam"].items() for axis, v in axes.items()]
    return [caption("losses_gallery.json", prov, [res["runs"][k]["load"] for k in res["seam"]], timed=False), "",
            *table([f"texture, {res['size']} px", "axis", "across the wrap edge", "between neighbours inside: mean",
                    "95th percentile"], rows)]


def losses_balance_table(prov: dict) -> list[str]:
    """Each loss picture seen at 256 px: content distance from the photo, Gram distance from the painting."""
    runs = {k: r for k, r in read("losses_gallery.json")["runs"].items() if r["kind"] == "loss" and "seen" in r}
    losses = list(dict.fromkeys(r["loss"] for r in runs.values()))
    pairs = list(dict.fromkeys(r["pair"] for r in runs.values()))
    cell = {(r["pair"], r["loss"]): f"{r['seen']['content']:.3f} / {r['seen']['style']:.4f}" for r in runs.values()}
    return [caption("losses_gallery.json", prov, [r["load"] for r in runs.values()], timed=False), "",
            *table(["seen at 256 px: content / style distance", *losses],
                   [[p.replace(":", " x "), *(cell.get((p, loss), "-") for loss in losses)] for p in pairs])]


def loss_scale_table(prov: dict) -> list[str]:
    """Each loss's scale giving gram's content distance at the result (loss_scale.py), per pair and overall."""
    d = read("loss_scale.json")
    gram = {r["pair"]: r["content"] for r in d["runs"].values() if r["loss"] == "gram"}
    pairs = list(gram)
    rows = [[loss, *(f"{v['pairs'][p]:.3g}" if p in v["pairs"] else "-" for p in pairs), f"**{v['scale']:.3g}**",
             f"{v['today']:.3g}"] for loss, v in d["derived"].items()]
    return [caption("loss_scale.json", prov, [r["load"] for r in d["runs"].values()], timed=False), "",
            *table(["loss: scale giving gram's content distance",
                    *(f"{p.replace(':', ' x ')} (gram: {c:.3f})" for p, c in gram.items()),
                    "geometric mean", "scale when measured"], rows)]


def big_eval_table(prov: dict) -> list[str]:
    """One evaluation of a big picture, untiled and in tiles: time and the whole process's peak memory."""
    rows = [r for r in read("big.json") if r["mode"] == "eval"]
    untiled = {r["size"]: r for r in rows if r["tile"] is None}
    body = [[f"{r['size']} px", f"{r['tile']} px" if r["tile"] else "untiled", f"{r['seconds']:.1f}",
             f"**{r['seconds'] / untiled[r['size']]['seconds']:.2f}x**" if r["size"] in untiled else "-",
             f"{r['peak_mib']}", r["commit"]] for r in sorted(rows, key=lambda r: (r["size"], -(r["tile"] or 1e9)))]
    return [caption("big.json", prov), "",
            *table(["picture (longer side)", "tile", "s per evaluation", "over untiled", "peak MiB", "commit"], body)]


def big_limit_table(prov: dict) -> list[str]:
    """Stylize runs under --max-memory: what the fit chose and the whole process's peak (memory only)."""
    rows = [r for r in read("big.json") if r["mode"] == "proof" and r["limit"]]
    body = [[f"{r['size']} px ({r['content']})", r["limit"], "; ".join(r["tiled"]), f"**{r['peak_mib']}**",
             r["commit"]] for r in rows]
    return [caption("big.json", prov, timed=False), "",
            *table(["stylize", "--max-memory", "the fit chose", "peak MiB, whole process", "commit"], body)]


def lbfgs_vs_scipy_table(prov: dict) -> list[str]:
    """onnxstyle's lbfgs against scipy's L-BFGS-B: the loss after the same iterations, same start (losses only)."""
    rows, summary = [], []
    for size in (64, 128):
        files = {o: f"lbfgs_vs_scipy/convergence_{o}_{size}.json" for o in ("scipy", "lbfgs")}
        if not all((RESULTS / f).is_file() for f in files.values()):
            continue
        scipy, ours = (read(f) for f in files.values())
        ratios = []
        for pair in (p for p in scipy if p in ours):
            a, b = scipy[pair], ours[pair]
            ratios.append(b["loss"][-1] / a["loss"][-1])
            rows.append([pair.replace(":", " x "), f"{size}", f"{a['iterations']}", f"{a['loss'][-1]:.2f}",
                         f"{b['loss'][-1]:.2f}", f"{ratios[-1]:.3f}", f"{a['evaluations']} / {b['evaluations']}"])
        rows.append([f"**mean (range) at {size} px**", "", "", "", "",
                     f"**{sum(ratios) / len(ratios):.3f}** ({min(ratios):.3f}-{max(ratios):.3f})", ""])
        summary.append(caption(files["lbfgs"], prov, [r["load"] for r in ours.values()], timed=False))
    return [*summary, "", *table(["pair", "px", "iterations", "scipy loss", "lbfgs loss", "lbfgs / scipy",
                                  "evaluations (scipy / lbfgs)"], rows)]


def video_flow_table(prov: dict) -> list[str]:
    """Optical flow on the clip with known motion: error against the true flow, time, pixels kept."""
    d = read("video_make.json")
    h, w = d["clip"]["size"]
    return [caption("video_make.json", prov), "",
            *table(["photo", "method", "EPE px", f"ms per flow at {w} x {h}", "kept by the mask"],
                   [[r["photo"], r["method"], f"{r['epe_px']:.3f}", f"{r['ms_per_flow']:.1f}",
                     f"{r['reliable_share'] * 100:.1f} %"] for r in d["flow"]])]


def video_temporal_table(prov: dict) -> list[str]:
    """Temporal error of the stylized clip, each temporal setting against independent frames."""
    d = read("video_make.json")
    return [caption("video_make.json", prov), "",
            *table(["run", "temporal error", "x independent", "s first frame", "s per later frame"],
                   [[r["run"], f"{r['temporal_error']:.1f}", f"**{r['ratio_to_independent']:.3f}**",
                     f"{r['seconds_first']:.1f}", f"{r['seconds_later']:.1f}"] for r in d["runs"]]), "",
            f"The content frames themselves score {d['content_temporal_error']:.1f} (the floor set by resampling "
            "the photo)."]


def losses_profile_table(prov: dict) -> list[str]:
    """Where the sorted losses' time goes: onnxruntime's profile per operator type, operators over 50 ms."""
    d = read("losses_profile.json")
    kinds = list(d["wall_s"])
    ops = sorted({op for o in d["op_ms"].values() for op in o}, key=lambda op: -max(o.get(op, 0) for o in
                                                                                   d["op_ms"].values()))
    rows = [[op, *(f"{d['op_ms'][k].get(op, 0):.0f}" for k in kinds)] for op in ops
            if max(o.get(op, 0) for o in d["op_ms"].values()) >= 50]
    return [caption("losses_profile.json", prov), "",
            *table([f"operator, {d['size']} px: ms", *kinds],
                   [*rows, ["**wall, s**", *(f"**{d['wall_s'][k]:.2f}**" for k in kinds)]])]


def tileable_time_table(prov: dict) -> list[str]:
    """--tileable's graphs against the plain graph: time per evaluation, in one process."""
    d = read("tileable_time.json")
    h, w = d["shape"]
    return [caption("tileable_time.json", prov, d["load"]), "",
            *table([f"graph, {w}x{h} px", f"median s of {d['repeats']}", "over plain"],
                   [[k, f"{v:.3f}", f"**{d['ratio'][k]:.2f}x**"] for k, v in d["median_s"].items()])]


def clock_table(prov: dict) -> list[str]:
    """The time left shown against the real remainder, one sentence (a replay: no timing of its own)."""
    d = read("clock_replay.json")
    if "clock_replay.json" not in prov:
        raise KeyError(f"clock_replay.json has no entry in {PROVENANCE.relative_to(ROOT)}")
    s = d["summary"]["current rule"]
    pct = lambda k: f"{s[k]['median_abs'] * 100:.0f} %"  # noqa: E731
    return [f"_from `benchmarks/results/clock_replay.json`, commit {d['commit']}: the time-to-picture runs replayed "
            "through the Clock (no timing of its own)._", "",
            f"After {d['at']} iterations of each scale the time left shown is within {pct('new')} of the real "
            f"remainder (the median over {s['points']} points: each scale of each run under today's stopping rule; "
            f"{pct('held_out')} with each run's own stops held out of the pool; counting to the cap instead gave "
            f"{pct('old')})."]


TABLES: dict[str, Callable[[dict], list[str]]] = {
    "big_eval": big_eval_table,
    "tileable_time": tileable_time_table,
    "losses_profile": losses_profile_table,
    "video_flow": video_flow_table,
    "video_temporal": video_temporal_table,
    "lbfgs_vs_scipy": lbfgs_vs_scipy_table,
    "big_limit": big_limit_table,
    "clock": clock_table,
    "losses_gallery": losses_gallery_table,
    "losses_seam": losses_seam_table,
    "losses_balance": losses_balance_table,
    "loss_scale": loss_scale_table,
    "losses_time": losses_time_table,
    "look": look_table,
    "look_tried": look_tried_table,
    "look_weight": look_weight_table,
    "serve": serve_table,
    "overhead": overhead_table,
    "lossgrad": lossgrad_table,
    "winograd": winograd_table,
    "batch": batch_table,
    "style_weight": style_weight_table,
    "time_to_picture_256": time_to_picture_table(256),
    "time_to_picture_512": time_to_picture_table(512),
}


def render(name: str, prov: dict) -> str:
    if name not in TABLES:
        raise KeyError(f"no table named {name!r} (known: {', '.join(TABLES)})")
    try:
        return "\n".join(TABLES[name](prov)) + "\n"
    except FileNotFoundError as e:  # never measured: the table says so, with no number
        file = Path(e.filename).relative_to(RESULTS).as_posix()
        if file in prov:  # measured once: its file must not go missing
            raise
        return f"_No results yet: its benchmark writes `{file}` (`python benchmarks/report.py --list`)._\n"


def rewrite(text: str, prov: dict) -> str:
    return MARK.sub(lambda m: f"<!-- figures:{m['name']} -->\n{render(m['name'], prov)}<!-- /figures:{m['name']} -->",
                    text)


def check(docs: list[Path] = DOCS, prov: dict | None = None) -> list[str]:
    """One line per marked table that differs from (or cannot be made from) its results file, and
    per cited results file that is not there or has no provenance entry."""
    prov = load_provenance() if prov is None else prov
    problems = []
    for doc in docs:
        text = doc.read_text()
        for f in sorted(set(CITE.findall(text))):
            if not (RESULTS / f).is_file():
                problems.append(f"{doc.name}: cites benchmarks/results/{f}, which is not there")
            elif f not in prov:
                problems.append(f"{doc.name}: cites benchmarks/results/{f}, which has no entry in "
                                f"{PROVENANCE.relative_to(ROOT)} (its commit and load)")
        for m in MARK.finditer(text):
            try:
                want = render(m["name"], prov)
            except (KeyError, OSError, ValueError) as e:
                problems.append(f"{doc.name}: figures:{m['name']}: {e}")
                continue
            if m["body"] != want:
                problems.append(f"{doc.name}: figures:{m['name']} differs from its results file "
                                "(python benchmarks/report.py --tables)")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHES)}")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--tables", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--busy", action="store_true", help="run on a busy machine too (the results are marked busy)")
    ap.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the load to fall before refusing")
    args = ap.parse_args()
    if args.list:
        for name, b in BENCHES.items():
            print(f"{name}: {b.what} -> {', '.join(b.files)}")
        return 0
    if args.check:
        problems = check()
        for p in problems:
            print("report --check:", p, file=sys.stderr)
        return 1 if problems else 0
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)}: one of {', '.join(BENCHES)}")
    ok = True
    if not args.tables:
        export_graphs()
        ok = all([run(n, args.busy, args.wait) for n in (args.names or [n for n in BENCHES if n != "bench_quick"])])
    prov = load_provenance()
    for doc in DOCS:
        text = doc.read_text()
        if MARK.search(text) and (new := rewrite(text, prov)) != text:
            doc.write_text(new)
            print("report: rewrote", doc.relative_to(ROOT), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
