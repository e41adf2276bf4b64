"""One stylize job from files to a file: the inputs and output are checked before any work, the
run can checkpoint, resume and be cancelled, and everything is written atomically. The CLI's
`stylize`, the batch workers and the service all run their work through here; the library's
`stylize()` stays file-free."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from onnxstyle.errors import InputError, NumericalError
from onnxstyle.files import atomic_write
from onnxstyle.options import StyleOptions, check_int
from onnxstyle.runtime import checkpoint, guard, images, outputs, sheet
from onnxstyle.runtime import prepare as door
from onnxstyle.runtime.stylize import Progress, Result, stylize


@dataclass
class Job:
    """What to make: `content` with `styles` into `output`. `masks`: one mask file (or None) per
    style. `checkpoint_every` K: an image every K iterations, the run state beside the output
    (out.ckpt.npz), and at the end a contact sheet and a loss plot. `resume`: a .ckpt.npz."""

    content: Path
    styles: list[Path]
    output: Path
    options: StyleOptions = field(default_factory=StyleOptions)
    masks: list[Path | None] | None = None
    checkpoint_every: int = 0
    report: Path | None = None
    overwrite: bool = False
    resume: Path | None = None


@dataclass
class Outcome:
    output: Path
    result: Result | None  # None: the checkpoint already held the whole run
    iterations: int  # iterations done in all, a resumed run's included
    resumed_from: int = 0
    state: Path | None = None  # the run state written when the run stopped early
    extras: list[Path] = field(default_factory=list)  # contact sheet, loss plot


def write_json(path: Path, data: dict) -> None:
    def default(obj):
        if isinstance(obj, np.ndarray):
            return f"<array {'x'.join(map(str, obj.shape))}>"
        return obj.item() if isinstance(obj, np.generic) else str(obj)

    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, default=default).encode()))


def resumed_plan(state: checkpoint.State, opts: StyleOptions, shape: tuple[int, ...],
                 where: Path) -> tuple[StyleOptions, bool] | None:
    """The options that finish a run from its checkpoint: the rest of the ladder from the
    checkpoint's scale (the finished scales skipped), from its image, and whether that goes on
    at the checkpoint's scale; None when the run is done."""
    sizes, iters = opts.ladder(shape), opts.iteration_list(shape)
    k, done = state.scale, state.at_scale
    if k >= len(sizes):
        raise InputError(f"{where}: the checkpoint is at scale {k + 1}, this run has {len(sizes)}")
    size = sizes[k]
    want = door.hw_at(shape, size, opts.tileable)
    if state.image.shape[:2] != want:
        got = f"{state.image.shape[1]}x{state.image.shape[0]}"
        raise InputError(f"{where}: checkpoint image is {got}, this run is {want[1]}x{want[0]} there")
    same = done < iters[k]
    if not same:  # that scale is finished: go on with the next
        k, done = k + 1, 0
        if k == len(sizes):
            return None
    rest = [iters[k] - done, *iters[k + 1:]]
    many = len(sizes) > 1
    return opts.replace(scales=tuple(sizes[k:]) if many else opts.scales,
                        iterations=tuple(rest) if many else rest[0], init=state.image), same


def run(job: Job, on_progress: Callable[[Progress], None] | None = None,
        cancel: guard.CancelToken | None = None) -> Outcome:
    """Run `job`; `on_progress(progress)` gets every iteration (its step and steps count across
    scales and a resumed run). Raises InputError & co. before any work for bad inputs; a NumericalError
    after writing the last good image; a cancelled run writes its best image and its state."""
    opts = job.options
    check_int("checkpoint every", job.checkpoint_every, 0)
    outputs.check_output(job.output, job.overwrite or job.resume is not None)
    if job.report is not None:
        outputs.check_writable_dir(job.report, "report ")
    rgb, alpha = images.load_rgba(job.content)
    styles = [images.load_rgb(s) for s in job.styles]
    masks = None if job.masks is None else [None if m is None else images.open_image(m) for m in job.masks]
    opts, choice = door.choose(opts, door.hw_at(rgb.shape, opts.ladder(rgb.shape)[-1]), len(styles),
                               masks is not None)  # refuses up front what cannot fit

    recorded = checkpoint.recorded(opts)
    inputs = {"content": checkpoint.digest(rgb), "style": [checkpoint.digest(s) for s in styles]}
    state = checkpoint.load(job.resume) if job.resume is not None else None
    run_opts, opt_state = opts, None
    if state is not None:
        checkpoint.check_compatible(state, recorded, inputs, job.resume)
        plan = resumed_plan(state, opts, rgb.shape, job.resume)
        if plan is None:  # the checkpoint already holds the whole run
            images.save(state.image, job.output, alpha)
            return Outcome(job.output, None, state.iteration, state.iteration)
        run_opts, same_scale = plan
        if state.optimizer is not None and opts.optimizer == "lbfgs" and same_scale:
            opt_state = state.optimizer  # continue exactly where it stopped
    rec = checkpoint.Recorder(checkpoint.path_for(job.output), recorded, opts.seed, inputs,
                              job.checkpoint_every, state)
    shots: list[tuple[np.ndarray, str]] = []

    def progress(p: Progress) -> None:
        p = replace(p, step=rec.offset + p.step, steps=rec.offset + p.steps)  # a resumed run's too
        step = p.step
        rec.update(p, step)
        if job.checkpoint_every and step % job.checkpoint_every == 0:
            shot = job.output.with_name(f"{job.output.stem}_{step:05d}{job.output.suffix}")
            images.save(p.image, shot, alpha)
            shots.append((p.image, f"it {step}  loss {p.terms['total']:.3g}"))
        if on_progress is not None:
            on_progress(p)

    try:
        result = stylize(rgb, styles, run_opts, callback=progress, cancel=cancel, style_masks=masks,
                         optimizer_state=opt_state)
    except NumericalError as e:
        if e.image is not None:
            images.save(e.image, job.output, alpha)
            rec.image = e.image.astype(np.float32)
            e.args = (f"{e}: wrote it to {job.output}, run state to {rec.write()}",)
        raise
    images.save(result.image, job.output, alpha)
    rec.image, rec.optimizer_state = result.iterate, result.optimizer_state  # the state at the result
    result.choice = result.choice or choice
    out = Outcome(job.output, result, rec.offset + result.iterations, rec.offset)
    if result.stopped:
        out.state = rec.write()
        return out
    if shots:
        stem = job.output.with_name(job.output.stem)
        out.extras = [Path(f"{stem}_sheet.png"), Path(f"{stem}_losses.png")]
        images.save_pil(sheet.contact_sheet([c for c, _ in shots], [t for _, t in shots]), out.extras[0])
        images.save_pil(sheet.loss_plot(result.history), out.extras[1])
    if job.report is not None:
        write_json(job.report, {
            "size": list(result.image.shape[:2]), "iterations": out.iterations,
            "resumed_from": rec.offset, "evaluations": result.evaluations, "seconds": result.seconds,
            "provider": result.provider, "gpu": result.gpu, "precision": result.precision,
            "note": result.note, **door.summary(result), "message": result.message,
            # the loss as the CLI shows it: the weighted parts and the total they add up to
            "initial": result.initial_loss, "final": result.loss,
            "scales": result.scales, "options": recorded,
        })
    return out
