"""An independent float64 NumPy forward of the contract's math (no ONNX), for the tests."""

from __future__ import annotations

import numpy as np

from onnxstyle.layers import ARCH


def conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray, circular: bool = False) -> np.ndarray:
    """x [C, H, W], w [O, C, 3, 3], zero (or `circular`) padding 1."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="wrap" if circular else "constant")
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # C, H, W, 3, 3
    return np.einsum("chwij,ocij->ohw", win, w, optimize=True) + b[:, None, None]


def avgpool_same(x: np.ndarray) -> np.ndarray:
    c, h, w = x.shape
    out = np.zeros((c, -(-h // 2), -(-w // 2)))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(1, 2))
    return out


def features(image: np.ndarray, weights, pool: str = "avg", circular: bool = False) -> dict[str, np.ndarray]:
    """image [H, W, 3] RGB 0..255 -> {layer: [N, h, w]} after ReLU (`circular`: every conv
    padded circularly, the picture a torus)."""
    x = np.asarray(image, np.float64)
    z = x @ weights.pre_w.T.astype(np.float64) + weights.pre_b
    h = z.transpose(2, 0, 1)
    out = {}
    for name, _, _ in ARCH:
        if name.startswith("pool"):
            h = avgpool_same(h) if pool == "avg" else maxpool_same(h)
        else:
            w, b = weights.convs[name]
            h = np.maximum(conv3x3(h, w.astype(np.float64), b.astype(np.float64), circular), 0)
            out[name] = h
    return out


def gram(f: np.ndarray) -> np.ndarray:
    f2 = f.reshape(f.shape[0], -1)
    return f2 @ f2.T / f2.shape[1]


def terms(x, content_feats, style_grams, weights, content_layers, style_layers, pool="avg",
          masks=None, blend=None) -> dict:
    """style_grams[layer] is one target, or with `masks` ([K, H, W]) a list of K targets."""
    fx = features(x, weights, pool)
    content = 0.0
    for layer, lw in content_layers.items():
        n, hh, ww = fx[layer].shape
        m = hh * ww
        content += lw * ((fx[layer] - content_feats[layer]) ** 2).sum() / (2 * np.sqrt(n) * np.sqrt(m))
    style = 0.0
    for layer, lw in style_layers.items():
        n = fx[layer].shape[0]
        if masks is None:
            style += lw * ((gram(fx[layer]) - style_grams[layer]) ** 2).sum() / (4 * n * n)
            continue
        for k, mask in enumerate(masks):
            g = masked_gram(fx[layer], pooled_masks(mask, weights)[layer])
            style += lw * blend[k] * ((g - style_grams[layer][k]) ** 2).sum() / (4 * n * n)
    x64 = np.asarray(x, np.float64)
    tv = (np.diff(x64, axis=0) ** 2).sum() + (np.diff(x64, axis=1) ** 2).sum()
    return {"content": content, "style": style, "tv": tv}


def gradient(x, content_feats, style_grams, weights, content_layers, style_layers, term_weights) -> np.ndarray:
    """d total / d x of terms() (average pooling, no masks; total = the term_weights' sum of content,
    style and tv), by hand in float64: each layer's adjoint, from the deepest used layer down."""
    cw, sw, tw = term_weights
    x64 = np.asarray(x, np.float64)
    pre_w = weights.pre_w.astype(np.float64)
    h = (x64 @ pre_w.T + weights.pre_b).transpose(2, 0, 1)
    used = set(content_layers) | set(style_layers)
    arch = ARCH[:max(i for i, (name, _, _) in enumerate(ARCH) if name in used) + 1]
    tape = []  # per layer: the pool's input shape, or the conv's ReLU mask
    feats = {}
    for name, _, _ in arch:
        if name.startswith("pool"):
            tape.append(h.shape)
            h = avgpool_same(h)
        else:
            w, b = weights.convs[name]
            pre = conv3x3(h, w.astype(np.float64), b.astype(np.float64))
            tape.append(pre > 0)
            h = feats[name] = np.maximum(pre, 0)
    g = np.zeros_like(h)
    for (name, _, _), saved in zip(reversed(arch), reversed(tape), strict=True):
        if name.startswith("pool"):  # each input pixel is in one window: its share of that window's mean
            _, hh, ww = saved
            rows, cols = (np.minimum(2, n - 2 * np.arange(k)) for n, k in ((hh, g.shape[1]), (ww, g.shape[2])))
            counts = rows[:, None] * cols
            g = np.repeat(np.repeat(g / counts, 2, axis=1), 2, axis=2)[:, :hh, :ww]
            continue
        f = feats[name]
        n, m = f.shape[0], f.shape[1] * f.shape[2]
        if name in content_layers:  # d/dF of sum((F - P)^2) / (2 sqrt(N) sqrt(M))
            g = g + cw * content_layers[name] * (f - content_feats[name]) / (np.sqrt(n) * np.sqrt(m))
        if name in style_layers:  # d/dF of sum((F F^T / M - A)^2) / (4 N^2): (G - A) F / (N^2 M)
            f2 = f.reshape(n, m)
            g = g + sw * style_layers[name] * ((gram(f) - style_grams[name]) @ f2 / (n * n * m)).reshape(f.shape)
        w = weights.convs[name][0].astype(np.float64)
        g = conv3x3(g * saved, w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], np.zeros(w.shape[1]))  # the adjoint
    dx = g.transpose(1, 2, 0) @ pre_w
    d0, d1 = 2 * tw * np.diff(x64, axis=0), 2 * tw * np.diff(x64, axis=1)  # tv: squared neighbour differences
    dx[1:] += d0
    dx[:-1] -= d0
    dx[:, 1:] += d1
    dx[:, :-1] -= d1
    return dx


def maxpool_same(x: np.ndarray) -> np.ndarray:
    c, h, w = x.shape
    out = np.zeros((c, -(-h // 2), -(-w // 2)))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max(axis=(1, 2))
    return out


def masked_gram(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """F diag(m) F^T / sum(m), m the mask at the layer's size."""
    f2 = f.reshape(f.shape[0], -1)
    mm = m.reshape(-1)
    return (f2 * mm) @ f2.T / max(mm.sum(), 1e-8)


def pooled_masks(mask: np.ndarray, weights) -> dict[str, np.ndarray]:
    """The mask [H, W] average-pooled down the network like the features, per conv layer."""
    m = np.asarray(mask, np.float64)[None]
    out = {}
    for name, _, _ in ARCH:
        if name.startswith("pool"):
            m = avgpool_same(m)
        else:
            out[name] = m[0]
    return out
