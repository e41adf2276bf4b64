"""Shared bits of the reliability tests: the CLI in a subprocess or in this process, hand-made
files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "onnxstyle" / "data"
CONTENT = DATA / "astronaut.png"  # NASA, public domain (bundled)
STYLE = DATA / "starry_night.jpg"  # van Gogh, public domain (bundled)
SHARED_SPECIAL = ROOT / "tests" / "data" / "special"  # copies of ../shared/data/special


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("ONNXSTYLE_THREADS", "1")
    e.update(extra)
    return e


def cli(*args, cwd: Path | None = None, timeout: float = 120, **extra_env: str):
    """`python -m onnxstyle ARGS` -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "onnxstyle", *map(str, args)], cwd=cwd,
                          env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout)


def cli_in_process(capfd: pytest.CaptureFixture[str], *args) -> subprocess.CompletedProcess[str]:
    """`onnxstyle ARGS` through `onnxstyle.cli.main` in this process -> what `cli` returns: the
    exit code and everything written to stdout and stderr (at the file descriptors too, where
    onnxruntime's native logging would go). Environment and cwd are the caller's."""
    from onnxstyle.cli import main

    argv = ["onnxstyle", *map(str, args)]
    capfd.readouterr()
    with mock.patch.object(sys, "argv", argv):
        try:
            main()
            code: int | str | None = 0
        except SystemExit as e:
            code = e.code
    out = capfd.readouterr()
    return subprocess.CompletedProcess(argv, code if isinstance(code, int) else int(code is not None),
                                       out.out, out.err)


def assert_one_line(proc, code: int, *words: str) -> str:
    """Exit `code`, exactly one line on stderr naming `words`, and never a traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("onnxstyle: "), err
    for w in words:
        assert w.lower() in err.lower(), (w, err)
    return err


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, bit_depth: int, colour_type: int, rows) -> bytes:
    """A PNG from raw scanlines (each without the filter byte); `rows` yields bytes."""
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(b"\x00" + row) for row in rows) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(
        b"IEND", b"")


def png_bomb(side: int = 10_000) -> bytes:
    """A real decompression bomb: side x side greyscale zeros (100 Mpx), ~100 kB on disk."""
    row = bytes(side)
    return png(side, side, 8, 0, (row for _ in range(side)))


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares huge dimensions (its data is a few bytes)."""
    return png(width, height, 8, 0, [bytes(16)])
