"""Conversations as text: Markdown a person would paste into a document, JSON in the API's format.

Pure formatting, standard library only.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from chatcli.conversation import NO_REPLY, Message, ToolCall, fence_for, unanswered
from chatcli.store import ConversationInfo

ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}


def local_time(timestamp: float) -> str:
    """A stored time in local time, as a person reads it."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def to_markdown(info: ConversationInfo, messages: list[Message], *, reasoning: bool = False) -> str:
    """The conversation as a Markdown document; with `reasoning`, each reply's thinking
    too, quoted before it."""
    title = info.title or f"Conversation {info.id}"
    fork = f"forked from {info.parent_id} at message {info.forked_at}" if info.parent_id else None
    facts = " · ".join(filter(None, (info.model, info.profile and f"profile {info.profile}",
                                     info.role and f"role {info.role}", local_time(info.created_at), fork)))
    out = [f"# {title}", "", f"*{facts}*", ""]
    if info.system_prompt:
        out += ["**System**", "", info.system_prompt, ""]
    no_reply = unanswered(messages, last=True)
    for number, message in enumerate(messages):
        notes = [message.finish_reason] if message.finish_reason in ("interrupted", "error", "length") else []
        notes += [NO_REPLY] if number in no_reply else []
        notes += [f"command {message.outcome}"] if message.outcome else []
        note = f" *({'; '.join(notes)})*" if notes else ""
        out += [f"**{ROLE_NAMES.get(message.role, message.role)}**{note}", ""]
        if reasoning and message.reasoning.strip():
            quoted = [f"> {line}".rstrip() for line in message.reasoning.strip().splitlines()]
            out += ["*Thinking:*", "", *quoted, ""]
        for part in message.parts:  # text attachments fenced under their name, images named
            out += [part.body() if part.kind == "text" else f"*[image: {part.label()}]*", ""]
        out += [message.content, ""] if message.content or not message.tool_calls else []
        for call in message.tool_calls:
            out += tool_call_markdown(call)
    return "\n".join(out).rstrip() + "\n"


def tool_call_markdown(call: ToolCall) -> list[str]:
    """A call and its result as Markdown lines: the arguments fenced as JSON, then the whole
    output (not only what the model read) fenced as text."""
    arguments = call.arguments
    with contextlib.suppress(ValueError):
        arguments = json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    fence = fence_for(arguments)
    out = [f"*Tool call `{call.name}`:*", "", f"{fence}json", arguments, fence, ""]
    result = call.result
    if result is None:
        return [*out, "*(not run)*", ""]
    took = f", {result.seconds:.1f} s" if result.seconds is not None else ""
    cut = "; the model read it cut to its head and tail" if result.output else ""
    fence = fence_for(result.whole)
    return [*out, f"*Result ({result.status}{took}{cut}):*", "", f"{fence}text", result.whole.rstrip("\n"),
            fence, ""]


def excerpt(text: str, *, lines: int = 2, width: int = 76) -> list[str]:
    """The first `lines` non-blank lines of `text`, each cut to `width` terminal columns
    (a Chinese character takes two), and a last line saying how much more there is:
    enough to recognise a message, not to reread it."""
    kept = [line.rstrip() for line in text.split("\n") if line.strip()]
    shown = [_cut(line, width) for line in kept[:lines]]
    if len(kept) > lines:
        rest = len(kept) - lines
        shown.append(f"(… {rest} more line{'' if rest == 1 else 's'})")
    return shown


