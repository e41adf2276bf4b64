"""The frame loop (Ruder, Dosovitskiy & Brox 2016): the first frame from the usual canvas, each
later one from its content plus the previous frame's style warped by the optical flow (`carried`),
with a temporal term W * sum(c * (x - carried)^2) / D pulling it toward that, fully where the flow
is reliable (c, flows.hold).

Every finished frame is written at once (atomically) as a numbered PNG beside a run.json naming
the run: the folder is the checkpoint, and the same command run again continues at the next frame.
A video output is encoded from that folder at the end (then the folder is removed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from onnxstyle.errors import InputError
from onnxstyle.options import StyleOptions, check_int, check_number
from onnxstyle.runtime import checkpoint, guard, images, outputs
from onnxstyle.runtime import prepare as door
from onnxstyle.runtime.objective import AddedTerm, Objective
from onnxstyle.runtime.stylize import Callback, Clock, Progress, Result
from onnxstyle.video import flow as flows
from onnxstyle.video import io, is_clip, work_folder

# Measured on the known-motion clip (docs/video.md): the temporal error is ~0.1x that of
# independent frames at W = 1e2..1e3; later frames start from the warped previous result and
# get half the first frame's iterations (Ruder et al.: 1000 of 2000), as measured.
TEMPORAL_WEIGHT = 1e3
LATER_SHARE = 0.5  # later-frame iterations as a share of the first frame's (when not given)
# float32 frame-size pictures a frame holds beside a still's run (fit.estimate's `pictures`): the
# frame's content twice (read, and as prepared), the previous frame's content and result, the fill,
# the two flows and the reliability (2/3 + 2/3 + 1/3), and the temporal term's work in evaluate
# (the difference, c times it, their product, the scaled gradient, the sum: 5)
TEMPORAL_PICTURES = 12
RUN_FILE = "run.json"


def carried(prev_out: np.ndarray, prev_content: np.ndarray, content: np.ndarray, backward: np.ndarray,
            fill: np.ndarray) -> np.ndarray:
    """Frame t's start and temporal target: its own content plus the previous frame's style (its
    output minus its content) warped by the backward flow (Lanczos), and `fill` (the first
    frame's kind of canvas) where that flow comes from outside frame t-1. Warping the whole output
    with bilinear resampling blurred every frame a little more, and replicated the edge pixels
    into streaks (docs/video.md, "Sharpness"); here the content's detail never goes through the
    warp and the style's loses far less."""
    style = flows.warp(prev_out - prev_content, backward, flows.LANCZOS, fill=fill - content)
    return np.clip(content + style, 0, 255)


def frame_name(i: int) -> str:
    return f"frame_{i + 1:06d}.png"


@dataclass(frozen=True)
class TemporalOptions:
    """What the video adds to StyleOptions (whose `iterations` is the first frame's)."""

    weight: float = TEMPORAL_WEIGHT  # W of the temporal term; 0 drops it
    later_iterations: int | None = None  # iterations of each later frame (default: LATER_SHARE of the first's)
    frames: str | None = None  # 'A:B' (0-based, B excluded)
    fps: Fraction | None = None  # output frame rate (default: the input's)
    flow: str = flows.DEFAULT_METHOD
    independent: bool = False  # stylize each frame alone from the canvas (the flickering baseline)

    def __post_init__(self) -> None:
        check_number("temporal weight", self.weight)
        if self.later_iterations is not None:
            check_int("later iterations", self.later_iterations, 1)
        if self.fps is not None:
            try:
                fps = Fraction(self.fps).limit_denominator(1001000)
            except (TypeError, ValueError, ZeroDivisionError):
                raise InputError(f"--fps {self.fps!r}: expected a number such as 24 or 30000/1001") from None
            if not 0 < fps <= 1000:
                raise InputError(f"--fps {self.fps}: must be within 0..1000")
            object.__setattr__(self, "fps", fps)
        if self.flow not in flows.METHODS:
            raise InputError(f"unknown flow {self.flow!r}: expected one of {', '.join(flows.METHODS)}")


class TemporalObjective(AddedTerm):
    """An objective plus Ruder et al.'s temporal term, in NumPy beside the graph."""

    name = "temporal"

    def __init__(self, base: Objective, target: np.ndarray, mask: np.ndarray, weight: float) -> None:
        super().__init__(base, weight)
        self.target = np.asarray(target, np.float32)
        self.mask = np.asarray(mask, np.float32)[..., None]  # H x W x 1: one c per pixel
        self.scale = self.weight / self.target.size  # W / D, D = H * W * 3 values (Ruder et al.)

    def added(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        d = x.reshape(self.target.shape) - self.target
        cd = self.mask * d
        return float((cd * d).sum()) / self.target.size, 2 * self.scale * cd


class FrameStylizer:
    """Stylizes the frames of one clip at one size through the one door (runtime/prepare.py):
    the styles are prepared once (colour-matched to the first frame with preserve_colors)."""

    def __init__(self, styles: Sequence[np.ndarray], options: StyleOptions, first: np.ndarray) -> None:
        self.options = check(options, first.shape[:2], len(styles))[0]
        self.styles = door.colours(self.options, first, styles)
        self.records: list[dict] = []  # prepare.Prepared.record of each frame run

    def __call__(self, content: np.ndarray, iterations: int, previous: tuple[np.ndarray, np.ndarray] | None = None,
                 weight: float = 0.0, callback=None) -> tuple[np.ndarray, Result]:
        """(uint8 frame, Result). `previous`: (the previous output warped onto this frame, its
        reliability mask): the start, and with weight > 0 the temporal target."""
        o = self.options
        prep = door.prepare(o, door.space(o, content), self.styles, max(content.shape[:2]), pictures=TEMPORAL_PICTURES)
        if previous is None:
            x0 = door.start(o, prep.content)[0]
        else:
            x0 = door.space(o, previous[0])
            if weight > 0:
                prep = replace(prep, objective=TemporalObjective(prep.objective, x0, previous[1], weight))
        # Every frame's lbfgs starts with the probe, even from noise (cold=False): with L-BFGS-B's
        # full first step on the first frame, the known-motion test clip's temporal error rose
        # from 106 to 115 (tests/test_video.py, 64 px).
        result = prep.run(x0, iterations, callback)
        # a frame never continues from its L-BFGS state: free its pairs (at 1024x768 with 3 pairs,
        # 72 MiB the next frame's start held on top of its own: 1.07x of --max-memory 1.5G)
        result.optimizer_state = None
        self.records.append(prep.record(result))
        return images.to_uint8(door.recolour(o, result.image, content)), result


def check(options: StyleOptions, hw: tuple[int, int], styles: int) -> tuple[StyleOptions, str]:
    """The options as a clip at H x W runs them (prepare.choose), or an InputError naming what
    video cannot take."""
    if options.scales != "auto" and len(options.ladder()) > 1:  # auto: a stills default
        raise InputError("video runs at one size: drop --scales (use --size)")
    options, choice = door.choose(options, hw, styles, pictures=TEMPORAL_PICTURES)
    return options, choice


@dataclass
class ClipResult:
    output: Path
    frames: int
    resumed_at: int  # frames found done when the run started
    fps: Fraction
    seconds: float
    seconds_per_frame: list[float]
    stopped: bool = False
    optimizer: str = ""  # the optimiser that ran, and why where it is not the default (choice)
    choice: str = ""
    records: list[dict] = field(default_factory=list)  # per frame run: iterations, stop, memory fit (prepare)


def _run_identity(source: io.Source, styles: Sequence[np.ndarray], options: StyleOptions,
                  temporal: TemporalOptions, span: tuple[int, int], hw: tuple[int, int]) -> dict:
    """What must match for a run to continue another's frames."""
    opts = checkpoint.recorded(options)
    tmp = {k: str(v) for k, v in asdict(temporal).items()}
    return json.loads(json.dumps({"input": str(source.path.resolve()), "frames": list(span), "size": list(hw),
                                  "styles": [checkpoint.digest(s) for s in styles], "options": opts,
                                  "temporal": tmp}, default=str))


def _frame_size(source: io.Source, size: int, even: bool) -> tuple[int, int]:
    h, w = images.fit_size((source.height, source.width), size)
    return (h - h % 2, w - w % 2) if even else (h, w)  # H.264 4:2:0 needs even sides


def stylize_clip(input: str | os.PathLike, output: str | os.PathLike, styles: Sequence[str | os.PathLike | np.ndarray],
                 options: StyleOptions, temporal: TemporalOptions = TemporalOptions(), *,
                 overwrite: bool = False, progress: Callback | None = None,
                 cancel: guard.CancelToken | None = None) -> ClipResult:
    """Stylize one clip: `input` (a video file or a folder of numbered images) into `output` (a
    video file by its suffix, else a folder of numbered PNGs). The entry point for a batch engine
    (one clip per worker). Finished frames survive an interruption (`cancel` set, Ctrl-C, a crash):
    the same call continues at the next frame. `progress` gets a Progress after each iteration of
    each frame, with its `frame`, the clip-wide `step` of `steps` (the first frame's iterations
    and the later ones' of each other frame; frames done by an earlier run count as done) and the
    time left for the clip (Clock: each frame a scale of the same size); False from it stops the
    run as `cancel` does."""
    output = Path(output)
    source = io.probe(input, temporal.fps)
    start, stop = io.parse_frames(temporal.frames, source.count)
    style_arrays = [images.load_rgb(s) if isinstance(s, str | os.PathLike) else images.as_rgb_array(s) for s in styles]
    if not style_arrays:
        raise InputError("at least one style image is needed")
    video_out = is_clip(output)
    if not video_out and output.suffix.lower() in io.IMAGE_SUFFIXES:
        raise InputError(f"{output}: give a video file ({', '.join(io.VIDEO_SUFFIXES)}) or a folder for the frames")
    if video_out:
        if output.is_dir():
            raise InputError(f"{output}: is a folder; give a video file name")
        outputs.check_writable_dir(output, "output ")
        if output.exists() and not overwrite:
            raise InputError(f"{output}: already exists (use --overwrite to replace it)")
    else:
        outputs.check_writable_dir(output, "output ")
    hw = _frame_size(source, options.size, video_out)
    options, choice = check(options, hw, len(style_arrays))  # refuses up front what cannot fit
    work = work_folder(output) if video_out else output
    identity = _run_identity(source, style_arrays, options, temporal, (start, stop), hw)
    done = _prepare(work, identity, overwrite)
    n = stop - start

    first_iters = options.iteration_list()[-1]
    later_iters = temporal.later_iterations or max(1, round(first_iters * LATER_SHARE))
    plan = [first_iters if i == 0 or temporal.independent else later_iters for i in range(n)]
    clock = Clock([hw[0] * hw[1]] * n, plan, options.until)
    step = sum(plan[:done])  # iterations before the running frame
    stylizer = None
    prev_content = prev_out = None
    t0 = time.perf_counter()
    per_frame: list[float] = []
    stopped = False
    records: list[dict] = []
    for i, frame in enumerate(io.read(source, start, stop)):
        content = images.resize(frame.astype(np.float32), hw)
        if stylizer is None:
            stylizer = FrameStylizer(style_arrays, options, content)
            records = stylizer.records
        if i < done:  # finished by an earlier run: only its result is needed, for the next frame
            if i == done - 1:
                prev_out = images.load_rgb(work / frame_name(i)).astype(np.float32)
            prev_content = content
            continue
        t = time.perf_counter()
        previous = None
        if prev_out is not None and not temporal.independent:
            backward = flows.flow(content, prev_content, temporal.flow)
            forward = flows.flow(prev_content, content, temporal.flow)
            fill = door.start(stylizer.options, content)[0]  # the first frame's kind of canvas
            previous = (carried(prev_out, prev_content, content, backward, fill), flows.hold(forward, backward))

        def on_iter(p: Progress, i=i, before=step) -> bool:
            p = replace(p, frame=i, frames=n, step=before + p.iteration, steps=sum(plan))
            p = replace(p, remaining=clock.remaining(replace(p, scale=i, scales=n)))
            go = progress is None or progress(p) is not False
            return go and not (cancel is not None and cancel.is_set())

        out, result = stylizer(content, plan[i], previous, temporal.weight, on_iter)
        step += result.iterations
        if result.stopped:  # cancelled mid-frame: this frame is redone on resume
            stopped = True
            break
        images.save(out, work / frame_name(i))
        prev_content, prev_out = content, out.astype(np.float32)
        per_frame.append(time.perf_counter() - t)
    if not stopped and video_out:
        files = [work / frame_name(i) for i in range(n)]
        io.write_video(output, files, temporal.fps or source.fps, source, start)
        shutil.rmtree(work)
    return ClipResult(output, n, done, temporal.fps or source.fps, time.perf_counter() - t0, per_frame, stopped,
                      options.optimizer, choice, records)


def _prepare(work: Path, identity: dict, overwrite: bool) -> int:
    """Make the frames folder (or reuse the one an earlier run of the same job left) and return
    how many frames it already holds, in order."""
    run_file = work / RUN_FILE
    if work.exists() and not work.is_dir():
        raise InputError(f"{work}: exists and is not a folder")
    if run_file.is_file():
        try:
            same = json.loads(run_file.read_text()) == identity
        except (OSError, ValueError):
            same = False
        if not same:
            if not overwrite:
                raise InputError(f"{work}: holds frames of a different run (other input or options); "
                                 "remove it or pass --overwrite")
            for f in work.glob("frame_*.png"):
                f.unlink()
    elif work.is_dir() and any(work.iterdir()) and not overwrite:
        raise InputError(f"{work}: folder is not empty; choose another output or pass --overwrite")
    work.mkdir(parents=True, exist_ok=True)
    images.atomic_write(run_file, lambda f: f.write(json.dumps(identity, indent=1).encode()))
    done = 0
    while (work / frame_name(done)).is_file():
        done += 1
    return done
