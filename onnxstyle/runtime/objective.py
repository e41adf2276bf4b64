"""The style-transfer objective: loss and gradient of an image, from the exported graph."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from onnxstyle import defaults, layout
from onnxstyle.errors import InputError, ModelError, NumericalError
from onnxstyle.files import circular_path, exported, features_path
from onnxstyle.layers import CHANNELS, LAYERS, canonical
from onnxstyle.options import OptionError, StyleOptions, check_blend, style_losses
from onnxstyle.runtime import models, session, tiles
from onnxstyle.runtime.images import as_rgb_array

_DEVICE_LOCK = threading.Lock()  # guards each objective's lazily built device-side targets
DEVICE_MIN_SIZE = 4096  # inputs this large live on the device; smaller ones (flags, weights) on the host


def total_variation(x: np.ndarray, rows: int = 256) -> float:
    """The TV term of an H x W x 3 image in float64, `rows` rows at a time."""
    total = 0.0
    for r in range(0, x.shape[0], rows):
        dv = np.diff(x[r:r + rows + 1].astype(np.float64), axis=0)
        dh = np.diff(x[r:r + rows].astype(np.float64), axis=1)
        total += float(np.vdot(dv, dv) + np.vdot(dh, dh))
    return total


GRAM_CHUNK = 1 << 16  # positions per float32 product, summed in float64


def _gram(f: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """sum over positions of F F^T ([1, N, N]) or of F diag(m_k) F^T ([K, N, N]) for F [N, M]
    and masks [K, M], in float64 over chunks of GRAM_CHUNK positions: exact to float32's
    rounding once cast, so every runtime that sums in float64 (js/) gets the same targets."""
    k = 1 if masks is None else masks.shape[0]
    out = np.zeros((k, f.shape[0], f.shape[0]))
    for c in range(0, f.shape[1], GRAM_CHUNK):
        fc = f[:, c:c + GRAM_CHUNK].astype(np.float64)
        if masks is None:
            out[0] += fc @ fc.T
        else:
            out += np.matmul(fc[None] * masks[:, None, c:c + GRAM_CHUNK], fc.T)
    return out


def options_text(kinds: Mapping[str, str]) -> str:
    return ",".join(f"{n}:{k}" for n, k in kinds.items())


SORTED = ("histogram", "sliced")  # the losses on sorted values (export/graph.py sorted_term)
SCALED_EPS = 1e-8  # as export/graph.py's
W2_EPS, W2_ITERATIONS = 1e-4, 12  # as export/graph.py's


def sqrtm(a: np.ndarray) -> np.ndarray:
    """The square root of a symmetric positive semi-definite matrix (eigenvalues below 0 as 0)."""
    vals, vecs = np.linalg.eigh(a)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def unit_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, n] random unit directions (columns), float64: the sliced loss's projections."""
    p = rng.standard_normal((n, n))
    return p / np.linalg.norm(p, axis=0, keepdims=True)


def resample(values: np.ndarray, m: int) -> np.ndarray:
    """Rows of sorted values [P, Ms] at m quantiles: the empirical quantile function (value i at
    (i + 1/2) / Ms, linear between) at (j + 1/2) / m; the values themselves when m = Ms."""
    ms = values.shape[1]
    if ms == m:
        return values.astype(np.float64)
    at = (np.arange(m) + 0.5) * ms / m - 0.5
    return np.stack([np.interp(at, np.arange(ms), row) for row in values.astype(np.float64)])


def w2_parts(cov: np.ndarray, root: np.ndarray, iterations: int) -> tuple[float, np.ndarray]:
    """(f, df/dC) for f = tr(sqrt_ns(S C S)) (export/graph.py w2_term: the Newton-Schulz square
    root and the derivative of its iterated function), C [N, N], S = `root`, float64."""
    big = root @ cov @ root
    norm = np.linalg.norm(big)
    x, eye = big / norm, np.eye(len(big))
    y, z, yd, zd = x, eye, eye, np.zeros_like(x)
    for _ in range(iterations):
        t = (3 * eye - z @ y) / 2
        td = -(zd @ y + z @ yd) / 2
        y, yd, z, zd = y @ t, yd @ t + y @ td, t @ z, td @ z + t @ zd
    gb = (yd + (np.trace(y) / 2 - np.trace(yd @ x)) * x) / np.sqrt(norm)
    return float(np.sqrt(norm) * np.trace(y)), root @ gb @ root


