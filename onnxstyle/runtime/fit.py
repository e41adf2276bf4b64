"""Fitting a run into a memory limit: untiled when the whole picture fits, else the largest tile
that does, with fewer L-BFGS pairs when even a small tile leaves too little room (docs/big.md).

The estimate covers the whole process: the loaded graphs and runtime (MEMORY_BASE), the
pictures and whole-size arrays (content, styles, canvas, gradient, content targets, masks), the
optimiser's state (scipy's L-BFGS-B in float64, ours in float32) and the graph's working memory
on one tile's region (graph_memory).

On CUDA the plan is made against the GPU's free memory (session.gpu_free_memory) and counts what
sits there: the CUDA context and libraries (GPU_BASE), the graph's working memory (the CPU's
model, an expectation until benchmarks/gpu_check.sh measures it), the bound image and gradient,
the content targets and lbfgs-device's history; the host's share is not planned there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from onnxstyle import defaults
from onnxstyle.errors import InputError
from onnxstyle.layers import ARCH, CHANNELS
from onnxstyle.options import parse_bytes
from onnxstyle.runtime import session, tiles

# Peak memory of one loss-and-gradient run of the fused graph on the CPU provider, fitted to
# ru_maxrss of one evaluation at 256..768 px (498, 1052, 1775 MiB; re-fitted for issue 11: base
# ~320 MB incl. both graphs, slope 2.0..2.55 x activation bytes),
# rounded up: see docs/reliability.md. Re-fitted for the Winograd products (graph.winograd_conv:
# their folded U adds ~300 MB, their working memory is below Conv's): two calls peaked at 685,
# 648, 884 and 2201 MiB at 128, 256, 512 and 1024 px (activations 18, 72, 290, 1160 MB); with
# conv2_2 and conv3_1 as Winograd products too, at 688, 662, 997 and 2386 MiB, still below it.
# With the w2 loss in the graph (issue 27; its float64 branches, the session ~60 MiB larger and the
# targets' pass ~100 MiB), two calls peaked at 721, 747, 929-1037 and 1216 MiB at 128, 256, 384 and
# 512 px (tests/test_fit.py's measure), up to 80 MiB above the old base's estimate: the base +120 MiB.
MEMORY_BASE = 800 << 20
MEMORY_PER_ACTIVATION_BYTE = 1.7
ENV_MEMORY = "ONNXSTYLE_MAX_MEMORY"  # cap (bytes, or 512M / 4G) below what the machine has


def activation_floats(h: int, w: int) -> int:
    """Floats in the VGG19 activations (conv1_1..conv5_1) of an H x W image."""
    total = 0
    for name, _, cout in ARCH:
        if name.startswith("pool"):
            h, w = -(-h // 2), -(-w // 2)  # SAME pooling rounds up
        else:
            total += cout * h * w
    return total


def graph_memory(hw: tuple[int, int]) -> int:
    """Working bytes of one run of the fused graph on an H x W picture (CPU provider)."""
    return int(MEMORY_PER_ACTIVATION_BYTE * activation_floats(int(hw[0]), int(hw[1])) * 4)


def _cgroup_free() -> int | None:
    """Room left under a cgroup v2/v1 memory limit (containers), or None when unlimited."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
    return None


def available_memory() -> int | None:
    """Bytes this process may still use: MemAvailable, a cgroup limit and ONNXSTYLE_MAX_MEMORY
    (the smallest of those known), or None if nothing can be read."""
    known: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                known.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            known.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    cg = _cgroup_free()
    if cg is not None:
        known.append(cg)
    env = os.environ.get(ENV_MEMORY)
    if env:
        cap = parse_bytes(env)
        if cap is None:
            raise InputError(f"{ENV_MEMORY}={env!r}: expected bytes such as 2000000000, 512M or 4G")
        known.append(cap)
    return min(known) if known else None


def mb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(need: int, what: str) -> None:
    """Refuse up front when `need` bytes exceed the memory available (estimate and limit shown)."""
    have = available_memory()
    if have is not None and need > have:
        raise InputError(f"{what} needs about {mb(need)} of memory, but only {mb(have)} is "
                         "available; use a smaller --size")


MIN_TILE = 256  # below this, halos cost more than the tile: fewer pairs first
# the last resort before refusing: tiles down to this (a 128 px interior in a 448 px region, about
# 12x the interior's work) where MIN_TILE with MIN_PAIRS does not fit
LAST_TILE = 128
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
        limit = "" if self.limit is None else f" of {mb(self.limit)}"
        return f"{how}, {self.pairs} L-BFGS pairs, about {mb(self.need)}{limit}"

    def to_dict(self) -> dict:
        return {"tile": self.tile, "lbfgs_pairs": self.pairs, "estimate_bytes": self.need,
                "limit_bytes": self.limit}


def optimizer_bytes(n: int, optimizer: str, pairs: int) -> int:
    """The optimiser's state for n variables: scipy keeps 2 x pairs float64 history vectors, its
    work ones, and on the way in turns the bounds into Python lists of n floats and of n tuples
    (scipy.optimize.new_bounds_to_old): measured, the peak of minimize(method="L-BFGS-B",
    bounds=Bounds(0, 255), maxcor=3) at n = 3 x 1024 x 1024 rose 295 bytes per variable (scipy
    1.17.1), 16 x pairs of them the history; ours 2 x pairs float32 and about 10 (on a GPU,
    lbfgs-device keeps them there)."""
    if optimizer == "scipy":
        return (16 * pairs + 247) * n
    return (2 * pairs + 10) * 4 * n


