"""What the CUDA path relies on, checked on the CPU provider: the I/O-binding path of the loss and
gradient, the reasons CUDA cannot run, the provider options, one weights file for both graphs,
and a Progress image that is copied only when read."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxstyle
from onnxstyle import files
from onnxstyle.errors import DeviceError, InputError
from onnxstyle.runtime import images, session
from onnxstyle.runtime.objective import Objective
from tests.helpers_reliability import CONTENT, STYLE


@pytest.fixture(scope="module")
def pair():
    c = images.resize(images.load_rgb(CONTENT).astype(np.float32), (40, 57))  # odd width
    s = images.resize(images.load_rgb(STYLE).astype(np.float32), (48, 48))
    return c, s


def test_bound_path_equals_the_plain_one(pair):
    """The binding path (used on CUDA: targets uploaded once, bindings reused per thread) gives
    the plain path's terms and gradient bit for bit, and a later call never changes an earlier
    result (the binding reuses its output buffers)."""
    c, s = pair
    obj = Objective(c, s, device="cpu", threads=1)
    x = c * 0.9 + 10
    plain = obj.evaluate(x), obj(x), obj.evaluate(x + 1)
    obj.bound = True
    bound = obj.evaluate(x), obj(x)
    later = obj.evaluate(x + 1)
    assert plain[0][0] == bound[0][0] and np.array_equal(plain[0][1], bound[0][1])
    assert plain[1][0] == bound[1][0] and np.array_equal(plain[1][1], bound[1][1])
    assert later[0] == plain[2][0] and np.array_equal(later[1], plain[2][1])
    assert later[0]["total"] != bound[0][0]["total"]


def test_cuda_refused_with_its_reason_and_auto_runs_on_cpu(pair):
    problem = session.cuda_problem()
    if problem is None:
        pytest.skip("CUDA runs here")
    why, driver = problem
    assert "\n" not in why and len(why) > 20
    c, s = pair
    with pytest.raises(DeviceError) as ei:
        Objective(c, s, device="cuda")
    assert why in str(ei.value)
    obj = Objective(c, s, device="auto")
    assert obj.provider == "CPUExecutionProvider" and obj.engine.precision == "fp32"
    assert obj.engine.note == (why if driver else "")  # said only where a GPU driver is present


def test_provider_options_follow_the_options():
    assert session.cuda_options("tf32", "heuristic")["use_tf32"] == "1"
    strict = session.cuda_options("fp32", "exhaustive")
    assert strict["use_tf32"] == "0" and strict["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    for bad in ({"precision": "fp8"}, {"cudnn_search": "fast"}):
        with pytest.raises(InputError, match=next(iter(bad)).replace("_", " ")):
            onnxstyle.StyleOptions(**bad)


def test_both_graphs_read_one_weights_file(model_path):
    blob = files.weights_path(model_path)
    graphs = (model_path, files.features_path(model_path))
    assert blob.is_file() and 45e6 < blob.stat().st_size < 60e6  # the VGG19 tensors, once
    for path in graphs:
        # the graph alone: 1.26 MB with w2's subgraphs; conv5_1's weights alone would be 9.4 MB
        assert path.stat().st_size < 4e6
        model = onnx.load(path, load_external_data=False)
        big = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        # the 13 conv kernels (biases, under 4 kB each, stay inline; the loss graph adds its
        # Winograd constants: the 36 x 36 transform and the 36 6x6 kernels that gather the tiles)
        kernels = [t for t in big if len(t.dims) == 4 and t.dims[2:] == [3, 3]]
        assert len(kernels) == 13
        assert all(t in kernels or t.dims in ([36, 36], [36, 1, 6, 6]) for t in big)
        assert {e.value for t in big for e in t.external_data if e.key == "location"} == {blob.name}


def test_progress_image_copied_only_when_read(pair, monkeypatch):
    """lbfgs-device: the image comes to the host only for the iterations whose callback reads it."""
    c, s = pair
    n = c.size
    reads = {"inside": 0}
    state = {"callback": False}
    orig = ort.OrtValue.numpy

    def numpy(self):
        if state["callback"] and int(np.prod(self.shape())) == n:
            reads["inside"] += 1
        return orig(self)

    monkeypatch.setattr(ort.OrtValue, "numpy", numpy)

    def callback(p):
        state["callback"] = True
        try:
            if p.iteration % 3 == 0:
                assert p.image.shape == c.shape and p.image is p.image  # read once, kept
        finally:
            state["callback"] = False

    r = onnxstyle.stylize(c, s, size=None, iterations=7, optimizer="lbfgs-device", device="cpu",
                          threads=1, callback=callback)
    assert r.iterations == 7 and reads["inside"] == 2  # iterations 3 and 6


def test_if_conditions_are_host_inputs(model_path):
    """Every If of the loss graph (the 26 layer gates, masks, tiling) reads its condition from a
    graph input, which the runtime feeds from host memory, through at most the rank check (a
    Reshape of that input alone, which onnxruntime is expected to keep on the CPU since the If
    reads its condition there; gpu_check's placement section shows it): on CUDA no condition
    needs a device-to-host copy in the middle of the backward pass. Nothing computes one."""
    graph = onnx.load(model_path, load_external_data=False).graph
    inputs = {i.name for i in graph.input}
    checked = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Reshape" and n.input[0] in inputs}
    ifs = [n for n in graph.node if n.op_type == "If"]
    conds = [checked.get(n.input[0], n.input[0]) for n in ifs]
    assert len([c for c in conds if c.startswith("use_")]) == 26 and all(c in inputs for c in conds)
    assert not [n for n in graph.node if n.op_type in ("Equal", "Not")]


@pytest.mark.parametrize("layers", [{"conv4_2": 1.0}, {"conv1_1": 0.0, "conv3_1": 1.0}])
def test_gates_follow_the_weights(pair, layers):
    """A layer with weight 0 (or a global weight 0) is gated off: the same terms as leaving it out."""
    c, s = pair
    x = c * 0.8 + 20
    with_zero = Objective(c, s, device="cpu", threads=1, style_layers=layers).evaluate(x)
    without = Objective(c, s, device="cpu", threads=1,
                        style_layers={k: v for k, v in layers.items() if v}).evaluate(x)
    assert with_zero[0] == without[0] and np.array_equal(with_zero[1], without[1])
    off = Objective(c, s, device="cpu", threads=1, style_weight=0.0)
    feed = off._feed
    assert not any(feed[f"use_style_{n}"] for n in ("conv1_1", "conv4_1"))
    assert feed["use_content_conv4_2"] and off.evaluate(x)[0]["style"] == 0.0
