"""Run state on disk, so an interrupted run can continue (`onnxstyle stylize --resume`).

A checkpoint is an .npz (read with allow_pickle=False: no code ever runs) holding
  image   float32 H x W x 3, the current iterate in RGB 0..255
  meta    JSON: format, version, iteration, options, seed, inputs (image hashes), history,
          scale and scale_iteration (where a coarse-to-fine run is: the ladder's size, 0-based,
          and the iterations done at it; absent: 0 and iteration), and for --optimizer lbfgs
          the L-BFGS scalars (f, gamma, start, count, nit, nfev)
  lbfgs_g, lbfgs_S, lbfgs_Y, lbfgs_rho   (lbfgs only) the gradient at the image, the ring of
          step/gradient-change pairs and their 1 / s'y: with the image (its x) and the scalars,
          the optimiser's whole state, so a resumed run makes the same iterates, bit for bit
It is written atomically. scipy's L-BFGS-B (and lbfgs-device) cannot export their curvature
memory, so a resumed run restarts that memory from the saved image: it ends near, not exactly
at, the loss an uninterrupted run reaches (docs/reliability.md gives the measured gap).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxstyle.errors import InputError
from onnxstyle.files import atomic_write
from onnxstyle.options import MAX_HISTORY, StyleOptions
from onnxstyle.runtime.images import MAX_PIXELS
from onnxstyle.runtime.lbfgs import LbfgsState

FORMAT = "onnxstyle-checkpoint"
VERSION = 1
MAX_BYTES = MAX_PIXELS * 3 * 4 + (16 << 20)  # the biggest image plus generous room for meta
NOTE = ("optimizer lbfgs: its whole state is saved and a resumed run continues exactly; "
        "scipy L-BFGS-B memory is not saved: a resumed run restarts it from this image")
MAX_PAIRS = MAX_HISTORY  # history rows a checkpoint may hold (the most --history allows)
LBFGS_ARRAYS = {"g": np.float32, "S": np.float32, "Y": np.float32, "rho": np.float64}
LBFGS_SCALARS = ("f", "gamma", "start", "count", "nit", "nfev")


# options a resumed run may change
UNRECORDED = ("device", "threads", "model", "iterations", "until", "cudnn_search", "max_memory", "tile")


@dataclass
class State:
    image: np.ndarray  # float32 H x W x 3
    iteration: int  # iterations completed
    options: dict = field(default_factory=dict)  # what changes the result (weights, size, ...)
    seed: int = 0
    inputs: dict = field(default_factory=dict)  # {"content": sha256, "style": [sha256, ...]}
    history: list[dict] = field(default_factory=list)
    optimizer: LbfgsState | None = None  # --optimizer lbfgs: its state at `image`
    scale: int = 0  # the ladder's size (0-based) `image` belongs to
    scale_iteration: int | None = None  # iterations done at that size (None: `iteration`)

    @property
    def at_scale(self) -> int:
        return self.iteration if self.scale_iteration is None else self.scale_iteration


def digest(image: np.ndarray) -> str:
    """sha256 of an image array's shape and bytes, to tell whether a resume uses the same input."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return str(value)
    return value


def save(path: str | os.PathLike, state: State) -> Path:
    image = np.asarray(state.image, np.float32)
    meta = {"format": FORMAT, "version": VERSION, "iteration": int(state.iteration),
            "options": _jsonable(state.options), "seed": int(state.seed),
            "inputs": _jsonable(state.inputs), "history": _jsonable(state.history),
            "scale": int(state.scale), "scale_iteration": int(state.at_scale), "note": NOTE}
    arrays = {}
    opt = state.optimizer
    if opt is not None:
        if opt.x.size != image.size or not np.array_equal(opt.x, image.reshape(-1)):
            raise ValueError("the optimizer state is not at the checkpoint's image")
        meta["lbfgs"] = {k: getattr(opt, k) for k in LBFGS_SCALARS}  # JSON floats round-trip
        arrays = {f"lbfgs_{k}": np.asarray(getattr(opt, k), t) for k, t in LBFGS_ARRAYS.items()}
    text = json.dumps(meta, allow_nan=True)

    def write(f) -> None:
        np.savez(f, image=image, meta=np.array(text), **arrays)

    return atomic_write(path, write)


