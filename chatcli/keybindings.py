"""What the line editor adds to typing: key bindings, Tab completion of slash commands
and their arguments (driven by each command's declared `Arg`), the bottom bar, and
how wrapped and continued lines are shown. prompt_toolkit's other home, with repl.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.key_binding import KeyBindings

from chatcli import commands
from chatcli.session import Session
from chatcli.textsafe import is_plain, visible

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
            choices = command.arg.choices(self.session)
        except (Exception, KeyboardInterrupt):
            return  # no key yet, endpoint down, a bug: simply no suggestions, never a broken line
        for choice in choices:
            # Model names come from the server, titles from the database: one with control
            # characters is not offered.
            if choice.lower().startswith(arg.lower()) and is_plain(choice):
                yield Completion(choice, -len(arg))


def bindings() -> KeyBindings:
    """Alt-Enter (and Esc Enter, Ctrl-J) adds a new line; Enter sends."""
    keys = KeyBindings()

    @keys.add("escape", "enter")  # Alt-Enter, and Esc then Enter
    @keys.add("c-j")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return keys


def toolbar(session: Session) -> str:
    """The bottom bar: the profile when one is chosen, the model, how full the context is."""
    s = session.settings
    try:
        window = session.window()
        share = f"{100 * window.tokens / window.budget if window.budget else 100:.0f}%"
    except Exception:  # the bar is drawn inside the line editor: it must never fail
        share = "?"
    profile = f"profile {s.profile} | " if s.profile else ""
    return visible(f" {profile}{s.model} | context {share} | /help")
