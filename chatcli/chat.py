"""One chat turn, shared by `chatcli ask` and the REPL: trim, send, stream, commit.

Knows neither the screen nor the keyboard: text goes to a `Sink`, the client
is anything with `stream` and `complete`. Whatever happens (an error, Ctrl-C),
the user's message stays in the conversation and a partial reply is kept,
marked with why it ended.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from chatcli import errors
from chatcli.client.think import unopened_think
from chatcli.config import Settings
from chatcli.conversation import (
    ASSISTANT,
    MESSAGE_OVERHEAD,
    USER,
    Conversation,
    Message,
    TextBuffer,
    Usage,
    Window,
    build_window,
    estimate_tokens,
    reply_budget,
)
from chatcli.events import (
    ChatRequest,
    Completion,
    Event,
    ReasoningDelta,
    ReplyCut,
    RequestSent,
    StreamEnd,
    TextDelta,
    UsageReport,
)
from chatcli.schema import ContinueStyle

INTERRUPTED = "interrupted"
ERROR = "error"
# Far beyond any real reply (a long book chapter is 100 kB): a server that keeps
# sending is cut off here, and what came is kept as cut by length.
MAX_REPLY_CHARS = 10_000_000


class ChatClient(Protocol):
    def stream(self, request: ChatRequest) -> Generator[Event, None, None]: ...

    def complete(self, request: ChatRequest) -> Completion: ...


class Journal(Protocol):
    """Where the conversation is saved as it happens (store.Recorder), or nowhere."""

    def user(self, message: Message) -> Message: ...

    def answering(self, question: Message) -> None: ...

    def reply_progress(self, text: str, thinking: str) -> None: ...

    def reply_done(self, message: Message) -> Message: ...

    def continuing(self, reply: Message) -> None: ...


class NoJournal:
    """For --no-save: nothing is written."""

    def user(self, message: Message) -> Message:
        return message

    def answering(self, question: Message) -> None:
        pass

    def reply_progress(self, text: str, thinking: str) -> None:
        pass

    def reply_done(self, message: Message) -> Message:
        return message

    def continuing(self, reply: Message) -> None:
        pass


class Sink(Protocol):
    """Where the reply goes as it arrives: its thinking and its text, as events (a new kind
    of content is a new event, not a new method)."""

    def event(self, event: TextDelta | ReasoningDelta | ReplyCut) -> None: ...

    def end(self) -> None: ...


@dataclass(frozen=True)
class TurnResult:
    reply: Message
    usage: Usage
    window: Window
    notice: str | None = None  # why the reply may be incomplete
    response: dict[str, Any] | None = None  # the complete response object (no stream)
    context_window: int | None = None  # the model's context size, when the server stated it
    answer_after: float | None = None  # seconds from the request to the answer's first words


def window_for(conversation: Conversation, settings: Settings) -> Window:
    """What the next request would send, trimmed by the settings' limits."""
    budget = reply_budget(settings.context_window, settings.max_tokens)
    return conversation.window(max_messages=settings.max_messages, budget=budget)


def run_turn(
    conversation: Conversation,
    question: Message | str,
    *,
    client: ChatClient,
    settings: Settings,
    sink: Sink,
    stream: bool = True,
    journal: Journal | None = None,
) -> TurnResult:
    """Add the user's message (saved before anything is sent), send the window,
    deliver the reply to `sink`, commit it."""
    journal = journal or NoJournal()
    message = Message(USER, question) if isinstance(question, str) else question
    conversation.messages.append(journal.user(message))
    return send(conversation, client=client, settings=settings, sink=sink, stream=stream,
                journal=journal)


def send(
    conversation: Conversation,
    *,
    client: ChatClient,
    settings: Settings,
    sink: Sink,
    stream: bool = True,
    journal: Journal | None = None,
) -> TurnResult:
    """Send the conversation as it stands (its last message is the user's)."""
    journal = journal or NoJournal()
    window = window_for(conversation, settings)
    _refuse_far_too_big(conversation, settings)
    journal.answering(conversation.messages[-1])
    try:
        return _attempt(conversation, window, client, settings, sink, journal, stream)
    except errors.ContextTooLongError as exc:
        if conversation.messages[-1].role != USER:
            raise  # part of a reply arrived and is kept: not a request to repeat
        refused = exc
        smaller = _shrunk(conversation, window, settings, refused)
    result = _attempt(conversation, smaller, client, settings, sink, journal, stream)
    note = (f"the server said the conversation was too long; {len(smaller.dropped)} older messages "
            "were left out and it was asked again")
    return replace(result, notice="; ".join(filter(None, (note, result.notice))),
                   context_window=refused.limit)


