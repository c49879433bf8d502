"""What a reply is made of as it arrives: small tagged values shared by client, chat and render.

The client turns a server's stream (or a whole response) into these; chat.py
collects them into a message. A new kind of content is a new value here, not a
new method on every consumer. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # extra fields (config `params`)
    tools: tuple[dict[str, Any], ...] = ()  # the tools offered, as the API describes them
    tool_choice: str | None = None  # "auto", "none", "required"; None: the server's default

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self.messages}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.reasoning_effort is not None:
            body["reasoning_effort"] = self.reasoning_effort
        if self.tools:
            body["tools"] = list(self.tools)
            if self.tool_choice:
                body["tool_choice"] = self.tool_choice
        if self.params:
            body["extra_body"] = dict(self.params)  # the SDK sends them as fields of the body
        return body


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """Part of the model's thinking before its answer (`reasoning_content`, `reasoning`,
    or a `<think>` block at the start of the content, as each server sends it). Shown
    and saved, never sent back."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call the model is making, as a server streams it: `index` says which
    call of the reply it belongs to (None when the server does not say), the id and the name
    may come only in the first piece, or whole in every piece, or the name in pieces; the
    arguments come in fragments of JSON text. reply.ToolCalls puts the pieces together."""

    index: int | None
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class RequestSent:
    """The request has been answered with response headers, the reply to follow: a turn's
    times are measured from here, not from start-up (importing the HTTP library,
    connecting). The first event of every stream."""


@dataclass(frozen=True)
class ReplyCut:
    """The reply ended before its end (Ctrl-C, an error, a dropped connection): what has been
    shown is all there is, and a sink closes what it left open (a `**` with no end, a code
    fence) instead of leaving raw markers on the screen. Sent just before `end`."""

    why: str  # "interrupted" or "error"


@dataclass(frozen=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None = None  # of the completion's, when the server says


@dataclass(frozen=True)
class StreamEnd:
    """The stream finished; `finish_reason` is None when the server never sent one."""

    finish_reason: str | None


# Everything a listener (the screen, the recorder, --json) can be told about a reply.
Event = TextDelta | ReasoningDelta | ToolCallDelta | UsageReport | StreamEnd | RequestSent | ReplyCut


@dataclass(frozen=True)
class Completion:
    """A whole reply (no streaming): its text, how it ended, the usage the server
    reported (None when it reported none that could be used), and the server's
    response object as it came."""

    text: str
    finish_reason: str | None
    usage: UsageReport | None
    response: dict[str, Any]
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()  # each call whole, in the order the server gave
