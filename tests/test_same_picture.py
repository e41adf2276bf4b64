"""Same job, same picture (issue 22): one small job through the CLI, the Python API, batch (local
workers and Ray) and the service gives the same pixels, bit for bit, with the environment's BLAS/OpenMP
thread variables set to 1 or unset and whatever --threads says (docs/reliability.md)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_reliability import env
from PIL import Image

DATA = Path(__file__).parent / "data"
CONTENT, STYLE = DATA / "chelsea.png", DATA / "the_scream.jpg"
JOB = {"size": 64, "iterations": 5}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ONNXSTYLE_THREADS")
API = """
import sys
import numpy as np
import onnxstyle
r = onnxstyle.stylize(sys.argv[1], sys.argv[2], size=int(sys.argv[3]), iterations=int(sys.argv[4]))
np.save(sys.argv[5], r.image)
"""


def pixels(data: bytes | Path) -> np.ndarray:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return np.asarray(im.convert("RGB")).copy()


def plain_env(one: bool) -> dict[str, str]:
    """This process's environment with the thread variables all 1 (as a Ray worker has) or unset."""
    e = env()
    for k in THREAD_VARS:
        e.pop(k, None)
    if one:
        e.update({k: "1" for k in THREAD_VARS[:3]})
    return e


def cli_picture(tmp: Path, one: bool, *extra) -> np.ndarray:
    out = tmp / f"cli_{one}_{len(extra)}.png"
    p = subprocess.run([sys.executable, "-m", "onnxstyle", "stylize", str(CONTENT), str(STYLE), "-o", str(out),
                        "--size", str(JOB["size"]), "--iterations", str(JOB["iterations"]), *map(str, extra)],
                       env=plain_env(one), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return pixels(out)


def api_picture(tmp: Path, one: bool) -> np.ndarray:
    out = tmp / f"api_{one}.npy"
    p = subprocess.run([sys.executable, "-c", API, str(CONTENT), str(STYLE), str(JOB["size"]), str(JOB["iterations"]),
                        str(out)], env=plain_env(one), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return np.load(out)


def test_one_job_same_pixels_through_every_front_end(tmp_path, monkeypatch):
    ref = cli_picture(tmp_path, False)
    got = {"cli, thread variables 1": cli_picture(tmp_path, True),
           "cli --threads 1": cli_picture(tmp_path, False, "--threads", 1),
           "api": api_picture(tmp_path, False),
           "api, thread variables 1": api_picture(tmp_path, True)}
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"content": str(CONTENT), "style": str(STYLE), "output": "b.png", **JOB}) + "\n")
    # Ray's workers run with OMP_NUM_THREADS=1 whatever the driver has: the case the issue found
    for engine in ("local", "ray") if importlib.util.find_spec("ray") else ("local",):
        out = tmp_path / f"batch_{engine}"
        p = subprocess.run([sys.executable, "-m", "onnxstyle", "batch", str(manifest), "--out", str(out),
                            "--workers", "1", "--engine", engine], env=plain_env(False), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        got[f"batch {engine}"] = pixels(out / "b.png")

    pytest.importorskip("httpx")
    from helpers_serve import Server

    for k in THREAD_VARS:
        monkeypatch.delenv(k, raising=False)
    server = Server(tmp_path / "serve")
    try:
        r = server.submit(CONTENT.read_bytes(), STYLE.read_bytes(), **JOB)
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        assert server.wait(job)["status"] == "done"
        got["serve"] = pixels(server.client.get(f"/v1/jobs/{job}/image").content)
    finally:
        server.stop()
    for name, image in got.items():
        assert image.shape == ref.shape and np.array_equal(image, ref), (
            name, int((image != ref).sum()) if image.shape == ref.shape else image.shape)
    assert os.environ.get("OMP_NUM_THREADS") is None
