"""Geometry of exact tiled evaluation (docs/big.md).

A feature of VGG19 layer l at position p (stride S = 2^pools before l) depends on the pixels
[S p - e, S p + S - 1 + e] only, e its extent (`reach`): 70 px at conv5_1 (a 156 px receptive
field). Tiles cut the picture into interiors whose edges lie on the 16 px pooling grid, so that
each layer's positions split exactly between tiles and TF-SAME pooling sees, inside a tile's
extended region, the same windows it sees in the whole picture. A tile is evaluated on its
interior plus a halo, clipped to the picture:
- features (Grams, content) at the interior's positions are exact with a halo of e
  (`feature_halo`);
- the gradient at the interior's pixels is exact when every position whose receptive field
  holds one of them has its own receptive field inside the region: a halo of
  S * floor((S - 1 + e) / S) + e on the left/top, S * floor((e - 1) / S) + S + e on the
  right/bottom (`gradient_halo`): 150 px for conv5_1, 86 px for conv4_2 alone, 2 px for conv1_1.
Both are rounded up to the grid (160 px for conv5_1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from onnxstyle.layers import ARCH

GRID = 16  # 2^4 poolings before conv5_1: tile edges on this grid keep every pooling window whole


def reach(layer: str) -> tuple[int, int]:
    """(stride S, extent e) of a layer: its position p sees pixels [S p - e, S p + S - 1 + e]."""
    stride, extent = 1, 0
    for name, _, _ in ARCH:
        if name.startswith("pool"):
            stride *= 2  # positions 2p, 2p + 1 below: the same extent around a cell twice as wide
        else:
            extent += stride  # a 3x3 conv adds one position, `stride` pixels, on each side
        if name == layer:
            return stride, extent
    raise ValueError(f"unknown layer {layer!r}")


def positions(hw: tuple[int, int], layer: str) -> tuple[int, int]:
    """(h, w) of a layer's features for an H x W picture (SAME pooling rounds up)."""
    s = reach(layer)[0]
    return -(-hw[0] // s), -(-hw[1] // s)


def _grid(n: int) -> int:
    return -(-n // GRID) * GRID


def on_grid(hw: tuple[int, ...]) -> tuple[int, int]:
    """(h, w) rounded to the nearest multiples of GRID (at least 2 GRID): a tileable picture's size."""
    return tuple(max(2 * GRID, round(n / GRID) * GRID) for n in hw[:2])


def feature_halo(layers: Iterable[str]) -> int:
    """Pixels beyond an interior that its features at `layers` depend on, rounded to the grid."""
    return _grid(max([reach(n)[1] for n in layers], default=0))


def gradient_halo(layers: Iterable[str]) -> int:
    """Pixels beyond an interior that its gradient depends on (terms at `layers`, and the TV
    term's neighbour), rounded to the grid."""
    need = 1
    for name in layers:
        s, e = reach(name)
        need = max(need, s * ((s - 1 + e) // s) + e, s * ((e - 1) // s) + s + e)
    return _grid(need)


@dataclass(frozen=True)
class Tile:
    """An interior [y0, y1) x [x0, x1) and its region [ry0, ry1) x [rx0, rx1), in pixels."""

    y0: int
    y1: int
    x0: int
    x1: int
    ry0: int
    ry1: int
    rx0: int
    rx1: int

    @property
    def region(self) -> tuple[slice, slice]:
        return slice(self.ry0, self.ry1), slice(self.rx0, self.rx1)

    def interior(self, stride: int = 1) -> tuple[slice, slice]:
        """The interior's positions at `stride`, relative to the region."""
        return (slice(self.y0 // stride - self.ry0 // stride, -(-self.y1 // stride) - self.ry0 // stride),
                slice(self.x0 // stride - self.rx0 // stride, -(-self.x1 // stride) - self.rx0 // stride))

    def whole(self, stride: int = 1) -> tuple[slice, slice]:
        """The interior's positions at `stride` in the whole picture."""
        return (slice(self.y0 // stride, -(-self.y1 // stride)),
                slice(self.x0 // stride, -(-self.x1 // stride)))

    def region_at(self, stride: int) -> tuple[slice, slice]:
        """The region's positions at `stride` in the whole picture."""
        return (slice(self.ry0 // stride, -(-self.ry1 // stride)),
                slice(self.rx0 // stride, -(-self.rx1 // stride)))


def check_tile(tile: int) -> int:
    """A tile size in px, rounded down to the grid; at least one grid cell."""
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < GRID:
        raise ValueError(f"tile must be a whole number of px >= {GRID}, got {tile!r}")
    return int(tile) // GRID * GRID


def plan(hw: tuple[int, int], tile: int, halo: int, wrap: bool = False) -> list[Tile]:
    """Tiles of `tile` px (a multiple of GRID) covering an H x W picture, each with `halo` px
    (a multiple of GRID) around it, clipped to the picture; with `wrap` (a tileable picture, H
    and W multiples of GRID) not clipped: the region runs on across the edges (`take`)."""
    h, w = hw
    out = []
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            if wrap:
                out.append(Tile(y0, y1, x0, x1, y0 - halo, y1 + halo, x0 - halo, x1 + halo))
            else:
                out.append(Tile(y0, y1, x0, x1, max(0, y0 - halo), min(h, y1 + halo),
                                max(0, x0 - halo), min(w, x1 + halo)))
    return out


def take(a: np.ndarray, rows: slice, cols: slice, axis: int = 0) -> np.ndarray:
    """a[rows, cols] on axes (axis, axis + 1), the picture repeated beyond its edges (a wrapped
    region of a tileable picture: the features of the periodic picture are those of circular
    padding in every convolution); a plain slice when inside."""
    for ax, sl in ((axis, rows), (axis + 1, cols)):
        n = a.shape[ax]
        if sl.start < 0 or sl.stop > n:
            a = np.take(a, np.arange(sl.start, sl.stop) % n, axis=ax)
        else:
            a = a[(slice(None),) * ax + (sl,)]
    return a


def pool_same(a: np.ndarray) -> np.ndarray:
    """2x2 stride-2 mean over the valid pixels of [..., H, W] (TF SAME: out ceil(H/2))."""
    h, w = a.shape[-2:]
    ph, pw = h % 2, w % 2
    pad = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)])
    s = pad[..., 0::2, 0::2] + pad[..., 1::2, 0::2] + pad[..., 0::2, 1::2] + pad[..., 1::2, 1::2]
    rows = np.full(s.shape[-2], 2.0, np.float32)
    cols = np.full(s.shape[-1], 2.0, np.float32)
    rows[-1] -= ph
    cols[-1] -= pw
    return (s / (rows[:, None] * cols[None, :])).astype(a.dtype)
