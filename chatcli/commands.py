"""Slash commands: one registry that dispatches, generates /help and feeds Tab completion.

A handler takes the session and the text after the command name and returns
data (`Output`): lines, a table, or an action the REPL carries out (exit,
retry, edit, copy). Nothing here draws or reads the keyboard.
"""

from __future__ import annotations

import difflib
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chatcli import errors
from chatcli.export import LISTING, last_exchange, listing_row, unanswered_note
from chatcli.mdblocks import code_blocks
from chatcli.render import cost_text, counted, usage_text
from chatcli.session import Session
from chatcli.textsafe import without_controls

# What the REPL does after a command, beyond printing: leave, ask again, open the
# editor with the payload, or put the payload on the clipboard.
Action = Literal["exit", "retry", "edit", "copy"]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    title: str = ""


@dataclass(frozen=True)
class Output:
    lines: tuple[str, ...] = ()
    table: Table | None = None
    action: Action | None = None
    payload: str = ""


Handler = Callable[[Session, str], Output]


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    help: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    complete: Callable[[Session], list[str]] | None = field(default=None, compare=False)


KEYS_HELP = (
    "Enter sends · Alt-Enter, Esc Enter or Ctrl-J: new line · Ctrl-X Ctrl-E: edit in $EDITOR",
    "Up/Down and Ctrl-R: input history · Tab: complete commands · Ctrl-C: stop a reply or clear "
    "the line · Ctrl-D: leave",
    "A message that starts with // is sent as text starting with /.",
)


def _help(session: Session, arg: str) -> Output:
    rows = [("/" + " /".join((c.name, *c.aliases)), c.args, c.help) for c in COMMANDS]
    return Output(lines=KEYS_HELP, table=Table(("command", "arguments", "what it does"), rows))


def _exit(session: Session, arg: str) -> Output:
    return Output(action="exit")


def _clear(session: Session, arg: str) -> Output:
    previous = session.clear()
    kept = f" (the previous one is saved: /resume {previous})" if previous else ""
    return Output(lines=(f"a fresh conversation with the same system prompt{kept}",))


def _new(session: Session, arg: str) -> Output:
    previous = session.new(name=arg or None, system=session.settings.system_prompt)
    kept = f" (the previous one is saved: /resume {previous})" if previous else ""
    return Output(lines=(f"a new conversation{kept}",))


def _sessions(session: Session, arg: str) -> Output:
    if arg not in ("", "all"):
        raise errors.UsageError(f"/sessions takes no {arg!r}", hint="/sessions, or /sessions all")
    store = session.stored()
    rows = [listing_row(c) for c in store.conversations(limit=20, unanswered=arg == "all")]
    hidden = 0 if arg == "all" else len(store.unanswered())
    lines = ([unanswered_note(hidden, listing="/sessions all")] if hidden else []) + (
        ["/resume ID or TITLE opens one"] if rows else ["no saved conversations yet"])
    return Output(lines=tuple(lines), table=Table(LISTING, rows) if rows else None)


def _resume(session: Session, arg: str) -> Output:
    if not arg:
        raise errors.UsageError("which one? /resume ID or TITLE (/sessions lists them)")
    info = session.stored().find(arg)
    if info is None:
        raise errors.UsageError(f"no conversation {arg!r}", hint="/sessions lists them")
    session.resume(info)
    lines = [f"resumed {info.id}: {info.label} ({counted(info.message_count, 'message')})",
             *last_exchange(session.conversation.messages)]
    if info.model and info.model != session.settings.model:
        lines.append(f"it used {info.model}; now using {session.settings.model} (/model to switch)")
    return Output(lines=tuple(lines))


def _rename(session: Session, arg: str) -> Output:
    if not arg:
        raise errors.UsageError("/rename needs the new name", hint="/rename My project")
    session.rename(arg)
    name = " ".join(arg.split())
    return Output(lines=(f"this conversation is now called {name!r}: /resume {name} "
                         f"or chatcli --session {_quoted(name)} opens it",))


