"""The static variant of the loss graph (issue 26 item 4): gates resolved, every shape known, the
same terms and gradient as the dynamic graph on the CPU provider, refused for any other run."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from onnxstyle import defaults, layout
from onnxstyle.cli.app import app
from onnxstyle.errors import ModelError
from onnxstyle.export.static import export_static
from onnxstyle.files import static_path
from onnxstyle.runtime.objective import Objective

HW = (58, 75)  # odd on both sides: pooling rounds up at every level
CONTENT, STYLE = list(defaults.CONTENT_LAYERS), list(defaults.STYLE_LAYERS)
# The conformance contract of issue 26 (item 5) for every runtime of the graphs against the Python
# CPU result: terms within 1e-5 relative, the gradient within 1e-4 (max abs diff / max abs).
TERMS_RTOL, GRAD_TOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def static(model_path):
    path = export_static(model_path, HW, CONTENT, STYLE)
    yield path
    for p in (path, path.with_suffix(".weights")):
        p.unlink(missing_ok=True)


def pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (*HW, 3)).astype(np.float32), rng.uniform(0, 255, (40, 52, 3)).astype(np.float32)


def test_every_shape_is_known_and_no_gate_is_left(static, model_path):
    assert static == static_path(model_path, HW)
    m = onnx.load(str(static), load_external_data=False)
    assert not [n for n in m.graph.node if n.op_type in ("If", "Loop", "Scan")]
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    values = [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]
    produced = {o for n in inferred.graph.node for o in n.output}
    assert produced <= {v.name for v in values} | {t.name for t in inferred.graph.initializer}
    for v in values:
        assert all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim), v.name
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.input}
    assert shapes[layout.IMAGE] == [*HW, 3] and shapes[layout.content_target("conv4_2")] == [1, 512, 8, 10]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta[layout.META_STATIC] == "75x58 content=conv4_2;style=conv1_1,conv2_1,conv3_1,conv4_1,conv5_1"
    assert meta[layout.META_STATIC_OF] == model_path.name and meta[layout.META_KIND] == "loss"


def test_same_terms_and_gradient_as_the_dynamic_graph(static):
    content, style = pair()
    x = content * 0.8 + 20
    ref_terms, ref_g = Objective(content, style, device="cpu").evaluate(x)
    obj = Objective(content, style, device="cpu", model=static)
    assert {i.name for i in obj.engine.session.get_inputs()} == set(obj._feed) | {layout.IMAGE}
    terms, g = obj.evaluate(x)
    for k, v in ref_terms.items():
        assert abs(terms[k] - v) <= TERMS_RTOL * abs(v), (k, terms[k], v)
    assert np.abs(g - ref_g).max() <= GRAD_TOL * np.abs(ref_g).max()
    # the layer weights stay inputs: other weights on the same layers run on the same graph
    w = {"conv1_1": 1.0, "conv2_1": 0.5, "conv3_1": 0.25, "conv4_1": 0.1, "conv5_1": 2.0}
    a = Objective(content, style, device="cpu", style_layers=w).evaluate(x)[0]
    b = Objective(content, style, device="cpu", style_layers=w, model=static).evaluate(x)[0]
    assert abs(a["style"] - b["style"]) <= TERMS_RTOL * abs(a["style"]) and a["style"] != ref_terms["style"]


def test_refused_for_another_size_or_layer_selection(static):
    content, style = pair()
    with pytest.raises(ModelError, match="static graph for 75x58 .* this run needs 74x58"):
        Objective(content[:, :74], style, device="cpu", model=static)
    with pytest.raises(ModelError, match="this run needs 75x58 content=conv4_2;style=conv1_1,conv2_1\\b"):
        Objective(content, style, device="cpu", model=static, style_layers=["conv1_1", "conv2_1"])
    with pytest.raises(ModelError, match="untiled, unmasked, gram style loss"):
        Objective(content, style, device="cpu", model=static, tile=32)
    with pytest.raises(ModelError, match="gram style loss"):
        Objective(content, style, device="cpu", model=static, style_loss="covariance")


@pytest.mark.skipif("OpenVINOExecutionProvider" not in ort.get_available_providers(),
                    reason="onnxruntime-openvino not installed (it conflicts with onnxruntime-gpu)")
def test_openvino_runs_it_in_fp32(static):
    content, style = pair()
    x = content * 0.8 + 20
    ref = Objective(content, style, device="cpu", model=static)
    sess = ort.InferenceSession(str(static), providers=[("OpenVINOExecutionProvider", {
        "device_type": "CPU", "load_config": '{"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}'}), "CPUExecutionProvider"])
    out = sess.run([layout.LOSS], {**ref._feed, layout.IMAGE: x})
    assert abs(float(out[0]) - ref.evaluate(x)[0]["total"]) <= TERMS_RTOL * abs(float(out[0]))


def test_cli_refuses_a_bad_size_in_one_line():
    r = CliRunner().invoke(app, ["export", "--static", "9x80"])
    assert r.exit_code == 1 and "expected WIDTHxHEIGHT" in r.output and "Traceback" not in r.output
