"""The exceptions onnxstyle raises, so a caller can map them to responses.

OnnxStyleError
  InputError       bad arguments or images from the caller
  WeightsError     a weights file that cannot or must not be read
  ModelError       a missing, corrupt, foreign or outdated .onnx model
  DeviceError      the asked-for device cannot run
  NumericalError   NaN or Inf appeared in the loss or gradient (carries the last good image)

A run stopped by its callback or cancel token is no error: stylize() returns its Result with
`stopped=True` and the best image so far. See docs/reliability.md.
"""

from __future__ import annotations


class OnnxStyleError(Exception):
    """Base class: one clear, one-line message."""


class InputError(OnnxStyleError, ValueError):
    pass


class WeightsError(OnnxStyleError):
    pass


class ModelError(OnnxStyleError):
    pass


class DeviceError(OnnxStyleError):
    pass


class NumericalError(OnnxStyleError):
    """`image` is the last good image (uint8 H x W x 3, or None before the first iteration) and
    `iteration` the iterations completed before the fault; stylize() fills them in."""

    image = None
    iteration: int = 0


def one_line(error: BaseException, option_name=lambda name: name) -> str:
    """The one-line message for `error` (the CLI's and the batch log's): library errors as they
    are, an OptionError prefixed by `option_name(error.option)`, OS errors with their file."""
    option = getattr(error, "option", None)
    if isinstance(error, OnnxStyleError) and option and option.replace("_", " ") not in str(error):
        return f"{option_name(option)}: {error}"  # say which option, where the message does not
    if isinstance(error, OnnxStyleError):
        return str(error)
    if isinstance(error, MemoryError):
        return f"out of memory: try a smaller {option_name('size')}"
    if isinstance(error, OSError):
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        return f"{where}{error.strerror or error}"
    return f"unexpected {type(error).__name__}: {error} (--debug shows where)"  # a bug: still one line
