"""``python -m envbuild`` and the ``envbuild`` console script.

Kept free of heavy imports: the CLI (click, rich, the library) is imported inside
:func:`run`, so a Ctrl-C while it loads ends with a one-line message and exit 130,
not a traceback from the middle of an import.
"""

import sys


def run() -> int:
    """Import the CLI and run it; return the exit code."""
    try:
        from envbuild.cli.main import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
