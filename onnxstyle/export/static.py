"""A static variant of the loss graph (issue 26): for one picture size and one layer selection,
the gates resolved (each `If` replaced by the branch it would take: the terms in use, the Gram style loss, no
masks, untiled) and every shape known, for providers that need static shapes (OpenVINO, TensorRT).

The inputs it keeps are a subset of the dynamic graph's with the same names, meanings and
dtypes, and fixed shapes; the runtime feeds only the inputs a graph declares, so one feed serves
both. Shape computations on the fixed size are folded into constants by onnxruntime's basic
(ONNX-ops-only) optimisations, then onnx's shape inference must find every value's shape, or the
export fails. Metadata `onnxstyle.static` ("WxH content=...;style=...") says what it was made for;
`onnxstyle.static_of` names the dynamic graph it came from, whose features graph serves it; the
runtime refuses to run it for anything else (runtime/objective.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx import helper

from onnxstyle import layout
from onnxstyle.errors import ModelError
from onnxstyle.files import atomic_write, static_path, weights_path
from onnxstyle.layers import CHANNELS, LAYERS
from onnxstyle.runtime import tiles


def _inline(graph: onnx.GraphProto, known: dict[str, bool], tag: list[int]) -> list[onnx.NodeProto]:
    """The graph's nodes with every If on a known condition replaced by its branch's nodes
    (renamed apart, outputs wired through Identity); branch initializers become Constants."""
    out: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "If" or node.input[0] not in known:
            if node.op_type == "If":
                raise ModelError(f"If {node.name} on {node.input[0]}: not a gate the static export resolves")
            out.append(node)
            continue
        attrs = {a.name: a.g for a in node.attribute}
        branch = attrs["then_branch" if known[node.input[0]] else "else_branch"]
        tag[0] += 1
        local = {n for sub in branch.node for n in sub.output} | {t.name for t in branch.initializer}
        rename = {n: f"s{tag[0]}_{n}" for n in local}
        for t in branch.initializer:
            out.append(helper.make_node("Constant", [], [rename[t.name]], value=t))
        for sub in _inline(branch, known, tag):
            sub = onnx.NodeProto.FromString(sub.SerializeToString())
            sub.input[:] = [rename.get(n, n) for n in sub.input]
            sub.output[:] = [rename.get(n, n) for n in sub.output]
            sub.name = f"s{tag[0]}_{sub.name}" if sub.name else ""
            out.append(sub)
        for src, dst in zip(branch.output, node.output, strict=True):
            out.append(helper.make_node("Identity", [rename.get(src.name, src.name)], [dst]))
    return out


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes nothing needs, then the inputs and initializers nothing reads."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    for field in (graph.input, graph.initializer):
        kept = [x for x in field if x.name in needed]
        del field[:]
        field.extend(kept)


def _set_shape(value: onnx.ValueInfoProto, dims: Sequence[int]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = int(d)


def make_static(model: onnx.ModelProto, hw: tuple[int, int], content: Sequence[str],
                style: Sequence[str]) -> onnx.ModelProto:
    """The static variant of the loss graph `model` (external data not loaded: it is untouched)
    at H x W for the `content` and `style` layers in use: the gates' Ifs and Wheres resolved."""
    for name in (*content, *style):
        if name not in LAYERS:
            raise ModelError(f"unknown layer {name!r}")
    known = {layout.STYLE_MASKED: False, layout.TILED: False}
    known.update({layout.gate("content", n): n in content for n in LAYERS})
    known.update({layout.gate("style", n): n in style for n in LAYERS})
    known.update({layout.gate(k, n): False for k in layout.STYLE_LOSSES if k != "gram" for n in LAYERS})
    m = onnx.ModelProto.FromString(model.SerializeToString())
    for n in m.graph.node:  # a gate's checked copy (the "_is_a_scalar" Reshape) is known too
        if n.op_type in ("Reshape", "Identity") and n.input[0] in known:
            known[n.output[0]] = known[n.input[0]]
    nodes = [helper.make_node("Identity", [n.input[1 if known[n.input[0]] else 2]], list(n.output))
             if n.op_type == "Where" and n.input[0] in known else n for n in _inline(m.graph, known, [0])
             if not all(o in known for o in n.output)]
    read = {n for node in nodes for n in node.input}
    consts = [helper.make_node("Constant", [], [k], value=helper.make_tensor(k, onnx.TensorProto.BOOL, [], [v]))
              for k, v in known.items() if k in read]  # a gate read outside an If (tiled's Where)
    del m.graph.node[:]
    m.graph.node.extend(consts + nodes)
    kept = [v for v in m.graph.input if v.name not in known]
    del m.graph.input[:]
    m.graph.input.extend(kept)
    _prune(m.graph)
    h, w = hw
    shapes = {layout.IMAGE: (h, w, 3), layout.GRAD: (h, w, 3)}
    for n in LAYERS:
        ph, pw = tiles.positions(hw, n)
        shapes[layout.content_target(n)] = (1, CHANNELS[n], ph, pw)
        shapes[layout.gram_target(n)] = (1, CHANNELS[n], CHANNELS[n])
    for v in (*m.graph.input, *m.graph.output):
        if v.name in shapes:
            _set_shape(v, shapes[v.name])
        elif any(d.dim_param for d in v.type.tensor_type.shape.dim):
            raise ModelError(f"input {v.name}: a dynamic shape the static export does not know")
    del m.graph.value_info[:]
    props = {p.key: p.value for p in m.metadata_props}
    props[layout.META_STATIC] = layout.static_key(hw, list(content), list(style), LAYERS)
    helper.set_model_props(m, props)
    return m


