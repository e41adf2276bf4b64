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
