"""The graphs as a contract (docs/graphs.md): inputs declared with their true rank, a wrong one
refused at the door naming the input, every input and output documented, the defaults JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from onnxstyle import defaults, layout
from onnxstyle.export import defaults_file
from onnxstyle.files import features_path
from onnxstyle.layers import LAYERS
from onnxstyle.runtime import device_lbfgs
from onnxstyle.runtime.objective import Objective

DOC = Path(__file__).resolve().parents[1] / "docs" / "graphs.md"


@pytest.fixture(scope="module")
def loss_graph(model_path):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    content, style = (rng.uniform(0, 255, (21, 19, 3)).astype(np.float32) for _ in range(2))
    obj = Objective(content, style, model=model_path, tv_weight=1e-3)
    return sess, {**obj._feed, layout.IMAGE: rng.uniform(0, 255, (21, 19, 3)).astype(np.float32)}


def refusal(sess: ort.InferenceSession, feed: dict) -> str:
    with pytest.raises(Exception) as e:  # noqa: PT011 (onnxruntime's own exception types)
        sess.run([layout.LOSS], feed)
    return str(e.value)


@pytest.mark.parametrize("name", [layout.TILED, layout.STYLE_MASKED, layout.gate("content", "conv4_2")])
def test_scalar_of_other_size_is_refused_naming_it(loss_graph, name):
    sess, feed = loss_graph
    assert f"{name}_is_a_scalar" in refusal(sess, {**feed, name: np.array([False, True])})


@pytest.mark.parametrize("name", [layout.TILED, layout.gate("style", "conv1_1")])
def test_scalar_as_one_element_is_the_scalar(loss_graph, name):
    """onnxruntime lets [1] through for a declared scalar: it must give the rank-0 result (it
    used to fail inside the content term's If)."""
    sess, feed = loss_graph
    want = sess.run(None, feed)
    got = sess.run(None, {**feed, name: feed[name].reshape(1)})
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def test_wrong_rank_and_size_refused_naming_the_input(loss_graph):
    sess, feed = loss_graph
    assert "Invalid rank for input: weights" in refusal(sess, {**feed, layout.WEIGHTS: feed[layout.WEIGHTS][None]})
    assert "input: image" in refusal(sess, {**feed, layout.IMAGE: feed[layout.IMAGE][None]})
    msg = refusal(sess, {**feed, layout.CONTENT_LAYER_W: np.ones(12, np.float32)})
    assert "content_layer_weights" in msg
    with pytest.raises(Exception, match="data type"):
        sess.run([layout.LOSS], {**feed, layout.WEIGHTS: feed[layout.WEIGHTS].astype(np.float64)})


def test_step_graph_scalars_checked_at_the_door():
    sess = device_lbfgs.step_sessions()["trial"]
    n = 5
    feed = {"x": np.zeros(n, np.float32), "d": np.ones(n, np.float32), "g": -np.ones(n, np.float32),
            "t": np.array(0.5, np.float32), "lo": np.array(0.0, np.float32), "hi": np.array(255.0, np.float32)}
    xt, gs = sess.run(None, feed)
    np.testing.assert_array_equal(xt, np.full(n, 0.5, np.float32))
    assert gs == pytest.approx(-2.5)
    with pytest.raises(Exception, match="t_is_a_scalar"):
        sess.run(None, {**feed, "t": np.array([0.5, 1.0], np.float32)})


def test_every_input_declares_its_rank(model_path):
    for path in (model_path, features_path(model_path)):
        for i in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs():
            assert i.shape is not None, f"{path.name}: {i.name} has no declared shape"


def documented_name(name: str) -> str:
    """An input or output as docs/graphs.md names it: a layer's name as <layer>."""
    return re.sub("|".join(sorted(LAYERS, key=len, reverse=True)), "<layer>", name)


def test_every_graph_input_and_output_documented(model_path):
    doc = DOC.read_text()
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for p in (model_path, features_path(model_path))]
    sessions += list(device_lbfgs.step_sessions().values())
    for sess in sessions:
        for v in [*sess.get_inputs(), *sess.get_outputs()]:
            assert f"`{documented_name(v.name)}`" in doc, f"{v.name} is not in docs/graphs.md"
    assert f"`onnxstyle.layout`: `{layout.LAYOUT_VERSION}`" in doc
    assert f"`<graph> {layout.LBFGS_VERSION}`" in doc


def test_defaults_json_written_by_the_export(model_path):
    data = json.loads((Path(model_path).parent / defaults_file.NAME).read_text())
    assert data["layout"] == layout.LAYOUT_VERSION and data["lbfgs"] == layout.LBFGS_VERSION
    assert list(data["layers"]) == LAYERS
    d = data["defaults"]
    assert d["style_weight"] == defaults.STYLE_WEIGHT and d["content_layers"] == defaults.CONTENT_LAYERS
    assert d["style_layers"] == defaults.STYLE_LAYERS and d["lbfgs_memory"] == defaults.LBFGS_MEMORY
    assert d["noise_ratio"] == defaults.NOISE_RATIO and d["size"] == defaults.SIZE


def test_js_runtime_speaks_this_layout():
    """js/src/models.js states the contract version it implements; a bump here needs it updated."""
    text = (DOC.parents[1] / "js" / "src" / "models.js").read_text()
    assert f"LAYOUT_VERSION = '{layout.LAYOUT_VERSION}'" in text
    assert f"LBFGS_VERSION = '{layout.LBFGS_VERSION}'" in text