def estimate(hw: tuple[int, int], tile: int | None, pairs: int, optimizer: str = "scipy",
             content_layers=None, styles: int = 1, masked: bool = False, device_kind: str = "cpu",
             pictures: int = 0) -> int:
    """Peak bytes of a stylize run at H x W in the memory of `device_kind` ("cpu": the process;
    "cuda": the GPU's; see the module doc); `pictures`: float32 H x W x 3 arrays the caller holds
    beside a still's (in the host's memory: a video frame's temporal term and flows). The look
    term (runtime/look.py) is not counted: its evaluation at look_size (256 px) runs in the same
    session after the picture's, on fewer pixels than any region. Measured, it adds 39 MiB at
    512 px and 138 MiB at 1024 px (3-4 % of the peak), inside this estimate's margin
    (benchmarks/results/big.md: 3847 MiB measured against 4.0 GiB estimated at 1024 px)."""
    h, w = hw
    n = h * w * 3
    layers = list(content_layers or defaults.CONTENT_LAYERS)
    targets = sum(CHANNELS[x] * tiles.positions(hw, x)[0] * tiles.positions(hw, x)[1] * 4 for x in layers)
    whole = (PICTURE_COPIES + styles + pictures) * 4 * n + targets + (2 * styles * h * w * 4 if masked else 0)
    if tile is None:
        region = hw
    else:
        side = tile + 2 * tiles.gradient_halo(["conv5_1"])
        region = (min(h, side), min(w, side))
        # tiled, pass 1 holds one region's features at the style and content layers in NumPy while
        # the optimiser's state is live (1024 px in 688 px regions: about 240 MiB; the estimate
        # without them was 2046 MiB, the measured peak 2312 MiB)
        held = {*defaults.STYLE_LAYERS, *layers}
        whole += sum(CHANNELS[x] * tiles.positions(region, x)[0] * tiles.positions(region, x)[1] * 4 for x in held)
    if device_kind == "cuda":
        state = optimizer_bytes(n, optimizer, pairs) if optimizer == "lbfgs-device" else 0
        return int(GPU_BASE + graph_memory(region) + GPU_PICTURE_COPIES * 4 * n + targets + state)
    return int(MEMORY_BASE + graph_memory(region) + whole + optimizer_bytes(n, optimizer, pairs))


def plan(hw: tuple[int, int], optimizer: str = "scipy", limit: int | None = None,
         tile: int | None = None, content_layers=None, styles: int = 1, masked: bool = False,
         device: str = "cpu", pairs: int = defaults.LBFGS_MEMORY, pictures: int = 0) -> Fit:
    """The fit of a run at H x W under `limit` bytes (default: what available_memory says,
    or on CUDA the GPU's free memory), keeping up to `pairs` L-BFGS pairs. `tile` forces that tile
    size (0: never tile). `device` as the run's ("cpu", "cuda", "auto"). Raises InputError when
    nothing fits."""
    device_kind = "cuda" if session.runs_on_cuda(device) else "cpu"
    if limit is None:
        limit = session.gpu_free_memory() if device_kind == "cuda" else available_memory()
    h, w = hw
    least = min(MIN_PAIRS, pairs)
    kw = {"optimizer": optimizer, "content_layers": content_layers, "styles": styles, "masked": masked,
          "device_kind": device_kind, "pictures": pictures}

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
        small = range(min(sizes) - tiles.GRID, LAST_TILE - 1, -tiles.GRID)
        candidates += [(t, p) for t in small for p in range(pairs, least - 1, -1)]
    for t, p in candidates:
        found = fits(t, p)
        if found is not None:
            return found
    t, p = candidates[-1]
    need = estimate(hw, t, p, **kw)
    how = "untiled" if t is None else f"in {t} px tiles"
    hint = "; --optimizer lbfgs keeps half of scipy's state" if optimizer == "scipy" else ""
    where = "GPU memory" if device_kind == "cuda" else "memory"
    raise InputError(f"stylizing at {w}x{h} px needs about {mb(need)} of {where} even {how} with "
                     f"{p} L-BFGS pairs, and {mb(limit or 0)} is available (--max-memory); use a "
                     f"smaller --size{hint}")


def choose(hw: tuple[int, int], optimizer: str | None, limit: int | None = None, tile: int | None = None,
           content_layers=None, styles: int = 1, masked: bool = False, device: str = "cpu",
           pairs: int = defaults.LBFGS_MEMORY, pictures: int = 0) -> tuple[str, Fit, str]:
    """(optimiser, fit, note): the named optimiser's fit (plan); where none was named, the default
    (scipy) unless its float64 state leaves a worse fit (tiles, fewer pairs, or none) than ours
    in float32 does: then lbfgs, and `note` says so in one line. Raises when nothing fits."""
    kw = {"limit": limit, "tile": tile, "content_layers": content_layers, "styles": styles, "masked": masked,
          "device": device, "pairs": pairs, "pictures": pictures}
    if optimizer is not None:
        return optimizer, plan(hw, optimizer, **kw), ""
    try:
        first = plan(hw, defaults.OPTIMIZER, **kw)
    except InputError:
        first = None
    if first is not None and (first.tile is None or tile) and first.pairs == pairs:  # the best fit there is
        return defaults.OPTIMIZER, first, ""
    ours = plan(hw, "lbfgs", **kw)

    def rank(f: Fit) -> tuple:
        return f.pairs, f.tile is None, f.tile or 0

    if first is not None and rank(first) >= rank(ours):
        return defaults.OPTIMIZER, first, ""
    was = "does not fit" if first is None else f"would run {first.describe()}"
    return "lbfgs", ours, (f"no optimizer named: scipy's float64 state {was}; using --optimizer lbfgs "
                           f"(float32 state): {ours.describe()}")
