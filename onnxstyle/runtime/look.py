"""The look held across sizes (issue 27 item 6): the picture as seen at `look_size` scored
as a picture of that size, beside the graph.

VGG19's deepest style layer sees about 200 px, so at 512 px and above the painting's large
structures are in no style layer's view: the finer rungs of the ladder paint them over with fine
texture, and the content term pulls the picture back to the photo. A Gram pyramid (Snelgrove
2017, "High-Resolution Multi-Scale Neural Texture Synthesis") keeps them: every rung larger than
`look_size` also scores the picture shrunk to `look_size` (an exact box filter, a linear map with
its transpose as the backward) as a picture of that size: the content and style terms of the same
graph there, against the photo and the painting at that size, times `look_weight`.
"""

from __future__ import annotations

import numpy as np

from onnxstyle.runtime.objective import AddedTerm


def box_matrix(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] float32: output sample i is the mean of the input interval it covers,
    [i, i + 1) * n_in / n_out, each input sample weighted by its overlap (an exact area resize)."""
    step = n_in / n_out
    lo = np.arange(n_out)[:, None] * step
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(lo + step, j + 1) - np.maximum(lo, j), 0, None)
    return (overlap / step).astype(np.float32)


class LookObjective(AddedTerm):
    """`base` (the picture at its size) plus `coarse` (the same objective at the look size, TV
    weight 0) on the picture shrunk to the look size: the look term is coarse's weighted total."""

    name = "look"

    def __init__(self, base, coarse, weight: float) -> None:
        super().__init__(base, weight)
        self.coarse = coarse
        (h, w), (hh, ww) = base.shape[:2], coarse.shape[:2]
        self.rows, self.cols = box_matrix(hh, h), box_matrix(ww, w)

    def seen(self, x: np.ndarray) -> np.ndarray:
        """x (H x W x 3) at the look size."""
        return np.einsum("ih,hwc,jw->ijc", self.rows, x, self.cols, optimize=True)

    def added(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        terms, g = self.coarse.evaluate(self.seen(x.reshape(self.base.shape)))
        g = self.weight * np.asarray(g, np.float32).reshape(self.coarse.shape)  # weighted at the smaller size
        return terms["total"], np.einsum("ih,ijc,jw->hwc", self.rows, g, self.cols, optimize=True)
