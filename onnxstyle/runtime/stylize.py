"""Stylize: resize, build the objective, and minimise it with L-BFGS. Writes no files."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import Bounds, minimize

from onnxstyle import defaults
from onnxstyle.errors import InputError
from onnxstyle.options import INITS, OPTIMIZERS, UNTILS, OptionError, StyleOptions, check_blend, check_choice, check_int
from onnxstyle.runtime import blas, guard, host_lbfgs, images, lbfgs
from onnxstyle.runtime.objective import Objective


@dataclass(frozen=True)
class Progress:
    """What the callback gets after each iteration. Return False from the callback to stop.
    `image` (float32 H x W x 3 RGB 0..255, a copy the callback may keep) is made when first read,
    which must be during the callback: with lbfgs-device that is a copy from the device, made
    only for the iterations whose image someone looks at."""

    iteration: int
    iterations: int
    terms: dict[str, float]
    read_image: Callable[[], np.ndarray] = field(repr=False)
    elapsed: float
    # optimizer="lbfgs": call during the callback for a copy of the optimiser's state at this
    # iterate (to save and continue the run exactly); None for the other optimisers
    optimizer_state: Callable[[], lbfgs.LbfgsState] | None = None
    parts: dict[str, float] = field(default_factory=dict)  # weighted terms: they add up to the total
    evaluations: int = 0  # loss+gradient evaluations at this scale so far
    scale: int = 0  # which size of the ladder (0-based) of `scales`
    scales: int = 1
    frame: int = 0  # a clip's frame (0-based) of `frames` (0: not a clip)
    frames: int = 0
    step: int = 0  # iterations done in this run, all scales (a clip: all frames) so far (of `steps`, the most planned)
    steps: int = 0
    # seconds left for the whole run (all scales or frames), from the measured time per iteration and
    # the schedule (Clock); None until measured. With until="converged" an estimate from the measured stops.
    remaining: float | None = None

    @functools.cached_property
    def image(self) -> np.ndarray:
        return self.read_image()

    @property
    def loss(self) -> dict[str, float]:
        """The loss as every front end reads it (CLI, report, service, page, batch): the weighted
        parts and their total, which they add up to. `terms` holds them unweighted."""
        return {**self.parts, "total": self.terms["total"]}


Callback = Callable[[Progress], bool | None]


class Clock:
    """Seconds left for the whole run (all scales): Clock(pixels, iterations, until) with each
    scale's pixels evaluated (prepare.evaluated_pixels: h x w, the look term's too), its
    iterations (the cap under until="converged") and the stop mode.
    `remaining(p)` reads only p.scale, p.iteration, p.elapsed (seconds since the scale started)
    and p.evaluations, so its answers are a pure function of the Progress values given to it in
    order: a recorded trace of those four replays offline to the same estimates.

    At the running scale: its seconds per iteration, measured from the end of its first
    iteration on (the first also pays for the start: session warm-up, the starting point's
    terms), x the iterations to go. A later scale: that time per iteration x (its pixels / these)
    ** `exponent`, plus SETUP_EVALS evaluations for its targets and starting point. Iterations to
    go: under until="iterations" the count; under until="converged" the expected stop, the mean
    of the measured `stops` not yet passed (each at most the cap), and past them all the next
    check of the rule: an estimate right on average, never 0 while a scale may go on."""

    SETUP_EVALS = 2

    def __init__(self, pixels: Sequence[int], iterations: Sequence[int], until: str, *,
                 stops: Sequence[int] = defaults.CONVERGED_STOPS, exponent: float = defaults.CLOCK_EXPONENT,
                 window: int = defaults.CONVERGED_WINDOW) -> None:
        check_choice("until", until, UNTILS)
        if len(pixels) != len(iterations) or not stops:
            raise ValueError("Clock: one pixel count and one iteration count per scale, and some stops")
        self.pixels, self.iterations, self.until = list(pixels), list(iterations), until
        self.stops, self.exponent, self.window = sorted(stops), exponent, window
        self.first: dict[int, tuple[float, int]] = {}  # scale -> (elapsed, evaluations) at iteration 1

    def stop(self, scale: int, iteration: int = 0) -> float:
        """The iteration `scale` is expected to end at, given it reached `iteration` (0: not started)."""
        cap = self.iterations[scale]
        if self.until == "iterations":
            return cap
        ahead = [min(s, cap) for s in self.stops if s >= iteration]  # the rule checks after the callback
        expected = sum(ahead) / len(ahead) if ahead else 0.0
        if expected <= iteration:  # past every measured stop: the next check
            expected = (iteration // self.window + 1) * self.window
        return min(expected, cap)

    def remaining(self, p: Progress) -> float | None:
        if p.iteration < 1 or p.evaluations < 1:
            return None
        if p.iteration == 1:
            self.first[p.scale] = (p.elapsed, p.evaluations)
        t0, e0 = self.first.get(p.scale, (0.0, 0))
        if p.scale in self.first and p.iteration > 1 and p.evaluations > e0:
            per_eval = (p.elapsed - t0) / (p.evaluations - e0)
            per_iter = (p.elapsed - t0) / (p.iteration - 1)
        else:
            per_eval, per_iter = p.elapsed / p.evaluations, p.elapsed / p.iteration
        left = (self.stop(p.scale, p.iteration) - p.iteration) * per_iter
        here = self.pixels[p.scale]
        for k in range(p.scale + 1, len(self.pixels)):
            left += (self.stop(k) * per_iter + self.SETUP_EVALS * per_eval) * (self.pixels[k] / here) ** self.exponent
        return max(left, 0.0)


class Convergence:
    """The stopping rule of until="converged": every `window` iterations, the picture is done
    when at `checks` checks in a row the image's mean absolute change over the window, per
    iteration (0..255 units), was below `change` and the loss fell by less than `loss`
    (relative) over the window. Keeps one image."""

    def __init__(self, window: int | None = None, change: float | None = None, loss: float | None = None,
                 checks: int | None = None) -> None:
        self.window = window or defaults.CONVERGED_WINDOW  # (None: the defaults as they are now)
        self.change = defaults.CONVERGED_CHANGE if change is None else change
        self.loss = defaults.CONVERGED_LOSS if loss is None else loss
        self.checks = checks or defaults.CONVERGED_CHECKS
        self.image: np.ndarray | None = None
        self.value = math.inf
        self.last = (math.inf, math.inf)  # (change, relative loss decrease) at the last check
        self.met = 0  # checks in a row that met the rule

    def done(self, iteration: int, image: Callable[[], np.ndarray], loss: float) -> bool:
        """After `iteration` (1, 2, ...): True when the run should stop. `image()` is read only
        at the checks."""
        if iteration % self.window:
            return False
        x = np.asarray(image(), np.float32)
        if self.image is not None:
            change = float(np.abs(x - self.image).mean()) / self.window
            drop = (self.value - loss) / max(abs(self.value), 1e-30)
            self.last = (change, drop)
        self.image, self.value = x.copy(), loss
        self.met = self.met + 1 if self.last[0] < self.change and self.last[1] < self.loss else 0
        return self.met >= self.checks


@dataclass
class Result:
    image: np.ndarray  # uint8 H x W x 3 RGB
    iterate: np.ndarray  # float32 H x W x 3: the optimiser's last iterate (before rounding)
    initial: dict[str, float]  # the terms, unweighted (the weighted parts: initial_parts, initial_loss)
    final: dict[str, float]  # the terms, unweighted (the weighted parts: parts, loss)
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    provider: str = ""
    gpu: str = ""  # the GPU's name on CUDA
    precision: str = ""  # fp32, or tf32 on CUDA
    note: str = ""  # device auto with a GPU driver present: why the run is on the CPU
    stopped: bool = False  # the callback stopped the run
    # why the last scale stopped: "converged" (Convergence), "iterations" (the count ran out),
    # "stopped" (the callback or cancel) or "optimizer" (it could not go on: see message)
    reason: str = ""
    message: str = ""
    scales: list[dict] = field(default_factory=list)  # per scale: size, iterations, seconds, memory fit
    optimizer: str = ""  # the optimiser that ran
    choice: str = ""  # why it is not the default (no optimiser named, and scipy's state does not fit)
    # optimizer="lbfgs": the L-BFGS state at the result, to continue the run exactly
    # (stylize(..., optimizer_state=...)); None for the other optimisers
    optimizer_state: lbfgs.LbfgsState | None = None
    parts: dict[str, float] = field(default_factory=dict)  # `final` weighted (Objective.parts)
    initial_parts: dict[str, float] = field(default_factory=dict)  # `initial` weighted

    @property
    def loss(self) -> dict[str, float]:
        """The final loss as every front end reads it: the weighted parts and their total."""
        return {**self.parts, "total": self.final["total"]}

    @property
    def initial_loss(self) -> dict[str, float]:
        """The starting point's loss, as `loss` reads."""
        return {**self.initial_parts, "total": self.initial["total"]}


