"""The `onnxstyle` command line: a thin typer layer over the library. Defaults come from
onnxstyle.defaults; every failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys

from onnxstyle.cli.app import app


def main() -> None:
    """Run the CLI. Usage errors (bad option values, missing arguments) are one line and exit 2,
    Ctrl-C outside a run exits 130; a run's own errors are handled in app.py."""
    import warnings

    import typer

    # Pillow warns (several lines) about corrupt EXIF or truncated reads: the CLI either copes
    # or reports the file in one line itself.
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    try:
        code = app(standalone_mode=False)
    except typer.Exit as e:
        code = e.exit_code
    except typer.TyperException as e:  # click's UsageError, BadParameter, ...
        message = " ".join(e.format_message().split())
        if message:  # empty when the help was shown for a bare `onnxstyle`
            print(f"onnxstyle: error: {message} (see --help)", file=sys.stderr)
        code = getattr(e, "exit_code", 2)
    except typer.Abort:  # end of input at a prompt
        print("onnxstyle: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]

if __name__ == "__main__":
    sys.exit(main())
