"""The command line, the composition root: flags in, settings, client, store and output built.

The only package that imports typer, and nothing imports it. `app` holds the
typer app and the error boundary; `chatting` the interactive session, piped
answers and `ask`; `manage` the `config` and `sessions` subcommands.
"""

from __future__ import annotations

from chatcli.cli import chatting, manage  # noqa: F401 (registers the commands)
from chatcli.cli.app import app


def run() -> None:
    """Run the command line (the console script enters through chatcli.__main__)."""
    app()
