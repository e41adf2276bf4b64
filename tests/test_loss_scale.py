"""benchmarks/loss_scale.py: the scale read off two tries is where the content distance meets gram's."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import loss_scale  # noqa: E402


def run(pair: str, loss: str, scale: float, content: float) -> dict:
    return {"pair": pair, "loss": loss, "scale": scale, "content": content}


def test_the_scale_meets_grams_content_distance_on_a_line_in_log_scale():
    # content = a + b * ln(scale) per pair: the scale giving gram's content is exp((gram - a) / b)
    lines = {"p:q": (0.9, 0.12, 0.5), "r:s": (1.4, 0.25, 0.3)}  # a, b, gram's content
    runs = {}
    for pair, (a, b, g) in lines.items():
        runs[f"{pair}:gram"] = run(pair, "gram", 1.0, g)
        for s in (0.05, 0.01):  # the second pair's answer lies beyond both tries: extrapolated
            runs[f"{pair}:w2:{s}"] = run(pair, "w2", s, a + b * math.log(s))
    d = loss_scale.derive({"runs": runs})["w2"]
    want = {pair: math.exp((g - a) / b) for pair, (a, b, g) in lines.items()}
    assert d["pairs"] == pytest.approx(want, rel=1e-12)
    assert math.isclose(d["scale"], math.sqrt(want["p:q"] * want["r:s"]), rel_tol=1e-12)
    assert d["today"] == loss_scale.defaults.STYLE_LOSS_SCALE["w2"]


def test_a_loss_with_one_try_gives_no_scale():
    runs = {"g": run("p:q", "gram", 1.0, 0.5), "h": run("p:q", "histogram", 0.1, 0.6)}
    assert loss_scale.derive({"runs": runs}) == {}
