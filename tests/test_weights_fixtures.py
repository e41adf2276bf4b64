"""The weight readers on committed files written by each format's own writer where it is installable
here (tests/data/weights/make.py says which: scipy.io.savemat for MatConvNet, h5py for Keras, onnx
for the model zoo; torch, Keras and Caffe are not installable here, so the .pth, the Keras layout
and the .caffemodel come from the format writers in tests/helpers_weights.py and
tests/test_weights_formats.py). This test reads them and never writes them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from onnxstyle.export.formats import detect, pick, read_raw
from onnxstyle.layers import LAYERS

HERE = Path(__file__).parent / "data" / "weights"
spec = importlib.util.spec_from_file_location("weights_make", HERE / "make.py")
make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make)

# file: (format, input convention as each publisher documents its preprocessing, per-channel RGB mean)
FIXTURES = {
    "matconvnet_beta16.mat": ("matconvnet", "rgb-mean-file", [123.68, 116.779, 103.939]),
    "matconvnet_beta17.mat": ("matconvnet", "rgb-mean-file", [123.68, 116.779, 103.939]),
    "keras_release.h5": ("keras", "caffe", None),  # keras.applications.vgg19: BGR minus the ImageNet mean
    "keras_model_save.h5": ("keras", "caffe", None),
    "zoo_caffe2.onnx": ("onnx", "caffe", None),  # the Caffe2 export: BGR minus the mean
    "zoo_vgg19_7.onnx": ("onnx", "torchvision", None),  # vgg19-7: ImageNet mean and std on RGB / 255
    "torchvision.pth": ("torch", "torchvision", None),
    "caffe_v1.caffemodel": ("caffe", "caffe", None),
    "caffe_layer.caffemodel": ("caffe", "caffe", None),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_reader_returns_the_written_layers(name):
    path = HERE / name
    fmt, convention, mean = FIXTURES[name]
    assert detect(path.read_bytes()[:64]) == fmt
    raw = read_raw(path)
    assert raw.format == fmt and raw.convention == convention
    if mean is None:
        assert raw.mean is None
    else:
        np.testing.assert_allclose(raw.mean.reshape(-1), mean, rtol=1e-6)
    want = make.tiny_vgg()
    got = pick(raw, path)
    assert list(got) == LAYERS
    for layer in LAYERS:
        w, b = got[layer]
        assert w.dtype == np.float32 and w.shape == want[layer][0].shape, layer
        assert np.array_equal(w, want[layer][0]) and np.array_equal(b, want[layer][1]), layer


def test_every_fixture_is_tested():
    assert sorted(p.name for p in HERE.iterdir() if p.suffix != ".py") == sorted(FIXTURES)