def _attempt(conversation: Conversation, window: Window, client: ChatClient, settings: Settings, sink: Sink,
             journal: Journal, stream: bool) -> TurnResult:
    request = ChatRequest(
        model=settings.model,
        messages=window.to_api(),
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        reasoning_effort=settings.reasoning_effort,
        params=dict(settings.params),
    )
    if stream:
        return _streamed(conversation, request, window, client, settings, sink, journal)
    return _whole(conversation, request, window, client, settings, sink, journal)


# Estimates err high, and the configured context window may be a guess: only a
# message far beyond it is refused before it is sent.
REFUSE_FACTOR = 2


def _refuse_far_too_big(conversation: Conversation, settings: Settings) -> None:
    newest = conversation.messages[-1]
    if newest.tokens > REFUSE_FACTOR * settings.context_window:
        raise errors.ContextTooLongError(
            f"the message is about {newest.tokens:,} tokens (estimated), far more than the "
            f"context window of {settings.context_window:,}; it was not sent",
            hint="send a part of it, or raise context_window if the model takes more")


def _shrunk(conversation: Conversation, window: Window, settings: Settings,
            refused: errors.ContextTooLongError) -> Window:
    """A window that should fit where the server refused `window`: sized to the context the
    server stated (its count turned into our estimate's terms), else about half as large;
    or an error with both numbers when even the newest message cannot fit."""
    if refused.limit:
        scale = window.tokens / refused.used if refused.used else 1.0
        budget = int(reply_budget(refused.limit, settings.max_tokens) * min(scale, 1.0))
    else:
        budget = window.tokens // 2
    smaller = build_window(conversation.system, conversation.messages,
                           max_messages=settings.max_messages, budget=budget)
    if len(smaller.messages) < len(window.messages) and not smaller.over_budget:
        return smaller
    newest = conversation.messages[-1]
    limit = (f"the model takes {refused.limit:,} tokens (the server says so)" if refused.limit else
             f"context_window is set to {settings.context_window:,}")
    pinned = any(m.pinned for m in conversation.messages[:-1])
    raise errors.ContextTooLongError(
        f"the conversation is too long for the model even with older messages left out: the "
        f"newest message alone is about {newest.tokens:,} tokens (estimated), and {limit}",
        hint="send less text" + (", or unpin messages (/pin N)" if pinned else ""),
        limit=refused.limit, used=refused.used)


# Replies that ended before their end, with text: what /continue can finish.
CONTINUABLE = ("length", INTERRUPTED, ERROR)
# How a reply is continued (the `continue_style` key): "instruction" works everywhere (the cut
# reply is sent as it is, then a user message asks to go on); "prefix" is DeepSeek's chat prefix
# completion (base_url https://api.deepseek.com/beta: the last message is the assistant's, with
# "prefix": true); "continue_final_message" is vLLM's (the last message is the assistant's, with
# continue_final_message and no generation prompt).
CONTINUE_INSTRUCTION = ("Your last message was cut off. Continue it exactly where it stopped, as if "
                        "nothing had interrupted it: do not repeat anything, do not start over, no preamble.")


def cannot_continue(conversation: Conversation) -> errors.UsageError | None:
    """Why the last reply cannot be continued, or None when it can (cut off, with text)."""
    last = conversation.messages[-1] if conversation.messages else None
    if last is not None and last.role == ASSISTANT and last.content and last.finish_reason in CONTINUABLE:
        return None
    return errors.UsageError("nothing to continue: the last reply " + (
        "ended normally" if last is not None and last.role == ASSISTANT and last.content else
        "is not a cut-off reply with text"), hint="/retry asks again for a new reply")


