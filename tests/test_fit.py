"""Fitting a run into --max-memory: untiled, tiled, fewer pairs, or one clear refusal (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA  # copies of ../shared/data (tests/data/CREDITS.md)

from onnxstyle import StyleOptions, defaults, stylize
from onnxstyle.errors import InputError
from onnxstyle.options import OptionError
from onnxstyle.runtime import fit

G = 1 << 30
PAIRS = defaults.LBFGS_MEMORY  # the pairs a run keeps unless told (--history)


def test_untiled_when_the_whole_picture_fits():
    f = fit.plan((768, 1024), "lbfgs", 16 * G)
    assert f.tile is None and f.pairs == PAIRS and f.need <= 16 * G
    assert f.describe().startswith(f"untiled, {PAIRS} L-BFGS pairs")
    few = fit.plan((768, 1024), "lbfgs", 16 * G, pairs=3)  # --history 3: never more than asked
    assert few.pairs == 3 and few.need < f.need


def test_largest_tile_that_fits_then_fewer_pairs():
    f4 = fit.plan((1536, 2048), "lbfgs", 4 * G)
    f3 = fit.plan((1536, 2048), "lbfgs", 3 * G)
    assert f4.tile is not None and f3.tile is not None and f3.tile <= f4.tile
    assert f4.need <= 4 * G and fit.estimate((1536, 2048), f4.tile + 16, PAIRS, "lbfgs") > 4 * G
    tight = fit.plan((3072, 4096), "lbfgs", 6 * G)
    assert tight.tile is not None and tight.pairs < PAIRS and tight.need <= 6 * G


def test_scipy_refused_where_it_cannot_fit():
    with pytest.raises(InputError) as e:
        fit.plan((3072, 4096), "scipy", 6 * G)
    msg = str(e.value)
    assert "\n" not in msg and "4096x3072" in msg and "--optimizer lbfgs" in msg and "6.0 GiB" in msg


def test_forced_tile_and_never_tile():
    assert fit.plan((768, 1024), "lbfgs", 16 * G, tile=200).tile == 192
    assert fit.plan((768, 1024), "lbfgs", 16 * G, tile=0).tile is None


def test_options():
    assert StyleOptions(max_memory="4G").max_memory == 4 * G
    assert StyleOptions(max_memory="1.5GiB").max_memory == 3 * G // 2
    for bad in ("lots", "0"):
        with pytest.raises(OptionError, match="max memory"):
            StyleOptions(max_memory=bad)
    with pytest.raises(OptionError, match="tile"):
        StyleOptions(tile=8)


def test_stylize_tiled_matches_untiled_and_says_so():
    """Forced small tiles, two styles, the ladder: the same run as untiled, reported as tiled."""
    c = DATA / "chelsea.png"
    s1, s2 = DATA / "the_scream.jpg", DATA / "starry_night.jpg"
    kw = {"size": 80, "scales": (48, 80), "iterations": 2, "optimizer": "lbfgs",
          "style_layers": ["conv1_1", "conv2_1"], "content_layers": ["conv2_2"]}
    a = stylize(c, [s1, s2], **kw)
    b = stylize(c, [s1, s2], tile=32, **kw)
    assert [s["memory"]["tile"] for s in b.scales] == [32, 32]
    assert all(s["tiled"].startswith("tiled, 32 px tiles") for s in b.scales)
    assert all(s["memory"]["tile"] is None for s in a.scales)
    assert abs(a.final["total"] - b.final["total"]) <= 1e-3 * a.final["total"]
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 2


def test_cuda_plan_uses_the_gpus_free_memory(monkeypatch):
    """On CUDA the limit is the GPU's free memory and the estimate counts what sits there: a
    fake GPU, so the test holds on any machine."""
    from onnxstyle.runtime import session

    monkeypatch.setattr(session, "runs_on_cuda", lambda device: device != "cpu")
    monkeypatch.setattr(session, "gpu_free_memory", lambda device_id=0: 4 * G)
    hw, n = (1536, 2048), 1536 * 2048 * 3
    on_gpu = fit.plan(hw, "lbfgs-device", device="cuda")
    assert on_gpu.limit == 4 * G and on_gpu.need <= 4 * G and on_gpu.tile is not None
    # lbfgs-device's history is on the GPU: 2 x pairs + 10 float32 vectors; scipy's is not
    dev = fit.estimate(hw, None, 10, "lbfgs-device", device_kind="cuda")
    assert dev - fit.estimate(hw, None, 10, "scipy", device_kind="cuda") == 30 * 4 * n
    assert fit.plan((512, 512), "scipy", device="auto").limit == 4 * G
    with pytest.raises(InputError, match="of GPU memory"):
        fit.plan((3072, 4096), "lbfgs-device", limit=fit.GPU_BASE, device="cuda")
    assert fit.plan((512, 512), "scipy", 16 * G, device="cpu").limit == 16 * G


def test_gpu_free_memory_falls_back_to_nvidia_smi_then_none(monkeypatch):
    import ctypes
    import subprocess

    from onnxstyle.runtime import session

    def no_driver(*a, **k):
        raise OSError("libcuda.so.1: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_driver)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "81000\n", ""))
    assert session.gpu_free_memory() == 81000 << 20
    monkeypatch.setattr(subprocess, "run", no_driver)  # no nvidia-smi either
    assert session.gpu_free_memory() is None
