"""The command line, the composition root: flags in, settings, client, store and output built.

The only package that imports typer, and nothing imports it. `base` holds what
needs no typer (flags, settings, stdin, the error boundary); `chatting` the
interactive session, piped answers and `ask`, typer-free too; `options` the
shared options' typer declarations; `app` the typer app, `chatcli` and
`chatcli ask`; `manage` `config`, `sessions` and `doctor`.
"""

from __future__ import annotations

from typing import Any


def run() -> None:
    """Run the command line (the console script enters through chatcli.__main__)."""
    typer_app()()


def typer_app() -> Any:
    """The typer app with every command registered. Imported only when a command line
    needs typer: `chatcli ask QUESTION` and the session start without it (__main__)."""
    from chatcli.cli import manage, mcpcmd  # noqa: F401 (register their commands)
    from chatcli.cli.app import app

    return app

