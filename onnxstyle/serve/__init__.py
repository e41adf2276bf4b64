"""`onnxstyle serve`: stylize jobs over HTTP (Starlette on uvicorn), the reference for embedding
onnxstyle in a service. Needs the extra: pip install 'onnxstyle[serve]'. Importing this package
does not import Starlette or uvicorn; `serve()` does.

Shutdown: the first SIGTERM or SIGINT stops taking jobs (POST answers 503), cancels the queued
and running ones (each keeps its best picture in the working folder), keeps answering reads until
the workers are idle plus GRACE seconds (at most DRAIN_LIMIT after the signal), then exits 0.
A second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from onnxstyle.errors import OnnxStyleError
from onnxstyle.serve.jobs import Service, Settings

GRACE = 1.0  # seconds reads are still answered once every run has stopped
DRAIN_LIMIT = 7.0  # seconds after the signal at most; uvicorn's own shutdown follows (< 10 s)


def contain(workdir: Path) -> None:
    """Keep the process's files in the working folder: temporary files go to workdir/tmp (read
    when onnxruntime loads, so this must run before; the CLI imports it lazily). onnxruntime's
    telemetry files are off from `import onnxstyle` on."""
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp.resolve())
    tempfile.tempdir = None  # Python's tempfile reads TMPDIR again
    if "onnxruntime" in sys.modules:
        logging.getLogger("onnxstyle.serve").warning("onnxruntime was loaded before the server: its "
                                                     "telemetry files may land outside %s", workdir)


def serve(settings: Settings) -> None:
    """Run the server until SIGTERM/SIGINT; returns normally (exit 0) after draining."""
    try:
        import python_multipart  # noqa: F401  (Starlette's form parser)
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise OnnxStyleError("the service needs its extra: pip install 'onnxstyle[serve]'") from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    contain(settings.workdir)
    from onnxstyle.serve.app import create_app  # loads onnxruntime: after contain()

    service = Service(settings)
    service.connect()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:  # the signal handler (main thread)
            if service.draining:  # a second signal: now
                self.should_exit = self.force_exit = True
                return
            logging.getLogger("onnxstyle.serve").info("signal %d: draining, then exit", sig)
            service.drain()
            threading.Thread(target=self._exit_when_idle, daemon=True).start()

        def _exit_when_idle(self) -> None:
            deadline = time.monotonic() + DRAIN_LIMIT
            while not service.idle() and time.monotonic() < deadline - GRACE:
                time.sleep(0.05)
            time.sleep(max(0.0, min(GRACE, deadline - time.monotonic())))
            self.should_exit = True

    config = uvicorn.Config(create_app(service), host=settings.host, port=settings.port, access_log=False,
                            timeout_graceful_shutdown=1, log_level="info")
    Server(config).run()
    if any(t.is_alive() for t in service.threads()):
        # A run still inside one long iteration (its picture is already kept): leave now rather
        # than let interpreter shutdown pull onnxruntime from under it (which aborts).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


__all__ = ["serve", "Settings", "Service"]
