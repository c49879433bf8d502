"""What the line editor adds to typing: key bindings, Tab completion of slash commands
and their arguments (driven by each command's declared `Arg`), the bottom bar, and
how wrapped and continued lines are shown. prompt_toolkit's other home, with repl.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.key_binding import KeyBindings

from chatcli import commands
from chatcli.session import Session
from chatcli.textsafe import is_plain, shown

PROMPT = "> "


def continuation(width: int, line: int, wrap_count: int) -> str:
    """What starts each screen line of the input after the first: a line the screen
    wrapped continues under the text, unmarked; a new line (Alt-Enter) gets a dim
    dot, so the two never look alike."""
    return " " * width if wrap_count else "." * (width - 1) + " "


class SlashCompleter(Completer):
    """Completes command names, then a command's argument where it has choices."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Any, complete_event: Any) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not commands.is_command(text) or "\n" in text:
            return
        name, space, arg = text[1:].partition(" ")
        if not space:
            for command in commands.COMMANDS:
                for candidate in (command.name, *command.aliases):
                    if candidate.startswith(name.lower()):
                        yield Completion("/" + candidate, -len(text), display_meta=command.help)
            return
        try:
            command = commands.find(name.lower())
            if command.arg.kind == "path":
                yield from self._path(arg, complete_event)
                return
            if command.arg.kind == "conversation":
                yield from self._conversations(arg)
                return
            choices = command.arg.choices(self.session)
        except (Exception, KeyboardInterrupt):
            return  # no key yet, endpoint down, a bug: simply no suggestions, never a broken line
        for choice in choices:
            # Model names come from the server, titles from the database: one with control
            # characters is not offered.
            if choice.lower().startswith(arg.lower()) and is_plain(choice):
                yield Completion(choice, -len(arg))


    def _conversations(self, arg: str) -> Iterator[Completion]:
        """Saved conversations whose title (or number) starts with what is typed: each shown
        with its number and when it was last used, and put in as its number, so two of the
        same title are told apart and either can be chosen."""
        from chatcli.export import cut_to, local_time

        if self.session.store is None:
            return
        typed = arg.strip().lower()
        for info in self.session.store.conversations(limit=50):
            label = info.name or info.title
            if not (label.lower().startswith(typed) or str(info.id).startswith(typed)) or not is_plain(label):
                continue
            yield Completion(str(info.id), -len(arg), display=f"{info.id}  {cut_to(label, 50)}",
                             display_meta=local_time(info.updated_at))

    def _path(self, arg: str, complete_event: Any) -> Iterator[Completion]:
        """Files and directories, for /file, /image and /save (after its block number)."""
        number, space, rest = arg.partition(" ")
        typed = rest if space and number.isdigit() else arg
        for found in self._paths.get_completions(Document(typed, len(typed)), complete_event):
            if is_plain(found.text):  # a file name with control characters is not offered
                yield Completion(found.text, found.start_position, display=found.display)


def bindings() -> KeyBindings:
    """Alt-Enter (and Esc Enter, Ctrl-J) adds a new line; Enter sends."""
    keys = KeyBindings()

    @keys.add("escape", "enter")  # Alt-Enter, and Esc then Enter
    @keys.add("c-j")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return keys


def toolbar(session: Session) -> str:
    """The bottom bar: NOT SAVING while saving fails, the profile when one is chosen, the model,
    how full the context is, and what is attached to the next message."""
    s = session.settings
    try:
        window = session.window()
        tokens = window.tokens + sum(part.tokens for part in session.pending)  # what the next one adds
        share = f"{100 * tokens / window.budget if window.budget else 100:.0f}%"
    except Exception:  # the bar is drawn inside the line editor: it must never fail
        share = "?"
    profile = f"profile {s.profile} | " if s.profile else ""
    profile += f"role {s.role} | " if s.role else ""
    pending = session.pending
    attached = ""
    if pending:
        names = ", ".join(part.name.rpartition("/")[2] or part.name for part in pending)
        attached = f"attached: {names} | " if len(pending) <= 3 and len(names) <= 40 else \
            f"{len(pending)} attachments | "
    saving = "NOT SAVING | " if session.not_saving else ""  # until a write works again
    return shown(f" {saving}{profile}{s.model} | {attached}context {share} | /help")
