"""Adam on the image (Kingma & Ba 2015, Algorithm 1), projected onto the pixel box after each step.

The optimiser of anishathalye/neural-style (and jcjohnson's -optimizer adam): one loss+gradient
evaluation per iteration, no line search. Iteration k steps from x_(k-1) to x_k and evaluates
there, so the callback sees the loss of the iterate it gets and the run makes iterations + 1
evaluations. Same calling convention as host_lbfgs.minimize: fun(x) -> (loss, grad).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxstyle.runtime.lbfgs import Fun, Iterate, LbfgsResult

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # the paper's defaults (and TensorFlow's, which peers use)


def minimize(fun: Fun, x0: np.ndarray, maxiter: int, lr: float, bounds: tuple[float, float] = (0.0, 255.0),
             callback: Callable[[Iterate], None] | None = None) -> LbfgsResult:
    """At most `maxiter` Adam steps of size `lr` (in the units of x) from x0, each clipped into
    `bounds`; stops early when the callback raises StopIteration."""
    lo, hi = bounds
    x = np.clip(np.asarray(x0, np.float32).ravel(), lo, hi)
    f, g = fun(x)
    m, v = np.zeros_like(x), np.zeros_like(x)
    nit, message = 0, f"ran all {maxiter} iterations"
    for k in range(1, maxiter + 1):
        g = np.asarray(g, np.float32)
        m *= BETA1
        m += (1 - BETA1) * g
        v *= BETA2
        v += (1 - BETA2) * g * g
        step = lr * np.sqrt(1 - BETA2 ** k) / (1 - BETA1 ** k)  # the bias corrections folded in
        x = np.clip(x - step * m / (np.sqrt(v) + EPS), lo, hi).astype(np.float32)
        f, g = fun(x)
        nit = k
        if callback is not None:
            try:
                callback(Iterate([x], f, nit, nit + 1))
            except StopIteration:
                message = "stopped by the callback"
                break
    return LbfgsResult(x, float(f), nit, nit + 1, True, message)
