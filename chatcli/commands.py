"""Slash commands: one registry that dispatches, generates /help and feeds Tab completion.

Each command declares its argument (`Arg`: none, text, a number, a word from a
list, a model, a profile, a saved conversation), which parses what was typed,
says what is wrong with it, shows in /help and drives Tab completion. A handler
takes the session and the parsed value and returns data (`Output`): lines, a
table, or an action the REPL carries out (exit, retry, edit, copy). Nothing here
draws or reads the keyboard.
"""

from __future__ import annotations

import difflib
import json
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chatcli import errors
from chatcli.config import parse_params
from chatcli.conversation import NO_REPLY, unanswered
from chatcli.export import LISTING, attached, last_exchange, listing_row, unanswered_note
from chatcli.mdblocks import code_blocks
from chatcli.render import cost_text, counted, usage_text
from chatcli.schema import EFFORTS, REASONING_MODES
from chatcli.session import Session
from chatcli.textsafe import (
    describe_hidden,
    hidden_characters,
    url_shown,
    without_controls,
    without_hidden,
    without_prose_signs,
)

# What the REPL does after a command, beyond printing: leave, ask again, open the
# editor with the payload, put the payload on the clipboard, or write it to `target`.
Action = Literal["exit", "retry", "edit", "copy", "save", "continue", "edit_last"]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    widest: Mapping[int, int] = field(default_factory=dict)  # column number -> most columns


@dataclass(frozen=True)
class Output:
    lines: tuple[str, ...] = ()
    table: Table | None = None
    action: Action | None = None
    payload: str = ""
    target: str = ""  # the file a "save" writes


# What a command's argument is: it decides how the text is parsed and what Tab offers.
ArgKind = Literal["none", "text", "number", "word", "model", "profile", "role", "conversation", "path"]


@dataclass(frozen=True)
class Arg:
    kind: ArgKind = "none"
    name: str = ""  # as /help shows it
    required: bool = False
    words: tuple[str, ...] = ()  # taken as they are, besides (or, for "word", instead of) the rest
    what: str = ""  # a number's name in its error: "temperature"
    low: float = 1
    high: float | None = None
    whole: bool = True

    def usage(self) -> str:
        """`[n | default]`, `ID | title`, or nothing: the argument as /help shows it."""
        if self.kind == "none":
            return ""
        inner = " | ".join(([] if self.kind == "word" else [self.name]) + list(self.words))
        return inner if self.required else f"[{inner}]"

    def parse(self, command: str, text: str) -> Any:
        """The value `text` stands for: None when nothing was typed, else one of the
        words, a number, or the text. A UsageError says what was expected."""
        if not text:
            if self.required:
                raise errors.UsageError(f"/{command} needs {self.usage()}")
            return None
        if self.kind == "none":
            raise errors.UsageError(f"/{command} takes no argument", hint="/help lists the commands")
        if text in self.words:
            return text
        if self.kind == "word":
            raise errors.UsageError(f"/{command} takes {' or '.join(self.words)}, not {text!r}")
        if self.kind == "number":
            return self._number(text)
        return text

    def _number(self, text: str) -> int | float:
        try:
            value: int | float = int(text) if self.whole else float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < self.low or (self.high is not None and value > self.high):
            low = int(self.low) if self.whole else self.low
            limit = f"from {low} to {self.high}" if self.high is not None else f"of at least {low}"
            raise errors.UsageError(f"{self.what} must be a {'whole ' if self.whole else ''}number {limit}"
                                    + "".join(f", or {word!r}" for word in self.words))
        return value

    def choices(self, session: Session) -> list[str]:
        """What Tab offers after the command (models ask the endpoint, once a session)."""
        if self.kind == "model":
            return session.models()
        if self.kind == "profile":
            return list(session.profiles)
        if self.kind == "role":
            return [*sorted(session.settings.roles), *self.words]
        return list(self.words)  # saved conversations are offered by the completer, with their numbers


Handler = Callable[[Session, Any], Output]


@dataclass(frozen=True)
class Command:
    name: str
    arg: Arg
    help: str
    handler: Handler = field(compare=False)
    aliases: tuple[str, ...] = ()

    @property
    def args(self) -> str:
        return self.arg.usage()