def _quoted(text: str) -> str:
    """`text` as a shell takes it back as one word."""
    return shlex.quote(text)



def _system(session: Session, arg: str) -> Output:
    if not arg:
        current = session.conversation.system
        return Output(lines=(f"system prompt: {current}" if current else "no system prompt "
                             "(set one with /system TEXT)",))
    if arg == "-":
        session.set_system(None)
        return Output(lines=("system prompt removed",))
    session.set_system(arg)
    return Output(lines=("system prompt set",))


def _model(session: Session, arg: str) -> Output:
    if not arg:
        return Output(lines=(f"model: {session.settings.model} (Tab after /model lists the "
                             "endpoint's models)",))
    session.update(model=arg)
    return Output(lines=(f"model: {arg}",))


def _profile(session: Session, arg: str) -> Output:
    if not arg:
        names = ", ".join(session.profiles) or "none in the config file"
        return Output(lines=(f"profile: {session.settings.profile or '(none)'}; profiles: {names}",))
    session.switch_profile(arg)
    s = session.settings
    return Output(lines=(f"profile: {arg} (model {s.model} at {s.base_url})",))


def _temperature(session: Session, arg: str) -> Output:
    if not arg:
        value = session.settings.temperature
        return Output(lines=(f"temperature: {'the server default' if value is None else value}",))
    value = None if arg == "default" else _number(arg, "temperature", float, 0, 2, default=True)
    session.update(temperature=value)
    return Output(lines=(f"temperature: {'the server default' if value is None else value}",))


def _max_tokens(session: Session, arg: str) -> Output:
    if not arg:
        value = session.settings.max_tokens
        return Output(lines=(f"max tokens: {'the server default' if value is None else value}",))
    value = None if arg == "default" else _number(arg, "max tokens", int, 1, 100_000_000, default=True)
    session.update(max_tokens=value)
    return Output(lines=(f"max tokens: {'the server default' if value is None else value}",))


def _number(text: str, what: str, kind: type, low: float, high: float | None, *,
            default: bool = False) -> Any:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise errors.UsageError(f"{what} must be a {'whole ' if kind is int else ''}number {limit}"
                                + (", or 'default'" if default else ""))
    return value


def _retry(session: Session, arg: str) -> Output:
    return Output(action="retry")


def _undo(session: Session, arg: str) -> Output:
    removed = session.undo()
    if not removed:
        return Output(lines=("nothing to undo",))
    return Output(lines=(f"removed the last turn ({counted(len(removed), 'message')})",))


def _history(session: Session, arg: str) -> Output:
    window = session.window()
    sent = {id(m) for m in window.messages}
    rows = []
    if session.conversation.system:
        rows.append(("-", "system", "", "sent", _preview(session.conversation.system)))
    for number, message in enumerate(session.conversation.messages, start=1):
        state = "sent" if id(message) in sent else "left out"
        marks = " ".join(filter(None, ("pinned" if message.pinned else "",
                                       message.finish_reason if message.finish_reason not in
                                       (None, "stop") else "")))
        rows.append((str(number), message.role, f"{'~' if message.estimated else ''}{message.tokens}",
                     f"{state} {marks}".strip(), _preview(message.content)))
    lines = (f"next request: {len(window.messages)} messages, ~{window.tokens} of {window.budget} "
             f"tokens; {len(window.dropped)} left out"
             + (f" to fit {' and '.join(_LIMITS[limit](session) for limit in window.limited_by)}"
                if window.limited_by else ""),)
    return Output(lines=lines, table=Table(("#", "role", "tokens", "state", "text"), rows))


_LIMITS = {
    "max_messages": lambda session: f"max_messages = {session.settings.max_messages} (the API "
                                    "document allows 20 messages a request)",
    "context": lambda session: f"the context window ({session.settings.context_window:,} tokens, "
                               "less the room kept for the reply)",
}


