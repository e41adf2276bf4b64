"""A PyTorch autograd reference of exactly the graph's math, for the benchmark only.

Same weights (the exported graphs' own tensors, read back by ref_weights.graph_weights and copied
into torch convs), same input transform (the folded 1x1 conv on RGB 0..255), zero padding 1, ReLU,
2x2 stride-2 average pooling with TF SAME semantics (ceil_mode=True, count_include_pad=False:
a window hanging over an odd edge averages its valid pixels only), the content term
sum((F - P)^2) / (2 sqrt(N) sqrt(M)), the style terms w_l sum((G/M - A)^2) / (4 N^2) and the
total variation sum of squared neighbour differences. The gradient comes from autograd.

PyTorch is a benchmark-only dependency (`pip install torch==2.13.0`); onnxstyle never imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from ref_weights import graph_weights

from onnxstyle import defaults
from onnxstyle.export.weights import VGGWeights
from onnxstyle.layers import ARCH


class TorchObjective:
    """loss, grad = TorchObjective(content, styles)(x), x an H x W x 3 float32 array, 0..255."""

    def __init__(
        self,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        content_weight: float = defaults.CONTENT_WEIGHT,
        style_weight: float = defaults.STYLE_WEIGHT,
        tv_weight: float = defaults.TV_WEIGHT,
        content_layers: Mapping[str, float] = defaults.CONTENT_LAYERS,
        style_layers: Mapping[str, float] = defaults.STYLE_LAYERS,
        device: str = "cpu",
        weights: VGGWeights | None = None,
    ) -> None:
        w = weights or graph_weights()
        self.device = torch.device(device)
        t = self._tensor
        self.pre_w = t(w.pre_w.reshape(3, 3, 1, 1))
        self.pre_b = t(w.pre_b)
        self.convs = {name: (t(k), t(b)) for name, (k, b) in w.convs.items()}
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.cw, self.sw, self.tvw = float(content_weight), float(style_weight), float(tv_weight)
        # The deepest layer any term needs: the forward stops there.
        used = set(self.content_layers) | set(self.style_layers)
        self.last = max(i for i, (name, _, _) in enumerate(ARCH) if name in used)

        with torch.no_grad():
            feats = self.features(t(content))
            self.content_targets = {n: feats[n].clone() for n in self.content_layers}
            grams = {n: torch.zeros_like(self._gram(feats[n])) for n in self.style_layers}
            for img in styles:  # equal blend, like Objective's default
                sf = self.features(t(img))
                for n in self.style_layers:
                    grams[n] += self._gram(sf[n]) / len(styles)
            self.style_targets = grams

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device)

    @staticmethod
    def _gram(f: torch.Tensor) -> torch.Tensor:
        n = f.shape[1]
        f2 = f.reshape(n, -1)
        return f2 @ f2.T / f2.shape[1]

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image [H, W, 3] RGB 0..255 -> {layer: [1, N, h, w]} after ReLU, up to self.last."""
        h = F.conv2d(image.permute(2, 0, 1).unsqueeze(0), self.pre_w, self.pre_b)
        out = {}
        for name, _, _ in ARCH[: self.last + 1]:
            if name.startswith("pool"):
                h = F.avg_pool2d(h, 2, 2, ceil_mode=True, count_include_pad=False)
            else:
                k, b = self.convs[name]
                h = F.relu(F.conv2d(h, k, b, padding=1))
                out[name] = h
        return out

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        content = x.new_zeros(())
        for name, lw in self.content_layers.items():
            f = feats[name]
            n, m = f.shape[1], f.shape[2] * f.shape[3]
            diff = f - self.content_targets[name]
            content = content + lw * (diff * diff).sum() / (2 * math.sqrt(n) * math.sqrt(m))
        style = x.new_zeros(())
        for name, lw in self.style_layers.items():
            n = feats[name].shape[1]
            diff = self._gram(feats[name]) - self.style_targets[name]
            style = style + lw * (diff * diff).sum() / (4.0 * n * n)
        dv, dh = x[1:] - x[:-1], x[:, 1:] - x[:, :-1]
        tv = (dv * dv).sum() + (dh * dh).sum()
        total = self.cw * content + self.sw * style + self.tvw * tv
        return {"content": content, "style": style, "tv": tv, "total": total}

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(total loss, its gradient as float32 of x's shape)."""
        xt = self._tensor(x).requires_grad_(True)
        loss = self.terms(xt)["total"]
        loss.backward()
        return float(loss.detach()), xt.grad.cpu().numpy()