KEYS_HELP = (
    "Enter sends · Alt-Enter, Esc Enter or Ctrl-J: new line · Ctrl-X Ctrl-E: edit in $EDITOR",
    "Up/Down and Ctrl-R: input history · Tab: complete commands and their arguments · Ctrl-C: stop "
    "a reply or clear the line · Ctrl-D: leave",
    "A message that starts with // is sent as text starting with /.",
)


def _help(session: Session, value: Any) -> Output:
    rows = [("/" + " /".join((c.name, *c.aliases)), c.args, c.help) for c in COMMANDS]
    # The arguments wrap at 18 columns: the longest list of choices cannot squeeze every
    # description onto two lines.
    return Output(lines=KEYS_HELP, table=Table(("command", "arguments", "what it does"), rows, {1: 18}))


def _exit(session: Session, value: Any) -> Output:
    return Output(action="exit")


def _clear(session: Session, value: Any) -> Output:
    previous = session.clear()
    kept = f" (the previous one is saved: /resume {previous})" if previous else ""
    return Output(lines=(f"a fresh conversation with the same system prompt{kept}",))


def _new(session: Session, value: Any) -> Output:
    previous = session.new(name=value, system=session.settings.system_prompt)
    kept = f" (the previous one is saved: /resume {previous})" if previous else ""
    return Output(lines=(f"a new conversation{kept}",))


def _sessions(session: Session, value: Any) -> Output:
    store = session.stored()
    rows = [listing_row(c) for c in store.conversations(limit=20, unanswered=value == "all")]
    hidden = 0 if value == "all" else len(store.unanswered())
    lines = ([unanswered_note(hidden, listing="/sessions all")] if hidden else []) + (
        ["/resume ID or TITLE opens one"] if rows else ["no saved conversations yet"])
    return Output(lines=tuple(lines), table=Table(LISTING, rows) if rows else None)


def _resume(session: Session, value: Any) -> Output:
    info = session.stored().find(value)
    if info is None:
        raise errors.UsageError(f"no conversation {value!r}", hint="/sessions lists them")
    session.resume(info)
    lines = [f"resumed {info.id}: {info.label} ({counted(info.message_count, 'message')})",
             *last_exchange(session.conversation.messages)]
    if info.model and info.model != session.settings.model:
        lines.append(f"it used {info.model}; now using {session.settings.model} (/model to switch)")
    return Output(lines=tuple(lines))


def _rename(session: Session, value: Any) -> Output:
    session.rename(value)
    name = " ".join(value.split())
    return Output(lines=(f"this conversation is now called {name!r}: /resume {name} "
                         f"or chatcli --session {shlex.quote(name)} opens it",))



def _system(session: Session, value: Any) -> Output:
    if value is None:
        current = session.conversation.system
        return Output(lines=(f"system prompt: {current}" if current else "no system prompt "
                             "(set one with /system TEXT)",))
    if value == "-":
        session.set_system(None)
        return Output(lines=("system prompt removed",))
    session.set_system(value)
    return Output(lines=("system prompt set",))


def _model(session: Session, value: Any) -> Output:
    if value is None:
        return Output(lines=(f"model: {session.settings.model} (Tab after /model lists the "
                             "endpoint's models)",))
    session.update(model=value)
    return Output(lines=(f"model: {value}",))


def _profile(session: Session, value: Any) -> Output:
    if value is None:
        names = ", ".join(session.profiles) or "none in the config file"
        return Output(lines=(f"profile: {session.settings.profile or '(none)'}; profiles: {names}",))
    session.switch_profile(value)
    s = session.settings
    return Output(lines=(f"profile: {value} (model {s.model} at {url_shown(s.base_url)})",))


def _role(session: Session, value: Any) -> Output:
    if value is None:
        role = session.settings.role
        names = ", ".join(sorted(session.settings.roles))
        return Output(lines=(f"role: {role or '(none)'}; roles: {names} (/role NAME uses one, /role - "
                             "none)",))
    changed = session.set_role(None if value == "-" else value)
    what = f"; {', '.join(changed)}" if changed else ""
    if value == "-":
        return Output(lines=(f"no role from the next message on{what}",))
    template = session.settings.template
    note = (f" (its template is for one-shot questions: chatcli ask -r {value} ...)" if template else "")
    return Output(lines=(f"role {value} from the next message on{what}{note}",))


