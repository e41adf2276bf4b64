"""One service job as engine work (`onnxstyle.batch.engines`): it runs `stylize` on a worker and
reports each iteration's picture, terms and time left through the engine's progress channel.
Its `cancel` (a threading.Event, the service's per-job cancel) stays with the service: the engine
passes it on to the worker, so it is not sent."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from onnxstyle.errors import NumericalError, OnnxStyleError
from onnxstyle.options import StyleOptions

# Workers run at a lower CPU priority than the server, so status reads stay fast while every core
# is busy; onnxruntime's pool threads, made after this, inherit it.
WORKER_NICE = 10


def lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at the same priority
        pass


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Run:
    """`execute` returns {"status": done | cancelled | failed, "image": uint8 or None,
    "terms": dict or None (the weighted parts and the total they add up to, as the CLI shows them),
    "error": one line or None, "ran": prepare.summary where it ran}; it never raises."""

    index: int
    job: str  # the service's job id ("" for the warm-up run)
    options: StyleOptions
    content: np.ndarray
    styles: list[np.ndarray]
    cancel: threading.Event | None = field(default=None, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "cancel": None}

    def execute(self, cancel, worker: str, progress=None) -> dict:
        from onnxstyle.runtime.prepare import summary
        from onnxstyle.runtime.stylize import stylize

        lower_priority()
        latest: dict = {}

        def on_progress(p) -> None:
            latest["image"] = to_uint8(p.image)
            if progress is not None:
                progress({"image": latest["image"], "terms": p.loss, "step": p.step, "steps": p.steps,
                          "remaining": p.remaining})

        try:
            result = stylize(self.content, self.styles, self.options, callback=on_progress, cancel=cancel)
            return {"status": "cancelled" if result.stopped else "done", "image": result.image,
                    "terms": result.loss, "error": None, "worker": worker, "ran": summary(result)}
        except NumericalError as e:
            return {"status": "failed", "image": e.image, "terms": None, "error": str(e), "worker": worker}
        except OnnxStyleError as e:
            error = str(e)
        except MemoryError:
            error = "out of memory: try a smaller size"
        except Exception as e:  # a bug: the job fails with one line, the worker lives on
            error = f"unexpected {type(e).__name__}: {e}"
        return {"status": "failed", "image": latest.get("image"), "terms": None, "error": error, "worker": worker}
