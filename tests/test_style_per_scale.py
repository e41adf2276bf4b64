"""--style-per-scale: one painting per rung of the ladder, coarse to fine."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load

from onnxstyle import stylize
from onnxstyle.options import OptionError
from onnxstyle.runtime import prepare as module  # where each rung's Objective is made


def test_each_rung_gets_its_painting(monkeypatch):
    seen = []
    real = module.Objective

    def spy(content, styles, *args, **kw):
        seen.append((content.shape[:2], [float(s.mean()) for s in styles]))
        return real(content, styles, *args, **kw)

    monkeypatch.setattr(module, "Objective", spy)
    c = load("chelsea.png")
    a, b = load("starry_night.jpg"), load("the_scream.jpg")
    stylize(c, [a, b], scales=(32, 64), iterations=1, style_per_scale=True, until="iterations")
    assert [len(s) for _, s in seen] == [1, 1]
    assert max(seen[0][0]) == 32 and max(seen[1][0]) == 64
    means = [float(np.mean(x)) for x in (a, b)]
    assert abs(seen[0][1][0] - means[0]) < 5 and abs(seen[1][1][0] - means[1]) < 5  # a, then b


def test_counts_must_match():
    c, a = load("chelsea.png"), load("starry_night.jpg")
    with pytest.raises(OptionError, match="3 style images for 2 scales"):
        stylize(c, [a, a, a], scales=(32, 64), iterations=1, style_per_scale=True)