def _fold(m: onnx.ModelProto, model_dir: Path) -> onnx.ModelProto:
    """onnxruntime's basic optimisations (constant folding, ONNX ops only) on the fixed shapes;
    the weights stay in the external file they came from."""
    import onnxruntime as ort

    src = model_dir / f".static-{os.getpid()}.onnx"  # beside the weights file it reads
    try:
        src.write_bytes(m.SerializeToString())
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "out.onnx"
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            so.optimized_model_filepath = str(dst)
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "out.weights")
            so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "4096")
            ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
            out = onnx.load(str(dst))  # with the weights, read from out.weights
    finally:
        src.unlink(missing_ok=True)
    return out


def export_static(model: str | os.PathLike, hw: tuple[int, int], content: Sequence[str],
                  style: Sequence[str], out: str | os.PathLike | None = None) -> Path:
    """Write the static variant of the loss graph at `model` (default name: static_path) with
    its own weights file beside it; returns its path."""
    model = Path(model)
    out = Path(out) if out is not None else static_path(model, hw)
    m = make_static(onnx.load(str(model), load_external_data=False), hw, content, style)
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, layout.META_STATIC_OF: model.name})
    folded = _fold(m, model.parent)
    folded.ir_version = layout.IR_VERSION
    _prune(folded.graph)  # inputs only the folded gates read (layer_m)
    inferred = onnx.shape_inference.infer_shapes(folded, strict_mode=True, data_prop=True)
    known = {v.name: v for v in (*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info)}
    initial = {t.name for t in inferred.graph.initializer}
    for node in inferred.graph.node:
        for name in node.output:
            v = known.get(name)
            dims = v.type.tensor_type.shape.dim if v is not None and v.type.tensor_type.HasField("shape") else None
            if name not in initial and (dims is None or any(not d.HasField("dim_value") for d in dims)):
                raise ModelError(f"static export at {hw[1]}x{hw[0]}: the shape of {name} ({node.op_type}) "
                                 "is still unknown")
    from onnxstyle.export.pair import share_weights

    blob = share_weights([inferred], weights_path(out).name)
    atomic_write(weights_path(out), lambda f: f.write(blob))
    atomic_write(out, lambda f: f.write(inferred.SerializeToString()))
    return out