def _cells(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide and full-width characters two."""
    from unicodedata import east_asian_width

    return sum(2 if east_asian_width(ch) in "WF" else 1 for ch in text)


def cut_to(line: str, width: int) -> str:
    """`line` in at most `width` terminal columns, ending in … when cut."""
    return _cut(line, width)


def _cut(line: str, width: int) -> str:
    if _cells(line) <= width:
        return line
    kept, used = [], 1  # room for the …
    for ch in line:
        used += _cells(ch)
        if used > width:
            break
        kept.append(ch)
    return "".join(kept) + "…"


def last_exchange(messages: list[Message]) -> list[str]:
    """Where a resumed conversation stands: its last question and the start of its reply."""
    out: list[str] = []
    question = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if question is None:
        return out
    for message in messages[question:question + 2]:
        who = ROLE_NAMES.get(message.role, message.role).lower()
        note = f" ({message.finish_reason})" if message.finish_reason in ("interrupted", "error",
                                                                            "length") else ""
        if message is messages[-1] and message.role == "user":
            note = f" ({NO_REPLY}: /retry sends it again)"
        label = f"  {who}{note}: "
        empty = "(only its thinking, /thinking shows it)" if message.reasoning else "(empty)"
        text = attached(message) + message.content
        first, *rest = excerpt(text, width=max(80 - len(label), 30)) or [empty]
        out += [label + first, *(f"    {line}" for line in rest)]
    return out


def to_json(info: ConversationInfo, messages: list[Message], *, reasoning: bool = False) -> dict[str, Any]:
    """The conversation with its messages as the chat-completions API takes them; with
    `reasoning`, a reply's thinking as its `reasoning` field (not for sending back)."""
    api: list[dict[str, Any]] = ([{"role": "system", "content": info.system_prompt}]
                                 if info.system_prompt else [])
    for m in messages:
        if m.tool_calls:  # the assistant's calls, then each result as a tool message
            api += m.api_messages() if reasoning else [
                {k: v for k, v in d.items() if k != "reasoning_content"} for d in m.api_messages()]
        else:
            api.append({**_api(m), "reasoning": m.reasoning} if reasoning and m.reasoning else _api(m))
    return {"id": info.id, "name": info.name, "title": info.title, "model": info.model,
            "profile": info.profile, "role": info.role, "created": int(info.created_at),
            "updated": int(info.updated_at), "messages": api}


def _api(message: Message) -> dict[str, Any]:
    """A message for JSON export: attachments kept as parts (an image as its data URL)."""
    return {"role": message.role, "content": message.api_parts()} if message.parts else message.to_api()


def attached(message: Message) -> str:
    """What a one-line preview puts before a message's text: `[notes.txt, cat.png] `."""
    return f"[{', '.join(part.name for part in message.parts)}] " if message.parts else ""


def summary(info: ConversationInfo) -> dict[str, Any]:
    """One conversation in `sessions list --json`."""
    return {"id": info.id, "name": info.name, "title": info.title, "messages": info.message_count,
            "model": info.model, "profile": info.profile, "role": info.role, "parent": info.parent_id,
            "created": int(info.created_at),
            "updated": int(info.updated_at), "answered": info.answered}


LISTING = ("ID", "LAST USED", "MSGS", "MODEL", "TITLE")


def listing_row(info: ConversationInfo) -> tuple[str, ...]:
    """One conversation in `sessions list` and `/sessions`, the columns of LISTING: its
    title as it can be typed back, marked when no reply ever came."""
    label = " ".join(info.label.split())
    fork = f"fork of {info.parent_id}"
    title = label + ("" if info.answered else " (no reply)") + (
        f" ({fork})" if info.parent_id and not label.endswith(fork + ")") and label != fork else "")
    return (str(info.id), local_time(info.updated_at), str(info.message_count),
            " ".join((info.model or "-").split()), title)


def unanswered_note(count: int, *, listing: str) -> str:
    """What `sessions list` and `/sessions` leave out, and how to see or remove it."""
    return (f"{count:,} conversation{'' if count == 1 else 's'} that never got a reply not shown: "
            f"{listing} shows {'it' if count == 1 else 'them'}, "
            f"`chatcli sessions rm --unanswered` removes {'it' if count == 1 else 'them'}")


def columns(rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned plain-text columns (the last column is not padded)."""
    widths = [max(_cells(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    lines = []
    for row in rows:
        cells = [cell + " " * (widths[i] - _cells(cell)) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + ("\n" if lines else "")