def continue_reply(conversation: Conversation, *, client: ChatClient, settings: Settings, sink: Sink,
                   journal: Journal | None = None, style: ContinueStyle = "instruction") -> TurnResult:
    """Finish the last reply, cut by max_tokens, Ctrl-C, a crash or an error: the new text is
    added to the same message, saved as it arrives, and only the new text goes to `sink`."""
    journal = journal or NoJournal()
    if refusal := cannot_continue(conversation):
        raise refusal
    last = conversation.messages[-1]
    window = window_for(conversation, settings)
    messages = window.to_api()
    params = dict(settings.params)
    if style == "prefix":
        messages[-1] = {**messages[-1], "prefix": True}
    elif style == "continue_final_message":
        params.update(continue_final_message=True, add_generation_prompt=False)
    else:
        messages.append({"role": USER, "content": CONTINUE_INSTRUCTION})
    request = ChatRequest(model=settings.model, messages=messages, temperature=settings.temperature,
                          max_tokens=settings.max_tokens, reasoning_effort=settings.reasoning_effort,
                          params=params)
    conversation.messages.pop()
    journal.continuing(last)
    return _streamed(conversation, request, window, client, settings, sink, journal, prefix=last)


def _cut(sink: Sink, why: str) -> None:
    """Tell the sink the reply ends here, cut short; a failure to draw it changes nothing."""
    with contextlib.suppress(Exception):
        sink.event(ReplyCut(why))


def _streamed(conversation: Conversation, request: ChatRequest, window: Window, client: ChatClient,
              settings: Settings, sink: Sink, journal: Journal, *,
              prefix: Message | None = None) -> TurnResult:
    """Stream a reply into the conversation; with `prefix`, the reply it continues (its text and
    thinking come first, and a failure before any new text leaves it as it was). Each piece is
    kept and shown under errors.HOLD (a SIGTERM waits for both); Ctrl-C while it is being shown
    keeps it, since part of it may be on the screen already."""
    parts = TextBuffer(prefix.content if prefix else "")
    thinking = TextBuffer(prefix.reasoning if prefix else "")
    before = (len(parts), len(thinking))
    reported: UsageReport | None = None
    finish: str | None = None
    started, answer_after = time.monotonic(), None
    events = client.stream(request)
    try:
        for event in events:
            if isinstance(event, ReasoningDelta):
                if len(thinking) < MAX_REPLY_CHARS:
                    piece = event.text[: MAX_REPLY_CHARS - len(thinking)]
                    with errors.HOLD:  # kept and shown together, or neither
                        thinking.add(piece)
                        sink.event(ReasoningDelta(piece))
                    journal.reply_progress("", piece)
            elif isinstance(event, TextDelta):
                if answer_after is None:
                    answer_after = time.monotonic() - started
                text = event.text[: MAX_REPLY_CHARS - len(parts)]
                with errors.HOLD:
                    parts.add(text)
                    sink.event(event if text == event.text else TextDelta(text))
                journal.reply_progress(text, "")
                if len(parts) >= MAX_REPLY_CHARS:
                    finish = TOO_LONG
                    break
            elif isinstance(event, UsageReport):
                reported = event
            elif isinstance(event, RequestSent):
                started = time.monotonic()
            elif isinstance(event, StreamEnd):
                finish = event.finish_reason
    except KeyboardInterrupt:
        _keep_partial(conversation, parts, thinking, _ending(INTERRUPTED, prefix, before, parts, thinking),
                      journal)
        _cut(sink, INTERRUPTED)
        raise errors.Interrupted("reply interrupted") from None
    except errors.ChatcliError:
        _keep_partial(conversation, parts, thinking, _ending(ERROR, prefix, before, parts, thinking), journal)
        _cut(sink, ERROR)
        raise
    except BaseException:  # SIGTERM/SIGHUP, stdout closed (`| head`), anything: keep the words
        _keep_partial(conversation, parts, thinking, _ending(INTERRUPTED, prefix, before, parts, thinking),
                      journal)
        _cut(sink, INTERRUPTED)
        raise
    finally:
        events.close()
        sink.end()
    result = _commit(conversation, parts.text(), finish, reported, window, settings, journal,
                     reasoning=thinking.text(), estimate=prefix is not None)
    return replace(result, answer_after=answer_after)


