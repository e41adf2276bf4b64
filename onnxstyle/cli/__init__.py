"""The `onnxstyle` command line: a thin typer layer over the library. Defaults come from
onnxstyle.defaults; every failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys

from onnxstyle.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]

if __name__ == "__main__":
    sys.exit(main())
