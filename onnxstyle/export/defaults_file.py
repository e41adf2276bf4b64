"""The defaults as JSON beside the exported graphs (`onnxstyle.defaults.json`), for runtimes in
other languages (js/): written by the export from onnxstyle/defaults.py, never by hand."""

from __future__ import annotations

import json
from pathlib import Path

from onnxstyle import defaults, layout
from onnxstyle.files import atomic_write
from onnxstyle.layers import CHANNELS, LAYERS

NAME = "onnxstyle.defaults.json"


def contents() -> dict:
    """defaults.py's values by their lower-case names, the interface versions and the layers."""
    values = {k.lower(): v for k, v in vars(defaults).items()
              if k.isupper() and isinstance(v, bool | int | float | str | dict)}
    return {"layout": layout.LAYOUT_VERSION, "lbfgs": layout.LBFGS_VERSION,
            "layers": {n: CHANNELS[n] for n in LAYERS}, "defaults": values}


def write(folder: Path) -> Path:
    path = Path(folder) / NAME
    text = json.dumps(contents(), indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path
