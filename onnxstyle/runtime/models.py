"""Which exported graph to load. Finding a missing one is an error here: exporting happens only
where asked (`onnxstyle export`, the CLI's first run, or onnxstyle.export_models())."""

from __future__ import annotations

import os
from pathlib import Path

from onnxstyle.errors import ModelError
from onnxstyle.files import default_model, exported


def resolve(model: str | os.PathLike | None, pool: str = "avg") -> Path:
    """The model to load: `model` as given, or the default graph for `pool`."""
    if model is not None:
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        return path
    path = default_model(pool)
    if not exported(path):
        raise ModelError(f"{path}: no exported graph; run `onnxstyle export` "
                         "(or onnxstyle.export_models()) first")
    return path
