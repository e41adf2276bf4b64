"""`onnxstyle serve` under load, on 127.0.0.1: status polling (GET /v1/jobs/{id}) with the workers
idle and with two jobs running (p50, p99, requests/s; the difference is the latency a running job
adds), every status code seen (no 5xx), and the memory after 5 and after 50 finished jobs: the
server's own, and with its worker processes (the jobs run there). Bounded: at most --requests
per phase and --seconds each. Prints and writes OUT/serve.{json,md} (--out, default benchmarks/results).

    python benchmarks/serve.py                  # about 2 minutes on 2 CPU cores
    python benchmarks/serve.py --requests 300 --seconds 5 --memory-jobs 6 --out /tmp/serve   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from tests.helpers_serve import Server, png_bytes  # noqa: E402

HERE = Path(__file__).resolve().parent


async def poll(url: str, path: str, requests: int, seconds: float, concurrency: int) -> dict:
    """GET `path` from `concurrency` clients until `requests` are done or `seconds` pass."""
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    end = time.monotonic() + seconds
    left = [requests]

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            while left[0] > 0 and time.monotonic() < end:
                left[0] -= 1
                t = time.perf_counter()
                r = await c.get(path)
                latencies.append(time.perf_counter() - t)
                codes[r.status_code] += 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(ms), "seconds": round(wall, 2), "requests_per_s": round(len(ms) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2), "codes": dict(codes)}


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and every process below it (the service's workers), in MB."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir() for c in (t / "children").read_text().split()]
        except OSError:
            continue  # gone meanwhile
        total += next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")) / 1024
    return total


def finish(server: Server, n: int, codes: Counter, size: int, iterations: int) -> None:
    """Run n small jobs to the end, at most --max-queue waiting at a time."""
    pending: list[str] = []
    sent = 0
    while sent < n or pending:
        while sent < n and len(pending) < 8:
            r = server.submit(content=png_bytes((size, size * 3 // 4), seed=sent), size=size, iterations=iterations)
            codes[r.status_code] += 1
            if r.status_code == 202:
                pending.append(r.json()["id"])
                sent += 1
            else:
                time.sleep(0.2)
        view = server.wait(pending.pop(0))
        assert view["status"] == "done", view


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="GETs per phase (at most)")
    ap.add_argument("--seconds", type=float, default=30, help="time per phase (at most)")
    ap.add_argument("--concurrency", type=int, default=4, help="polling clients at once")
    ap.add_argument("--size", type=int, default=128, help="size of the two busy jobs")
    ap.add_argument("--memory-jobs", type=int, default=50, help="jobs before the second memory reading")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where serve.{json,md} go")
    args = ap.parse_args()

    codes: Counter[int] = Counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="onnxstyle-serve-bench-") as tmp:
        server = Server(Path(tmp), "--workers", "2", "--max-queue", "16", "--keep", "60")
        try:
            first = server.submit(size=32, iterations=2).json()["id"]
            server.wait(first)
            idle = asyncio.run(poll(server.url, f"/v1/jobs/{first}", args.requests, args.seconds, args.concurrency))
            busy_ids = [server.submit(size=args.size, iterations=1000).json()["id"] for _ in range(2)]
            for job_id in busy_ids:
                server.wait(job_id, until=("running",), min_iteration=1)
            busy = asyncio.run(poll(server.url, f"/v1/jobs/{busy_ids[0]}", args.requests, args.seconds,
                                    args.concurrency))
            running = [server.client.get(f"/v1/jobs/{i}").json()["status"] for i in busy_ids]
            for job_id in busy_ids:
                codes[server.client.delete(f"/v1/jobs/{job_id}").status_code] += 1
            assert running == ["running", "running"], running  # both ran for the whole phase
            # idle again: the shared box's load drifts, so idle brackets busy
            idle_after = asyncio.run(poll(server.url, f"/v1/jobs/{first}", args.requests, args.seconds,
                                          args.concurrency))
            finish(server, 5, codes, 48, 5)
            time.sleep(1)
            rss_5, tree_5 = server.rss_mb(), rss_mb(server.proc.pid)
            finish(server, args.memory_jobs - 5, codes, 48, 5)
            time.sleep(1)
            rss_50, tree_50 = server.rss_mb(), rss_mb(server.proc.pid)
        finally:
            server.stop()
    for phase in (idle, busy, idle_after):
        codes.update(phase["codes"])
    base = {k: (idle[f"{k}_ms"] + idle_after[f"{k}_ms"]) / 2 for k in ("p50", "p99")}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # the box is shared
        "idle": idle, "busy": busy, "idle_after": idle_after, "busy_job_size": args.size,
        "added_ms": {k: round(busy[f"{k}_ms"] - base[k], 2) for k in ("p50", "p99")},
        "codes": dict(sorted(codes.items())), "server_errors": sum(n for c, n in codes.items() if c >= 500),
        "rss_mb": {"after_5": round(rss_5, 1), f"after_{args.memory_jobs}": round(rss_50, 1),
                   "change_pct": round(100 * (rss_50 - rss_5) / rss_5, 2)},
        "rss_mb_with_workers": {"after_5": round(tree_5, 1), f"after_{args.memory_jobs}": round(tree_50, 1),
                                "change_pct": round(100 * (tree_50 - tree_5) / tree_5, 2)},
    }
    md = [
        f"# `onnxstyle serve` under load ({result['machine']})",
        "",
        "`python benchmarks/serve.py`: a real server (2 workers) on 127.0.0.1, polled by "
        f"{args.concurrency} httpx clients; the busy phase has two {args.size} px jobs running. "
        f"Load average of the shared box before and after: {result['load_average']}.",
        "",
        "| GET /v1/jobs/{id} | requests | req/s | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {p['requests']} | {p['requests_per_s']} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |"
          for name, p in (("workers idle", idle), ("two jobs running", busy), ("workers idle again", idle_after))),
        "",
        f"Latency two running jobs add (busy minus the mean of the idle rows): p50 {result['added_ms']['p50']} ms, "
        f"p99 {result['added_ms']['p99']} ms.",
        f"Status codes over the run: {result['codes']} ({result['server_errors']} 5xx).",
        f"Server memory (RSS): {result['rss_mb']['after_5']} MB after 5 finished jobs, "
        f"{rss_50:.1f} MB after {args.memory_jobs} ({result['rss_mb']['change_pct']:+.2f}%); with its workers "
        f"{tree_5:.1f} MB and {tree_50:.1f} MB ({result['rss_mb_with_workers']['change_pct']:+.2f}%).",
    ]
    print("\n".join(md))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "serve.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
