"""One chat turn, shared by `chatcli ask` and the REPL: trim, send, stream, commit.

Knows neither the screen nor the keyboard: text goes to a `Sink`, the client
is anything with `stream` and `complete`. Whatever happens (an error, Ctrl-C),
the user's message stays in the conversation and a partial reply is kept,
marked with why it ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from chatcli import errors
from chatcli.client import ChatRequest, Event, StreamEnd, TextDelta, UsageReport
from chatcli.config import Settings
from chatcli.conversation import (
    ASSISTANT,
    MESSAGE_OVERHEAD,
    USER,
    Conversation,
    Message,
    Usage,
    Window,
    estimate_tokens,
    reply_budget,
)

INTERRUPTED = "interrupted"
ERROR = "error"


class ChatClient(Protocol):
    def stream(self, request: ChatRequest) -> Iterator[Event]: ...

    def complete(self, request: ChatRequest) -> dict[str, Any]: ...


class Sink(Protocol):
    """Where the reply's text goes as it arrives."""

    def text(self, delta: str) -> None: ...

    def end(self) -> None: ...


@dataclass(frozen=True)
class TurnResult:
    reply: Message
    usage: Usage
    window: Window
    notice: str | None = None  # why the reply may be incomplete
    response: dict[str, Any] | None = None  # the complete response object (no stream)


def window_for(conversation: Conversation, settings: Settings) -> Window:
    """What the next request would send, trimmed by the settings' limits."""
    budget = reply_budget(settings.context_window, settings.max_tokens)
    return conversation.window(max_messages=settings.max_messages, budget=budget)


def run_turn(
    conversation: Conversation,
    user_text: str,
    *,
    client: ChatClient,
    settings: Settings,
    sink: Sink,
    stream: bool = True,
) -> TurnResult:
    """Add the user's message, send the window, deliver the reply to `sink`, commit it."""
    conversation.messages.append(Message(USER, user_text))
    return send(conversation, client=client, settings=settings, sink=sink, stream=stream)


def send(
    conversation: Conversation,
    *,
    client: ChatClient,
    settings: Settings,
    sink: Sink,
    stream: bool = True,
) -> TurnResult:
    """Send the conversation as it stands (its last message is the user's)."""
    window = window_for(conversation, settings)
    request = ChatRequest(
        model=settings.model,
        messages=window.to_api(),
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
    )
    if stream:
        return _streamed(conversation, request, window, client, settings, sink)
    return _whole(conversation, request, window, client, settings, sink)


def _streamed(conversation, request, window, client, settings, sink) -> TurnResult:
    parts: list[str] = []
    reported: UsageReport | None = None
    finish: str | None = None
    events = client.stream(request)
    try:
        for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
                sink.text(event.text)
            elif isinstance(event, UsageReport):
                reported = event
            elif isinstance(event, StreamEnd):
                finish = event.finish_reason
    except KeyboardInterrupt:
        _keep_partial(conversation, parts, INTERRUPTED)
        raise errors.Interrupted("reply interrupted") from None
    except errors.ChatcliError:
        _keep_partial(conversation, parts, ERROR)
        raise
    finally:
        events.close()
        sink.end()
    return _commit(conversation, "".join(parts), finish, reported, window, settings)


def _whole(conversation, request, window, client, settings, sink) -> TurnResult:
    try:
        response = client.complete(request)
    except KeyboardInterrupt:
        raise errors.Interrupted("request interrupted") from None
    choice = (response.get("choices") or [{}])[0]
    text = ((choice.get("message") or {}).get("content")) or ""
    sink.text(text)
    sink.end()
    raw = response.get("usage") or {}
    reported = None
    if isinstance(raw, dict) and raw.get("completion_tokens") is not None:
        reported = UsageReport(raw.get("prompt_tokens") or 0, raw["completion_tokens"])
    result = _commit(conversation, text, choice.get("finish_reason"), reported, window, settings)
    return TurnResult(result.reply, result.usage, window, result.notice, response)


def _keep_partial(conversation: Conversation, parts: list[str], status: str) -> None:
    if parts:
        conversation.messages.append(Message(ASSISTANT, "".join(parts), finish_reason=status))


def _commit(
    conversation: Conversation,
    text: str,
    finish: str | None,
    reported: UsageReport | None,
    window: Window,
    settings: Settings,
) -> TurnResult:
    if reported is not None:
        usage = Usage(reported.prompt_tokens, reported.completion_tokens)
        reply = Message(ASSISTANT, text, tokens=usage.completion_tokens + MESSAGE_OVERHEAD,
                        finish_reason=finish)
    else:
        usage = Usage(window.tokens, estimate_tokens(text), estimated=True)
        reply = Message(ASSISTANT, text, finish_reason=finish)
    conversation.messages.append(reply)
    return TurnResult(reply, usage, window, _notice(finish, settings))


def _notice(finish: str | None, settings: Settings) -> str | None:
    if finish == "length":
        limit = f"max_tokens ({settings.max_tokens})" if settings.max_tokens else "the server's limit"
        return f"the reply was cut short by {limit}; raise it with --max-tokens"
    if finish == "content_filter":
        return "the provider's content filter stopped the reply"
    if finish is None:
        return "the server ended the stream without saying the reply was complete; it may be cut off"
    return None
