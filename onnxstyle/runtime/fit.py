"""Fitting a run into a memory limit: untiled when the whole picture fits, else the largest tile
that does, with fewer L-BFGS pairs when even a small tile leaves too little room (docs/big.md).

The estimate covers the whole process: the loaded graphs and runtime (images.MEMORY_BASE), the
pictures and whole-size arrays (content, styles, canvas, gradient, content targets, masks), the
optimiser's state (scipy's L-BFGS-B in float64, ours in float32) and the graph's working memory
on one tile's region (images.graph_memory).

On CUDA the plan is made against the GPU's free memory (session.gpu_free_memory) and counts what
sits there: the CUDA context and libraries (GPU_BASE), the graph's working memory (the CPU's
model, an expectation until benchmarks/gpu_check.sh measures it), the bound image and gradient,
the content targets and lbfgs-device's history; the host's share is not planned there.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnxstyle import defaults
from onnxstyle.errors import InputError
from onnxstyle.layers import CHANNELS
from onnxstyle.runtime import images, session, tiles

MIN_TILE = 256  # below this, halos cost more than the tile: fewer pairs first
MIN_PAIRS = 3
PICTURE_COPIES = 6  # float32 H x W x 3: content, canvas, image and gradient in flight, a copy or two
GPU_BASE = 1 << 30  # CUDA context, cuBLAS/cuDNN handles and conv workspace: a guess until measured (issue 24)
GPU_PICTURE_COPIES = 2  # float32 H x W x 3 bound on the GPU: the image and its gradient


@dataclass(frozen=True)
class Fit:
    tile: int | None  # None: untiled
    pairs: int  # L-BFGS pairs kept
    need: int  # estimated peak bytes
    limit: int | None  # the limit it was fitted to (None: none known)

    def describe(self) -> str:
        how = "untiled" if self.tile is None else f"tiled, {self.tile} px tiles"
        limit = "" if self.limit is None else f" of {images.mb(self.limit)}"
        return f"{how}, {self.pairs} L-BFGS pairs, about {images.mb(self.need)}{limit}"

    def to_dict(self) -> dict:
        return {"tile": self.tile, "lbfgs_pairs": self.pairs, "estimate_bytes": self.need,
                "limit_bytes": self.limit}


def optimizer_bytes(n: int, optimizer: str, pairs: int) -> int:
    """The optimiser's state for n variables: scipy keeps 2 x pairs float64 history vectors and
    about 9 work ones (x, g, bounds, its own copies); ours 2 x pairs float32 and about 10 (on a GPU,
    lbfgs-device keeps them there)."""
    if optimizer == "scipy":
        return (2 * pairs + 9) * 8 * n
    return (2 * pairs + 10) * 4 * n


def estimate(hw: tuple[int, int], tile: int | None, pairs: int, optimizer: str = "scipy",
             content_layers=None, styles: int = 1, masked: bool = False, device_kind: str = "cpu") -> int:
    """Peak bytes of a stylize run at H x W in the memory of `device_kind` ("cpu": the process;
    "cuda": the GPU's; see the module doc)."""
    h, w = hw
    n = h * w * 3
    layers = list(content_layers or defaults.CONTENT_LAYERS)
    targets = sum(CHANNELS[x] * tiles.positions(hw, x)[0] * tiles.positions(hw, x)[1] * 4 for x in layers)
    whole = (PICTURE_COPIES + styles) * 4 * n + targets + (2 * styles * h * w * 4 if masked else 0)
    if tile is None:
        region = hw
    else:
        side = tile + 2 * tiles.gradient_halo(["conv5_1"])
        region = (min(h, side), min(w, side))
    if device_kind == "cuda":
        state = optimizer_bytes(n, optimizer, pairs) if optimizer == "lbfgs-device" else 0
        return int(GPU_BASE + images.graph_memory(region) + GPU_PICTURE_COPIES * 4 * n + targets + state)
    return int(images.MEMORY_BASE + images.graph_memory(region) + whole + optimizer_bytes(n, optimizer, pairs))


def plan(hw: tuple[int, int], optimizer: str = "scipy", limit: int | None = None,
         tile: int | None = None, content_layers=None, styles: int = 1, masked: bool = False,
         device: str = "cpu", pairs: int = defaults.LBFGS_MEMORY) -> Fit:
    """The fit of a run at H x W under `limit` bytes (default: what images.available_memory says,
    or on CUDA the GPU's free memory), keeping up to `pairs` L-BFGS pairs. `tile` forces that tile
    size (0: never tile). `device` as the run's ("cpu", "cuda", "auto"). Raises InputError when
    nothing fits."""
    device_kind = "cuda" if session.runs_on_cuda(device) else "cpu"
    if limit is None:
        limit = session.gpu_free_memory() if device_kind == "cuda" else images.available_memory()
    h, w = hw
    least = min(MIN_PAIRS, pairs)
    kw = {"optimizer": optimizer, "content_layers": content_layers, "styles": styles, "masked": masked,
          "device_kind": device_kind}

    def fits(t: int | None, p: int) -> Fit | None:
        need = estimate(hw, t, p, **kw)
        return Fit(t, p, need, limit) if limit is None or need <= limit else None

    if tile is not None:  # the user's tile (0: untiled): only the pairs adapt
        t = None if tile == 0 or tile >= max(hw) else tiles.check_tile(tile)
        candidates = [(t, p) for p in range(pairs, least - 1, -1)]
    else:
        sizes = range(tiles.check_tile(max(MIN_TILE, max(hw) - 1)), MIN_TILE - 1, -tiles.GRID)
        candidates = [(None, pairs)] + [(t, pairs) for t in sizes]
        candidates += [(t, p) for p in range(pairs - 1, least - 1, -1) for t in (None, *sizes)]
    for t, p in candidates:
        found = fits(t, p)
        if found is not None:
            return found
    t, p = candidates[-1]
    need = estimate(hw, t, p, **kw)
    how = "untiled" if t is None else f"in {t} px tiles"
    hint = "; --optimizer lbfgs keeps half of scipy's state" if optimizer == "scipy" else ""
    where = "GPU memory" if device_kind == "cuda" else "memory"
    raise InputError(f"stylizing at {w}x{h} px needs about {images.mb(need)} of {where} even {how} with "
                     f"{p} L-BFGS pairs, and {images.mb(limit or 0)} is available (--max-memory); use a "
                     f"smaller --size{hint}")