def _ending(status: str, prefix: Message | None, before: tuple[int, int], parts: TextBuffer,
            thinking: TextBuffer) -> str:
    """How a reply that stopped is marked: `status`, unless it was a continuation that brought
    nothing new (then it ended as it had)."""
    if prefix is not None and (len(parts), len(thinking)) == before:
        return prefix.finish_reason or status
    return status


def _whole(conversation: Conversation, request: ChatRequest, window: Window, client: ChatClient,
           settings: Settings, sink: Sink, journal: Journal) -> TurnResult:
    try:
        completion = client.complete(request)
    except KeyboardInterrupt:
        sink.end()  # nothing came: the sink stops waiting (the terminal's waiting line goes)
        raise errors.Interrupted("request interrupted") from None
    except BaseException:
        sink.end()
        raise
    text, finish = completion.text, completion.finish_reason
    if len(text) > MAX_REPLY_CHARS:
        text, finish = text[:MAX_REPLY_CHARS], TOO_LONG
    reasoning = completion.reasoning[:MAX_REPLY_CHARS]
    if reasoning:
        sink.event(ReasoningDelta(reasoning))
    sink.event(TextDelta(text))
    sink.end()
    result = _commit(conversation, text, finish, completion.usage, window, settings, journal,
                     reasoning=reasoning)
    return replace(result, response=completion.response)


def _keep_partial(conversation: Conversation, parts: TextBuffer, thinking: TextBuffer, status: str,
                  journal: Journal) -> None:
    if parts or thinking:
        partial = Message(ASSISTANT, parts.text(), finish_reason=status, reasoning=thinking.text())
        conversation.messages.append(journal.reply_done(partial))


def _commit(
    conversation: Conversation,
    text: str,
    finish: str | None,
    reported: UsageReport | None,
    window: Window,
    settings: Settings,
    journal: Journal,
    *,
    reasoning: str = "",
    estimate: bool = False,  # the reply's size is not the completion's tokens (a continuation)
) -> TurnResult:
    hidden = ""
    if not reasoning:
        reasoning, text = unopened_think(text)
        if reasoning:  # it streamed as if it were the answer: say what it was
            hidden = ("the reply began with the model's thinking (its template hid the <think> tag): "
                      "it is kept apart as thinking (/thinking) and not sent again")
    notice = "; ".join(filter(None, (_notice(finish, settings, empty=not text), hidden))) or None
    finish = "length" if finish == TOO_LONG else finish
    if reported is not None:
        usage = Usage(reported.prompt_tokens, reported.completion_tokens,
                      reasoning_tokens=reported.reasoning_tokens)
        # The completion's tokens count the thinking too, which is never sent again: then
        # the reply's own size is estimated.
        size = -1 if reasoning or estimate else usage.completion_tokens + MESSAGE_OVERHEAD  # -1: estimate
        reply = Message(ASSISTANT, text, tokens=size, finish_reason=finish, reasoning=reasoning)
    else:
        usage = Usage(window.tokens, estimate_tokens(reasoning + text), estimated=True)
        reply = Message(ASSISTANT, text, finish_reason=finish, reasoning=reasoning)
    reply = journal.reply_done(reply)
    conversation.messages.append(reply)
    return TurnResult(reply, usage, window, notice)


TOO_LONG = "too long"  # our own ending: the reply passed MAX_REPLY_CHARS (saved as "length")


def _notice(finish: str | None, settings: Settings, *, empty: bool = False) -> str | None:
    if finish == TOO_LONG:
        return (f"the reply passed {MAX_REPLY_CHARS // 1_000_000} million characters, far more than "
                "any real answer; it was cut off there and kept, marked as cut by length")
    if empty:
        return f"the model sent an empty reply (finish reason: {finish or 'none'})"
    if finish == "length":
        limit = f"max_tokens ({settings.max_tokens:,})" if settings.max_tokens else "the server's limit"
        return (f"the reply was cut short by {limit}: /continue finishes it (in the session, or after "
                "chatcli -c); --max-tokens raises the limit")
    if finish == "content_filter":
        return "the provider's content filter stopped the reply"
    if finish is None:
        return "the server ended the stream without saying the reply was complete; it may be cut off"
    return None
