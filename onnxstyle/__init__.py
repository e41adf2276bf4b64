"""onnxstyle: Gatys et al. (2015) neural style transfer on ONNX Runtime, without PyTorch.

    import onnxstyle
    result = onnxstyle.stylize("photo.jpg", "painting.jpg", size=512)

Importing onnxstyle is cheap: onnxruntime, scipy and Pillow load on first use of what needs them.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

# onnxruntime 1.31 writes telemetry files when it makes a session ($TMPDIR/.ses and a device id
# and event store in ~/.cache/Microsoft) unless this is set before it loads: the library writes
# no files it was not asked to (tests/test_stylize.py checks it). A caller's own setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from onnxstyle import defaults, errors  # noqa: E402
from onnxstyle.errors import OnnxStyleError
from onnxstyle.options import StyleOptions

if TYPE_CHECKING:
    from onnxstyle.runtime.objective import Objective
    from onnxstyle.runtime.stylize import Progress, Result, stylize

__version__ = "0.1.0"
__all__ = ["Objective", "stylize", "Progress", "Result", "StyleOptions", "OnnxStyleError", "defaults",
           "errors", "export_models"]

_LAZY = {"Objective": "onnxstyle.runtime.objective", "stylize": "onnxstyle.runtime.stylize",
         "Progress": "onnxstyle.runtime.stylize", "Result": "onnxstyle.runtime.stylize"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'onnxstyle' has no attribute {name!r}")


def export_models(pool: str = defaults.POOL, path: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Export the default graphs from the real VGG19 weights (needs `onnxstyle[export]`) into the
    models folder (onnxstyle.files.models_dir()) or `path`, unless they are there already.
    Returns the loss graph's path. The only library call that writes files by itself."""
    from onnxstyle.errors import ModelError
    from onnxstyle.files import default_model, exported

    target = Path(path) if path is not None else default_model(pool)
    if not force and exported(target):
        return target
    try:
        from onnxstyle.export import export
    except ImportError:
        raise ModelError(f"{target}: no exported graph, and exporting needs "
                         "`pip install 'onnxstyle[export]'` (or copy an exported pair there)") from None
    return export(target, pool=pool)