def initial_canvas(content: np.ndarray, init: str | np.ndarray, seed: int,
                   noise_ratio: float = defaults.NOISE_RATIO) -> np.ndarray:
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
        m, s = float(content.mean()), float(content.std())
        noise = rng.uniform(m - s, m + s, content.shape)
        return (noise * noise_ratio + content * (1 - noise_ratio)).astype(np.float32)
    raise InputError(f"unknown init {init!r}: expected one of {', '.join(INITS)} or an array")


def is_cold(init: str | np.ndarray) -> bool:
    """Whether initial_canvas(init) is a start with nothing to keep (noise, not an image)."""
    return isinstance(init, str) and init in ("noise", "random")


def optimize(objective: Objective, x0: np.ndarray, iterations: int,
             callback: Callback | None = None, optimizer: str = "scipy",
             state: lbfgs.LbfgsState | None = None, pairs: int = defaults.LBFGS_MEMORY,
             until: Convergence | None = None, cold: bool = False,
             learning_rate: float = defaults.LEARNING_RATE) -> Result:
    """Run L-BFGS (scipy's L-BFGS-B or ours, keeping `pairs` pairs), or Adam with step
    `learning_rate` (runtime/adam.py), once from x0 with pixel bounds [0, 255] for `iterations`
    steps, or fewer where `until` says the picture is done.
    `state` (optimizer="lbfgs" only): continue from this L-BFGS state, at x0, exactly as the run
    that made it would have gone on; scipy's L-BFGS-B and lbfgs-device cannot take one and
    start their memory afresh from x0. `cold`: x0 is a canvas with nothing to keep
    (is_cold): ours then take L-BFGS-B's full first step (scipy's always does)."""
    check_int("iterations", iterations, 1)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    dtype = np.float32 if optimizer in ("lbfgs", "adam") else np.float64  # each one's working precision
    shape = x0.shape
    start = time.perf_counter()
    last: dict[str, object] = {}
    evals = 0

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evals
        evals += 1
        terms, grad = objective.evaluate(x.reshape(shape))
        last["x"], last["terms"] = x.copy(), terms
        return terms["total"], grad.ravel().astype(dtype, copy=False)

    initial = objective.terms(x0)
    history: list[dict[str, float]] = []
    stopped = converged = False

    def on_iter(intermediate_result) -> None:
        nonlocal stopped, converged
        terms = getattr(intermediate_result, "info", None)  # lbfgs-device: the iterate's terms
        if terms is None:
            xk = intermediate_result.x
            terms = last["terms"] if np.array_equal(last.get("x"), xk) else objective.terms(xk.reshape(shape))
        history.append(dict(terms))
        if callback is not None:
            if optimizer == "lbfgs-device":  # read x (a copy from the device) only if asked
                read = lambda: intermediate_result.x.reshape(shape).astype(np.float32)  # noqa: E731
            else:  # host memory the optimiser goes on changing: copy it now
                img = intermediate_result.x.reshape(shape).astype(np.float32)
                read = lambda: img  # noqa: E731
            snap = intermediate_result.state if optimizer == "lbfgs" else None
            prog = Progress(len(history), iterations, dict(terms), read, time.perf_counter() - start,
                            snap, objective.parts(terms), evals)
            if callback(prog) is False:
                stopped = True
                raise StopIteration
        if until is not None and until.done(len(history), lambda: intermediate_result.x, terms["total"]):
            converged = True
            raise StopIteration

    # ftol = gtol = 0: stop on the iteration count alone (peers lose runs to early
    # REL_REDUCTION_OF_F stops); maxfun leaves room for line searches.
    options = {"maxiter": iterations, "maxfun": iterations * 4 + 20, "ftol": 0.0, "gtol": 0.0,
               "maxcor": pairs}
    with blas.single_thread():  # keep OpenBLAS off onnxruntime's cores (thread-safe)
        if optimizer == "lbfgs-device":  # x, g and the history stay on the device
            from onnxstyle.runtime import device_lbfgs

            def fun_device(x, grad_out):
                nonlocal evals
                evals += 1
                terms, _ = objective.evaluate_device(x, grad_out)
                return terms["total"], terms

            res = device_lbfgs.minimize(fun_device, x0.ravel(), iterations, bounds=(0.0, 255.0),
                                        m=pairs, callback=on_iter, maxfun=options["maxfun"],
                                        device=objective.ort_device, cold=cold)
        elif optimizer == "adam":
            from onnxstyle.runtime import adam

            res = adam.minimize(fun, x0.ravel(), iterations, learning_rate, (0.0, 255.0), on_iter)
        elif optimizer == "lbfgs":
            if state is not None:
                try:
                    state.check(x0.size, pairs)
                except ValueError as e:
                    raise InputError(str(e)) from None
                if not np.array_equal(state.x, x0.ravel()):
                    raise InputError("the L-BFGS state is not at the starting image")
            res = host_lbfgs.minimize(fun, x0.ravel(), iterations, bounds=(0.0, 255.0), m=pairs,
                                 callback=on_iter, maxfun=options["maxfun"], state=state, cold=cold)
        else:
            res = minimize(fun, x0.ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                           bounds=Bounds(0.0, 255.0), callback=on_iter, options=options)
    x = res.x.reshape(shape)
    reason = ("stopped" if stopped else "converged" if converged
              else "iterations" if len(history) >= iterations else "optimizer")
    if converged:
        change, drop = until.last
        message = (f"converged: the image changed {change:.3g}/255 per iteration and the loss "
                   f"fell {drop:.2%} over the last {until.window} iterations ({until.checks} such checks in a row)")
    elif reason == "iterations":
        message = f"ran all {iterations} iterations"
    else:
        message = str(res.message)
    final = getattr(res, "info", None)  # lbfgs-device: the terms at res.x
    if final is None:
        final = last["terms"] if np.array_equal(last.get("x"), res.x) else objective.terms(x)
    return Result(
        image=images.to_uint8(x),
        iterate=x.astype(np.float32),
        initial=initial,
        final=dict(final),
        history=history,
        iterations=len(history),
        evaluations=evals,
        seconds=time.perf_counter() - start,
        provider=objective.provider,
        gpu=objective.engine.gpu,
        precision=objective.engine.precision,
        note=objective.engine.note,
        stopped=stopped,
        reason=reason,
        message=message,
        optimizer_state=getattr(res, "state", None) if optimizer == "lbfgs" else None,
        parts=objective.parts(final),
        initial_parts=objective.parts(initial),
    )


