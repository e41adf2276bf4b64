"""onnxstyle: Gatys et al. (2015) neural style transfer on ONNX Runtime, without PyTorch.

    import onnxstyle
    result = onnxstyle.stylize("photo.jpg", "painting.jpg", size=512)
"""

from __future__ import annotations

from onnxstyle import defaults, errors
from onnxstyle.errors import OnnxStyleError
from onnxstyle.runtime.objective import Objective
from onnxstyle.runtime.stylize import Progress, Result, stylize

__version__ = "0.1.0"
__all__ = ["Objective", "stylize", "Progress", "Result", "OnnxStyleError", "defaults", "errors"]