def _temperature(session: Session, value: Any) -> Output:
    if value is None:
        value = session.settings.temperature
        return Output(lines=(f"temperature: {'the server default' if value is None else value}",))
    value = None if value == "default" else value
    session.update(temperature=value)
    return Output(lines=(f"temperature: {'the server default' if value is None else value}",))


def _max_tokens(session: Session, value: Any) -> Output:
    if value is None:
        value = session.settings.max_tokens
        return Output(lines=(f"max tokens: {'the server default' if value is None else value}",))
    value = None if value == "default" else value
    session.update(max_tokens=value)
    return Output(lines=(f"max tokens: {'the server default' if value is None else value}",))


def _retry(session: Session, value: Any) -> Output:
    return Output(action="retry")


def _continue(session: Session, value: Any) -> Output:
    return Output(action="continue")


def _fork(session: Session, value: Any) -> Output:
    original, fork = session.fork(value)
    kept = f"the first {counted(value, 'message')}" if value is not None else "all of it"
    return Output(lines=(f"forked conversation {original} ({kept}) into {fork}, which you are in now; "
                         f"/resume {original} goes back",))


def _rewind(session: Session, value: Any) -> Output:
    original, fork = session.fork(value)
    return Output(lines=(f"back at message {value}: this is conversation {fork}, the next question "
                         f"follows message {value}; the whole conversation stays as {original} "
                         f"(/resume {original})",))


def _edit_last(session: Session, value: Any) -> Output:
    index = session.last_question()
    return Output(action="edit_last", payload=session.conversation.messages[index].content)


def _undo(session: Session, value: Any) -> Output:
    removed = session.undo()
    if not removed:
        return Output(lines=("nothing to undo",))
    return Output(lines=(f"removed the last turn ({counted(len(removed), 'message')})",))


def _history(session: Session, value: Any) -> Output:
    window = session.window()
    sent = {id(m) for m in window.messages}
    rows = []
    if session.conversation.system:
        rows.append(("-", "system", "", "sent", _preview(session.conversation.system)))
    no_reply = unanswered(session.conversation.messages, last=True)
    for number, message in enumerate(session.conversation.messages, start=1):
        state = NO_REPLY if number - 1 in no_reply else "sent" if id(message) in sent else "left out"
        marks = " ".join(filter(None, ("pinned" if message.pinned else "",
                                       message.finish_reason if message.finish_reason not in
                                       (None, "stop") else "")))
        rows.append((str(number), message.role, f"{'~' if message.estimated else ''}{message.tokens:,}",
                     f"{state} {marks}".strip(), _preview(attached(message) + message.content
                                                          + _calls_preview(session, message))))
    lines = (f"next request: {len(window.messages)} messages, ~{window.tokens:,} of {window.budget:,} "
             f"tokens; {len(window.dropped)} left out"
             + (f" to fit {' and '.join(_LIMITS[limit](session) for limit in window.limited_by)}"
                if window.limited_by else ""),)
    return Output(lines=lines, table=Table(("#", "role", "tokens", "state", "text"), rows))


def _calls_preview(session: Session, message: Any) -> str:
    """` → read_file #3 ok, run_command #4 refused`: a reply's calls, numbered as /tool-output
    takes them."""
    if not message.tool_calls:
        return ""
    numbers = {id(call): n for n, (_, call) in enumerate(session.tool_calls(), 1)}
    return " → " + ", ".join(f"{call.name} #{numbers.get(id(call), '?')} "
                              f"{call.result.status if call.result else 'not run'}"
                              for call in message.tool_calls)


