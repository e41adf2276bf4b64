"""`onnxstyle serve --engine ray`: jobs run on Ray actors (a local Ray instance on 127.0.0.1) that
keep their model, with progress coming back to the service; an actor killed mid-job has its job
retried once on a fresh actor; SIGTERM exits 0 within 10 s. 64 px, a few iterations."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from tests.helpers_serve import Server  # noqa: E402


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def actors(server: Server) -> list[int]:
    """This server's StyleWorker actor processes (Ray names them ray::StyleWorker...; each is a child
    of the raylet, which is a child of the server)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            pid = int(proc.name)
            if (proc / "cmdline").read_bytes().startswith(b"ray::StyleWorker") and \
                    parent(parent(pid)) == server.proc.pid:
                found.append(pid)
        except (OSError, IndexError, ValueError):
            continue
    return found


def one_actor(server: Server, other_than: int | None = None, timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = [p for p in actors(server) if p != other_than]
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.1)
    raise TimeoutError(f"no single StyleWorker actor under the server (other than {other_than})")


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds the actor processes through /proc (Linux)")
    s = Server(tmp_path_factory.mktemp("serve-ray"), "--engine", "ray", "--workers", "1", "--cpus-per-job", "1",
               "--max-size", "64", timeout=180)
    yield s
    s.stop()


def test_a_job_runs_on_a_ray_actor_with_progress_and_its_picture(server):
    pid = one_actor(server)
    job = server.submit(size=64, iterations=6).json()
    seen = server.wait(job["id"], until=("running", "done"), min_iteration=1)
    assert seen["iteration"] >= 1  # progress came back from the actor
    view = server.wait(job["id"])
    assert view["status"] == "done" and view["iteration"] == view["iterations"] == 6, view
    assert server.client.get(f"/v1/jobs/{job['id']}/image").headers["content-type"] == "image/png"
    assert actors(server) == [pid]  # the same actor (its model loaded) ran the warm-up and the job


def test_cancel_reaches_the_actor(server):
    job = server.submit(size=64, iterations=1000).json()
    server.wait(job["id"], until=("running",), min_iteration=2)
    assert server.client.delete(f"/v1/jobs/{job['id']}").status_code in (200, 202)
    view = server.wait(job["id"], timeout=30)
    assert view["status"] == "cancelled" and view["iteration"] < 1000, view


def test_a_killed_actor_s_job_is_retried_once_and_completes(server):
    pid = one_actor(server)
    job = server.submit(size=64, iterations=40).json()
    server.wait(job["id"], until=("running",), min_iteration=2)
    os.kill(pid, signal.SIGKILL)
    fresh = one_actor(server, other_than=pid)
    view = server.wait(job["id"])
    assert view["status"] == "done", view
    assert view["iteration"] == view["iterations"] == 40 and view["error"] is None
    assert f":{pid} died (ActorDiedError); retrying" in "".join(server.lines)  # Ray's reason, the dead pid
    assert actors(server) == [fresh]


def test_a_job_whose_actor_dies_twice_fails_with_the_reason(server):
    job = server.submit(size=64, iterations=1000).json()
    for _ in range(2):
        pid = one_actor(server)
        server.wait(job["id"], until=("running",), min_iteration=1)
        time.sleep(0.5)  # the engine has handed the job to this actor
        os.kill(pid, signal.SIGKILL)
        one_actor(server, other_than=pid)
    view = server.wait(job["id"])
    assert view["status"] == "failed", view
    assert "died (ActorDiedError) on each of 2 attempts" in view["error"]


def test_sigterm_exits_0_within_10_s(server):
    job = server.submit(size=64, iterations=1000).json()
    server.wait(job["id"], until=("running",), min_iteration=2)
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - t0 < 10
    assert (server.workdir / f"{job['id']}.png").is_file()  # the best picture so far is kept
