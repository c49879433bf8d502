"""Entry point for the `chatcli` command and `python -m chatcli`.

`--version` is answered here, before typer and the rest are imported, so it
costs little more than starting Python.
"""

from __future__ import annotations

import sys

# The commonest ways to open the interactive session, and `chatcli ask` with words and
# switches only, skip typer: importing it and building the command (pydantic adapters
# for every option) costs about a tenth of a second before anything else can happen.
_SESSION_SHORTCUTS = {(): False, ("-c",): True, ("--continue",): True}


def _leave_now(signum: int, frame: object) -> None:
    """Ctrl-C, SIGTERM or SIGHUP while chatcli is still starting: nothing needs saving yet,
    so it leaves at once. (Raising an exception here could break an import half-way, and
    a half-imported module fails loudly later.) The error boundary takes over from this."""
    import os

    if signum == 2:  # SIGINT: say so, as the error boundary would
        os.write(2, b"chatcli: error: interrupted\n")
    os._exit(128 + signum)


def main() -> None:
    args = tuple(sys.argv[1:])
    if args == ("--version",):
        from chatcli import __version__

        print(f"chatcli {__version__}")
        return
    import signal  # not before --version: it imports enum, functools, collections

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _leave_now)
    if args in _SESSION_SHORTCUTS and sys.stdin.isatty() and sys.stdout.isatty():
        from chatcli.cli.base import Flags, guard
        from chatcli.cli.chatting import interact

        flags = Flags(resume_latest=_SESSION_SHORTCUTS[args])
        sys.exit(guard(lambda: interact(flags)))
    from chatcli.cli.base import simple_ask

    if (simple := simple_ask(args)) is not None:  # `chatcli ask words`: no typer needed
        from chatcli.cli.base import finish, guard
        from chatcli.cli.chatting import ask_words

        flags, words = simple
        finish(guard(lambda: ask_words(flags, words), debug=bool(flags.debug)))
    from chatcli.cli import run
    from chatcli.cli.base import finish

    try:
        run()
    except SystemExit as done:  # the typer app's exit code, after its error boundary
        finish(done.code)


if __name__ == "__main__":
    main()
