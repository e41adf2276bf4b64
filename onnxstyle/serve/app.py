"""The HTTP routes (Starlette). Every error is JSON {"error": one line} with its status; the
optimiser never runs on the event loop (decoding and PNG encoding go to the thread pool)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from onnxstyle.errors import InputError, ModelError
from onnxstyle.options import INITS, OptionError, StyleOptions, check_blend
from onnxstyle.runtime import images
from onnxstyle.serve import web
from onnxstyle.serve.jobs import FINISHED, QueueFull, Service, Unavailable

SERVER_OPTIONS = ("model", "threads")  # the server's to choose, not a job's
MAX_STYLES = 8
# The bundled pictures the page offers (onnxstyle/data; credits in CREDITS.md there).
SAMPLES = {"astronaut.png": "photo", "chelsea.jpg": "photo", "starry_night.jpg": "painting",
           "the_scream.jpg": "painting", "woman_with_hat.jpg": "painting"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(service: Service) -> Starlette:
    settings = service.settings
    data = resources.files("onnxstyle") / "data"
    page = (resources.files("onnxstyle.serve") / "page.html").read_text()
    web_models = Path(settings.model).expanduser().parent if settings.model else None  # the page's graphs

    def authorize(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
            raise ApiError(401, "missing or wrong token (send Authorization: Bearer <token>)",
                           {"WWW-Authenticate": "Bearer"})

    def find(request: Request):
        authorize(request)
        job = service.get(request.path_params["id"])
        if job is None:
            raise ApiError(404, f"no job {request.path_params['id']!r} (unknown, or expired)")
        return job

    async def body(request: Request) -> AsyncIterator[bytes]:
        """The request body, refused with 413 past --max-upload bytes (declared or streamed)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_upload:
            raise ApiError(413, f"upload of {int(declared):,} bytes is over the limit of {settings.max_upload:,}")
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > settings.max_upload:
                raise ApiError(413, f"upload is over the limit of {settings.max_upload:,} bytes")
            yield chunk

    def job_options(fields: dict[str, str]) -> StyleOptions:
        """The form's options, read as the CLI reads its own, within this server's limits."""
        for name in SERVER_OPTIONS:
            if name in fields:
                raise OptionError(name, f"{name} is set by the server, not per job")
        if fields.get("init", "noise") not in INITS:
            raise OptionError("init", f"init must be one of {', '.join(INITS)} here (no server-side files)")
        options = StyleOptions.parse(fields, base=service.base)
        for name, value, limit in (("size", max(options.ladder()), settings.max_size),
                                   ("iterations", max(options.iteration_list()), settings.max_iterations)):
            if value > limit:
                raise OptionError(name, f"{name} {value} is over this server's limit of {limit}")
        try:  # the graph for this pool must already be exported: the server never exports
            from onnxstyle.runtime import models

            models.resolve(options.model, pool=options.pool)
        except ModelError as e:
            raise OptionError("pool", f"pool {options.pool}: {e}") from None
        return options

    def decode(name: str, data: bytes) -> np.ndarray:
        return images.to_rgb(images.decode_image(data, name, settings.max_pixels))[0]

    async def accept(request: Request):
        """Read, check and queue one submission (the errors are mapped in `submit`)."""
        service.admit()  # full queue or not ready: refuse before reading the body
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "send multipart/form-data: a content file, one or more style files, options")
        parser = MultiPartParser(request.headers, body(request), max_files=1 + MAX_STYLES, max_fields=64)
        parser.spool_max_size = settings.max_upload + 1  # uploads stay in memory, never in /tmp
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise ApiError(400, f"bad multipart form: {e.message}") from None
        try:
            files = {k: [v for v in form.getlist(k) if isinstance(v, UploadFile)] for k in ("content", "style")}
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            if len(files["content"]) != 1 or not files["style"]:
                raise ApiError(400, "send one content file and at least one style file")
            options = job_options(fields)
            check_blend(options.style_blend, len(files["style"]))
            uploads = [(f"{kind} {u.filename or kind!r}", await u.read()) for kind in ("content", "style")
                       for u in files[kind]]
        finally:
            await form.close()
        pictures = [await run_in_threadpool(decode, name, data) for name, data in uploads]
        return service.submit(options, pictures[0], pictures[1:])

    async def submit(request: Request) -> Response:
        authorize(request)
        try:
            job = await accept(request)
        except images.ImageTooLarge as e:
            raise ApiError(413, str(e)) from None
        except InputError as e:  # OptionError included: the CLI's own one-line message
            raise ApiError(400, str(e)) from None
        except QueueFull as e:
            raise ApiError(429, str(e), {"Retry-After": str(e.retry_after)}) from None
        except Unavailable as e:
            raise ApiError(503, str(e)) from None
        return JSONResponse({"id": job.id, "status": job.status}, status_code=202,
                            headers={"Location": f"/v1/jobs/{job.id}"})

    async def job_status(request: Request) -> Response:
        job = find(request)
        if request.method == "DELETE":
            service.cancel(job.id)
            for _ in range(250):  # a running job stops at its next iteration: wait up to 5 s
                if job.status in FINISHED:
                    break
                await asyncio.sleep(0.02)
        return JSONResponse(job.view())

    async def job_image(request: Request) -> Response:
        job = find(request)
        path, png = await run_in_threadpool(service.picture, job)
        if path is not None:
            return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})
        if png is None:
            raise ApiError(409, f"job {job.id} has no picture yet ({job.status})")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        if service.draining:
            return error_response(503, "shutting down")
        if service.load_error:
            return error_response(503, f"model failed to load: {service.load_error}")
        if not service.ready.is_set():
            return error_response(503, "loading the model")
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics(), media_type="text/plain; version=0.0.4")

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def samples(request: Request) -> Response:
        return JSONResponse([{"name": n, "kind": k} for n, k in SAMPLES.items()])

    async def sample(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in SAMPLES:  # a fixed list: no path from the request reaches the disk
            raise ApiError(404, f"no sample {name!r}")
        with resources.as_file(data / name) as path:
            return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    async def web_page(request: Request) -> Response:
        """/web/: the in-browser page (serve/web.py), cross-origin isolated for wasm threads."""
        try:
            path = await run_in_threadpool(web.find, request.path_params.get("path", ""), web_models)
        except web.WebMissing as e:
            raise ApiError(404, str(e)) from None
        if path is None:
            raise ApiError(404, f"no page file {request.url.path!r}")
        tag = web.etag(path)
        headers = {**web.HEADERS, "ETag": tag, "Cache-Control": "no-cache"}  # revalidated, then cached
        if tag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return FileResponse(path, headers=headers, media_type=web.TYPES.get(path.suffix, "application/octet-stream"))

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, exc.detail, exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, f"unexpected {type(exc).__name__}: {exc}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        yield
        await run_in_threadpool(service.stop)

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/v1/samples", samples),
        Route("/v1/samples/{name}", sample),
        Route("/v1/jobs", submit, methods=["POST"]),
        Route("/v1/jobs/{id}", job_status, methods=["GET", "DELETE"]),
        Route("/v1/jobs/{id}/image", job_image),
        Route("/web", lambda request: RedirectResponse("/web/")),
        Route("/web/{path:path}", web_page),
    ]
    handlers = {ApiError: api_error, HTTPException: http_error, Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