def _read_member(z: zipfile.ZipFile, name: str, path: Path, limit: int = MAX_BYTES) -> np.ndarray:
    try:
        info = z.getinfo(name + ".npy")
    except KeyError:
        raise InputError(f"{path}: not an onnxstyle checkpoint (no {name!r})") from None
    if info.file_size > limit:
        raise InputError(f"{path}: checkpoint member {name!r} is too large")
    with z.open(info) as f:
        data = f.read(limit + 1)
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def _read_lbfgs(z: zipfile.ZipFile, scalars, image: np.ndarray, path: Path) -> LbfgsState:
    """The L-BFGS state saved beside `image` (its x), checked for shape, type and finiteness."""
    if not isinstance(scalars, dict) or set(scalars) != set(LBFGS_SCALARS):
        raise InputError(f"{path}: checkpoint L-BFGS state is malformed")
    limit = (MAX_PAIRS + 1) * image.nbytes + 4096  # an (m, n) float32 history, m <= MAX_PAIRS
    arrays = {k: _read_member(z, f"lbfgs_{k}", path, limit) for k in LBFGS_ARRAYS}
    for k, t in LBFGS_ARRAYS.items():
        if arrays[k].dtype != t or not np.isfinite(arrays[k]).all():
            raise InputError(f"{path}: checkpoint L-BFGS {k} is not finite {np.dtype(t).name}")
    ints = [scalars[k] for k in ("start", "count", "nit", "nfev")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or not all(
            isinstance(scalars[k], float | int) for k in ("f", "gamma")):
        raise InputError(f"{path}: checkpoint L-BFGS counters are not numbers")
    state = LbfgsState(x=image.reshape(-1).copy(), f=float(scalars["f"]), g=arrays["g"],
                       S=arrays["S"], Y=arrays["Y"], rho=arrays["rho"],
                       gamma=float(scalars["gamma"]), start=scalars["start"],
                       count=scalars["count"], nit=scalars["nit"], nfev=scalars["nfev"])
    m = arrays["rho"].shape[0] if arrays["rho"].ndim == 1 else -1
    if not 1 <= m <= MAX_PAIRS:
        raise InputError(f"{path}: checkpoint L-BFGS history has {m} pairs")
    try:
        state.check(image.size, m)
    except ValueError as e:
        raise InputError(f"{path}: checkpoint {e}") from None
    return state


def load(path: str | os.PathLike) -> State:
    """Read a checkpoint written by save(), refusing anything else with an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    if path.stat().st_size > MAX_BYTES * (2 * MAX_PAIRS + 3):  # image, g, rho and S, Y
        raise InputError(f"{path}: too large for an onnxstyle checkpoint")
    try:
        with zipfile.ZipFile(path) as z:
            image = _read_member(z, "image", path)
            meta_arr = _read_member(z, "meta", path)
            meta = json.loads(str(meta_arr[()]))
            has_lbfgs = isinstance(meta, dict) and "lbfgs" in meta
            if has_lbfgs and image.dtype == np.float32 and image.ndim == 3:
                optimizer = _read_lbfgs(z, meta["lbfgs"], image, path)
            else:
                optimizer = None
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, TypeError) as e:
        why = type(e).__name__
        raise InputError(f"{path}: not a readable onnxstyle checkpoint ({why})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path}: not an onnxstyle checkpoint")
    if meta.get("version") != VERSION:
        raise InputError(f"{path}: checkpoint version {meta.get('version')}, expected {VERSION}")
    if image.dtype != np.float32 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape) < 3:
        raise InputError(f"{path}: checkpoint image has shape {image.shape} / {image.dtype}")
    if not np.isfinite(image).all():
        raise InputError(f"{path}: checkpoint image holds NaN or Inf")
    if optimizer is not None and ((image < 0) | (image > 255)).any():
        raise InputError(f"{path}: checkpoint image leaves 0..255, so it is no L-BFGS iterate")
    iteration = meta.get("iteration")
    if not isinstance(iteration, int) or iteration < 0:
        raise InputError(f"{path}: checkpoint iteration {iteration!r} is not a count")
    history = meta.get("history") or []
    if not isinstance(history, list):
        raise InputError(f"{path}: checkpoint history is not a list")
    scale, at_scale = meta.get("scale", 0), meta.get("scale_iteration", iteration)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v for v in (scale, at_scale)) or (
            at_scale > iteration):
        raise InputError(f"{path}: checkpoint scale {scale!r} / scale iteration {at_scale!r} is not a count")
    return State(image=np.clip(image, 0, 255), iteration=iteration,
                 options=dict(meta.get("options") or {}), seed=int(meta.get("seed", 0)),
                 inputs=dict(meta.get("inputs") or {}), history=history,
                 optimizer=optimizer, scale=scale, scale_iteration=at_scale)


def recorded(options: StyleOptions) -> dict:
    """The options that change the result, in a form a checkpoint (or a video's frames folder)
    can store and compare."""
    out = {}
    for key, value in options.to_dict().items():
        if key in UNRECORDED:
            continue
        if isinstance(value, np.ndarray):
            value = digest(value)
        out[key] = value
    return out


def check_compatible(state: State, options: dict, inputs: dict, where: str | os.PathLike) -> None:
    """Refuse to resume with other options or other images than the checkpoint's run."""
    options, inputs = _jsonable(options), _jsonable(inputs)
    for key in sorted(set(state.options) | set(options)):
        if key == "iterations":
            continue  # a resumed run may go on longer (or shorter) than first planned
        a, b = state.options.get(key), options.get(key)
        if a != b:
            raise InputError(f"{where}: the checkpoint was made with {key}={a!r}, this run has "
                             f"{key}={b!r}; resume with the same options")
    for key in sorted(set(state.inputs) | set(inputs)):
        if state.inputs.get(key) != inputs.get(key):
            raise InputError(f"{where}: the {key} image differs from the checkpoint's run")


def path_for(output: str | os.PathLike) -> Path:
    """Where the CLI keeps the run state of `output`: out.png -> out.ckpt.npz."""
    output = Path(output)
    return output.with_name(output.stem + ".ckpt.npz")


class Recorder:
    """Keeps the latest iterate of a run and writes it as a checkpoint every `every` iterations
    (0: only when asked), continuing the numbering and history of a resumed run. With
    --optimizer lbfgs each periodic checkpoint also holds the optimiser's state (a copy taken
    from the Progress); set `optimizer_state` (e.g. from the Result) before a final write()."""

    def __init__(self, path: str | os.PathLike, options: dict, seed: int, inputs: dict,
                 every: int = 0, resumed: State | None = None) -> None:
        self.path = Path(path)
        self.options, self.seed, self.inputs, self.every = options, seed, inputs, every
        self.offset = resumed.iteration if resumed else 0
        # where the run is on the ladder: a resumed run's first scale goes on from there
        self.scale0, self.base = (resumed.scale, resumed.at_scale) if resumed else (0, 0)
        self.scale, self.at_scale = self.scale0, self.base
        self.history: list[dict] = list(resumed.history) if resumed else []
        self.image: np.ndarray | None = resumed.image if resumed else None
        self.iteration = self.offset
        self.optimizer_state: LbfgsState | None = resumed.optimizer if resumed else None
        self.latest = None  # the last Progress recorded

    def update(self, progress, step: int | None = None) -> None:
        """Record an iteration: `step` counts the whole run's iterations (every scale's; default
        this scale's). Its image is read (with lbfgs-device: copied from the device) only for a
        checkpoint; a later write() reads it from the Progress kept, which works after the
        callback for the host optimisers: with lbfgs-device set `image` first."""
        self.iteration = self.offset + progress.iteration if step is None else step
        self.history.append(dict(progress.terms))
        self.scale = self.scale0 + progress.scale
        self.at_scale = progress.iteration + (self.base if progress.scale == 0 else 0)
        self.optimizer_state = None  # the previous one belongs to the previous iterate
        self.latest, self.image = progress, None
        if self.every and self.iteration % self.every == 0:
            self.image = progress.image
            snapshot = getattr(progress, "optimizer_state", None)
            self.optimizer_state = snapshot() if snapshot is not None else None
            self.write()

    def write(self) -> Path | None:
        if self.image is None and self.latest is not None:
            self.image = self.latest.image
        if self.image is None:
            return None
        opt = self.optimizer_state  # written only when it is the state at this image
        if opt is not None and not np.array_equal(opt.x, self.image.reshape(-1)):
            opt = None
        return save(self.path, State(self.image, self.iteration, self.options, self.seed,
                                     self.inputs, self.history, opt, self.scale, self.at_scale))