def matched(y: np.ndarray, m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Each position's matched value in the masked histogram/sliced loss (export/graph.py
    masked_sorted_term): the quantile function through q [P, Mt] (value j at (j + 1/2) / Mt) at
    the position's mid-rank among the rows y [P, M] weighted by m [M]; float64 [P, M]."""
    order = np.argsort(y, axis=1, kind="stable")
    ms = m.astype(np.float64)[order]
    u = (np.cumsum(ms, axis=1) - ms / 2) / max(float(m.sum(dtype=np.float64)), 1e-8)
    at = u * q.shape[1] - 0.5
    out = np.empty(y.shape)
    grid = np.arange(q.shape[1])
    np.put_along_axis(out, order, np.stack([np.interp(a, grid, r) for a, r in zip(at, q, strict=True)]), axis=1)
    return out


class Objective:
    """loss, grad = Objective(content, style)(x) for x an H x W x 3 RGB array in 0..255.

    Uses the images as given (no resizing). `style` is one image or a list of images, whose Gram
    targets are averaged with `style_blend` (equal weights by default). Immutable once built and
    safe to call from many threads at once.

    `tile` (px): evaluate the same loss and gradient tile by tile (runtime/tiles.py), in memory
    bounded by the tile; the targets are computed the same way. None, or a tile holding the whole
    picture: one run of the graph.

    `style_loss`: each style layer's loss (options.style_losses: "gram", "histogram,conv5_1:gram",
    {layer: loss}); each loss's term is scaled by defaults.STYLE_LOSS_SCALE. `seed`: the sliced
    loss's random directions (fixed for this objective). `tileable`: the picture is a torus
    (circular padding in every convolution; H and W multiples of 16, so that every pooling window
    stays whole, and at least 32): untiled through the circular graphs (files.circular_path),
    tiled through the ordinary ones over regions that run on across the edges (tiles.take).
    """

    def __init__(self, content, style, options: StyleOptions | None = None, *,
                 style_masks: Sequence[np.ndarray | None] | None = None, tile: int | None = None,
                 **changes) -> None:
        """`options` (default: every default) with `changes` applied, by the options' names
        (content_weight=..., style_layers=..., style_loss=..., model=..., device=..., threads=...):
        checked there, once. Of them the weights, layers, losses, blend, seed, tileable, model,
        pool, device, threads, precision and cudnn_search matter here."""
        opts = (options or StyleOptions()).replace(**changes)
        model, device, threads = opts.model, opts.device, opts.threads
        precision, cudnn_search, seed, tileable = opts.precision, opts.cudnn_search, opts.seed, opts.tileable
        path = models.resolve(model, pool=opts.pool)
        self.content_layers, self.style_layers = opts.content_layers, opts.style_layer_weights()
        self.style_kinds = style_losses(opts.style_loss, list(self.style_layers))
        # each layer's weight in the graph: its loss's scale included
        self._style_w = {n: w * defaults.STYLE_LOSS_SCALE[self.style_kinds[n]] for n, w in self.style_layers.items()}
        self.weights = np.array([opts.content_weight, opts.style_weight, opts.tv_weight], np.float32)

        content = as_rgb_array(content)
        styles = [as_rgb_array(s) for s in (style if isinstance(style, list | tuple) else [style])]
        if not styles:
            raise InputError("at least one style image is needed")
        try:
            check_blend(opts.style_blend, len(styles))
        except InputError as e:
            raise OptionError("style_blend", str(e)) from None
        blend = np.full(len(styles), 1.0) if opts.style_blend is None else np.asarray(opts.style_blend, np.float64)
        blend = blend / blend.sum()
        self.shape = content.shape
        for img in (content, *styles):
            if min(img.shape[:2]) < 16:
                raise InputError(f"image of {img.shape[1]}x{img.shape[0]} px: each side must be >= 16")

        self.tileable = bool(tileable)
        h, w = content.shape[:2]
        if self.tileable and (h % tiles.GRID or w % tiles.GRID or min(h, w) < 2 * tiles.GRID):
            raise InputError(f"a tileable picture's sides must be multiples of {tiles.GRID} px and at least "
                             f"{2 * tiles.GRID}, got {w}x{h}")
        self.tile = None if tile is None else self._tile(tile, content.shape)
        # tileable: untiled, the circular graphs; tiled, the tiles' regions run on across the edges
        self.wrap = self.tileable and self.tile is not None
        self._torus = None  # the circular features graph (tileable, untiled)
        if self.tileable and self.tile is None:
            path = circular_path(path)
            if not exported(path):
                raise ModelError(f"{path}: the circular graphs (--tileable) are missing: re-export")
            self._torus = session.load(features_path(path), device, threads, "features", precision, cudnn_search)
        self.engine = session.load(path, device, threads, "loss", precision, cudnn_search)
        static = self.engine.metadata.get(layout.META_STATIC)  # a static graph: the features graph is its source's
        fpath = features_path(path.with_name(self.engine.metadata.get(layout.META_STATIC_OF, path.name)))
        if self._torus is not None:  # the style's features: zero padding (the painting is no torus)
            fpath = features_path(models.resolve(model, pool=opts.pool))
        if not fpath.is_file():
            raise ModelError(f"{path}: its features graph {fpath.name} is missing beside it (re-export)")
        self.features_engine = session.load(fpath, device, threads, "features", precision, cudnn_search)
        self.bound = self.provider == session.CUDA  # loss+gradient through I/O bindings (_run)
        self._bindings = threading.local()
        masks = self._masks(style_masks, len(styles), content.shape[:2])
        coefs = {"content": self.weights[0], "style": self.weights[1]}
        # layers whose terms count (the graph skips a term whose coefficient is zero)
        self._used = {kind: [n for n, w in layers.items() if w * coefs[kind] != 0]
                      for kind, layers in (("content", self.content_layers), ("style", self._style_w))}
        if static:
            want = layout.static_key(content.shape[:2], self._used["content"], self._used["style"], LAYERS)
            other = (self.tile is not None or masks is not None or set(self.style_kinds.values()) - {"gram"}
                     or self.tileable)
            if static != want or other:
                raise ModelError(f"{path.name} is a static graph for {static}; this run needs {want}"
                                 f"{', untiled, unmasked, gram style loss' if static == want else ''}: "
                                 "onnxstyle export --static WxH with its layers makes one")
        feed = self._base_feed()
        cfeat = self._whole_features(content, list(self.content_layers), self.tileable)
        if self.tile is None:
            for name in self.content_layers:
                feed[layout.content_target(name)] = cfeat[name]
        self._content = cfeat  # tiled: cropped to each tile's region
        # Unmasked: one target, the blend-weighted mean of the styles' Grams (covariances). Masked:
        # one per style. Histogram and sliced: the blend-weighted mean of the styles' quantiles (masked: each style's).
        kinds = self.style_kinds
        sorted_layers = [n for n, kind in kinds.items() if kind in SORTED]
        gram_layers = [n for n in self.style_layers if n not in sorted_layers]
        k = 1 if masks is None else len(styles)
        grams = {name: np.zeros((k, CHANNELS[name], CHANNELS[name])) for name in gram_layers}
        rng = np.random.default_rng(seed)
        self._proj = {n: unit_directions(rng, CHANNELS[n]) for n in sorted_layers if kinds[n] == "sliced"}
        # masked: each style's own quantiles (at >= 2 points: the graph interpolates between them)
        m_out = {n: int(np.prod(tiles.positions(content.shape[:2], n))) for n in sorted_layers}
        if masks is not None:
            m_out = {n: max(m, 2) for n, m in m_out.items()}
        quantiles = {n: np.zeros((k, CHANNELS[n], m_out[n])) for n in sorted_layers}
        # w2: the means and second moments blended (crowsonkb's), C = the second moment - mu mu^T
        centred = [n for n in gram_layers if kinds[n] in ("covariance", "w2")]
        means = {n: np.zeros((k, CHANNELS[n])) for n in centred if kinds[n] == "w2"}
        for i, (img, w) in enumerate(zip(styles, blend, strict=True)):
            sums, m = self._gram_sums(img, gram_layers, centred=centred)
            for name in gram_layers:
                gram = sums[name][0] / m[name]
                if name in centred:
                    mean = sums[f"mean:{name}"][0] / m[name]
                    if name in means:
                        means[name][0 if masks is None else i] += w * mean if masks is None else mean
                    else:
                        gram = gram - np.outer(mean, mean)
                if masks is None:
                    grams[name][0] += w * gram
                else:
                    grams[name][i] = gram
            for name, f in self._whole_features(img, sorted_layers).items():
                q = resample(np.sort(self._project(name, f), axis=1), m_out[name])
                if masks is None:
                    quantiles[name][0] += w * q
                else:
                    quantiles[name][i] = q
        for name, mean in means.items():  # w2's targets: the square root of C + eps I, and mu
            eye = W2_EPS * np.eye(len(mean[0]))
            grams[name] = np.stack([sqrtm(g - np.outer(mu, mu) + eye) for g, mu in zip(grams[name], mean, strict=True)])
            feed[layout.mean_target(name)] = mean.astype(np.float32)[:, :, None]
        for name, g in grams.items():
            feed[layout.gram_target(name)] = g.astype(np.float32)
        for name, q in quantiles.items():
            feed[layout.sorted_target(name)] = q.astype(np.float32)[:, :, None]
            if name in self._proj:
                feed[layout.projection(name)] = self._proj[name].astype(np.float32)
        self._targets = {name: feed[layout.gram_target(name)].astype(np.float64) for name in grams}
        self._quantiles = quantiles
        self._w2_means = {n: feed[layout.mean_target(n)][:, :, 0].astype(np.float64) for n in means}
        self._blend_w = blend if masks is not None else np.ones(1)
        self._masks_full = masks
        self._layer_m = np.array([np.prod(tiles.positions(content.shape[:2], n)) for n in LAYERS], np.float32)
        self._pyramid = None if masks is None else self._mask_pyramid(masks)
        if masks is not None:
            feed[layout.STYLE_MASKED] = np.array(True)
            feed[layout.STYLE_MASKS] = masks if self.tile is None else np.ones((1, 1, 1), np.float32)
            feed[layout.STYLE_BLEND] = blend.astype(np.float32)
        feed[layout.WEIGHTS] = self.weights
        feed[layout.CONTENT_LAYER_W] = np.array([self.content_layers.get(n, 0.0) for n in LAYERS], np.float32)
        feed[layout.STYLE_LAYER_W] = np.array([self._style_w.get(n, 0.0) for n in LAYERS], np.float32)
        for term, w, lw in (("content", self.weights[0], feed[layout.CONTENT_LAYER_W]),
                            ("style", self.weights[1], feed[layout.STYLE_LAYER_W])):
            for name, coef in zip(LAYERS, w * lw, strict=True):  # float32, as the graph's coef
                feed[layout.gate(term, name)] = np.array(coef != 0)
        for name, kind in kinds.items():
            if kind != "gram":
                feed[layout.gate(kind, name)] = np.array(True)
        names = {i.name for i in self.engine.session.get_inputs()}
        missing = sorted(n for n, v in feed.items() if n not in names and v.dtype == bool and v)
        if missing and not static:  # a static graph has its gates resolved (checked above)
            raise ModelError(f"{path}: the graph lacks the input {missing[0]} (for --style-loss "
                             f"{options_text(kinds)}): re-export it")
        self._feed = {n: v for n, v in feed.items() if n in names}

    @staticmethod
    def _tile(tile: int, shape: tuple[int, ...]) -> int | None:
        """The tile size on the pooling grid, or None when one tile holds the whole picture."""
        try:
            t = tiles.check_tile(tile)
        except ValueError as e:
            raise InputError(str(e)) from None
        return None if t >= max(shape[:2]) else t

    @property
    def tiled(self) -> bool:
        return self.tile is not None

    def _plan(self, hw: tuple[int, int], halo: int, wrap: bool = False) -> list[tiles.Tile]:
        """This objective's tiles over an H x W picture (one, the whole of it, when untiled);
        `wrap`: regions across the edges of the (tileable) picture."""
        tile = self.tile if self.tile is not None and self.tile < max(hw) else max(hw)
        return tiles.plan(hw, tile, halo, wrap)

    def _interiors(self, image: np.ndarray, layers: Sequence[str], wrap: bool = False):
        """(tile, {layer: its features [N, h, w] at the tile's interior}) for each tile."""
        for t in self._plan(image.shape[:2], tiles.feature_halo(layers), wrap):
            feats = self.features(tiles.take(image, *t.region), layers) if layers else {}
            yield t, {n: f[0][(slice(None), *t.interior(tiles.reach(n)[0]))] for n, f in feats.items()}

    def _whole_features(self, image: np.ndarray, layers: list[str], wrap: bool = False) -> dict[str, np.ndarray]:
        """The picture's features [1, N, h, w] at `layers`, assembled tile by tile when tiled;
        `wrap`: the image is the tileable picture (a torus)."""
        if self.tile is None:
            return self.features(image, layers, wrap) if layers else {}
        out = {n: np.empty((1, CHANNELS[n], *tiles.positions(image.shape[:2], n)), np.float32) for n in layers}
        for t, feats in self._interiors(image, layers, wrap):
            for n, f in feats.items():
                out[n][(0, slice(None), *t.whole(tiles.reach(n)[0]))] = f
        return out

    def _gram_sums(self, image: np.ndarray, layers: list[str],
                   pyramid: dict[int, np.ndarray] | None = None,
                   content: Sequence[str] = (), centred: Sequence[str] = (), wrap: bool = False
                   ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Per layer: sum over positions of F F^T ([1, N, N], float64), or of F diag(m_k) F^T
        ([K, N, N]) with `pyramid`, the masks at each stride; and the normaliser M (positions)
        or S_k (mask areas, [K]). `content` layers: also sum((F - P)^2) as "content:<layer>";
        `centred` layers: also the sum of F (m_k) as "mean:<layer>" ([K, N])."""
        sums: dict[str, np.ndarray] = {}
        for t, feats in self._interiors(image, list(dict.fromkeys([*layers, *content])), wrap):
            for n, f in feats.items():
                s = tiles.reach(n)[0]
                if n in content:
                    p = self._content[n][(0, slice(None), *t.whole(s))]
                    d = (f - p).astype(np.float64)
                    sums[f"content:{n}"] = sums.get(f"content:{n}", 0.0) + float(np.vdot(d, d))
                if n not in layers:
                    continue
                m = None if pyramid is None else pyramid[s][(slice(None), *t.whole(s))]
                f2, m2 = f.reshape(f.shape[0], -1), None if m is None else m.reshape(m.shape[0], -1)
                sums[n] = sums.get(n, 0.0) + _gram(f2, m2)
                if n in centred:
                    first = f2.sum(axis=1, dtype=np.float64)[None] if m2 is None else m2.astype(np.float64) @ f2.T
                    sums[f"mean:{n}"] = sums.get(f"mean:{n}", 0.0) + first
        norm = {n: float(np.prod(tiles.positions(image.shape[:2], n))) if pyramid is None else
                np.maximum(pyramid[tiles.reach(n)[0]].sum(axis=(1, 2), dtype=np.float64), 1e-8)
                for n in layers}
        return sums, norm

    @staticmethod
    def _mask_pyramid(masks: np.ndarray) -> dict[int, np.ndarray]:
        """The masks at each stride, average-pooled as the graph pools them."""
        out, m = {1: masks}, masks
        for s in (2, 4, 8, 16):
            m = tiles.pool_same(m)
            out[s] = m
        return out

    @staticmethod
    def _masks(masks, n: int, hw: tuple[int, int]) -> np.ndarray | None:
        """[K, H, W] float32 in 0..1 (a missing mask is all ones), or None when none is given."""
        if masks is None or all(m is None for m in masks):
            return None
        if len(masks) != n:
            raise InputError(f"{len(masks)} style masks for {n} style images")
        out = np.ones((n, *hw), np.float32)
        for i, m in enumerate(masks):
            if m is None:
                continue
            m = np.asarray(m, np.float32)
            if m.ndim == 3:
                m = m.mean(axis=2)
            if m.shape != tuple(hw):
                raise InputError(f"style mask {i + 1} is {m.shape[1]}x{m.shape[0]}, the image "
                                 f"{hw[1]}x{hw[0]}")
            out[i] = m / 255.0 if m.max() > 1.0 else m
        return out

    @staticmethod
    def _base_feed() -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {
            layout.STYLE_MASKED: np.array(False),
            layout.STYLE_MASKS: np.ones((1, 1, 1), np.float32),
            layout.STYLE_BLEND: np.ones(1, np.float32),
            layout.TILED: np.array(False),
            layout.LAYER_M: np.ones(len(LAYERS), np.float32),
            layout.WEIGHTS: np.zeros(3, np.float32),
            layout.CONTENT_LAYER_W: np.zeros(len(LAYERS), np.float32),
            layout.STYLE_LAYER_W: np.zeros(len(LAYERS), np.float32),
            **{layout.gate(t, n): np.array(False) for n in LAYERS for t in ("content", "style")},
        }
        for name in LAYERS:
            n = CHANNELS[name]
            feed[layout.content_target(name)] = np.zeros((1, n, 1, 1), np.float32)
            feed[layout.gram_target(name)] = np.zeros((1, n, n), np.float32)
            feed[layout.mean_target(name)] = np.zeros((1, n, 1), np.float32)
            feed[layout.sorted_target(name)] = np.zeros((1, 1, 1, 1), np.float32)
            feed[layout.projection(name)] = np.zeros((n, 1), np.float32)
            for kind in layout.STYLE_LOSSES[1:]:
                feed[layout.gate(kind, name)] = np.array(False)
        return feed

    def _project(self, layer: str, f: np.ndarray) -> np.ndarray:
        """Features [1, N, h, w] as the rows the sorted losses sort: [N, M], or proj^T F."""
        f2 = f.reshape(f.shape[1], -1).astype(np.float64)
        p = self._proj.get(layer)
        return f2 if p is None else p.astype(np.float32).astype(np.float64).T @ f2

    @property
    def provider(self) -> str:
        return self.engine.provider

    def features(self, image, layers: Sequence[str], torus: bool = False) -> dict[str, np.ndarray]:
        """The image's VGG features after ReLU at `layers`, each [1, N, h, w] float32 (`torus`:
        the tileable picture's, from the circular features graph when this objective has it)."""
        feed = {layout.IMAGE: np.ascontiguousarray(as_rgb_array(image), np.float32)}
        names = [layout.feature(canonical(n)) for n in layers]
        engine = self._torus if torus and self._torus is not None else self.features_engine
        outs = engine.session.run(names, feed)
        return {canonical(n): o for n, o in zip(layers, outs, strict=True)}

    def _image(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != self.shape:
            x = x.reshape(self.shape) if x.size == np.prod(self.shape) else x
        if x.shape != self.shape:
            raise InputError(f"image of shape {x.shape}, the objective was built for {self.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _run(self, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        """The loss graph's `outputs` at the (checked) image x, untiled."""
        if not self.bound:
            return self.engine.session.run(outputs, {**self._feed, layout.IMAGE: x})
        # On CUDA: the targets stay on the device (uploaded once), the bindings are made once per
        # thread and output list; only the image goes up and the outputs come down per call.
        local = self._bindings.__dict__
        io = local.get(tuple(outputs))
        if io is None:
            io = local[tuple(outputs)] = self.engine.session.io_binding()
            for name, value in self._device_feed().items():
                io.bind_ortvalue_input(name, value)
            for name in outputs:
                io.bind_output(name, "cpu")
        io.bind_cpu_input(layout.IMAGE, x)
        self.engine.session.run_with_iobinding(io)
        return io.copy_outputs_to_cpu()  # copies: the binding reuses its output buffers

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(total loss, its gradient as float64 of x's shape)."""
        terms, grad = self.evaluate(x)
        return terms["total"], grad.astype(np.float64).reshape(np.shape(x))

    def evaluate(self, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """Terms (content/style/tv unweighted, total weighted) and the gradient, in one run
        (tiled: two passes over the tiles, for the Grams and then for the gradient)."""
        x = self._image(x)
        if self.tile is None:
            loss, c, s, tv, grad = self._run(x, [layout.LOSS, layout.CONTENT, layout.STYLE, layout.TV,
                                                 layout.GRAD])
            terms = {"content": float(c), "style": float(s), "tv": float(tv), "total": float(loss)}
        else:
            terms, weights = self._tiled_terms(x)
            grad = self._tiled_grad(x, weights)
        if not all(np.isfinite(v) for v in terms.values()) or not np.isfinite(grad).all():
            raise NumericalError("the loss or its gradient is NaN or Inf")
        return terms, grad

    def parts(self, terms: Mapping[str, float]) -> dict[str, float]:
        """The weighted terms, which add up to terms["total"]: weight x content, style, tv."""
        return {k: float(w) * terms[k] for k, w in zip(("content", "style", "tv"), self.weights, strict=True)}

    def terms(self, x: np.ndarray) -> dict[str, float]:
        """{"content", "style", "tv", "total"}; content/style/tv unweighted."""
        if self.tile is None:
            return self.evaluate(x)[0]
        terms = self._tiled_terms(self._image(x))[0]
        if not all(np.isfinite(v) for v in terms.values()):
            raise NumericalError("the loss is NaN or Inf")
        return terms

    def _tiled_terms(self, x: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Pass 1: the terms from the tiles' Gram and content sums, and per style layer the
        W_k = blend_k (G_k/S_k - A_k) / (N^2 S_k) that each tile's gradient needs."""
        used_c, used_s = self._used["content"], self._used["style"]
        kinds = self.style_kinds
        used_g = [n for n in used_s if kinds[n] not in SORTED]
        centred = [n for n in used_g if kinds[n] in ("covariance", "w2")]
        sums, norm = self._gram_sums(x, used_g, self._pyramid, used_c, centred, self.wrap)
        content = sum(self.content_layers[n] * sums[f"content:{n}"]
                      / (2 * np.sqrt(CHANNELS[n] * self._layer_m[LAYERS.index(n)])) for n in used_c)
        style, weights = 0.0, {}
        blend = self._blend_w.reshape(-1, 1, 1)
        for n in used_g:
            nn = CHANNELS[n] ** 2
            area = np.reshape(norm[n], (-1, 1, 1))
            d = sums[n] / area - self._targets[n]
            if kinds[n] == "covariance":
                mean = sums[f"mean:{n}"] / area[:, :, 0]  # K x N
                d = d - mean[:, :, None] * mean[:, None, :]
                weights[f"mean:{n}"] = mean[:, :, None].astype(np.float32)
            if kinds[n] == "w2":  # graph.w2_term: W_k = 2 blend_k dL/dC_k / S_k, v_k its mean term's
                n_ch = CHANNELS[n]
                mean = sums[f"mean:{n}"] / area[:, :, 0]  # K x N
                mt = self._w2_means[n]
                cov = sums[n] / area - mean[:, :, None] * mean[:, None, :] + W2_EPS * np.eye(n_ch)
                parts = [w2_parts(c, r, W2_ITERATIONS) for c, r in zip(cov, self._targets[n], strict=True)]
                per = [((mu - m) ** 2).sum() + np.trace(c) + (r * r).sum() - 2 * f
                       for mu, m, c, r, (f, _) in zip(mean, mt, cov, self._targets[n], parts, strict=True)]
                style += self._style_w[n] * float((blend.ravel() * np.array(per)).sum()) / n_ch
                gc = np.stack([np.eye(n_ch) - 2 * g for _, g in parts])
                weights[n] = (2 * blend * gc / (n_ch * area)).astype(np.float32)
                v = 2 * blend * (mean - mt)[:, :, None] / (n_ch * area)
                weights[f"mean:{n}"] = np.concatenate([mean[:, :, None], v], axis=2).astype(np.float32)
                continue
            if kinds[n] == "scaled":  # P = S2 / S1 per style; W_k = blend_k E_k / (S_k / 2)
                s1 = np.abs(d).sum(axis=(1, 2), keepdims=True) + SCALED_EPS
                s2 = (d * d).sum(axis=(1, 2), keepdims=True)
                style += self._style_w[n] * float((blend * s2 / s1).sum())
                weights[n] = (blend * (2 * d / s1 - np.sign(d) * s2 / s1**2) * 2 / area).astype(np.float32)
                continue
            style += self._style_w[n] * float((blend * d * d).sum()) / (4 * nn)
            weights[n] = (blend * d / (nn * area)).astype(np.float32)
        sorted_layers = [n for n in used_s if kinds[n] in SORTED]
        for n, f in self._whole_features(x, sorted_layers, self.wrap).items():
            y = self._project(n, f)
            if self._pyramid is not None:  # masked: the two planes B, A of graph.tiled_sorted_term
                m = y.shape[1]
                planes = np.zeros((2, *y.shape))
                for mask, q, w in zip(self._pyramid[tiles.reach(n)[0]], self._quantiles[n], blend.ravel(), strict=True):
                    mask = mask.reshape(-1).astype(np.float64)
                    area = max(float(mask.sum()), 1e-8)
                    r = matched(y, mask, q)
                    style += self._style_w[n] * w * float((mask * (y - r) ** 2).sum()) / (y.shape[0] * area)
                    planes[0] += m * w * mask * r / area
                    planes[1] += m * w * mask / area
                weights[n] = planes.astype(np.float32).reshape(2, y.shape[0], *f.shape[2:])
                continue
            order = np.argsort(y, axis=1, kind="stable")
            q = self._quantiles[n][0]
            d = np.take_along_axis(y.astype(np.float64), order, axis=1) - q
            style += self._style_w[n] * float((d * d).sum()) / y.size
            at_rank = np.empty_like(q)
            np.put_along_axis(at_rank, order, q, axis=1)  # each position's target: q at its rank
            weights[n] = at_rank.astype(np.float32).reshape(1, y.shape[0], *f.shape[2:])
        tv = total_variation(x)
        if self.tileable:  # the differences across the edges
            x64 = x.astype(np.float64)
            tv += sum(float(np.vdot(d, d)) for d in (x64[0] - x64[-1], x64[:, 0] - x64[:, -1]))
        cw, sw, tw = (float(v) for v in self.weights)
        terms = {"content": float(content), "style": style, "tv": tv,
                 "total": cw * float(content) + sw * style + tw * tv}
        return terms, weights

    def _tiled_grad(self, x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
        """Pass 2: each tile's gradient on its interior, given the whole picture's Grams."""
        feed = dict(self._feed)
        feed[layout.TILED] = np.array(True)
        feed[layout.LAYER_M] = self._layer_m
        sorted_w = {n: w for n, w in weights.items() if self.style_kinds.get(n) in SORTED}
        for n, w in weights.items():
            if n.startswith("mean:"):
                feed[layout.mean_target(n[5:])] = w
            elif n not in sorted_w:
                feed[layout.gram_target(n)] = w
        grad = np.empty(self.shape, np.float32)
        halo = tiles.gradient_halo(self._used["content"] + self._used["style"])
        for t in self._plan(self.shape[:2], halo, self.wrap):
            feed[layout.IMAGE] = np.ascontiguousarray(tiles.take(x, *t.region))
            for n in self._used["content"]:
                p = tiles.take(self._content[n][0], *t.region_at(tiles.reach(n)[0]), axis=1)
                feed[layout.content_target(n)] = np.ascontiguousarray(p[None])
            for n, r in sorted_w.items():
                r = tiles.take(r, *t.region_at(tiles.reach(n)[0]), axis=2)
                feed[layout.sorted_target(n)] = np.ascontiguousarray(r)
            if self._masks_full is not None:
                feed[layout.STYLE_MASKS] = np.ascontiguousarray(tiles.take(self._masks_full, *t.region, axis=1))
            (g,) = self.engine.session.run([layout.GRAD], feed)
            grad[t.whole()] = g[t.interior()]
        return grad

    @property
    def ort_device(self) -> tuple[str, int]:
        """onnxruntime's device type and id for tensors the graph runs on: ("cuda", 0) or ("cpu", 0)."""
        return ("cuda", 0) if self.provider == "CUDAExecutionProvider" else ("cpu", 0)

    def _device_feed(self) -> dict[str, ort.OrtValue]:
        """The targets as OrtValues, the large ones on the device: copied once per objective."""
        feed = getattr(self, "_device_values", None)
        if feed is None:
            with _DEVICE_LOCK:
                feed = getattr(self, "_device_values", None)
                if feed is None:
                    kind, dev = self.ort_device
                    feed = {name: ort.OrtValue.ortvalue_from_numpy(arr, kind, dev)
                            if arr.size >= DEVICE_MIN_SIZE else ort.OrtValue.ortvalue_from_numpy(arr)
                            for name, arr in self._feed.items()}
                    self._device_values = feed
        return feed

    def evaluate_device(self, x: ort.OrtValue,
                        grad_out: ort.OrtValue | None = None) -> tuple[dict[str, float], ort.OrtValue]:
        """evaluate() with the image and its gradient staying on the device (I/O binding): x is
        a float32 OrtValue of H*W*3 elements (any shape, e.g. flat) on self.ort_device; the
        gradient goes into grad_out (same kind) or a new device OrtValue. Only the four terms
        come to the host; the gradient is not checked for NaN/Inf here (that needs a device
        reduction: runtime/device_lbfgs.py checks it through its slope)."""
        kind, dev = self.ort_device
        if self.tile is not None:  # tiles run from the host: copy the image there and back
            terms, grad = self.evaluate(x.numpy().reshape(self.shape))
            if grad_out is None:
                return terms, ort.OrtValue.ortvalue_from_numpy(grad, kind, dev)
            grad_out.update_inplace(grad.reshape(grad_out.shape()))
            return terms, grad_out
        shape, n = list(self.shape), int(np.prod(self.shape))
        for what, v in (("image", x), ("gradient", grad_out)):
            if v is not None and (int(np.prod(v.shape())) != n or v.data_type() != "tensor(float)"
                                  or v.device_name().lower() != kind):
                raise InputError(f"{what} OrtValue {v.data_type()} {v.shape()} on {v.device_name()}: "
                                 f"expected float32 of {n} elements on {kind}")
        io = self.engine.session.io_binding()  # one per call: evaluate_device is thread-safe
        for name, value in self._device_feed().items():
            io.bind_ortvalue_input(name, value)
        io.bind_input(layout.IMAGE, kind, dev, np.float32, shape, x.data_ptr())
        names = (layout.LOSS, layout.CONTENT, layout.STYLE, layout.TV)
        for name in names:
            io.bind_output(name, "cpu")
        if grad_out is None:
            io.bind_output(layout.GRAD, kind, dev)
        else:
            io.bind_output(layout.GRAD, kind, dev, np.float32, shape, grad_out.data_ptr())
        self.engine.session.run_with_iobinding(io)
        outs = io.get_outputs()
        loss, c, s, tv = (float(v.numpy()) for v in outs[:4])
        terms = {"content": c, "style": s, "tv": tv, "total": loss}
        if not all(np.isfinite(v) for v in terms.values()):
            raise NumericalError("the loss is NaN or Inf")
        return terms, grad_out if grad_out is not None else outs[4]


class AddedTerm:
    """An objective plus one term computed in NumPy beside the graph (`added`); the interface of
    Objective for the host optimisers (scipy, lbfgs, adam)."""

    name = "added"

    def __init__(self, base, weight: float) -> None:
        self.base, self.weight = base, float(weight)

    def __getattr__(self, name: str):  # provider, engine, shape, ...: the base objective's
        return getattr(self.base, name)

    def added(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(the term, the gradient of weight * term); x float32, as the optimiser has it (flat or not)."""
        raise NotImplementedError

    def parts(self, terms: dict[str, float]) -> dict[str, float]:
        """The weighted terms, this one included: they add up to terms["total"]."""
        return {**self.base.parts(terms), self.name: self.weight * terms[self.name]}

    def evaluate(self, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        terms, grad = self.base.evaluate(x)
        value, g = self.added(np.asarray(x, np.float32))
        terms = {**terms, self.name: value, "total": terms["total"] + self.weight * value}
        return terms, grad + g.reshape(grad.shape)

    def evaluate_device(self, x: ort.OrtValue,
                        grad_out: ort.OrtValue | None = None) -> tuple[dict[str, float], ort.OrtValue]:
        """evaluate() for lbfgs-device: the base graph's work stays on the device, the added term
        runs on the host, so the image comes to the host and the gradient makes a round trip
        (three copies of the image per evaluation, through device_lbfgs's counted copies)."""
        from onnxstyle.runtime.device_lbfgs import to_device, to_host

        terms, grad = self.base.evaluate_device(x, grad_out)
        value, g = self.added(to_host(x).reshape(self.shape))
        to_device(to_host(grad) + g.reshape(grad.shape()), grad)
        return {**terms, self.name: value, "total": terms["total"] + self.weight * value}, grad

    def terms(self, x: np.ndarray) -> dict[str, float]:
        return self.evaluate(x)[0]

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        terms, grad = self.evaluate(x)
        return terms["total"], grad.astype(np.float64).reshape(np.shape(x))
