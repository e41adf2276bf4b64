"""A safe look at an .onnx file before onnxruntime opens it, without the onnx package.

Walks the protobuf wire format along the few fields that can hold tensors (graph initializers,
node attributes, subgraphs, functions, training graphs) and collects every external-data
`location`. A model whose external data would be read from outside its own directory (an
absolute path, `..`, or a symlink that leads out) is refused, so a hostile model cannot make
onnxruntime read /etc/passwd or any other file. A file that is not a well-formed protobuf is
refused as corrupt, with the reason.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterator
from pathlib import Path

from onnxstyle.errors import ModelError
from onnxstyle.protowire import Corrupt, fields

# Field numbers from onnx/onnx.proto (IR version 8-11).
MODEL_GRAPH, MODEL_TRAINING, MODEL_FUNCTIONS = 7, 20, 25
TRAINING_GRAPHS = (1, 2)  # TrainingInfoProto.initialization, .algorithm
GRAPH_NODE, GRAPH_INIT, GRAPH_SPARSE_INIT = 1, 5, 15
FUNCTION_NODE = 7
NODE_ATTRIBUTE = 5
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE, ATTR_SPARSES = 5, 6, 10, 11, 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_EXTERNAL = 13
ENTRY_KEY, ENTRY_VALUE = 1, 2
DRIVE = re.compile(r"^[A-Za-z]:")  # C:\\... on Windows
MAX_DEPTH = 64  # nested subgraphs deeper than this are refused (no real model comes close)


def _messages(buf, start: int, end: int, wanted: int) -> Iterator[tuple[int, int]]:
    for num, wire, s, e in fields(buf, start, end):
        if num == wanted:
            if wire != 2:
                raise Corrupt(f"field {num} has wire type {wire}, expected a message")
            yield s, e


def _tensor_locations(buf, s: int, e: int) -> Iterator[str]:
    for es, ee in _messages(buf, s, e, TENSOR_EXTERNAL):
        key = value = None
        for num, wire, fs, fe in fields(buf, es, ee):
            if wire == 2 and num == ENTRY_KEY:
                key = bytes(buf[fs:fe]).decode("utf-8", "replace")
            elif wire == 2 and num == ENTRY_VALUE:
                value = bytes(buf[fs:fe]).decode("utf-8", "replace")
        if key == "location" and value is not None:
            yield value


def _sparse_locations(buf, s: int, e: int) -> Iterator[str]:
    for part in (SPARSE_VALUES, SPARSE_INDICES):
        for ts, te in _messages(buf, s, e, part):
            yield from _tensor_locations(buf, ts, te)


def _node_locations(buf, s: int, e: int, depth: int) -> Iterator[str]:
    for a_s, a_e in _messages(buf, s, e, NODE_ATTRIBUTE):
        for num, wire, fs, fe in fields(buf, a_s, a_e):
            if wire != 2:
                continue
            if num in (ATTR_T, ATTR_TENSORS):
                yield from _tensor_locations(buf, fs, fe)
            elif num in (ATTR_SPARSE, ATTR_SPARSES):
                yield from _sparse_locations(buf, fs, fe)
            elif num in (ATTR_G, ATTR_GRAPHS):
                yield from _graph_locations(buf, fs, fe, depth + 1)


def _graph_locations(buf, s: int, e: int, depth: int = 0) -> Iterator[str]:
    if depth > MAX_DEPTH:
        raise Corrupt(f"subgraphs nested deeper than {MAX_DEPTH}")
    for num, wire, fs, fe in fields(buf, s, e):
        if wire != 2:
            continue
        if num == GRAPH_INIT:
            yield from _tensor_locations(buf, fs, fe)
        elif num == GRAPH_SPARSE_INIT:
            yield from _sparse_locations(buf, fs, fe)
        elif num == GRAPH_NODE:
            yield from _node_locations(buf, fs, fe, depth)


def external_locations(buf) -> list[str]:
    """Every external-data location in a serialized ModelProto."""
    out: list[str] = []
    end = len(buf)
    has_graph = False
    for num, wire, s, e in fields(buf, 0, end):
        if wire != 2:
            continue
        if num == MODEL_GRAPH:
            has_graph = True
            out.extend(_graph_locations(buf, s, e))
        elif num == MODEL_FUNCTIONS:
            for ns, ne in _messages(buf, s, e, FUNCTION_NODE):
                out.extend(_node_locations(buf, ns, ne, 0))
        elif num == MODEL_TRAINING:
            for part in TRAINING_GRAPHS:
                for gs, ge in _messages(buf, s, e, part):
                    out.extend(_graph_locations(buf, gs, ge))
    if not has_graph:
        raise Corrupt("no graph in the file")
    return out


def check_location(location: str, model_dir: Path) -> str | None:
    """Why `location` must not be read (or None when it stays inside model_dir)."""
    if not location or "\x00" in location:
        return "is empty or holds a NUL byte"
    if os.path.isabs(location) or location.startswith(("\\", "/")) or DRIVE.match(location):
        return "is an absolute path"
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        return "leaves the model's directory"
    base = os.path.realpath(model_dir)
    target = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, target]) != base:
        return "leads out of the model's directory through a symlink"
    return None


def scan(path: str | os.PathLike) -> list[str]:
    """Check the model at `path`; returns its external-data locations (all safe) or raises
    ModelError with the reason."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelError(f"{path}: model file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as mv:
                locations = external_locations(mv)
    except ModelError:
        raise
    except Corrupt as e:
        raise ModelError(f"{path}: not an ONNX model, or a corrupt/truncated one ({e})") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model ({e.strerror or e})") from None
    for loc in locations:
        why = check_location(loc, path.parent)
        if why:
            raise ModelError(f"{path}: refusing external data {loc!r}: the path {why}")
    return locations
