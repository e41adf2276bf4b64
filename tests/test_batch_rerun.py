"""A batch rerun skips a finished job only when its output was made from the same inputs and
options (the fingerprint in its newest ok record in batch.jsonl); a changed job is redone and
counted in `Summary.redone`. 64 px, 2 iterations, one local worker."""

from __future__ import annotations

import json
from pathlib import Path

from helpers_reliability import cli
from PIL import Image
from test_batch import write_manifest

from onnxstyle import batch
from onnxstyle.batch.engines import LocalEngine

ROWS = [{"content": "chelsea.png", "style": "the_scream.jpg", "output": "a.png", "size": 64, "iterations": 2},
        {"content": "astronaut.png", "style": "starry_night.jpg", "output": "b.png", "size": 64, "iterations": 2}]


def rerun(manifest: Path, out: Path) -> batch.Summary:
    return batch.run(batch.read(manifest, out), LocalEngine(workers=1, retries=0, threads=1), out / batch.LOG_NAME)


def stamp(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


def size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_rerun_skips_the_same_and_redoes_the_changed(tmp_path):
    out = tmp_path / "out"
    manifest = write_manifest(tmp_path, ROWS)
    s = rerun(manifest, out)
    assert (s.ok, s.failed, s.skipped, s.redone) == (2, 0, 0, 0)
    a, b = out / "a.png", out / "b.png"
    assert max(size(a)) == 64 and max(size(b)) == 64
    oks = [json.loads(line) for line in (out / batch.LOG_NAME).read_text().splitlines()]
    assert all(len(r["fingerprint"]) == 64 for r in oks)

    before = stamp(a), stamp(b)  # unchanged: both skipped, outputs untouched
    s = rerun(manifest, out)
    assert (s.ok, s.skipped, s.redone) == (0, 2, 0)
    assert (stamp(a), stamp(b)) == before

    write_manifest(tmp_path, [{**ROWS[0], "size": 48, "iterations": 3}, ROWS[1]])  # one row's options changed
    s = rerun(manifest, out)
    assert (s.ok, s.failed, s.skipped, s.redone) == (1, 0, 1, 1)
    assert max(size(a)) == 48  # made again, with the new size
    assert stamp(b) == before[1]
    last = json.loads((out / batch.LOG_NAME).read_text().splitlines()[-1])
    assert last["output"] == str(a) and last["status"] == "ok" and last["redone"] and last["iterations"] == 3

    s = rerun(manifest, out)  # the redone row's new record now matches
    assert (s.ok, s.skipped, s.redone) == (0, 2, 0)

    write_manifest(tmp_path, [{**ROWS[0], "size": 48, "iterations": 2}, ROWS[1]])  # iterations alone
    kept = stamp(a)
    s = rerun(manifest, out)
    assert (s.ok, s.skipped, s.redone) == (1, 1, 1)
    assert stamp(a) != kept and stamp(b) == before[1]
    assert json.loads((out / batch.LOG_NAME).read_text().splitlines()[-1])["iterations"] == 2

    style = tmp_path / "starry_night.jpg"  # a style file's bytes changed, same name
    style.write_bytes((tmp_path / "the_scream.jpg").read_bytes())
    kept = stamp(a)
    s = rerun(manifest, out)
    assert (s.ok, s.skipped, s.redone) == (1, 1, 1)
    assert stamp(a) == kept and stamp(b) != before[1]


def test_output_without_a_record_is_redone_and_the_cli_says_so(tmp_path):
    """An output no ok record vouches for (an older version made it, or the log is gone) counts
    as changed: the batch cannot tell what made it."""
    out = tmp_path / "out"
    out.mkdir()
    manifest = write_manifest(tmp_path, ROWS[:1])
    Image.new("RGB", (10, 10)).save(out / "a.png")
    proc = cli("batch", manifest, "--out", out, "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    assert "1 ok" in proc.stdout and "0 skipped" in proc.stdout
    assert "1 redone (inputs or options changed)" in proc.stdout
    assert max(size(out / "a.png")) == 64


def test_a_clip_rerun_with_other_options_redoes_its_frames(tmp_path):
    """A clip's frames folder records checkpoint.recorded(options); a rerun (batch passes
    overwrite) with another option clears the frames and starts at frame 0, the same one continues."""
    from onnxstyle.options import StyleOptions
    from onnxstyle.runtime import checkpoint
    from onnxstyle.video import run as clips

    def identity(options: StyleOptions) -> dict:
        return json.loads(json.dumps({"options": checkpoint.recorded(options)}, default=str))

    work = tmp_path / "out.frames"
    assert clips._prepare(work, identity(StyleOptions(size=64)), False) == 0
    for i in range(3):
        Image.new("RGB", (4, 4)).save(work / clips.frame_name(i))
    assert clips._prepare(work, identity(StyleOptions(size=64)), True) == 3  # the same run: continue
    assert clips._prepare(work, identity(StyleOptions(size=48)), True) == 0  # changed: redo every frame
    assert not list(work.glob("frame_*.png"))
