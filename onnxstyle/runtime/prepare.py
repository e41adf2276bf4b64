"""The one door from the options to a run. `stylize` (each size of its ladder), the job runner
behind the CLI, batch and the service, and each video frame turn their StyleOptions, content,
styles and masks into a prepared run here: the optimiser chosen, the colours prepared, the
styles and masks sized, the memory fitted (tile, L-BFGS pairs), the Objective built. So every
option takes effect in one place, and the BLAS threads are pinned for all of it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnxstyle.options import INITS, StyleOptions
from onnxstyle.runtime import blas, color, fit, images, tiles
from onnxstyle.runtime.look import LookObjective
from onnxstyle.runtime.objective import Objective
from onnxstyle.runtime.stylize import Convergence, Result, initial_canvas, is_cold, optimize


def hw_at(shape: tuple[int, ...], size: int | None, tileable: bool = False) -> tuple[int, int]:
    """(height, width) of a picture of `shape` at `size` (its longer side; None: as it is), on
    the pooling grid when `tileable`."""
    hw = images.fit_size(shape, size) if size else (int(shape[0]), int(shape[1]))
    return tiles.on_grid(hw) if tileable else hw


def look_hw(opts: StyleOptions, shape: tuple[int, ...], hw: tuple[int, int]) -> tuple[int, int] | None:
    """(height, width) of the look term's picture (runtime/look.py) for a picture of `shape` at
    hw, or None where it does not apply (no look size, or hw not above it)."""
    if opts.look_size is None or max(hw) <= opts.look_size:
        return None
    return hw_at(shape, opts.look_size, opts.tileable)


def evaluated_pixels(opts: StyleOptions, shape: tuple[int, ...], hw: tuple[int, int]) -> int:
    """The pixels one evaluation at hw scores: hw's, plus the look term's picture where it applies
    (the Clock's cost of a scale)."""
    small = look_hw(opts, shape, hw) or (0, 0)
    return hw[0] * hw[1] + small[0] * small[1]


def choose(opts: StyleOptions, hw: tuple[int, int], styles: int, masked: bool = False,
           pictures: int = 0) -> tuple[StyleOptions, str]:
    """The options as they run at H x W, the run's largest size: the optimiser chosen where none
    was named (fit.choose; `pictures`: the caller's own, fit.estimate), and a one-line note when
    that is not the default. Raises an InputError when nothing fits the memory."""
    optimizer, _, note = fit.choose(hw, opts.optimizer, opts.max_memory, opts.tile, opts.content_layers,
                                    styles, masked, opts.device, opts.history, pictures)
    return (opts if optimizer == opts.optimizer else opts.replace(optimizer=optimizer)), note


def start(opts: StyleOptions, content: np.ndarray) -> tuple[np.ndarray, bool]:
    """The first iterate at `content`'s size from `init` (noise, content, random or an image
    file or array), and whether it is a cold start (stylize.is_cold)."""
    init = opts.init
    if isinstance(init, str | os.PathLike) and str(init) not in INITS:
        init = images.as_rgb_array(init)  # an image file
    return initial_canvas(content, init, opts.seed, opts.noise_ratio), is_cold(init)


def space(opts: StyleOptions, image: np.ndarray) -> np.ndarray:
    """What the network sees: the luminance with preserve_colors luminance, else the image."""
    image = np.asarray(image, np.float32)
    return color.luminance(image) if opts.preserve_colors == "luminance" else image


def colours(opts: StyleOptions, reference: np.ndarray, styles: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The styles with preserve_colors: matched to the colours (match) or the luminance
    (luminance) of `reference`, the content; as given otherwise."""
    styles = [images.as_rgb_array(s) for s in styles]
    with blas.single_thread():
        if opts.preserve_colors == "match":
            return [color.match_colors(s, reference, opts.color_match) for s in styles]
        if opts.preserve_colors == "luminance":
            ry = color.luminance(reference)
            return [color.match_luminance(color.luminance(s), ry) for s in styles]
    return styles


def recolour(opts: StyleOptions, image: np.ndarray, original: np.ndarray) -> np.ndarray:
    """With preserve_colors luminance: the result's luminance with the original's chroma."""
    if opts.preserve_colors != "luminance":
        return image
    return color.with_chroma(image, images.resize(original, image.shape[:2]))


@dataclass(frozen=True)
class Prepared:
    """One size of a run (or one frame) ready to optimise."""

    options: StyleOptions  # as chosen (choose)
    objective: Objective
    fit: fit.Fit
    content: np.ndarray  # float32 H x W x 3, as the network sees it

    def run(self, x0: np.ndarray, iterations: int, callback=None, state=None, cold: bool = False) -> Result:
        """optimize() with this run's optimiser, pairs, learning rate and stopping rule."""
        until = Convergence() if self.options.until == "converged" else None
        with blas.single_thread():  # the starting point's terms too (tiled: NumPy products)
            return optimize(self.objective, x0, iterations, callback, self.options.optimizer, state, self.fit.pairs,
                            until, cold, self.options.learning_rate)

    def record(self, result: Result) -> dict:
        """What the report keeps of this size: size, iterations, stop, time, the final loss (weighted
        parts and total) and the memory fit."""
        return {"size": list(self.content.shape[:2]), "iterations": result.iterations, "stop": result.reason,
                "evaluations": result.evaluations, "seconds": result.seconds, "final": result.loss,
                "optimizer": self.options.optimizer, "memory": self.fit.to_dict(), "tiled": self.fit.describe()}


def summary(result: Result) -> dict:
    """What ran, for a report or a job's status: the optimiser (and why, where it is not the
    default), the largest scale's tile and L-BFGS pairs (Prepared.record has each scale's), why it stopped."""
    fitted = result.scales[-1]["memory"] if result.scales else {}
    return {"optimizer": result.optimizer, "choice": result.choice, "tile": fitted.get("tile"),
            "pairs": fitted.get("lbfgs_pairs"), "stop": result.reason}


def prepare(opts: StyleOptions, content: np.ndarray, styles: Sequence[np.ndarray], size: int | None,
            masks: Sequence[np.ndarray | None] | None = None, style_scales: Sequence[float] | None = None,
            pictures: int = 0) -> Prepared:
    """One size of a run: `content` (as space() gives it) resized to `size` (None: as it is),
    the styles (as colours() gives them) to their style scale times that (None: their own size
    times it; `style_scales`: one per style, default opts.style_scales), the masks to the
    picture; the fit of that size in the memory (with the caller's `pictures`, fit.estimate); the
    Objective."""
    hw = hw_at(content.shape, size, opts.tileable)
    optimizer, fitted, _ = fit.choose(hw, opts.optimizer, opts.max_memory, opts.tile, opts.content_layers,
                                      len(styles), masks is not None, opts.device, opts.history, pictures)
    if optimizer != opts.optimizer:
        opts = opts.replace(optimizer=optimizer)
    scales = style_scales or opts.style_scales(len(styles))

    def sized(hw: tuple[int, int], size: int | None) -> tuple[np.ndarray, list[np.ndarray], list | None]:
        """The content at hw, the styles at their scale times `size`, the masks at hw."""
        sts = [images.resize(s, images.fit_size(s.shape, max(16, round((size or max(s.shape[:2])) * scale))))
               for s, scale in zip(styles, scales, strict=True)]
        ms = None if masks is None else [None if m is None else images.resize_mask(m, hw) for m in masks]
        return images.resize(content, hw), sts, ms

    small = look_hw(opts, content.shape, hw)
    c, sts, ms = sized(hw, size)
    with blas.single_thread():  # the style targets' products: the same bits whatever the env's threads
        objective = Objective(c, sts, opts, style_masks=ms, tile=fitted.tile)
        if small is not None:  # the picture as seen at the look size (runtime/look.py)
            sc, ssts, sms = sized(small, opts.look_size)
            coarse = Objective(sc, ssts, opts.replace(tv_weight=0.0), style_masks=sms)
            objective = LookObjective(objective, coarse, opts.look_weight)
    return Prepared(opts, objective, fitted, c)