def _tools(session: Session, value: Any) -> Output:
    """`/tools`: every tool, whether it is offered and whether it asks; `/tools NAME` turns one
    on or off, `/tools all` and `/tools none` all of them."""
    box = session.ensure_tools()
    if box is None:
        raise errors.UsageError("tools cannot be offered in this session")
    lines: tuple[str, ...] = ()
    if value in ("all", "none"):
        for name in session.catalog:
            session.toggle_tool(name, value == "all")
        lines = (f"{'every tool is' if value == 'all' else 'no tool is'} offered now",)
    elif value:
        on = session.toggle_tool(value)
        lines = (f"{value} is {'offered now' if on else 'no longer offered'}",)
    rows = []
    for name, tool in session.catalog.items():
        asks = ("runs without asking (--yes)" if box.yes else "runs without asking" if name in box.always
                else "asks each time")
        rows.append((name, "on" if name in box.tools else "off", tool.effect, asks,
                     _preview(tool.description)))
    return Output(lines=lines, table=Table(("tool", "offered", "effect", "approval", "what it does"), rows))


def _mcp(session: Session, value: Any) -> Output:
    """`/mcp`: the MCP servers, whether each is on, running or failed, and its tools;
    `/mcp NAME` turns one on (tried again, if it failed) or off (stopped)."""
    servers = session.mcp()
    lines: tuple[str, ...] = ()
    if value:
        on = session.toggle_server(value)
        said = "on: it starts with the next question" if on else "off: stopped, its tools not offered"
        lines = (f"{value} is {said}",)
    rows = []
    for name, server in servers.servers.items():
        rows.append((name, servers.state(name), server.approval(), _preview(server.where())))
    return Output(lines=lines, table=Table(("server", "state", "approval", "where"), rows))


def _tool_output(session: Session, value: Any) -> Output:
    """`/tool-output [n]`: the whole output of tool call n (default: the last), as /history
    numbers them."""
    calls = session.tool_calls()
    if not calls:
        raise errors.UsageError("no tool has been called in this conversation")
    number = len(calls) if value is None else int(value)
    if not 1 <= number <= len(calls):
        raise errors.UsageError(f"no tool call {number}; there are {len(calls)}")
    _, call = calls[number - 1]
    result = call.result
    head = f"call {number}: {call.name} {call.arguments}"
    if result is None:
        return Output(lines=(head, "(not run)"))
    return Output(lines=(head, f"({result.status}{', cut for the model' if result.output else ''})",
                         *result.whole.split("\n")))


_LIMITS = {
    "max_messages": lambda session: f"max_messages = {session.settings.max_messages} (the API "
                                    "document allows 20 messages a request)",
    "context": lambda session: f"the context window ({session.settings.context_window:,} tokens, "
                               "less the room kept for the reply)",
}


