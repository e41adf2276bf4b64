"""`onnxstyle serve` runs its jobs on the batch engine (worker processes that keep their model):
a job runs in a worker process, not the server's; a worker killed mid-job has its job retried
once, and a job whose worker dies twice fails with the reason. 64 px, a few iterations, 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from tests.helpers_serve import Server  # noqa: E402


def workers(parent: int) -> list[int]:
    """The engine's worker processes under `parent` (spawned: `multiprocessing.spawn` in their command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmd:
            found.append(int(proc.name))
    return found


def one_worker(server: Server, other_than: int | None = None, timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = [p for p in workers(server.proc.pid) if p != other_than]
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.05)
    raise TimeoutError(f"no single worker process under the server (other than {other_than})")


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds worker processes through /proc (Linux)")
    s = Server(tmp_path_factory.mktemp("serve-engine"), "--workers", "1", "--max-size", "64")
    yield s
    s.stop()


def test_a_killed_worker_s_job_is_retried_once_and_completes(server):
    pid = one_worker(server)
    assert pid != server.proc.pid
    job = server.submit(size=64, iterations=40).json()
    server.wait(job["id"], until=("running",), min_iteration=2)  # progress comes from the worker
    os.kill(pid, signal.SIGKILL)
    fresh = one_worker(server, other_than=pid)  # the engine replaced it
    view = server.wait(job["id"])
    assert view["status"] == "done", view
    assert view["iteration"] == view["iterations"] == 40 and view["error"] is None
    assert "died (killed by SIGKILL); retrying" in "".join(server.lines)
    assert workers(server.proc.pid) == [fresh]  # the retry ran on the fresh worker, which lives on


def test_a_job_whose_worker_dies_twice_fails_with_the_reason_and_the_next_runs(server):
    job = server.submit(size=64, iterations=1000).json()
    for _ in range(2):
        pid = one_worker(server)
        server.wait(job["id"], until=("running",), min_iteration=1)
        time.sleep(0.5)  # the engine has handed the job to this worker
        os.kill(pid, signal.SIGKILL)
        one_worker(server, other_than=pid)
    view = server.wait(job["id"])
    assert view["status"] == "failed", view
    assert "died (killed by SIGKILL) on each of 2 attempts" in view["error"]
    after = server.submit(size=64, iterations=3).json()
    assert server.wait(after["id"])["status"] == "done"


def test_serve_address_without_ray_engine_is_refused_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "onnxstyle", "serve", "--address", "auto", "--workdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--address is for --engine ray" in r.stderr + r.stdout
