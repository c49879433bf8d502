"""A reply folded from its events: text, thinking, tool calls, usage and how it ended.

Pure (standard library and the values of conversation.py): chat.py feeds each event
of a stream, or a whole completion, and gets back what to show (a piece cut to the
limit, or nothing) and, at the end, the message to keep with the notice that goes
with it. Tool calls are put together from pieces in whatever shape real servers send
them (ToolCalls). Every rule about what a reply is lives here, so the stream, the
whole response, a continuation and each round of a tool loop follow the same ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chatcli.conversation import (
    ASSISTANT,
    MESSAGE_OVERHEAD,
    Message,
    TextBuffer,
    ToolCall,
    Usage,
    estimate_tokens,
)
from chatcli.events import (
    Completion,
    Event,
    ReasoningDelta,
    RequestSent,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    UsageReport,
)
from chatcli.think import unopened_think

INTERRUPTED = "interrupted"
ERROR = "error"
# Far beyond any real reply (a long book chapter is 100 kB): a server that keeps
# sending is cut off here, and what came is kept as cut by length.
MAX_REPLY_CHARS = 10_000_000
TOO_LONG = "too long"  # our own ending: the reply passed MAX_REPLY_CHARS (saved as "length")
MAX_CALLS = 128  # calls in one reply; more is a server gone wrong
MAX_ARGUMENT_CHARS = 1_000_000  # one call's arguments


@dataclass
class _Call:
    id: str | None
    name: str
    arguments: TextBuffer


class ToolCalls:
    """Tool calls put together from the pieces a stream brings, as servers really send them:
    the id only in the first piece; the name whole in every piece or in pieces; arguments in
    fragments; several calls in one chunk; no index at all, or index 0 for every call
    (Gemini, some proxies), or indexes from 1. A piece with an id unlike the call at its
    index starts a new call; a piece without an index belongs to the newest call unless it
    brings an id of its own. Calls without an id get one made up; empty arguments are {}."""

    def __init__(self) -> None:
        self._calls: list[_Call] = []
        self._at: dict[int | None, int] = {}  # a server's index -> the newest call with it

    def feed(self, piece: ToolCallDelta) -> None:
        slot = self._at.get(piece.index)
        if slot is None and piece.index is None and self._calls:
            slot = len(self._calls) - 1
        call = self._calls[slot] if slot is not None else None
        if call is None or (piece.id is not None and call.id is not None and piece.id != call.id):
            if len(self._calls) >= MAX_CALLS:
                return
            call = _Call(piece.id, "", TextBuffer())
            self._calls.append(call)
            self._at[piece.index] = len(self._calls) - 1
        if call.id is None:
            call.id = piece.id
        if piece.name:
            call.name = _name(call.name, piece.name)
        if piece.arguments and len(call.arguments) < MAX_ARGUMENT_CHARS:
            known = call.arguments.text() if len(call.arguments) == len(piece.arguments) else ""
            if known != piece.arguments or not _whole_json(known):  # sent whole once more: once
                call.arguments.add(piece.arguments[: MAX_ARGUMENT_CHARS - len(call.arguments)])

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> tuple[ToolCall, ...]:
        made = []
        for number, call in enumerate(self._calls, 1):
            arguments = call.arguments.text().strip() or "{}"
            made.append(ToolCall(call.id or f"call_{number}", call.name, arguments))
        ids = [call.id for call in made]
        if len(set(ids)) < len(ids):  # two calls of one id cannot be answered apart
            made = [ToolCall(f"{call.id}_{n}", call.name, call.arguments) for n, call in enumerate(made, 1)]
        return tuple(made)


def _name(known: str, piece: str) -> str:
    """A tool's name from its pieces: the same name again (sent whole each time) changes
    nothing, a longer one starting with it replaces it, anything else continues it."""
    if piece == known:
        return known
    return piece if piece.startswith(known) else known + piece


def _whole_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class Fold:
    """One reply as it arrives. `feed` keeps an event and returns what listeners should get
    (the piece within the limit, or None); `message` is the reply to keep."""

    def __init__(self, prefix: Message | None = None) -> None:
        self.text = TextBuffer(prefix.content if prefix else "")
        self.thinking = TextBuffer(prefix.reasoning if prefix else "")
        self.prefix = prefix
        self._before = (len(self.text), len(self.thinking))
        self.calls = ToolCalls()
        self.usage: UsageReport | None = None
        self.finish: str | None = None
        self.full = False  # the reply passed MAX_REPLY_CHARS: nothing more is taken

    def feed(self, event: Event) -> Event | None:
        if isinstance(event, TextDelta):
            piece = event.text[: MAX_REPLY_CHARS - len(self.text)]
            self.text.add(piece)
            if len(self.text) >= MAX_REPLY_CHARS:
                self.finish, self.full = TOO_LONG, True
            return event if piece == event.text else TextDelta(piece) if piece else None
        if isinstance(event, ReasoningDelta):
            piece = event.text[: MAX_REPLY_CHARS - len(self.thinking)]
            self.thinking.add(piece)
            return ReasoningDelta(piece) if piece else None
        if isinstance(event, ToolCallDelta):
            self.calls.feed(event)
            return event
        if isinstance(event, UsageReport):
            self.usage = event
        elif isinstance(event, StreamEnd):
            self.finish = TOO_LONG if self.full else event.finish_reason
        return event if isinstance(event, RequestSent) else None

    def whole(self, completion: Completion) -> list[Event]:
        """A completion fed as the events a stream of it would bring; those to show."""
        events: list[Event] = [ReasoningDelta(completion.reasoning), TextDelta(completion.text),
                               *completion.tool_calls]
        shown = [e for e in (self.feed(event) for event in events) if e is not None]
        if completion.usage is not None:
            self.feed(completion.usage)
        self.feed(StreamEnd(completion.finish_reason))
        return shown

    def new(self) -> bool:
        """Whether anything came beyond what a continued reply held already."""
        return (len(self.text), len(self.thinking)) != self._before or bool(self.calls)

    def partial(self, status: str) -> Message | None:
        """What came before the reply stopped (Ctrl-C, an error), marked with why; None when
        nothing came. A continuation that brought nothing new ends as it had."""
        if not (self.text or self.thinking or self.calls):
            return None
        if self.prefix is not None and not self.new():
            status = self.prefix.finish_reason or status
        # A call cut off before its arguments were whole was never made: only whole ones are kept
        # (each will be answered as not run, so the history stays one the API takes).
        calls = tuple(call for call in self.calls.calls() if _whole_json(call.arguments))
        return Message(ASSISTANT, self.text.text(), finish_reason=status, reasoning=self.thinking.text(),
                       tool_calls=calls)

    def message(self, window_tokens: int) -> tuple[Message, Usage, str | None]:
        """The reply as it ended, its usage (estimated when the server gave none) and the
        note that says what was odd about it (its thinking unwrapped from the text)."""
        text, reasoning = self.text.text(), self.thinking.text()
        hidden = None
        if not reasoning:
            reasoning, text = unopened_think(text)
            if reasoning:  # it streamed as if it were the answer: say what it was
                hidden = ("the reply began with the model's thinking (its template hid the <think> "
                          "tag): it is kept apart as thinking (/thinking) and not sent again")
        finish = "length" if self.finish == TOO_LONG else self.finish
        calls = self.calls.calls()
        if calls and finish in (None, "stop"):
            finish = "tool_calls"  # servers that say stop, or nothing, with calls
        if self.usage is not None:
            usage = Usage(self.usage.prompt_tokens, self.usage.completion_tokens,
                          reasoning_tokens=self.usage.reasoning_tokens)
            # The completion's tokens count the thinking too, which is never sent again: then the
            # reply's own size is estimated (so are calls, whose results come later).
            estimate = bool(reasoning) or self.prefix is not None or bool(calls)
            size = -1 if estimate else usage.completion_tokens + MESSAGE_OVERHEAD
        else:
            usage = Usage(window_tokens, estimate_tokens(reasoning + text), estimated=True)
            size = -1
        reply = Message(ASSISTANT, text, tokens=size, finish_reason=finish, reasoning=reasoning,
                        tool_calls=calls)
        return reply, usage, hidden
