"""Every stylize option, declared once: name, default (from `defaults`), help, parser and check.

`StyleOptions` is what the API, the CLI (its options are derived from these fields), the batch
manifest, the service's form fields and the video command all read, by the same names. It is
checked once, when it is made: a bad value is an `OptionError` (an `InputError`) that names the
option, so each front end can say where it came from (`--style-weight`, `row 3, style_weight`).
Pure Python and NumPy: importing it loads neither onnxruntime nor scipy nor Pillow.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from onnxstyle import defaults
from onnxstyle.errors import InputError
from onnxstyle.layers import LAYERS, canonical
from onnxstyle.layout import STYLE_LOSSES

MIN_SIZE, MAX_SIZE = 16, 8192  # VGG needs >= 16 px (four 2x poolings); 8192 bounds the graph
DEVICES = ("auto", "cpu", "cuda")
INITS = ("noise", "content", "random")  # or an image file (or, in the API, an array)
OPTIMIZERS = ("scipy", "lbfgs", "lbfgs-device", "adam")
POOLS = ("avg", "max")
PRESERVE_COLORS = ("none", "luminance", "match")
COLOR_MATCHES = ("chol", "pca", "sym")
PRECISIONS = ("tf32", "fp32")  # on CUDA; the CPU provider always computes in FP32
CUDNN_SEARCHES = ("heuristic", "exhaustive")
UNTILS = ("converged", "iterations")
MAX_HISTORY = 64  # L-BFGS pairs a checkpoint may hold (runtime/checkpoint.MAX_PAIRS)


class OptionError(InputError):
    """A bad option value; `option` is the field's name (e.g. "style_weight")."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option

    def __reduce__(self):  # so it crosses to and from worker processes (batch, Ray, pools) whole
        return type(self), (self.option, str(self))


# ------------------------------------------------------------------------------- checks


def check_number(name: str, value, low: float = 0.0) -> float:
    """A finite float >= low, or an InputError naming the option."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < low:
        raise InputError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return v


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        within = f"within {low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{name} must be {within}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v not in ("true", "false", "1", "0", "yes", "no"):
        raise InputError(f"expected true or false, got {text!r}")
    return v in ("true", "1", "yes")


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}: expected one of {', '.join(choices)}")
    return value


def layer_weights(what: str, spec: Mapping[str, float] | Sequence[str] | None,
                  default: Mapping[str, float]) -> dict[str, float]:
    """{'conv4_2': 1.0} from a mapping, a list of names (equal weights) or None (the default);
    names are canonical (`relu4_2` -> `conv4_2`)."""
    if spec is None:
        spec = default
    if isinstance(spec, str):
        raise InputError(f"{what} layers: give a list or a mapping, not the string {spec!r}")
    if not isinstance(spec, Mapping):
        names = list(spec)
        spec = {name: 1.0 / max(1, len(names)) for name in names}
    out: dict[str, float] = {}
    for name, w in spec.items():
        try:
            key = canonical(str(name))
        except ValueError as e:
            raise InputError(f"{what} layers: {e}") from None
        out[key] = check_number(f"{what} layer {name} weight", w)
    if not out:
        raise InputError(f"{what} layers: none given")
    return out


def count(n: int, word: str) -> str:
    """'1 weight', '2 weights'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def per_style(what: str, values: Sequence, n_styles: int) -> None:
    """Refuse one value per style when the count is not the styles' (InputError)."""
    if len(values) != n_styles:
        raise InputError(f"{what} has {count(len(values), 'value')} for {count(n_styles, 'style image')}")


