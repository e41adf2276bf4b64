"""Stylize: resize, build the objective, and minimise it with L-BFGS-B. Writes no files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, minimize

from onnxstyle import defaults
from onnxstyle.errors import InputError
from onnxstyle.runtime import guard, images
from onnxstyle.runtime.objective import Objective

INITS = ("noise", "content", "random")


@dataclass(frozen=True)
class Progress:
    """What the callback gets after each iteration. Return False from the callback to stop."""

    iteration: int
    iterations: int
    terms: dict[str, float]
    image: np.ndarray  # float32 H x W x 3 RGB 0..255 (a copy: the callback may keep it)
    elapsed: float


Callback = Callable[[Progress], bool | None]


@dataclass
class Result:
    image: np.ndarray  # uint8 H x W x 3 RGB
    initial: dict[str, float]
    final: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    provider: str = ""
    stopped: bool = False  # the callback stopped the run
    message: str = ""


def initial_canvas(content: np.ndarray, init: str | np.ndarray, seed: int,
                   noise_ratio: float = defaults.NOISE_RATIO) -> np.ndarray:  # fmt: skip
    """The seed's canvas: uniform noise in [mean - std, mean + std] of the content, blended
    `noise_ratio` with the content; or the content itself, or pure noise in 0..255."""
    rng = np.random.default_rng(seed)
    if isinstance(init, np.ndarray):
        return images.resize(images.as_rgb_array(init), content.shape[:2])
    if init == "content":
        return content.copy()
    if init == "random":
        return rng.uniform(0, 255, content.shape).astype(np.float32)
    if init == "noise":
        if not 0.0 <= noise_ratio <= 1.0:
            raise InputError(f"noise ratio {noise_ratio} must be within 0..1")
        m, s = float(content.mean()), float(content.std())
        noise = rng.uniform(m - s, m + s, content.shape)
        return (noise * noise_ratio + content * (1 - noise_ratio)).astype(np.float32)
    raise InputError(f"unknown init {init!r}: expected one of {', '.join(INITS)} or an image")


def optimize(objective: Objective, x0: np.ndarray, iterations: int,
             callback: Callback | None = None) -> Result:  # fmt: skip
    """Run scipy's L-BFGS-B once from x0 with pixel bounds [0, 255] for `iterations` steps."""
    if iterations < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    shape = x0.shape
    start = time.perf_counter()
    last: dict[str, object] = {}
    evals = 0

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evals
        evals += 1
        terms, grad = objective.evaluate(x.reshape(shape))
        last["x"], last["terms"] = x.copy(), terms
        return terms["total"], grad.ravel().astype(np.float64)

    initial = objective.terms(x0)
    history: list[dict[str, float]] = []
    stopped = False

    def on_iter(intermediate_result) -> None:
        nonlocal stopped
        xk = intermediate_result.x
        terms = last["terms"] if np.array_equal(last.get("x"), xk) else objective.terms(xk.reshape(shape))
        history.append(dict(terms))
        if callback is not None:
            img = xk.reshape(shape).astype(np.float32)
            prog = Progress(len(history), iterations, dict(terms), img, time.perf_counter() - start)
            if callback(prog) is False:
                stopped = True
                raise StopIteration

    # ftol = gtol = 0: stop on the iteration count alone (peers lose runs to early
    # REL_REDUCTION_OF_F stops); maxfun leaves room for line searches.
    options = {"maxiter": iterations, "maxfun": iterations * 4 + 20, "ftol": 0.0, "gtol": 0.0,
               "maxcor": defaults.LBFGS_MEMORY}  # fmt: skip
    with guard.blas_single_thread():  # keep OpenBLAS off onnxruntime's cores (thread-safe)
        res = minimize(fun, x0.ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                       bounds=Bounds(0.0, 255.0), callback=on_iter, options=options)  # fmt: skip
    x = res.x.reshape(shape)
    final = last["terms"] if np.array_equal(last.get("x"), res.x) else objective.terms(x)
    return Result(
        image=images.to_uint8(x),
        initial=initial,
        final=dict(final),
        history=history,
        iterations=len(history),
        evaluations=evals,
        seconds=time.perf_counter() - start,
        provider=objective.provider,
        stopped=stopped,
        message=str(res.message),
    )


def prepare(content, style, size: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Content resized to `size` on its longer side; each style the same way (aspect kept)."""
    c = images.as_rgb_array(content)
    styles = [images.as_rgb_array(s) for s in (style if isinstance(style, list | tuple) else [style])]
    if size is not None:
        if not 16 <= int(size) <= 8192:
            raise InputError(f"size {size} must be within 16..8192 px")
        images.check_run_memory(images.fit_size(c.shape, int(size)))  # refuse before the work
        c = images.resize(c, images.fit_size(c.shape, int(size)))
        styles = [images.resize(s, images.fit_size(s.shape, int(size))) for s in styles]
    else:
        images.check_run_memory(c.shape[:2])
    return c, styles


def stylize(
    content,
    style,
    size: int | None = defaults.SIZE,
    iterations: int = defaults.ITERATIONS,
    content_weight: float = defaults.CONTENT_WEIGHT,
    style_weight: float = defaults.STYLE_WEIGHT,
    tv_weight: float = defaults.TV_WEIGHT,
    init: str | np.ndarray = defaults.INIT,
    noise_ratio: float = defaults.NOISE_RATIO,
    seed: int = defaults.SEED,
    callback: Callback | None = None,
    model: str | os.PathLike | None = None,
    device: str = "auto",
    content_layers=None,
    style_layers=None,
    style_blend: Sequence[float] | None = None,
    threads: int | None = None,
    cancel: guard.CancelToken | None = None,
) -> Result:
    """Stylize `content` (path, PIL image or array) with `style` (one or a list). No files.

    `cancel` (e.g. threading.Event) stops the run at its next iteration when set from any thread;
    like a callback returning False, this returns the Result so far with `stopped=True`."""
    guard.check_options(size=size, iterations=iterations, content_weight=content_weight,
                        style_weight=style_weight, tv_weight=tv_weight, device=device,
                        init=init if isinstance(init, str) else None, noise_ratio=noise_ratio,
                        content_layers=content_layers, style_layers=style_layers,
                        style_blend=style_blend,
                        n_styles=len(style) if isinstance(style, list | tuple) else 1)  # fmt: skip
    c, styles = prepare(content, style, size)
    objective = Objective(
        c, styles, content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
        model=model, device=device, content_layers=content_layers, style_layers=style_layers,
        style_blend=style_blend, threads=threads,
    )  # fmt: skip
    x0 = initial_canvas(c, init, seed, noise_ratio)
    run = guard.RunGuard(callback, cancel)
    with run.numerics():  # a NaN/Inf fault carries the last good image
        return optimize(objective, x0, int(iterations), run.callback)
