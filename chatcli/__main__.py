"""Entry point for the `chatcli` command and `python -m chatcli`.

`--version` is answered here, before typer and the rest are imported, so it
costs little more than starting Python.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from chatcli import __version__

        print(f"chatcli {__version__}")
        return
    from chatcli.cli import run

    run()


if __name__ == "__main__":
    main()