def style_losses(spec: str | Mapping[str, str] | None, layers: Sequence[str]) -> dict[str, str]:
    """Each style layer's loss: from "histogram" (every layer), "gram,conv1_1:histogram" (a loss
    for all, then per layer; relu names too) or a mapping {layer: loss} (others: gram)."""
    if spec is None:
        spec = defaults.STYLE_LOSS
    if isinstance(spec, str):
        items = [p.strip() for p in spec.split(",") if p.strip()]
        if not items:
            raise InputError("style loss: none given")
        every = [p for p in items if ":" not in p]
        if len(every) > 1:
            raise InputError(f"style loss {spec!r}: one loss for all layers at most, then layer:loss")
        spec = {"": every[0] if every else defaults.STYLE_LOSS,
                **dict(p.split(":", 1) for p in items if ":" in p)}
    spec = {str(k).strip(): str(v).strip() for k, v in spec.items()}
    base = check_choice("style loss", spec.pop("", "gram"), STYLE_LOSSES)
    out = dict.fromkeys(layers, base)
    for name, kind in spec.items():
        try:
            key = canonical(name)
        except ValueError as e:
            raise InputError(f"style loss: {e}") from None
        if key not in out:
            raise InputError(f"style loss for {key}, which is not a style layer ({', '.join(layers)})")
        out[key] = check_choice(f"style loss of {key}", kind, STYLE_LOSSES)
    return out


def check_blend(blend: Sequence[float] | None, n_styles: int) -> None:
    if blend is None:
        return
    values = [check_number("style blend weight", v) for v in blend]
    if len(values) != n_styles:
        raise InputError(f"style blend has {count(len(values), 'weight')} for {count(n_styles, 'style image')}")
    if sum(values) <= 0:
        raise InputError("style blend weights must not all be zero")


# ----------------------------------------------------------------- parsing text values


def parse_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"expected comma-separated numbers, got {text!r}") from None


def parse_scale(text: str) -> float | tuple[float, ...]:
    """'0.5' -> 0.5; '1,0.5' -> one per style image."""
    values = parse_floats(text)
    return values[0] if len(values) == 1 else values


def parse_look(text: str) -> int | None:
    if text.strip() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"expected a size in px or none, got {text!r}") from None


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"expected comma-separated whole numbers, got {text!r}") from None


def parse_iterations(text: str) -> int | tuple[int, ...]:
    """'500' -> 500; '150,60,30' -> one count per scale."""
    counts = parse_ints(text)
    return counts[0] if len(counts) == 1 else counts


def parse_layers(text: str) -> dict[str, float]:
    """'conv1_1:0.2,conv2_1:0.2' or 'conv1_1,conv2_1' (equal weights) -> {name: weight}."""
    items = [p.strip() for p in text.split(",") if p.strip()]
    out: dict[str, float] = {}
    for item in items:
        name, _, w = item.partition(":")
        try:
            out[name] = float(w) if w else 1.0 / len(items)
        except ValueError:
            raise InputError(f"bad weight in {item!r}") from None
    return out


