"""The page at / in a real headless browser (Debian's chromium, driven over the DevTools protocol
on 127.0.0.1): upload a photo through the file input, pick a bundled painting, stylize, watch the
picture form, download it. 128 px, 40 iterations; with ONNXSTYLE_SERVE_SCREENSHOT=PATH, 256 px
and 80 iterations, and the screenshot is kept there (docs/serve_page.png is made so)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
ws_client = pytest.importorskip("websockets.sync.client")

from onnxstyle import defaults  # noqa: E402
from tests.helpers_serve import DATA, Server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run sets ONNXSTYLE_REQUIRE_CHROMIUM=1: there a browser that is missing or does not start fails the test
REQUIRED = os.environ.get("ONNXSTYLE_REQUIRE_CHROMIUM") == "1"
pytestmark = pytest.mark.skipif(CHROMIUM is None and not REQUIRED,
                                reason="needs Debian's chromium (apt-get install chromium)")


class Browser:
    """Headless chromium and one page, spoken to over the DevTools protocol (CDP)."""

    def __init__(self, profile: Path) -> None:
        if CHROMIUM is None:
            pytest.fail("ONNXSTYLE_REQUIRE_CHROMIUM=1 and no chromium on the PATH")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--window-size=1180,760", "--hide-scrollbars", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.1)
        if not port_file.is_file():
            self.proc.kill()
            raise RuntimeError(f"{CHROMIUM} did not start (no DevToolsActivePort within 60 s)")
        port = int(port_file.read_text().split()[0])
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        self.connection = ws_client.connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.ws = self.connection.__enter__()
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def until(self, expression: str, timeout: float = 60):
        """Poll until truthy; an exception counts as not yet (the page may still be loading)."""
        end, last = time.monotonic() + timeout, None
        while time.monotonic() < end:
            try:
                value = self.js(expression)
            except RuntimeError as e:
                value, last = None, e
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{expression} (last error: {last})")

    def close(self) -> None:
        self.connection.__exit__(None, None, None)
        self.proc.terminate()
        self.proc.wait(10)


def test_page_stylizes_an_uploaded_photo_with_a_bundled_painting(tmp_path, model_path):
    shot_path = os.environ.get("ONNXSTYLE_SERVE_SCREENSHOT")
    size, iterations = (256, 80) if shot_path else (128, 40)
    server = Server(tmp_path / "server")
    browser = Browser(tmp_path / "profile")
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=1180, height=820, deviceScaleFactor=1, mobile=False)
        browser.call("Page.navigate", url=server.url + "/")
        browser.until(f"location.href.startsWith('{server.url}') && document.readyState === 'complete' && "
                      "document.getElementById('style-sample').options.length >= 3")
        # before the first result the picture's place is empty: no broken-image icon
        assert browser.js("getComputedStyle(document.getElementById('picture')).visibility") == "hidden"
        # the photo through the real file input; a bundled painting from the list
        doc = browser.call("DOM.getDocument")["root"]["nodeId"]
        node = browser.call("DOM.querySelector", nodeId=doc, selector="#content")["nodeId"]
        browser.call("DOM.setFileInputFiles", nodeId=node, files=[str(DATA / "chelsea.jpg")])
        browser.js(f"""(() => {{ const s = document.getElementById('style-sample'); s.value = 'the_scream.jpg';
            s.dispatchEvent(new Event('change')); document.getElementById('content').dispatchEvent(new Event('change'));
            document.getElementById('size').value = '{size}';
            document.getElementById('iterations').value = '{iterations}';
            document.getElementById('go').click(); }})()""")
        # the picture forms while the job runs, with its progress
        browser.until("document.body.dataset.state === 'running' && "
                      "document.getElementById('picture').naturalWidth > 0", 120)
        assert "iteration" in browser.js("document.getElementById('status').textContent")
        assert 0 < browser.js("document.getElementById('bar').value") < 1
        state = browser.until("['done','failed','cancelled','error'].includes(document.body.dataset.state) && "
                              "document.body.dataset.state", 600 if shot_path else 180)
        assert state == "done", browser.js("document.getElementById('status').textContent")
        assert browser.js("document.getElementById('picture').naturalWidth") == size  # chelsea is landscape
        assert browser.js("getComputedStyle(document.getElementById('picture')).visibility") == "visible"
        # all the iterations, or fewer where the default stopping rule found the picture done (at
        # one of its checks, from the earliest it allows): the page says what the job did
        job = browser.js("fetch('/v1/jobs/' + job, { headers: headers() }).then(r => r.json())")
        w, checks = defaults.CONVERGED_WINDOW, defaults.CONVERGED_CHECKS
        n = job["iteration"]
        assert job["iterations"] == iterations
        assert n == iterations or (n % w == 0 and (1 + checks) * w <= n < iterations), job
        done = f"done: iteration {n} of {iterations}"
        status = browser.js("document.getElementById('status').textContent")
        assert status.startswith(done)
        # the loss as the CLI shows it: the total = the job's weighted terms (4 digits), which add up to it
        total, parts = status.split(", loss ")[1].split(" = ")
        shown = {k: float(v) for k, v in (part.split(" ") for part in parts.split(" + "))}
        assert {"content", "style"} <= set(shown) <= {"content", "style", "tv"}, status
        assert float(total) == pytest.approx(job["terms"]["total"], rel=5e-4)
        assert shown == pytest.approx({k: job["terms"][k] for k in shown}, rel=5e-4)
        terms = job["terms"]
        assert sum(terms[k] for k in ("content", "style", "tv")) == pytest.approx(terms["total"], rel=1e-5)
        link = browser.js("(() => { const a = document.getElementById('download'); "
                          "return [getComputedStyle(a).display, a.href, a.download]; })()")
        assert link[0] != "none" and link[1].startswith("blob:") and link[2] == "onnxstyle.png"
        size = browser.js(f"fetch('{link[1]}').then(r => r.blob()).then(b => b.size)")
        assert size > 1000  # the download holds the PNG
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "page.png").write_bytes(shot)
        if shot_path:
            Path(shot_path).write_bytes(shot)
    finally:
        browser.close()
        server.stop()
