"""`chatcli cmd`: a sentence in, one shell command out, run only when the user presses e.

The `shell` role asks for exactly one command for the user's OS and shell (their names
only: never the environment, paths or history). On a terminal the command is shown
whole (cmdview: every row as it runs, non-ASCII marked; refused when taller than the
screen or holding control or format characters), then, after a pause in which keys typed
ahead are thrown away, a one-key menu: anything but e (Enter, Esc, Ctrl-C included) runs
nothing. Not on a terminal (a pipe, $(...), CI) the command is printed and never run:
there is no flag that runs without a keypress. What became of it is saved with the reply.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from typing import Any

from chatcli import errors
from chatcli.approval import read_key
from chatcli.cli.base import Flags, build_settings, diagnostics, key_for, read_stdin
from chatcli.config import with_role
from chatcli.render import Diagnostics, wants_color
from chatcli.session import Session
from chatcli.textsafe import non_ascii

SHELL_ROLE = "shell"
MENU = "[e]xecute  [r]evise  [d]escribe  [c]opy  [a]bort (Enter, Esc) "
ABORT_KEYS = {"a", "\r", "\n", "\x1b", "\x04", "q"}
# Between the command appearing and the menu that answers for it: no key typed before the
# menu (type-ahead, or a key meant for the reply) can answer it; it is thrown away.
SETTLE_SECONDS = 0.3


def interactive(env: Any = os.environ, *, screen: Any = None) -> bool:
    """The menu needs a person: stdin and the `screen` it is drawn on (stdout) on a
    terminal, and not CI."""
    ci = env.get("CI", "").lower() not in ("", "0", "false")
    return sys.stdin.isatty() and (screen or sys.stdout).isatty() and not ci


def command_of(reply: str) -> str:
    """The command in a reply: the first code block's contents when the model fenced it
    anyway, without a leading `$ ` prompt or wrapping backticks."""
    from chatcli.mdblocks import code_blocks

    blocks = code_blocks(reply)
    text = blocks[0] if blocks else reply
    text = text.strip()
    if text.startswith("`") and text.endswith("`") and "\n" not in text:
        text = text.strip("`").strip()
    return "\n".join(re.sub(r"^\s*\$ ", "", line) for line in text.split("\n")).strip()


def shell_command(flags: Flags, words: list[str], *, one_line: bool = False) -> int:
    """`chatcli cmd WORDS...`: the exit code is the command's when it ran, else 0 (130 for
    Ctrl-C at the menu). `one_line` (the shell key binding): a command of several lines is
    refused, since the shell's command line may not show it whole."""
    from chatcli.cli.chatting import open_session

    flags = flags.check()
    diag = diagnostics()
    # One suggested command, shown and run by its own menu: no tools, whatever the config offers.
    flags = replace(flags, tools=None, all_tools=None, no_tools=True)
    settings = build_settings(replace(flags, role=flags.role or SHELL_ROLE), diag)
    text = " ".join(words).strip()
    if not text:
        piped = read_stdin(diag, context_window=settings.context_window)
        text = (piped or "").strip()
    if not text:
        raise errors.UsageError("what should the command do?", hint='chatcli cmd "find files over 100 MB"')
    session = open_session(flags, settings, diag, key=key_for(settings))
    person = interactive()
    while True:
        command = _ask(session, text, diag, shown=person)
        if not person:
            if one_line and "\n" in command:
                session.record_outcome("refused, not run")
                raise errors.ServerError(
                    f"the suggested command has {command.count(chr(10)) + 1} lines, more than a command "
                    "line is sure to show, so it is not put there",
                    hint="run chatcli cmd with the same words to see it whole")
            if strange := non_ascii(command):
                diag.warning(f"the command holds non-ASCII characters: {', '.join(strange)}")
            sys.stdout.write(command + "\n")
            sys.stdout.flush()
            session.record_outcome("printed, not run")
            return errors.EXIT_OK
        choice = _menu(session, command, diag)
        if isinstance(choice, int):
            return choice
        text = choice  # a revision: asked in the same conversation


class _Waiting:
    """While a reasoning model thinks before its command: how long, on one line of stderr
    that is rewritten (at most twice a second) and cleared when the answer comes."""

    def __init__(self, file: Any) -> None:
        import time

        self.file = file
        self._clock = time.monotonic
        self.started = self._clock()
        self.drawn = float("-inf")

    def event(self, event: Any) -> None:
        from chatcli.events import ReasoningDelta, TextDelta

        now = self._clock()
        if isinstance(event, ReasoningDelta) and now - self.drawn >= 0.5:
            self.file.write(f"\rthinking… {now - self.started:.0f} s")
            self.file.flush()
            self.drawn = now
        elif isinstance(event, TextDelta):
            self.end()

    def end(self) -> None:
        if self.drawn > float("-inf"):
            self.file.write("\r\x1b[K")  # the line cleared: the command is shown next
            self.file.flush()
            self.drawn = float("-inf")


