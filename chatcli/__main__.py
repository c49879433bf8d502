"""Entry point for the `chatcli` command and `python -m chatcli`.

`--version` is answered here, before typer and the rest are imported, so it
costs little more than starting Python.
"""

from __future__ import annotations

import sys

# The commonest ways to open the interactive session skip building the typer
# command, which imports pydantic (about 65 ms) before the prompt could appear.
_SESSION_SHORTCUTS = {(): False, ("-c",): True, ("--continue",): True}


def _terminate(signum: int, frame: object) -> None:
    import signal

    from chatcli.errors import Terminated

    # The shell forwards the terminal's SIGHUP as well: a second signal must not
    # interrupt the saving of the partial reply that the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise Terminated(signum)


def main() -> None:
    args = tuple(sys.argv[1:])
    if args == ("--version",):
        from chatcli import __version__

        print(f"chatcli {__version__}")
        return
    try:
        _main(args)
    except BaseException as exc:  # a signal before the error boundary was up: no traceback
        from chatcli.errors import EXIT_INTERRUPTED, Terminated

        if isinstance(exc, Terminated):
            sys.exit(exc.exit_code)
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.write("chatcli: error: interrupted\n")
            sys.exit(EXIT_INTERRUPTED)
        raise


def _main(args: tuple[str, ...]) -> None:
    import signal  # not before --version: it imports enum, functools, collections

    # A closed terminal (SIGHUP) or a kill (SIGTERM) during a reply unwinds like
    # Ctrl-C, so the partial reply is saved, then chatcli leaves without a word.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if args in _SESSION_SHORTCUTS and sys.stdin.isatty() and sys.stdout.isatty():
        from chatcli.cli.app import Flags, guard
        from chatcli.cli.chatting import interact

        flags = Flags(resume_latest=_SESSION_SHORTCUTS[args])
        sys.exit(guard(lambda: interact(flags)))
    from chatcli.cli import run

    run()


if __name__ == "__main__":
    main()
