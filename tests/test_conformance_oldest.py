"""Conformance on the oldest onnxruntime the package allows (issue 26 item 5): every feed of a real
Objective (the bundled pair at two odd sizes, the default loss) goes to an .npz, the loss graph runs
on it in a venv holding only that onnxruntime and numpy (tests/ort_run.py), and its terms and
gradient must match this (pinned) onnxruntime's: terms within 1e-5 relative, gradient within 1e-4
(max |a - b| / max |b|), the issue's limits. The venv is $ONNXSTYLE_ORT_OLDEST (.ci/run makes it);
without it the tests skip, or fail where ONNXSTYLE_REQUIRE_ORT_OLDEST=1 (CI)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from packaging.version import Version

from onnxstyle import defaults, layout
from onnxstyle.runtime.objective import Objective
from onnxstyle.runtime.stylize import initial_canvas

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("ort_run.py")
SIZES = [(53, 67), (71, 96)]
TERMS = {"total": layout.LOSS, "content": layout.CONTENT, "style": layout.STYLE, "tv": layout.TV}
TERM_LIMIT, GRAD_LIMIT = 1e-5, 1e-4  # issue 26 item 5


def _reference():  # js/test/reference.py: the pair resized as every runtime of the suite gets it
    spec = importlib.util.spec_from_file_location("js_reference", ROOT / "js" / "test" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def oldest() -> str:
    """The oldest onnxruntime the package allows: pyproject's `onnxruntime-gpu>=X`."""
    found = re.search(r'"onnxruntime-gpu>=([0-9][0-9.]*)"', (ROOT / "pyproject.toml").read_text())
    assert found, "pyproject.toml: no onnxruntime-gpu>= requirement"
    return found.group(1)


@pytest.fixture(scope="module")
def python() -> Path:
    venv = os.environ.get("ONNXSTYLE_ORT_OLDEST")
    if not venv:
        why = f"ONNXSTYLE_ORT_OLDEST unset (a venv with onnxruntime=={oldest()} and numpy)"
        if os.environ.get("ONNXSTYLE_REQUIRE_ORT_OLDEST") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return Path(venv) / "bin" / "python"


@pytest.fixture(scope="module")
def cases(model_path) -> dict:
    """Per size: the loss graph's whole feed, and this onnxruntime's terms and gradient on it."""
    pair = _reference().pair
    out = {}
    for hw in SIZES:
        content, style = (a.astype(np.float32) for a in pair(hw))
        obj = Objective(content, style, model=model_path, device="cpu")
        x = initial_canvas(content, "noise", 0)
        terms, grad = obj.evaluate(x)
        out[hw] = {**obj._feed, layout.IMAGE: obj._image(x)}, terms, grad
    return out


def run_oldest(python: Path, graph: Path, feed: dict, tmp: Path) -> dict[str, np.ndarray]:
    np.savez(tmp / "feed.npz", **feed)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(python), str(RUNNER), str(graph), str(tmp / "feed.npz"), str(tmp / "out.npz"),
                           *TERMS.values(), layout.GRAD], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp / "out.npz") as f:
        return {name: f[name] for name in f.files}


def differences(terms: dict, grad: np.ndarray, got: dict) -> dict[str, float]:
    """Each term's |a - b| / |b| (0 where both are 0) and the gradient's max |a - b| / max |b|."""
    out = {}
    for term, name in TERMS.items():
        a, b = float(got[name]), terms[term]
        out[term] = abs(a - b) / abs(b) if b else float(a != b) * np.inf
    out["grad"] = float(np.abs(got[layout.GRAD] - grad).max() / np.abs(grad).max())
    return out


def within(diff: dict[str, float]) -> bool:
    return all(v <= TERM_LIMIT for k, v in diff.items() if k != "grad") and diff["grad"] <= GRAD_LIMIT


@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_oldest_onnxruntime_gives_the_pinned_result(python, cases, model_path, tmp_path, hw):
    feed, terms, grad = cases[hw]
    got = run_oldest(python, model_path, feed, tmp_path)
    assert Version(str(got["version"])) == Version(oldest()), f"the venv runs onnxruntime {got['version']}"
    diff = differences(terms, grad, got)
    print(f"onnxruntime {got['version']} vs {ort.__version__} at {hw[0]}x{hw[1]}: "
          + ", ".join(f"{k} {v:.2e}" for k, v in diff.items()))
    assert within(diff), diff


def test_a_perturbed_feed_fails_the_comparison(python, cases, model_path, tmp_path):
    """The check has teeth: one Gram target 0.1% off in the old runtime's feed is caught."""
    feed, terms, grad = cases[SIZES[0]]
    name = layout.gram_target(next(iter(defaults.STYLE_LAYERS)))
    got = run_oldest(python, model_path, {**feed, name: feed[name] * np.float32(1.001)}, tmp_path)
    assert not within(differences(terms, grad, got))