def _preview(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _tokens(session: Session, arg: str) -> Output:
    s = session.settings
    lines = []
    if session.last is not None:
        lines.append(f"last reply: {usage_text(session.last.usage)}")
    cost = cost_text(session.total, s.price_input, s.price_output, s.currency)
    lines.append(f"{session.total_label}: {usage_text(session.total)}" + (f"; cost {cost}" if cost else ""))
    window = session.window()
    share = 100 * window.tokens / window.budget if window.budget else 100
    lines.append(f"next request: ~{window.tokens} of {window.budget} tokens ({share:.0f}% of the "
                 f"context window {s.context_window} less the reply reserve)")
    return Output(lines=tuple(lines))


def _copy(session: Session, arg: str) -> Output:
    reply = session.last_reply()
    if reply is None:
        raise errors.UsageError("no reply to copy yet")
    if not arg:
        return Output(action="copy", payload=without_controls(reply.content))
    blocks = code_blocks(reply.content)
    number = _number(arg, "the code block number", int, 1, None)
    if number > len(blocks):
        raise errors.UsageError(f"the last reply has {len(blocks)} code blocks")
    return Output(action="copy", payload=without_controls(blocks[number - 1]))


def _pin(session: Session, arg: str) -> Output:
    number = _number(arg, "the message number", int, 1, None) if arg else None
    message = session.pin(number)
    state = "pinned: kept in every request" if message.pinned else "unpinned"
    return Output(lines=(f"{state}: {_preview(message.content, 50)}",))


def _edit(session: Session, arg: str) -> Output:
    return Output(action="edit", payload=arg)


COMMANDS: tuple[Command, ...] = (
    Command("help", "", "this list", _help, ("?",)),
    Command("exit", "", "leave (Ctrl-D on an empty line does too)", _exit, ("quit",)),
    Command("clear", "", "start afresh with the same system prompt (the old one stays saved)",
            _clear),
    Command("new", "[name]", "start a new conversation (the old one stays saved)", _new),
    Command("sessions", "[all]", "the saved conversations, newest first (all: also unanswered ones)",
            _sessions),
    Command("resume", "ID | title", "go back to a saved conversation (the start of its title will do)",
            _resume),
    Command("rename", "name", "give this conversation a name to open it by", _rename),
    Command("system", "[text | -]", "show, set or remove (-) the system prompt", _system),
    Command("model", "[name]", "show or switch the model", _model,
            complete=lambda session: session.models()),
    Command("profile", "[name]", "show or switch the profile", _profile,
            complete=lambda session: session.profiles),
    Command("temperature", "[x | default]", "show or set the temperature (0 to 2)", _temperature),
    Command("max-tokens", "[n | default]", "show or set the longest reply", _max_tokens),
    Command("retry", "", "send the last question again for a new reply", _retry),
    Command("undo", "", "remove the last question and its reply", _undo),
    Command("history", "", "what the next request sends, and what trimming leaves out", _history),
    Command("tokens", "", "usage and cost so far, and how full the context is", _tokens),
    Command("copy", "[n]", "copy the last reply, or its n-th code block, to the clipboard", _copy),
    Command("pin", "[n]", "keep message n (default: the last) in every request; again to unpin",
            _pin),
    Command("edit", "[text]", "write the next message in $EDITOR", _edit),
)
_BY_NAME = {name: c for c in COMMANDS for name in (c.name, *c.aliases)}


def is_command(line: str) -> bool:
    """A line starting with one slash is a command; // sends text starting with /."""
    return line.startswith("/") and not line.startswith("//")


def find(name: str) -> Command:
    command = _BY_NAME.get(name)
    if command is None:
        close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.5)
        hint = f"did you mean /{close[0]}?" if close else "/help lists the commands"
        raise errors.UsageError(f"unknown command /{name}", hint=hint)
    return command


def dispatch(session: Session, line: str) -> Output:
    name, _, arg = line.strip()[1:].partition(" ")
    return find(name.lower()).handler(session, arg.strip())
