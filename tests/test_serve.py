"""`onnxstyle serve` as a real uvicorn process on 127.0.0.1, driven by httpx: the job cycle,
limits and their statuses, 30 concurrent submissions against a small queue, cancel, the token,
expiry, and SIGTERM in the middle of a job. Pictures are 32-64 px, runs a few iterations."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402

from onnxstyle.options import OptionError, StyleOptions  # noqa: E402
from tests.helpers_reliability import png_bomb, png_header_bomb  # noqa: E402
from tests.helpers_serve import Server, png_bytes  # noqa: E402

LONG = {"size": 64, "iterations": 1000}  # runs until cancelled


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    s = Server(tmp_path_factory.mktemp("serve"), "--workers", "1", "--max-queue", "4", "--max-upload", "200000",
               "--max-pixels", "1000000", "--max-size", "128")
    yield s
    s.stop()


def picture(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_job_cycle_status_image_metrics(server):
    assert server.client.get("/healthz").json() == {"status": "ready"}
    r = server.submit(size=48, iterations=4, style_weight="1e4")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and r.headers["location"] == f"/v1/jobs/{job['id']}"
    view = server.wait(job["id"])
    assert view["status"] == "done", view
    assert view["iteration"] == view["iterations"] == 4
    assert view["terms"]["total"] > 0 and view["seconds_left"] == 0 and view["error"] is None
    img = picture(server.client.get(f"/v1/jobs/{job['id']}/image"))
    assert max(img.size) == 48 and img.mode == "RGB"
    assert (server.workdir / f"{job['id']}.png").is_file()  # the picture is kept in the working folder
    metrics = server.client.get("/metrics").text
    assert 'onnxstyle_jobs{status="done"}' in metrics and "onnxstyle_queue_length 0" in metrics
    count = [line for line in metrics.splitlines() if line.startswith("onnxstyle_iteration_seconds_count")]
    assert int(count[0].split()[1]) >= 4


def test_job_options_change_what_runs_and_the_status_says_so(server):
    """--tile, --max-memory, --until and --precision as form fields reach the run; the finished
    job's status says which optimiser, tile and pairs ran and why it stopped."""
    from onnxstyle.runtime import fit, prepare

    job = server.submit(size=48, iterations=2, tile=32, until="iterations", precision="fp32").json()
    view = server.wait(job["id"])
    assert view["status"] == "done", view
    assert (view["optimizer"], view["tile"], view["pairs"], view["stop"]) == ("scipy", 32, 10, "iterations")
    limit = fit.estimate(prepare.hw_at((32, 40, 3), 48), None, 10, "lbfgs")  # png_bytes' 40x32 at 48 px
    job = server.submit(size=48, iterations=2, max_memory=limit).json()  # ours fits untiled, scipy does not
    view = server.wait(job["id"])
    assert (view["status"], view["optimizer"], view["tile"], view["pairs"]) == ("done", "lbfgs", None, 10), view


def test_cancel_keeps_the_best_picture(server):
    job = server.submit(**LONG).json()
    server.wait(job["id"], until=("running",), min_iteration=2)
    r = server.client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert 2 <= r.json()["iteration"] < LONG["iterations"]
    assert max(picture(server.client.get(f"/v1/jobs/{job['id']}/image")).size) == 64


def test_bad_inputs_give_the_right_status_and_one_line(server):
    def refused(status: int, response, words: str) -> None:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert words in error and "\n" not in error

    # a bad option: exactly the message the CLI prints (the same options object)
    with pytest.raises(OptionError) as cli:
        StyleOptions.parse({"style_weight": "abc"})
    r = server.submit(style_weight="abc")
    refused(400, r, "style")
    assert r.json()["error"] == str(cli.value)
    refused(400, server.submit(styel_weight="1"), "did you mean style_weight")
    refused(400, server.submit(size=4096), "over this server's limit of 128")
    refused(400, server.submit(style_blend="0.5,0.5"), "style blend has 2 weights for 1 style image")
    refused(400, server.submit(model="/etc/passwd"), "set by the server")
    refused(400, server.submit(init="/etc/passwd"), "no server-side files")
    refused(400, server.submit(content=b"hello, I am text\n"), "a text file, not an image")
    refused(400, server.submit(content=b"\x00\x01garbage" * 10), "not an image")
    refused(400, server.client.post("/v1/jobs", json={"size": 64}), "multipart")
    refused(400, server.client.post("/v1/jobs", files={"content": ("a.png", png_bytes())}), "style file")
    # over the upload limit (declared), over the pixel limit (checked from the header), bombs
    refused(413, server.submit(content=png_bytes((300, 300))), "over the limit of 200,000")
    refused(413, server.submit(content=png_header_bomb()), "refused before decoding")
    refused(413, server.submit(style=png_bomb(2000)), "refused before decoding")
    refused(404, server.client.get("/v1/jobs/nope"), "no job")
    refused(404, server.client.get("/v1/jobs/nope/image"), "no job")
    refused(404, server.client.delete("/v1/jobs/nope"), "no job")
    refused(404, server.client.get("/v1/samples/../../etc/passwd"), "")
    assert 'onnxstyle_jobs{status="failed"} 0' in server.client.get("/metrics").text


