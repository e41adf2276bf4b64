"""The BLAS thread limit of a run: one thread, so NumPy's products and sums (style targets,
colours, the optimisers' vectors) neither compete with onnxruntime's threads nor change their
order, and so the result, with the environment's thread variables (docs/reliability.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def single_thread() -> Iterator[None]:
    """threadpoolctl's limit is process-wide: with several runs in threads, the first to finish
    would lift it under the others. This counts users; the last one out restores it."""
    global _blas_users, _blas_limiter
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