def _preview(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _tokens(session: Session, value: Any) -> Output:
    s = session.settings
    lines = []
    if session.last is not None:
        lines.append(f"last reply: {usage_text(session.last.usage)}")
    cost = cost_text(session.total, s.price_input, s.price_output, s.currency)
    lines.append(f"{session.total_label}: {usage_text(session.total)}" + (f"; cost {cost}" if cost else ""))
    window = session.window()
    share = 100 * window.tokens / window.budget if window.budget else 100
    lines.append(f"next request: ~{window.tokens:,} of {window.budget:,} tokens ({share:.0f}% of the "
                 f"context window {s.context_window:,} less the reply reserve)")
    return Output(lines=tuple(lines))


def _copy(session: Session, value: Any) -> Output:
    reply = session.last_reply()
    if reply is None:
        raise errors.UsageError("no reply to copy yet")
    if value is None:
        whole = without_controls(reply.content)
        payload = without_prose_signs(whole)
        said = () if payload == whole else ("removed the direction overrides and tag characters the reply "
                                            "held (shown as <U+…> signs)",)
        return Output(lines=said, action="copy", payload=payload)
    blocks = code_blocks(reply.content)
    number = value
    if number > len(blocks):
        raise errors.UsageError(f"the last reply has {len(blocks)} code blocks")
    return _code_output("copy", blocks[number - 1])


def _code_output(action: Action, code: str, target: str = "") -> Output:
    """Code to copy or save, as it was shown: without control characters, and without the
    invisible and direction-changing characters (shown as <U+…> signs), which it names."""
    code = without_controls(code)
    found = hidden_characters(code)
    said = (f"removed {counted(len(found), 'invisible or direction-changing character')} "
            f"({describe_hidden(found)}), shown as <U+…> signs",) if found else ()
    return Output(lines=said, action=action, payload=without_hidden(code), target=target)


def _pin(session: Session, value: Any) -> Output:
    message = session.pin(value)
    state = "pinned: kept in every request" if message.pinned else "unpinned"
    return Output(lines=(f"{state}: {_preview(message.content, 50)}",))


def _reasoning(session: Session, value: Any) -> Output:
    if value is not None:
        session.update(reasoning=value)
    return Output(lines=(f"reasoning: {session.settings.reasoning} (show: kept on the screen, collapse: "
                         "folded to one line when the answer starts, hide: only that line)",))


def _effort(session: Session, value: Any) -> Output:
    if value is not None:
        session.update(reasoning_effort=None if value == "default" else value)
    effort = session.settings.reasoning_effort
    return Output(lines=(f"reasoning effort: {effort or 'the server default'}",))


def _param(session: Session, value: Any) -> Output:
    params = dict(session.settings.params)
    if value is not None and value.startswith("-"):
        if params.pop(value[1:].strip(), None) is None:
            raise errors.UsageError(f"no param {value[1:].strip()!r} to remove", hint="/param lists them")
        session.update(params=params)
    elif value is not None:
        session.update(params={**params, **parse_params([value])})
    shown = ", ".join(f"{key} = {json.dumps(v, ensure_ascii=False)}"
                      for key, v in session.settings.params.items())
    return Output(lines=(f"params: {shown or 'none'} (sent as extra fields of every request)",))


def _thinking(session: Session, value: Any) -> Output:
    reply = session.last_reply()
    if reply is None or not reply.reasoning:
        return Output(lines=("the last reply has no thinking",))
    return Output(lines=tuple(reply.reasoning.strip("\n").splitlines()))


def _attach(session: Session, value: str, *, images_only: bool) -> Output:
    loaded = session.attach(value, images_only=images_only)
    lines = [*loaded.listing, *(f"warning: {w}" for w in loaded.warnings)]
    if not loaded.listing:
        lines += [f"attached {part.label()}" for part in loaded.parts] or [f"{value} is already attached"]
    lines.append(f"sent with your next message ({counted(len(session.pending), 'attachment')}; "
                 "/attachments lists them, /detach drops them)")
    return Output(lines=tuple(lines))


def _file(session: Session, value: Any) -> Output:
    return _attach(session, value, images_only=False)


def _image(session: Session, value: Any) -> Output:
    return _attach(session, value, images_only=True)


def _attachments(session: Session, value: Any) -> Output:
    if not session.pending:
        return Output(lines=("nothing attached (/file PATH, /image PATH)",))
    rows = [(str(n), part.label(), f"~{part.tokens:,}") for n, part in enumerate(session.pending, start=1)]
    return Output(lines=("sent with your next message:",), table=Table(("#", "attachment", "tokens"), rows))


def _detach(session: Session, value: Any) -> Output:
    dropped = session.detach(value)
    if not dropped:
        return Output(lines=("nothing was attached",))
    return Output(lines=(f"dropped {', '.join(part.name for part in dropped)}",))


def _save(session: Session, value: Any) -> Output:
    """`/save [N] PATH`: code block N of the last reply (N may be left out when it has one)."""
    if value.isdigit():
        raise errors.UsageError(f"/save {value} needs a file name", hint=f"/save {value} PATH")
    first, _, rest = value.partition(" ")
    number, path = (int(first), rest.strip()) if first.isdigit() and rest.strip() else (None, value)
    reply = session.last_reply()
    blocks = code_blocks(reply.content) if reply is not None else []
    if not blocks:
        raise errors.UsageError("the last reply has no code block to save" if reply else "no reply yet")
    if number is None and len(blocks) > 1:
        raise errors.UsageError(f"the last reply has {len(blocks)} code blocks: which one?",
                                hint=f"/save N {path} (1 to {len(blocks)})")
    number = number or 1
    if not 1 <= number <= len(blocks):
        raise errors.UsageError(f"the last reply has {counted(len(blocks), 'code block')}")
    return _code_output("save", blocks[number - 1], path)


def _edit(session: Session, value: Any) -> Output:
    return Output(action="edit", payload=value or "")


NONE = Arg()
COMMANDS: tuple[Command, ...] = (
    Command("help", NONE, "this list", _help, ("?",)),
    Command("exit", NONE, "leave (Ctrl-D on an empty line does too)", _exit, ("quit",)),
    Command("clear", NONE, "start afresh with the same system prompt (the old one stays saved)", _clear),
    Command("new", Arg("text", "name"), "start a new conversation (the old one stays saved)", _new),
    Command("sessions", Arg("word", words=("all",)),
            "the saved conversations, newest first (all: also unanswered ones)", _sessions),
    Command("resume", Arg("conversation", "ID | title", required=True),
            "go back to a saved conversation (the start of its title will do)", _resume),
    Command("rename", Arg("text", "name", required=True), "give this conversation a name to open it by",
            _rename),
    Command("system", Arg("text", "text", words=("-",)), "show, set or remove (-) the system prompt",
            _system),
    Command("model", Arg("model", "name"), "show or switch the model", _model),
    Command("profile", Arg("profile", "name"), "show or switch the profile", _profile),
    Command("role", Arg("role", "name", words=("-",)),
            "show, use or drop (-) a role: a system prompt and its settings", _role),
    Command("temperature", Arg("number", "x", words=("default",), what="temperature", low=0, high=2,
                               whole=False), "show or set the temperature (0 to 2)", _temperature),
    Command("max-tokens", Arg("number", "n", words=("default",), what="max tokens", high=100_000_000),
            "show or set the longest reply", _max_tokens),
    Command("retry", NONE, "send the last question again for a new reply", _retry),
    Command("undo", NONE, "remove the last question and its reply", _undo),
    Command("continue", NONE, "finish the last reply where it was cut off (max_tokens, Ctrl-C, a crash)",
            _continue),
    Command("edit-last", NONE, "edit the last question in $EDITOR and send it instead (the conversation "
            "as it was is kept as a fork)", _edit_last),
    Command("rewind", Arg("number", "n", required=True, what="the message number", low=0),
            "carry on from message n (as /history numbers them) in a fork; the whole conversation is kept",
            _rewind),
    Command("fork", Arg("number", "n", what="the message number", low=0),
            "copy this conversation (up to message n) into a new one and carry on there", _fork),
    Command("history", NONE, "what the next request sends, and what trimming leaves out", _history),
    Command("tokens", NONE, "usage and cost so far, and how full the context is", _tokens),
    Command("copy", Arg("number", "n", what="the code block number"),
            "copy the last reply, or its n-th code block, to the clipboard", _copy),
    Command("pin", Arg("number", "n", what="the message number"),
            "keep message n (default: the last) in every request; again to unpin", _pin),
    Command("edit", Arg("text", "text"), "write the next message in $EDITOR", _edit),
    Command("file", Arg("path", "path", required=True),
            "attach a text file, or a directory's text files, to the next message", _file),
    Command("image", Arg("path", "path | URL", required=True),
            "attach an image (PNG, JPEG, GIF, WebP) or an image URL to the next message", _image),
    Command("attachments", NONE, "what is attached to the next message", _attachments),
    Command("detach", Arg("number", "n", what="the attachment number"),
            "drop attachment n, or all of them", _detach),
    Command("save", Arg("path", "[n] path", required=True),
            "write code block n of the last reply to a file (asks before overwriting)", _save),
    Command("reasoning", Arg("word", words=REASONING_MODES),
            "how a reasoning model's thinking is shown: kept, folded to a line, or only the line",
            _reasoning),
    Command("thinking", NONE, "the last reply's thinking, whole", _thinking),
    Command("param", Arg("text", "KEY=JSON | -KEY"), "show, add or remove an extra request field",
            _param),
    Command("effort", Arg("word", words=(*EFFORTS, "default")),
            "how hard a reasoning model thinks (reasoning_effort)", _effort),
    Command("tools", Arg("text", "name", words=("all", "none")),
            "the tools the model may call; a name turns one on or off", _tools),
    Command("mcp", Arg("text", "name"), "the MCP servers and how each stands; a name turns one on or off",
            _mcp),
    Command("tool-output", Arg("number", "n", what="the tool call number"),
            "the whole output of tool call n (default: the last), as /history numbers them", _tool_output),
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
    name, _, text = line.strip()[1:].partition(" ")
    command = find(name.lower())
    return command.handler(session, command.arg.parse(command.name, text.strip()))