def test_upload_over_the_limit_while_streaming(server):
    """No Content-Length (chunked): the count of streamed bytes still stops it."""
    big = png_bytes((300, 300))
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for i in range(0, len(body), 16384):
            yield body[i : i + 16384]

    r = server.client.post("/v1/jobs", content=chunks(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "over the limit" in r.json()["error"]


def test_30_concurrent_submissions_get_202_or_429_and_all_accepted_finish(server):
    def post(i: int):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            files = [("content", ("c.png", png_bytes((32, 24), seed=i), "image/png")),
                     ("style", ("s.png", png_bytes((32, 32), seed=100 + i), "image/png"))]
            return c.post("/v1/jobs", files=files, data={"size": "32", "iterations": "3"})

    with ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(post, range(30)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {202, 429}, codes
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    assert 1 <= len(accepted) <= 5 and codes.count(429) >= 25  # 4 queued + 1 running at most
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1 and "queue is full" in r.json()["error"]
    for job_id in accepted:
        assert server.wait(job_id)["status"] == "done"
    assert "onnxstyle_jobs_rejected_total" in server.client.get("/metrics").text


def test_token_and_expiry(tmp_path, model_path):
    s = Server(tmp_path, "--token", "s3cret", "--keep", "0.03")  # finished jobs go after 1.8 s
    try:
        good = {"Authorization": "Bearer s3cret"}
        assert s.submit(size=32, iterations=2).status_code == 401
        r = s.submit(size=32, iterations=2, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = s.submit(size=32, iterations=2, headers=good)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert s.client.get(f"/v1/jobs/{job_id}").status_code == 401
        assert s.wait(job_id, headers=good)["status"] == "done"
        assert (s.workdir / f"{job_id}.png").is_file()
        end = time.monotonic() + 30
        while s.client.get(f"/v1/jobs/{job_id}", headers=good).status_code != 404 and time.monotonic() < end:
            time.sleep(0.2)
        assert s.client.get(f"/v1/jobs/{job_id}", headers=good).status_code == 404
        assert not (s.workdir / f"{job_id}.png").exists()  # the picture went with it
    finally:
        s.stop()


def test_sigterm_mid_job_drains_and_exits_0(tmp_path, model_path):
    s = Server(tmp_path)
    try:
        job_id = s.submit(**LONG).json()["id"]
        s.wait(job_id, until=("running",), min_iteration=2)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        r = s.submit(size=32, iterations=2)
        assert r.status_code == 503 and "shutting down" in r.json()["error"]
        assert s.client.get("/healthz").status_code == 503
        view = s.wait(job_id, timeout=8)  # reads are still answered
        assert view["status"] == "cancelled" and view["iteration"] >= 2
        assert max(picture(s.client.get(f"/v1/jobs/{job_id}/image")).size) == 64
        assert s.proc.wait(10) == 0
        assert time.monotonic() - t0 < 10
        assert (s.workdir / f"{job_id}.png").is_file()  # the best picture outlives the server
        # nothing written outside the working folder: not in the cwd, TMPDIR or HOME
        assert [p for d in (s.cwd, s.tmp, s.home) for p in d.rglob("*")] == []
    finally:
        s.stop()


def test_without_the_extra_serve_says_what_to_install(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from onnxstyle.cli.app import app

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `pip install onnxstyle` only
    r = CliRunner().invoke(app, ["serve", "--port", "0", "--workdir", str(tmp_path / "work")])
    assert r.exit_code == 1 and not (tmp_path / "work").exists()
    assert r.output.strip().splitlines() == ["onnxstyle: error: the service needs its extra: pip install "
                                             "'onnxstyle[serve]'"]


def test_import_onnxstyle_and_the_cli_load_no_web_stack():
    heavy = "('starlette', 'uvicorn', 'python_multipart', 'onnxruntime')"
    code = f"import sys, onnxstyle, onnxstyle.cli.app, onnxstyle.serve; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
