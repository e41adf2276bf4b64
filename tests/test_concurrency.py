"""Embedding: one loaded model serves many threads; same seed, same bits; no memory growth."""

from __future__ import annotations

import gc
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import onnxstyle
from onnxstyle.runtime import images, session
from onnxstyle.runtime.objective import Objective
from tests.helpers_reliability import CONTENT, STYLE

THREADS = 4
ITERATIONS = 5


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    onnxstyle.export_models()  # export once if needed
    return images.load_rgb(CONTENT), images.load_rgb(STYLE)


def jobs(content: np.ndarray, style: np.ndarray) -> list[dict]:
    """8 different runs: seeds, sizes, weights, inits, and a flipped content."""
    out = []
    for i in range(8):
        out.append({"content": content if i % 2 == 0 else content[:, ::-1], "style": style,
                    "seed": i, "size": 32 + 8 * (i % 3), "iterations": ITERATIONS,
                    "style_weight": [1e3, 1e2][i % 2],
                    "init": ["noise", "content"][i // 4]})
    return out


def test_threads_give_the_same_images_as_serial_calls(pair):
    c, s = pair
    work = jobs(c, s)
    serial = [onnxstyle.stylize(**j) for j in work]
    engines_before = len(session._cache)
    with ThreadPoolExecutor(THREADS) as ex:
        threaded = list(ex.map(lambda j: onnxstyle.stylize(**j), work))
    assert len(session._cache) == engines_before  # the one loaded model served every thread
    pairs = list(zip(serial, threaded, strict=True))
    same_image = sum(np.array_equal(a.image, b.image) for a, b in pairs)
    same_loss = sum(a.final == b.final and a.history == b.history
                    for a, b in pairs)
    print(f"concurrency: {THREADS} threads, {len(work)} runs, {same_image} identical images, "
          f"{same_loss} identical loss histories")
    assert same_image == same_loss == len(work)
    # and the runs really differ from one another (no state leaking between them)
    assert len({a.image.tobytes() for a in serial}) == len(work)


def test_one_objective_shared_by_threads(pair):
    c, s = pair
    small_c, small_s = images.resize(c.astype(np.float32), (32, 32)), images.resize(
        s.astype(np.float32), (32, 32))
    obj = Objective(small_c, small_s)
    xs = [np.random.default_rng(i).uniform(0, 255, (32, 32, 3)).astype(np.float32)
          for i in range(12)]
    serial = [obj(x) for x in xs]
    barrier = threading.Barrier(THREADS, timeout=60)

    def call(i: int):
        if i < THREADS:
            barrier.wait()  # start the first ones together
        return obj(xs[i])

    with ThreadPoolExecutor(THREADS) as ex:
        threaded = list(ex.map(call, range(len(xs))))
    for (l1, g1), (l2, g2) in zip(serial, threaded, strict=True):
        assert l1 == l2 and np.array_equal(g1, g2)


def test_same_seed_bit_identical(pair):
    c, s = pair
    a = onnxstyle.stylize(c, s, size=40, iterations=6, seed=7)
    b = onnxstyle.stylize(c, s, size=40, iterations=6, seed=7)
    other = onnxstyle.stylize(c, s, size=40, iterations=6, seed=8)
    assert np.array_equal(a.image, b.image) and a.history == b.history
    assert not np.array_equal(a.image, other.image)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_returns_to_baseline(pair):
    c, s = pair
    run = lambda i: onnxstyle.stylize(c, s, size=32 + 8 * (i % 2), iterations=3, seed=i)  # noqa: E731
    for i in range(2):  # warm up: the session, onnxruntime's arena, both shapes
        run(i)
    gc.collect()
    base = rss_mib()
    readings = []
    for i in range(20):
        run(i)
        gc.collect()
        readings.append(rss_mib())
    growth = readings[-1] - base
    print(f"memory: baseline {base:.0f} MiB, after 20 runs {readings[-1]:.0f} MiB "
          f"(growth {growth:+.1f} MiB, peak {max(readings):.0f} MiB)")
    assert growth < 8, readings  # a leak of one 32 px run's buffers x 20 would be far larger
