"""A real `onnxstyle serve` process on 127.0.0.1 (any free port) for the service tests, the
browser test and benchmarks/serve.py; the pictures are tiny so the 2-core box stays usable."""

from __future__ import annotations

import ctypes
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parent.parent / "onnxstyle" / "data"
FINISHED = ("done", "failed", "cancelled")


def png_bytes(size: tuple[int, int] = (40, 32), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def die_with_parent() -> None:
    """In the child (Linux): SIGTERM it when the test process dies, killed or not."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Server:
    """`python -m onnxstyle serve ARGS` in a fresh working folder, a fresh cwd and a fresh TMPDIR
    (so a test can show that nothing is written outside the working folder)."""

    def __init__(self, root: Path, *args: str, ready: bool = True, timeout: float = 120) -> None:
        self.workdir, self.cwd, self.tmp, self.home = root / "work", root / "cwd", root / "tmp", root / "home"
        for d in (self.cwd, self.tmp, self.home):
            d.mkdir(parents=True)
        # HOME too: onnxruntime's telemetry would write to ~/.cache/Microsoft
        env = {**os.environ, "TMPDIR": str(self.tmp), "HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        env.pop("ORT_DISABLE_TELEMETRY", None)  # the server must switch it off itself
        root_dir = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root_dir, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "onnxstyle", "serve", "--port", "0", "--workdir", str(self.workdir), *args]
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, preexec_fn=die_with_parent)
        self.lines: list[str] = []
        self.port: int | None = None
        found = threading.Event()
        threading.Thread(target=self._read, args=(found,), daemon=True).start()
        if not found.wait(timeout) or self.port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)
        if ready:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()
                raise

    def _read(self, found: threading.Event) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                found.set()
        found.set()

    def wait_ready(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.client.get("/healthz")
            if r.status_code == 200:
                return
            if "failed" in r.json()["error"]:
                break
            time.sleep(0.1)
        raise RuntimeError("server never became ready:\n" + "".join(self.lines))

    def submit(self, content: bytes | None = None, style: bytes | None = None, headers=None, **options):
        files = [("content", ("photo.png", content or png_bytes(seed=1), "image/png")),
                 ("style", ("painting.png", style or png_bytes(seed=2), "image/png"))]
        data = {k: str(v) for k, v in options.items()}
        return self.client.post("/v1/jobs", files=files, data=data, headers=headers)

    def wait(self, job_id: str, until=FINISHED, timeout: float = 120, headers=None, min_iteration: int = 0) -> dict:
        """Poll the job until its status is in `until` (and past `min_iteration`)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.client.get(f"/v1/jobs/{job_id}", headers=headers)
            assert r.status_code == 200, r.text
            view = r.json()
            if view["status"] in until and view["iteration"] >= min_iteration:
                return view
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still {view['status']} after {timeout} s")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "client"):
            self.client.close()