def parse_bytes(text: str) -> int | None:
    """Bytes from 2000000000, 512M, 4G, 1.5GiB (None when unreadable)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        return None
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    return int(float(m.group(1)) * scale)


def parse_scales(text: str) -> str | tuple[int, ...] | None:
    text = text.strip()
    return text if text == "auto" else None if text == "none" else parse_ints(text)


def show_layers(spec: Mapping[str, float]) -> str:
    return ",".join(f"{k}:{v:g}" for k, v in spec.items())


def show(value) -> str:
    """A value as the text that parses back to it (help defaults, manifests, forms)."""
    if isinstance(value, Mapping):
        return show_layers(value)
    if isinstance(value, tuple | list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def auto_ladder(size: int, start: int = defaults.LADDER_START, aspect: float = 1.0) -> tuple[int, ...]:
    """Doubling sizes (the longer side) up to `size`, e.g. 256, 512, 1024, each rung's shorter
    side (`aspect` = shorter / longer side of the content) at least `start`."""
    sizes = [size]
    while round(sizes[0] // 2 * aspect) >= start:
        sizes.insert(0, sizes[0] // 2)
    return tuple(sizes)


# ------------------------------------------------------------------------- the options


def opt(default, help: str, parse: Callable[[str], Any] | None = None, cli: type = str,
        factory: Callable[[], Any] | None = None) -> Field:
    """A field with what the front ends need: `help`, `parse` (text -> value) and the type the
    CLI declares (`cli`: int and float get click's own conversion)."""
    meta = {"help": help, "parse": parse or cli, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class StyleOptions:
    """The options of one stylize run; checked on construction. Make one with keywords,
    `StyleOptions.parse({"size": "256", ...})` from text, or `options.replace(...)`."""

    # size None (API only): the content's own size
    size: int | None = opt(defaults.SIZE, f"Longer side of the output in px ({MIN_SIZE}..{MAX_SIZE})", cli=int)
    iterations: int | tuple[int, ...] = opt(defaults.ITERATIONS, "L-BFGS iterations per scale, or one count per "
                                            "scale (150,60,30): the cap with --until converged", parse_iterations)
    until: str = opt(defaults.UNTIL, "converged (stop each scale when its picture stops changing, at most "
                     "--iterations) | iterations (run exactly --iterations)")
    content_weight: float = opt(defaults.CONTENT_WEIGHT, "Weight of the content term", cli=float)
    style_weight: float = opt(defaults.STYLE_WEIGHT, "Weight of the style term", cli=float)
    tv_weight: float = opt(defaults.TV_WEIGHT, "Weight of the total-variation term", cli=float)
    style_blend: tuple[float, ...] | None = opt(None, "Weights of the styles, e.g. 0.7,0.3", parse_floats)
    style_scale: float | tuple[float, ...] = opt(defaults.STYLE_SCALE, "Style size relative to the output "
                                                 "(0.05..8), or one per style image (1,0.5)", parse_scale)
    content_layers: dict[str, float] = opt(None, "Content layers and weights, e.g. conv4_2:1", parse_layers,
                                           factory=lambda: dict(defaults.CONTENT_LAYERS))
    style_layers: dict[str, float] = opt(None, "Style layers and weights, e.g. conv1_1:0.2,conv2_1:0.2",
                                         parse_layers, factory=lambda: dict(defaults.STYLE_LAYERS))
    style_layer_weight_exp: float = opt(defaults.STYLE_LAYER_WEIGHT_EXP, "Multiply the i-th style layer's weight "
                                        "(shallow to deep) by this to the power i, keeping their sum", cli=float)
    style_loss: str = opt(defaults.STYLE_LOSS, " | ".join(STYLE_LOSSES) + ", for every style layer, then per "
                          "layer: e.g. gram,conv1_1:histogram")
    style_per_scale: bool = opt(False, "One style image per scale of the ladder, coarse to fine (Gatys et al. "
                                "2017: the layout from one painting, the strokes from another)", parse_bool, cli=bool)
    tileable: bool = opt(False, "Make the output tile seamlessly (circular padding in every convolution; "
                         "sides rounded to multiples of 16 px)", parse_bool, cli=bool)
    preserve_colors: str = opt(defaults.PRESERVE_COLORS, " | ".join(PRESERVE_COLORS))
    color_match: str = opt(defaults.COLOR_MATCH, " | ".join(COLOR_MATCHES) + " (with --preserve-colors match)")
    init: str | os.PathLike | np.ndarray = opt(defaults.INIT, "noise | content | random | an image file")
    noise_ratio: float = opt(defaults.NOISE_RATIO, "Noise share of the noise init (0..1)", cli=float)
    pool: str = opt(defaults.POOL, " | ".join(POOLS))
    scales: tuple[int, ...] | str | None = opt(defaults.SCALES, "Coarse to fine: auto (doubling up to --size, "
                                               f"shorter sides from {defaults.LADDER_START} px), sizes such as "
                                               "256,512,1024, or none (--size only)", parse_scales)
    look_size: int | None = opt(defaults.LOOK_SIZE, "Above this longer side (px) the picture shrunk to it is "
                                "also scored as a picture of that size, so the look holds at every size (none: "
                                "each size only as VGG19 sees it there)", parse_look)
    look_weight: float = opt(defaults.LOOK_WEIGHT, "Weight of the picture as seen at --look-size (times its "
                             "content and style terms there)", cli=float)
    seed: int = opt(defaults.SEED, "Random seed of the initial canvas", cli=int)
    device: str = opt(defaults.DEVICE, " | ".join(DEVICES))
    precision: str = opt(defaults.PRECISION, "On CUDA: tf32 (TF32 tensor cores for convolutions and "
                         "products) | fp32 (strict FP32)")
    cudnn_search: str = opt(defaults.CUDNN_SEARCH, "On CUDA: heuristic | exhaustive (times every cuDNN "
                            "algorithm once per image size)")
    optimizer: str | None = opt(None, "scipy (L-BFGS-B) | lbfgs (ours: NumPy float32, far less overhead per "
                                "step) | lbfgs-device (ours, vectors kept on the device) | adam (with "
                                f"--learning-rate); default: {defaults.OPTIMIZER}, or lbfgs where scipy's "
                                "float64 state does not fit the memory")
    history: int = opt(defaults.LBFGS_MEMORY, "L-BFGS pairs kept (scipy's maxcor; lbfgs-device keeps "
                       f"{defaults.LBFGS_MEMORY})", cli=int)
    learning_rate: float = opt(defaults.LEARNING_RATE, "Adam's step, in 0..255 pixel units (--optimizer adam)",
                               cli=float)
    threads: int | None = opt(None, "onnxruntime intra-op threads (default: physical cores)", cli=int)
    model: str | None = opt(None, "An exported .onnx (default: the models folder)")
    max_memory: int | str | None = opt(None, "Memory the run may use, e.g. 4G: above what the whole picture "
                                       "needs, it is evaluated in tiles (default: ONNXSTYLE_MAX_MEMORY or "
                                       "what the machine has free)")
    tile: int | None = opt(None, "Force tiles of this many px (0: never tile; default: fitted to the "
                           "memory)", cli=int)

    def __post_init__(self) -> None:
        for f in fields(self):
            try:
                value = _CHECKS[f.name](getattr(self, f.name), self)
            except OptionError:
                raise
            except InputError as e:
                raise OptionError(f.name, str(e)) from None
            object.__setattr__(self, f.name, value)

    @classmethod
    def parse(cls, values: Mapping[str, Any], base: StyleOptions | None = None) -> StyleOptions:
        """Options from text (a manifest row, a form, the CLI): each string is parsed by its
        field's parser, other values are taken as they are; unknown names are refused."""
        changes = {}
        for name, value in values.items():
            f = FIELDS.get(name)
            if f is not None and isinstance(value, str) and f.metadata["parse"] is not str:
                if value.strip() == "" and f.default is None:
                    value = None
                else:
                    try:
                        value = f.metadata["parse"](value.strip())
                    except InputError as e:
                        raise OptionError(name, f"{label(name)}: {e}") from None
                    except ValueError:
                        raise OptionError(name, f"{label(name)} must be a number, got {value!r}") from None
            changes[name] = value
        return (base or cls()).replace(**changes)

    def replace(self, **changes) -> StyleOptions:
        """A copy with `changes` (values as the API takes them: numbers, lists, arrays)."""
        for name in changes:
            if name not in FIELDS:
                close = difflib.get_close_matches(name, FIELDS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise OptionError(name, f"unknown option {name!r}{hint}")
        return replace(self, **changes)

    def ladder(self, shape: tuple[int, ...] | None = None) -> list[int | None]:
        """The sizes to run at, coarse to fine (None: the content's own size, one scale). The
        auto ladder depends on the content's aspect (`shape`, height x width...; None: square)."""
        if self.scales == "auto":
            aspect = min(shape[:2]) / max(shape[:2]) if shape else 1.0
            return list(auto_ladder(self.size, aspect=aspect)) if self.size else [self.size]
        return list(self.scales) if self.scales else [self.size]

    def iteration_list(self, shape: tuple[int, ...] | None = None) -> list[int]:
        """Iterations at each size of `ladder(shape)`: one count per square content's rung, of
        which a narrower content's auto ladder keeps the finer ones."""
        n = len(self.ladder())
        if isinstance(self.iterations, tuple):
            if len(self.iterations) != n:
                raise OptionError("iterations", f"{len(self.iterations)} iteration counts for {n} scales")
            counts = list(self.iterations)
        else:
            counts = [self.iterations] * n
        return counts[n - len(self.ladder(shape)):]

    def style_scales(self, n_styles: int) -> list[float]:
        """The style scale of each of `n_styles` styles (OptionError when the counts differ)."""
        if not isinstance(self.style_scale, tuple):
            return [self.style_scale] * n_styles
        try:
            per_style("style scale", self.style_scale, n_styles)
        except InputError as e:
            raise OptionError("style_scale", str(e)) from None
        return list(self.style_scale)

    def style_layer_weights(self) -> dict[str, float]:
        """`style_layers` with the i-th (shallow to deep) weight times style_layer_weight_exp ** i,
        scaled back to the same sum (anishathalye/neural-style's --style-layer-weight-exp, whose
        weights start equal and sum to 1)."""
        layers = sorted(self.style_layers, key=LAYERS.index)
        raised = {n: self.style_layers[n] * self.style_layer_weight_exp ** i for i, n in enumerate(layers)}
        total, new = sum(self.style_layers.values()), sum(raised.values())
        return {n: w * total / new if new > 0 else w for n, w in raised.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label(name: str) -> str:
    return name.replace("_", " ")


def _number(name: str) -> Callable:
    return lambda v, o: check_number(label(name), v)


def _iterations(v, o) -> int | tuple[int, ...]:
    if np.ndim(v) == 0:
        return check_int("iterations", v, 1)
    return tuple(check_int("iterations", n, 1) for n in v)


def _init(v, o):
    if isinstance(v, np.ndarray) or v in INITS:
        return v
    if isinstance(v, str | os.PathLike) and os.path.isfile(v):
        return v
    raise InputError(f"unknown init {str(v)!r}: expected one of {', '.join(INITS)} or an image file")


def _noise_ratio(v, o) -> float:
    v = check_number("noise ratio", v)
    if v > 1.0:
        raise InputError(f"noise ratio {v:g} must be within 0..1")
    return v


def _style_scale(v, o) -> float | tuple[float, ...]:
    def one(x) -> float:
        x = check_number("style scale", x)
        if not 0.05 <= x <= 8:
            raise InputError(f"style scale {x:g} must be within 0.05..8")
        return x

    if np.ndim(v) == 0:
        return one(v)
    values = tuple(one(x) for x in v)
    if not values:
        raise InputError("style scale: none given")
    return values[0] if len(values) == 1 else values


def _exponent(v, o) -> float:
    v = check_number("style layer weight exp", v)
    if v == 0:
        raise InputError("style layer weight exp must be > 0")
    return v


def _learning_rate(v, o) -> float:
    v = check_number("learning rate", v)
    if v == 0:
        raise InputError("learning rate must be > 0")
    return v


def _history(v, o) -> int:
    v = check_int("history", v, 1, MAX_HISTORY)
    if o.optimizer == "lbfgs-device" and v != defaults.LBFGS_MEMORY:
        raise InputError(f"history {v}: lbfgs-device's step graph keeps {defaults.LBFGS_MEMORY} pairs "
                         "(use --optimizer lbfgs or scipy for another count)")
    return v


def _blend(v, o) -> tuple[float, ...] | None:
    if v is None:
        return None
    values = tuple(check_number("style blend weight", b) for b in v)
    if not values or sum(values) <= 0:
        raise InputError("style blend weights must not all be zero")
    return values


def _scales(v, o) -> tuple[int, ...] | None:
    if v is None or (isinstance(v, str) and v == "none"):  # the CLI's and the forms' spelling too
        return None
    if isinstance(v, str) and v == "auto":
        return v  # sizes from `size` (ladder()), so that replace(size=...) moves them along
    sizes = tuple(v)
    sizes = tuple(check_int("scales: size", s, MIN_SIZE, MAX_SIZE) for s in sizes)
    if not sizes:
        raise InputError("scales: none given")
    if any(b < a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise InputError(f"scales {list(sizes)} must grow from coarse to fine")
    return sizes


def _style_loss(v, o) -> str | dict[str, str]:
    style_losses(v, list(o.style_layers))  # checked against the style layers; kept as given
    return v.strip() if isinstance(v, str) else dict(v)


def _max_memory(v, o) -> int | None:
    if v is None:
        return None
    n = parse_bytes(v) if isinstance(v, str) else check_int("max memory", v, 1)
    if n is None or n < 1 << 20:
        raise InputError(f"max memory {v!r}: expected bytes of at least 1M, such as 512M or 4G")
    return n


def _look_size(v, o) -> int | None:
    return None if v is None else check_int("look size", v, MIN_SIZE, MAX_SIZE)


def _tile(v, o) -> int | None:
    if v is None or v == 0:
        return v
    return check_int("tile", v, 16, MAX_SIZE)


def _threads(v, o) -> int | None:
    if v is None:
        return None
    return check_int("threads", v, 0)


_CHECKS: dict[str, Callable[[Any, StyleOptions], Any]] = {
    "size": lambda v, o: None if v is None else check_int("size", v, MIN_SIZE, MAX_SIZE),
    "iterations": _iterations,
    "until": lambda v, o: check_choice("until", v, UNTILS),
    "content_weight": _number("content_weight"),
    "style_weight": _number("style_weight"),
    "tv_weight": _number("tv_weight"),
    "style_blend": _blend,
    "style_scale": _style_scale,
    "content_layers": lambda v, o: layer_weights("content", v, defaults.CONTENT_LAYERS),
    "style_layers": lambda v, o: layer_weights("style", v, defaults.STYLE_LAYERS),
    "style_layer_weight_exp": _exponent,
    "style_loss": _style_loss,
    "style_per_scale": lambda v, o: check_bool("style per scale", v),
    "tileable": lambda v, o: check_bool("tileable", v),
    "preserve_colors": lambda v, o: check_choice("preserve-colors", v, PRESERVE_COLORS),
    "color_match": lambda v, o: check_choice("color match", v, COLOR_MATCHES),
    "init": _init,
    "noise_ratio": _noise_ratio,
    "pool": lambda v, o: check_choice("pool", v, POOLS),
    "scales": _scales,
    "seed": lambda v, o: check_int("seed", v, 0),
    "device": lambda v, o: check_choice("device", v, DEVICES),
    "precision": lambda v, o: check_choice("precision", v, PRECISIONS),
    "cudnn_search": lambda v, o: check_choice("cudnn search", v, CUDNN_SEARCHES),
    "optimizer": lambda v, o: None if v is None else check_choice("optimizer", v, OPTIMIZERS),
    "history": _history,
    "learning_rate": _learning_rate,
    "threads": _threads,
    "model": lambda v, o: None if v is None else os.fspath(v),
    "max_memory": _max_memory,
    "tile": _tile,
    "look_size": _look_size,
    "look_weight": _number("look_weight"),
}

FIELDS: dict[str, Field] = {f.name: f for f in fields(StyleOptions)}
assert set(_CHECKS) == set(FIELDS), "every option has its check"


def default(name: str):
    f = FIELDS[name]
    return f.default_factory() if f.default is MISSING else f.default


__all__ = ["StyleOptions", "OptionError", "FIELDS", "LAYERS", "default", "show", "label"]