def _styles(style) -> list[np.ndarray]:
    styles = [images.as_rgb_array(s) for s in (style if isinstance(style, list | tuple) else [style])]
    if not styles:
        raise InputError("at least one style image is needed")
    return styles


def stylize(
    content,
    style,
    options: StyleOptions | None = None,
    *,
    callback: Callback | None = None,
    cancel: guard.CancelToken | None = None,
    style_masks: Sequence[np.ndarray | None] | None = None,
    optimizer_state: lbfgs.LbfgsState | None = None,
    **changes,
) -> Result:
    """Stylize `content` (path, PIL image or array) with `style` (one or a list). No files.

    `options` (a StyleOptions; default: every default) with `changes` applied, by the options'
    names: `stylize(c, s, size=256, style_weight=1e4)`. See onnxstyle.options for each option.
    The content is resized to `size` on its longer side (None: as given) and each style to
    `style_scale` times that (aspect kept). With `scales` (e.g. [256, 512, 1024]) each scale
    starts from the previous result upsampled; `iterations` is then per scale (one number or one
    per scale). `style_masks`: one region per style (arrays, resized to the output).
    `callback` gets a Progress after each iteration and stops the run by returning False;
    `cancel` (e.g. threading.Event) stops it when set from any thread; either way this returns
    the Result so far with `stopped=True`.
    `optimizer_state`: continue a run (its first scale) from the L-BFGS state it left
    (Result.optimizer_state, Progress.optimizer_state()), starting at its image whatever `init`
    says. With optimizer="lbfgs", N iterations and then `iterations` more from the state give
    the same image, bit for bit, as one run of N + `iterations`; scipy and lbfgs-device take
    only its image and restart their memory there.
    The default graph must have been exported (onnxstyle.export_models(), or `onnxstyle export`).
    """
    from onnxstyle.runtime import prepare as door

    opts = (options or StyleOptions()).replace(**changes)
    try:  # before any work (the Objective checks it again for its direct callers)
        check_blend(opts.style_blend, len(style) if isinstance(style, list | tuple) else 1)
    except InputError as e:
        raise OptionError("style_blend", str(e)) from None
    c = images.as_rgb_array(content)
    sizes, iters = opts.ladder(c.shape), opts.iteration_list(c.shape)
    styles = _styles(style)
    n_styles = len(styles)
    style_scales = opts.style_scales(n_styles)
    if opts.style_per_scale:  # one per square content's rung, of which a narrower one keeps the finer
        rungs = len(opts.ladder())
        if n_styles != rungs or style_masks is not None or opts.style_blend is not None:
            raise OptionError("style_per_scale", f"style per scale: {n_styles} style images for {rungs} scales"
                              if n_styles != rungs else "style per scale takes no style masks or blend")
    hws = [door.hw_at(c.shape, sz, opts.tileable) for sz in sizes]
    opts, choice = door.choose(opts, hws[-1], 1 if opts.style_per_scale else n_styles,
                               style_masks is not None)  # refuses up front what cannot fit
    styles = door.colours(opts, c, styles)
    seen = door.space(opts, c)
    clock = Clock([door.evaluated_pixels(opts, c.shape, hw) for hw in hws], iters, opts.until)
    run = guard.RunGuard(callback, cancel)  # cancel token, stop, last good image for NaN faults
    result: Result | None = None
    stats: list[dict] = []
    start = time.perf_counter()
    for k, (sz, hw, n_iter) in enumerate(zip(sizes, hws, iters, strict=True)):
        rung = list(zip(styles, style_scales, strict=True))
        if opts.style_per_scale:
            rung = [rung[k + len(rung) - len(sizes)]]
        prep = door.prepare(opts, seen, [s for s, _ in rung], sz, style_masks, [x for _, x in rung])
        cz = prep.content
        cold = False
        if optimizer_state is not None and k == 0:  # it continues the first scale
            if optimizer_state.x.size != cz.size:
                raise InputError(f"the optimizer state holds {optimizer_state.x.size // 3} "
                                 f"pixels, this run has {hw[0]}x{hw[1]}")
            x0 = optimizer_state.x.reshape(cz.shape)
        elif result is None:
            x0, cold = door.start(opts, cz)
        else:
            x0 = images.resize(result.image.astype(np.float32), hw, wrap=opts.tileable)  # a torus stays one
        before = result.iterations if result is not None else 0

        def shown(p: Progress, k=k, before=before) -> bool | None:
            p = replace(p, scale=k, scales=len(sizes), step=before + p.iteration, steps=sum(iters))
            p = replace(p, remaining=clock.remaining(p))
            if opts.preserve_colors == "luminance":
                p = replace(p, read_image=lambda p=p: door.recolour(opts, p.image, c))
            return run.callback(p)

        with run.numerics():  # a NaN/Inf fault carries the last good image
            r = prep.run(x0, n_iter, shown, optimizer_state if opts.optimizer == "lbfgs" and k == 0 else None, cold)
        stats.append(prep.record(r))
        if result is not None:
            r.initial, r.initial_parts = result.initial, result.initial_parts
            r.history = result.history + r.history
            r.iterations += result.iterations
            r.evaluations += result.evaluations
        result = r
        if r.stopped:
            break
    assert result is not None
    result.image = images.to_uint8(door.recolour(opts, result.image, c))
    result.seconds = time.perf_counter() - start
    result.scales, result.optimizer, result.choice = stats, opts.optimizer, choice
    return result
