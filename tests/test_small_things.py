"""What a new user trips over first: the help text, the demo's output in git status, where the
graphs go when the README's two commands run from the clone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from onnxstyle import files

ROOT = Path(__file__).resolve().parents[1]


def help_text(*args: str, columns: int = 80) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb", "NO_COLOR": "1"}
    p = subprocess.run([sys.executable, "-m", "onnxstyle", *args, "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_help_reads_as_written():
    text = help_text("stylize")
    assert "[OPTIONS] CONTENT STYLES..." in text and "{content}" not in text
    assert "<bool>" not in text and "<bool>" not in help_text()
    assert "--quiet" in text
    # the style layers' default is there whole (wrapped, not cut off with an ellipsis)
    flat = " ".join(line.strip("│ ") for line in text.splitlines())
    assert "[default: conv1_1:0.2, conv2_1:0.2, conv3_1:0.2, conv4_1:0.2, conv5_1:0.2]" in " ".join(flat.split())
    assert "[OPTIONS] INPUT OUTPUT STYLES..." in help_text("video")


def test_demo_output_is_git_ignored():
    p = subprocess.run(["git", "check-ignore", "-q", "onnxstyle_demo.png"], cwd=ROOT)
    assert p.returncode == 0


def test_an_install_run_from_the_checkout_uses_its_models_folder(tmp_path, monkeypatch):
    # a plain `pip install .`: the package lives in site-packages, not in a checkout
    monkeypatch.delenv(files.ENV_HOME, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "PACKAGE_ROOT", tmp_path / "site-packages")
    clone = tmp_path / "clone"
    (clone / "models").mkdir(parents=True)
    (clone / "pyproject.toml").write_text('[project]\nname = "onnxstyle"\n')
    monkeypatch.chdir(clone)
    assert files.models_dir() == clone / "models"  # where the README's second command's tests look
    other = tmp_path / "elsewhere"
    (other / "models").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    monkeypatch.chdir(other)
    assert files.models_dir() == tmp_path / "cache" / "onnxstyle"


def test_an_option_error_crosses_process_boundaries():
    """Worker pools and Ray pickle a job's error back to the caller: it must arrive whole."""
    import pickle

    from onnxstyle.errors import one_line
    from onnxstyle.options import OptionError, StyleOptions

    try:
        StyleOptions(style_weight=-1)
    except OptionError as e:
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is OptionError and back.option == e.option == "style_weight"
        assert one_line(back) == one_line(e) and str(back) == str(e)
    else:
        raise AssertionError("a negative style weight was taken")
