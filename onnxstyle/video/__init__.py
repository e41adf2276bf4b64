"""Temporally consistent video style transfer (Ruder et al. 2016): `stylize_clip`.

Needs the `video` extra (PyAV and OpenCV): `pip install 'onnxstyle[video]'`. Importing this
package loads neither; `require()` says in one line what is missing.
"""

from __future__ import annotations

from onnxstyle.errors import InputError

INSTALL_HINT = "video needs PyAV and OpenCV: pip install 'onnxstyle[video]'"


def require() -> None:
    """An InputError naming the install command when av or cv2 is missing."""
    try:
        import av  # noqa: F401
        import cv2  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def stylize_clip(*args, **kwargs):
    """See onnxstyle.video.run.stylize_clip (imported on first use)."""
    require()
    from onnxstyle.video.run import stylize_clip as run

    return run(*args, **kwargs)


__all__ = ["require", "stylize_clip", "INSTALL_HINT"]
