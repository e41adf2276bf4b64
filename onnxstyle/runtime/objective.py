"""The style-transfer objective: loss and gradient of an image, from the exported graph."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from onnxstyle import defaults, layout
from onnxstyle.errors import InputError, ModelError, NumericalError
from onnxstyle.layers import CHANNELS, LAYERS, canonical
from onnxstyle.options import check_number, layer_weights
from onnxstyle.runtime import models, session
from onnxstyle.runtime.images import as_rgb_array

_DEVICE_LOCK = threading.Lock()  # guards each objective's lazily built device-side targets
DEVICE_MIN_SIZE = 4096  # inputs this large live on the device; smaller ones (flags, weights) on the host


class Objective:
    """loss, grad = Objective(content, style)(x) for x an H x W x 3 RGB array in 0..255.

    Uses the images as given (no resizing). `style` is one image or a list of images, whose Gram
    targets are averaged with `style_blend` (equal weights by default). Immutable once built and
    safe to call from many threads at once.
    """

    def __init__(
        self,
        content,
        style,
        content_weight: float = defaults.CONTENT_WEIGHT,
        style_weight: float = defaults.STYLE_WEIGHT,
        tv_weight: float = defaults.TV_WEIGHT,
        model: str | os.PathLike | None = None,
        device: str = "auto",
        content_layers: Mapping[str, float] | Sequence[str] | None = None,
        style_layers: Mapping[str, float] | Sequence[str] | None = None,
        style_blend: Sequence[float] | None = None,
        style_masks: Sequence[np.ndarray | None] | None = None,
        threads: int | None = None,
    ) -> None:
        path = models.resolve(model)
        self.engine = session.load(path, device, threads)
        fpath = models.features_path(path)
        if not fpath.is_file():
            raise ModelError(f"{path}: its features graph {fpath.name} is missing beside it (re-export)")
        self.features_engine = session.load(fpath, device, threads, kind="features")
        self.content_layers = layer_weights("content", content_layers, defaults.CONTENT_LAYERS)
        self.style_layers = layer_weights("style", style_layers, defaults.STYLE_LAYERS)
        weights = [check_number(n, v) for n, v in (("content weight", content_weight),
                   ("style weight", style_weight), ("tv weight", tv_weight))]  # fmt: skip
        self.weights = np.array(weights, np.float32)

        content = as_rgb_array(content)
        styles = [as_rgb_array(s) for s in (style if isinstance(style, list | tuple) else [style])]
        if not styles:
            raise InputError("at least one style image is needed")
        blend = self._blend(style_blend, len(styles))
        self.shape = content.shape
        for img in (content, *styles):
            if min(img.shape[:2]) < 16:
                raise InputError(f"image of {img.shape[1]}x{img.shape[0]} px: each side must be >= 16")

        feed = self._base_feed()
        cfeat = self.features(content, list(self.content_layers))
        for name in self.content_layers:
            feed[layout.content_target(name)] = cfeat[name]
        masks = self._masks(style_masks, len(styles), content.shape[:2])
        # Unmasked: one target, the blend-weighted mean of the styles' Grams. Masked: one per style.
        k = 1 if masks is None else len(styles)
        grams = {name: np.zeros((k, CHANNELS[name], CHANNELS[name])) for name in self.style_layers}
        for i, (img, w) in enumerate(zip(styles, blend, strict=True)):
            feats = self.features(img, list(self.style_layers))
            for name in self.style_layers:
                f = feats[name].reshape(CHANNELS[name], -1).astype(np.float64)
                gram = (f @ f.T) / f.shape[1]
                if masks is None:
                    grams[name][0] += w * gram
                else:
                    grams[name][i] = gram
        for name, g in grams.items():
            feed[layout.gram_target(name)] = g.astype(np.float32)
        if masks is not None:
            feed[layout.STYLE_MASKED] = np.array(True)
            feed[layout.STYLE_MASKS] = masks
            feed[layout.STYLE_BLEND] = blend.astype(np.float32)
        feed[layout.WEIGHTS] = self.weights
        feed[layout.CONTENT_LAYER_W] = np.array([self.content_layers.get(n, 0.0) for n in LAYERS], np.float32)
        feed[layout.STYLE_LAYER_W] = np.array([self.style_layers.get(n, 0.0) for n in LAYERS], np.float32)
        self._feed = feed

    @staticmethod
    def _blend(blend: Sequence[float] | None, n: int) -> np.ndarray:
        if blend is None:
            return np.full(n, 1.0 / n)
        b = np.asarray([float(v) for v in blend], np.float64)
        if b.shape != (n,):
            raise InputError(f"style blend has {b.size} weights for {n} style images")
        if not np.isfinite(b).all() or (b < 0).any() or b.sum() <= 0:
            raise InputError("style blend weights must be finite, >= 0 and not all zero")
        return b / b.sum()

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
                                 f"{hw[1]}x{hw[0]}")  # fmt: skip
            out[i] = m / 255.0 if m.max() > 1.0 else m
        return out

    @staticmethod
    def _base_feed() -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {
            layout.STYLE_MASKED: np.array(False),
            layout.STYLE_MASKS: np.ones((1, 1, 1), np.float32),
            layout.STYLE_BLEND: np.ones(1, np.float32),
            layout.WEIGHTS: np.zeros(3, np.float32),
            layout.CONTENT_LAYER_W: np.zeros(len(LAYERS), np.float32),
            layout.STYLE_LAYER_W: np.zeros(len(LAYERS), np.float32),
        }
        for name in LAYERS:
            n = CHANNELS[name]
            feed[layout.content_target(name)] = np.zeros((1, n, 1, 1), np.float32)
            feed[layout.gram_target(name)] = np.zeros((1, n, n), np.float32)
        return feed

    @property
    def provider(self) -> str:
        return self.engine.provider

    def features(self, image, layers: Sequence[str]) -> dict[str, np.ndarray]:
        """The image's VGG features after ReLU at `layers`, each [1, N, h, w] float32."""
        feed = {layout.IMAGE: np.ascontiguousarray(as_rgb_array(image), np.float32)}
        names = [layout.feature(canonical(n)) for n in layers]
        outs = self.features_engine.session.run(names, feed)
        return {canonical(n): o for n, o in zip(layers, outs, strict=True)}

    def _run(self, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        x = np.asarray(x)
        if x.shape != self.shape:
            x = x.reshape(self.shape) if x.size == np.prod(self.shape) else x
        if x.shape != self.shape:
            raise InputError(f"image of shape {x.shape}, the objective was built for {self.shape}")
        feed = dict(self._feed)
        feed[layout.IMAGE] = np.ascontiguousarray(x, dtype=np.float32)
        return self.engine.session.run(outputs, feed)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(total loss, its gradient as float64 of x's shape)."""
        loss, grad = self._run(x, [layout.LOSS, layout.GRAD])
        loss = float(loss)
        if not np.isfinite(loss) or not np.isfinite(grad).all():
            raise NumericalError("the loss or its gradient is NaN or Inf")
        return loss, grad.astype(np.float64).reshape(np.shape(x))

    def evaluate(self, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """Terms (content/style/tv unweighted, total weighted) and the gradient, in one run."""
        loss, c, s, tv, grad = self._run(x, [layout.LOSS, layout.CONTENT, layout.STYLE, layout.TV,
                                             layout.GRAD])  # fmt: skip
        terms = {"content": float(c), "style": float(s), "tv": float(tv), "total": float(loss)}
        if not all(np.isfinite(v) for v in terms.values()) or not np.isfinite(grad).all():
            raise NumericalError("the loss or its gradient is NaN or Inf")
        return terms, grad

    def parts(self, terms: Mapping[str, float]) -> dict[str, float]:
        """The weighted terms, which add up to terms["total"]: weight x content, style, tv."""
        return {k: float(w) * terms[k] for k, w in zip(("content", "style", "tv"), self.weights, strict=True)}

    def terms(self, x: np.ndarray) -> dict[str, float]:
        """{"content", "style", "tv", "total"}; content/style/tv unweighted."""
        return self.evaluate(x)[0]

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
                            for name, arr in self._feed.items()}  # fmt: skip
                    self._device_values = feed
        return feed

    def evaluate_device(self, x: ort.OrtValue,
                        grad_out: ort.OrtValue | None = None) -> tuple[dict[str, float], ort.OrtValue]:  # fmt: skip
        """evaluate() with the image and its gradient staying on the device (I/O binding): x is
        a float32 OrtValue of H*W*3 elements (any shape, e.g. flat) on self.ort_device; the
        gradient goes into grad_out (same kind) or a new device OrtValue. Only the four terms
        come to the host; the gradient is not checked for NaN/Inf here (that needs a device
        reduction: runtime/device_lbfgs.py checks it through its slope)."""
        kind, dev = self.ort_device
        shape, n = list(self.shape), int(np.prod(self.shape))
        for what, v in (("image", x), ("gradient", grad_out)):
            if v is not None and (int(np.prod(v.shape())) != n or v.data_type() != "tensor(float)"
                                  or v.device_name().lower() != kind):  # fmt: skip
                raise InputError(f"{what} OrtValue {v.data_type()} {v.shape()} on {v.device_name()}: "
                                 f"expected float32 of {n} elements on {kind}")  # fmt: skip
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
