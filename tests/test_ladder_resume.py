"""A coarse-to-fine run interrupted at any scale resumes where it stopped: the finished scales
are skipped, the interrupted one goes on from its checkpoint, and with --optimizer lbfgs the
output is the uninterrupted run's, pixel for pixel."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from onnxstyle.errors import InputError
from onnxstyle.options import StyleOptions
from onnxstyle.runtime import checkpoint, images, job
from tests.conftest import DATA

OPTS = StyleOptions(size=48, scales=(32, 48), iterations=(6, 5), until="iterations", optimizer="lbfgs")


def make(tmp_path, name: str, resume=None) -> job.Job:
    return job.Job(DATA / "chelsea.png", [DATA / "the_scream.jpg"], tmp_path / name, OPTS,
                   checkpoint_every=1, resume=resume)


@pytest.mark.parametrize("stop_at", [3, 8])  # in the first scale; in the second
def test_interrupted_ladder_resumes_to_the_uninterrupted_picture(tmp_path, stop_at):
    ref = job.run(make(tmp_path, "ref.png"))
    assert [s["iterations"] for s in ref.result.scales] == [6, 5]

    cancel = threading.Event()

    def stop(p):
        if p.step == stop_at:
            cancel.set()

    cut = job.run(make(tmp_path, "out.png"), on_progress=stop, cancel=cancel)
    assert cut.state is not None
    state = checkpoint.load(cut.state)
    scale, at = (0, stop_at) if stop_at <= 6 else (1, stop_at - 6)
    assert (state.iteration, state.scale, state.at_scale) == (stop_at, scale, at)
    assert state.image.shape[:2] == images.fit_size((64, 96, 3), (32, 48)[scale])  # chelsea.png is 96x64

    steps = []
    done = job.run(make(tmp_path, "out.png", resume=cut.state), on_progress=lambda p: steps.append((p.step, p.steps)))
    assert done.iterations == 11 and steps == [(s, 11) for s in range(stop_at + 1, 12)]
    assert [s["iterations"] for s in done.result.scales] == ([6 - stop_at, 5] if scale == 0 else [5 - at])
    a, b = images.load_rgb(tmp_path / "out.png"), images.load_rgb(tmp_path / "ref.png")
    assert np.array_equal(a, b)


def test_a_checkpoint_past_the_ladder_or_of_another_size_is_refused(tmp_path):
    cancel = threading.Event()
    cut = job.run(make(tmp_path, "out.png"), on_progress=lambda p: p.step == 8 and cancel.set(), cancel=cancel)
    state = checkpoint.load(cut.state)
    state.scale = 0  # a 48 px image claimed for the 32 px scale
    bad = checkpoint.save(tmp_path / "bad.ckpt.npz", state)
    with pytest.raises(InputError, match="checkpoint image is 48x32"):
        job.run(make(tmp_path, "out.png", resume=bad))
    state.scale = 2
    bad = checkpoint.save(tmp_path / "bad.ckpt.npz", state)
    with pytest.raises(InputError, match="scale 3, this run has 2"):
        job.run(make(tmp_path, "out.png", resume=bad))