def _ask(session: Session, text: str, diag: Diagnostics, *, shown: bool) -> str:
    from chatcli.cmdview import refusal
    from chatcli.render import NullSink

    if shown:
        diag.note(f"asking {session.settings.model}…")
    sink: Any = _Waiting(sys.stderr) if shown and sys.stderr.isatty() else NullSink()
    result = session.ask(text, sink, stream=True)
    command = command_of(result.reply.content)
    if not command:
        raise errors.ServerError("the model suggested no command (an empty reply)", hint="try again, "
                                 "or say it differently")
    if why := refusal(command):
        session.record_outcome("refused, not run")
        raise errors.ServerError(f"the suggested command is not offered: {why}", hint="try again")
    if result.notice:
        diag.warning(result.notice)
    return command


def _menu(session: Session, command: str, diag: Diagnostics) -> str | int:
    """Show the command and read keys until one decides: returns an exit code when done, or
    a follow-up to ask (r). A description (d), an empty revision or an unknown key show the
    menu again."""
    from chatcli.cmdview import too_tall, view
    from chatcli.render import make_console, print_command

    console = make_console(sys.stdout, color=wants_color(sys.stdout, os.environ))
    shell = os.path.basename(os.environ.get("SHELL", "")) or "sh"
    again = False
    while True:
        if again:  # after a description or an unknown key: the command again, set apart
            console.print()
        again = True
        shape = view(command, console.width)
        if why := too_tall(shape, console.height):
            session.record_outcome("too tall, not run")
            raise errors.ServerError(why, hint="ask for a shorter command, or read it with "
                                     f"`chatcli sessions show {session.conversation_id or 'ID'}`")
        print_command(console, command, shape, shell)
        if command.lstrip().startswith("#"):  # the model says no command can do it
            session.record_outcome("no command")
            return errors.EXIT_OK
        key = read_key(MENU, settle=SETTLE_SECONDS)
        if key == "e":
            return _execute(session, command, diag)
        if key == "r":
            try:
                follow = input("revise: ").strip()
            except (EOFError, KeyboardInterrupt):
                follow = ""
                sys.stderr.write("\n")
            if follow:
                return follow
            continue
        if key == "d":
            _describe(session, command, diag)
            continue
        if key == "c":
            from chatcli.render import osc52

            sys.stdout.write(osc52(command, os.environ))
            sys.stdout.flush()
            session.record_outcome("copied, not run")
            diag.note("copied to the clipboard (OSC 52); nothing was run")
            return errors.EXIT_OK
        if key in ABORT_KEYS or key == "\x03":
            session.record_outcome("not run")
            diag.note("nothing was run")
            return errors.EXIT_INTERRUPTED if key == "\x03" else errors.EXIT_OK


def _execute(session: Session, command: str, diag: Diagnostics) -> int:
    """Run `command` in the user's shell, in this directory with this environment, its
    output live; chatcli leaves with its exit code. Ctrl-C goes to the command, not to chatcli."""
    import signal
    import subprocess

    shell = os.environ.get("SHELL") or "/bin/sh"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        done = subprocess.run([shell, "-c", command], check=False)
    except OSError as exc:
        raise errors.UsageError(f"cannot run {shell}: {exc.strerror or exc}", hint="check $SHELL") from None
    finally:
        signal.signal(signal.SIGINT, previous)
    code = done.returncode if done.returncode >= 0 else 128 - done.returncode
    session.record_outcome(f"ran, exit {code}")
    diag.note(f"the command exited with {code}")
    return code


def _describe(session: Session, command: str, diag: Diagnostics) -> None:
    """The describe role explains the command (a request of its own, not saved)."""
    from chatcli.chat import run_turn
    from chatcli.conversation import Conversation
    from chatcli.render import drawing, reply_sink

    if "describe" not in session.settings.roles:
        diag.error("no describe role")
        return
    settings = with_role(session.settings, "describe", os.environ)
    # its own conversation, whose system prompt is the role's even when a flag gave cmd one
    system = settings.roles["describe"].layer(os.environ, sys.platform).get("system_prompt")
    sink = reply_sink(drawing(sys.stdout, os.environ, markdown=settings.markdown), sys.stdout)
    try:
        run_turn(Conversation(system=system), command, client=session.client, settings=settings, sink=sink)
    except errors.Interrupted:
        diag.note("interrupted")
    except errors.ChatcliError as exc:
        diag.error(exc)
