"""One chat turn, shared by `chatcli ask` and the REPL: a loop over one stream of events.

Trim, send, fold the reply's events (reply.py) while every listener (the screen's sink,
the journal that saves) gets them; while the reply holds tool calls and tools are
offered: have each approved and run (the `Tools` the shell layer hands in), keep the
results with their calls, and send again, up to max_tool_rounds. Knows neither the
screen nor the keyboard. Whatever happens (an error, Ctrl-C), the user's message stays
in the conversation and a partial reply is kept, marked with why it ended.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from chatcli import errors
from chatcli.config import Settings
from chatcli.conversation import (
    ASSISTANT,
    USER,
    Conversation,
    Message,
    ToolCall,
    ToolResult,
    Usage,
    Window,
    build_window,
    reply_budget,
)
from chatcli.events import (
    ChatRequest,
    Completion,
    Event,
    ReasoningDelta,
    ReplyCut,
    RequestSent,
    TextDelta,
    ToolCallDelta,
)
from chatcli.reply import ERROR, INTERRUPTED, MAX_REPLY_CHARS, TOO_LONG, Fold
from chatcli.schema import ContinueStyle

__all__ = ["ERROR", "INTERRUPTED", "MAX_REPLY_CHARS", "ChatClient", "Journal", "NoJournal", "Sink",
           "Tools", "TurnResult", "run_turn", "send"]


class ChatClient(Protocol):
    def stream(self, request: ChatRequest) -> Generator[Event, None, None]: ...

    def complete(self, request: ChatRequest) -> Completion: ...


class Journal(Protocol):
    """Where the conversation is saved as it happens (store.Recorder), or nowhere: one more
    listener of the reply's events, told besides when messages begin and end."""

    def user(self, message: Message) -> Message: ...

    def answering(self, question: Message) -> None: ...

    def event(self, event: Event) -> None: ...

    def reply_done(self, message: Message) -> Message: ...

    def tool_result(self, message: Message, index: int) -> None: ...

    def continuing(self, reply: Message) -> None: ...


class NoJournal:
    """For --no-save: nothing is written."""

    def user(self, message: Message) -> Message:
        return message

    def answering(self, question: Message) -> None:
        pass

    def event(self, event: Event) -> None:
        pass

    def reply_done(self, message: Message) -> Message:
        return message

    def tool_result(self, message: Message, index: int) -> None:
        pass

    def continuing(self, reply: Message) -> None:
        pass


class Sink(Protocol):
    """Where the reply goes as it arrives (the screen, plain text, nothing for --json): every
    event, each listener taking the kinds it shows. `end` closes one reply; a tool loop's
    next reply comes to the same sink after it."""

    def event(self, event: Event) -> None: ...

    def end(self) -> None: ...


class Tools(Protocol):
    """The tools a turn offers (chatcli/tools builds them; the shell layer supplies approval):
    their descriptions for the request, and `run`, which asks for the user's yes when the
    tool needs one and returns the result (a refusal is a result). Ctrl-C while it asks or
    runs raises KeyboardInterrupt, with what the tool printed so far in `stopped`. `without`
    says whether a question the endpoint refused because of its tools is asked without them
    (the user's yes, or tool_fallback)."""

    def offered(self) -> Sequence[dict[str, Any]]: ...

    def run(self, call: ToolCall) -> ToolResult: ...

    def stopped(self) -> ToolResult | None: ...

    def without(self, refusal: errors.ToolsUnsupported) -> bool: ...


@dataclass(frozen=True)
class TurnResult:
    reply: Message
    usage: Usage
    window: Window
    notice: str | None = None  # why the reply may be incomplete
    response: dict[str, Any] | None = None  # the complete response object (no stream)
    context_window: int | None = None  # the model's context size, when the server stated it
    answer_after: float | None = None  # seconds from the request to the answer's first words
    rounds: int = 0  # rounds of tool calls run before this reply
    replies: tuple[Message, ...] = field(default=(), compare=False)  # every reply of the turn


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
    tools: Tools | None = None,
) -> TurnResult:
    """Add the user's message (saved before anything is sent), send the window,
    deliver the reply to `sink`, commit it."""
    journal = journal or NoJournal()
    message = Message(USER, question) if isinstance(question, str) else question
    conversation.messages.append(journal.user(message))
    return send(conversation, client=client, settings=settings, sink=sink, stream=stream,
                journal=journal, tools=tools)


REPEATS = 3  # the same call with the same arguments this often in one turn: the loop stops


def send(
    conversation: Conversation,
    *,
    client: ChatClient,
    settings: Settings,
    sink: Sink,
    stream: bool = True,
    journal: Journal | None = None,
    tools: Tools | None = None,
) -> TurnResult:
    """Send the conversation as it stands (its last message is the user's); while the reply
    calls tools, run them and send again. The result is the last reply's, with the usage of
    every request of the turn."""
    journal = journal or NoJournal()
    journal.answering(conversation.messages[-1])
    offered = tuple(tools.offered()) if tools is not None else ()
    notices: list[str | None] = []
    try:
        result = _request(conversation, client, settings, sink, journal, stream, offered)
    except errors.ToolsUnsupported as exc:
        if tools is None or not tools.without(exc):
            raise
        offered = ()
        notices.append(f"{exc.message}: asked without them")
        result = _request(conversation, client, settings, sink, journal, stream, offered)
    usage, replies, notices = result.usage, [result.reply], [*notices, result.notice]
    seen: dict[tuple[str, str], int] = {}
    rounds = 0
    while result.reply.tool_calls:
        stop = _why_stop(result.reply, rounds, seen, settings, offered)
        if stop is not None:
            _answer_all(conversation, journal, ToolResult(f"not run: {stop}", status="not run"))
            notices.append(stop)
            replies[-1] = conversation.messages[-1]
            break
        assert tools is not None  # offered, so given
        _run_calls(conversation, journal, tools)
        replies[-1] = conversation.messages[-1]  # with its results
        rounds += 1
        result = _request(conversation, client, settings, sink, journal, stream, offered)
        usage, notices = usage + result.usage, [*notices, result.notice]
        replies.append(result.reply)
    notice = "; ".join(dict.fromkeys(n for n in notices if n)) or None
    return replace(result, reply=replies[-1], usage=usage, rounds=rounds, replies=tuple(replies),
                   notice=notice)


def _why_stop(reply: Message, rounds: int, seen: dict[tuple[str, str], int], settings: Settings,
              offered: tuple[dict[str, Any], ...]) -> str | None:
    """Why the reply's calls are not run (no tools offered, the round limit, a call repeated),
    or None to run them."""
    if not offered:
        return "the model asked for tools, but none are enabled (-T NAME, /tools)"
    if rounds >= settings.max_tool_rounds:
        return (f"stopped after {rounds} rounds of tool calls (max_tool_rounds = "
                f"{settings.max_tool_rounds}); everything so far is kept")
    for call in reply.tool_calls:
        key = (call.name, _canonical(call.arguments))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] >= REPEATS:
            return (f"the model asked for the same call ({call.name} with the same arguments) "
                    f"{REPEATS} times in one turn: stopped there; everything so far is kept")
    return None


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        return arguments.strip()


def _run_calls(conversation: Conversation, journal: Journal, tools: Tools) -> None:
    """Run the last reply's calls in order, each result kept and saved as it comes. Ctrl-C
    stops the call that runs (what it printed is its result) and leaves the rest not run."""
    reply = conversation.messages[-1]
    for index, call in enumerate(reply.tool_calls):
        if call.result is not None:
            continue
        try:
            result = tools.run(call)
        except KeyboardInterrupt:
            stopped = tools.stopped() or ToolResult("stopped by the user before it ran",
                                                    status="interrupted")
            _answer(conversation, journal, index, stopped)
            _answer_all(conversation, journal, ToolResult("not run: the user stopped the turn",
                                                          status="not run"))
            raise errors.ToolInterrupted("the tool was stopped; its output so far is kept") from None
        _answer(conversation, journal, index, result)


def _answer(conversation: Conversation, journal: Journal, index: int, result: ToolResult) -> None:
    with errors.HOLD:
        reply = conversation.messages[-1] = conversation.messages[-1].with_result(index, result)
        journal.tool_result(reply, index)


def _answer_all(conversation: Conversation, journal: Journal, result: ToolResult) -> None:
    """Every call of the last reply still without a result gets `result` (the history sent
    next must answer each call)."""
    for index, call in enumerate(conversation.messages[-1].tool_calls):
        if call.result is None:
            _answer(conversation, journal, index, result)


def _request(conversation: Conversation, client: ChatClient, settings: Settings, sink: Sink,
             journal: Journal, stream: bool, offered: tuple[dict[str, Any], ...]) -> TurnResult:
    """One request of the window as it stands, and its reply; a refusal for length with the
    question last is asked once more with older messages left out."""
    window = window_for(conversation, settings)
    _refuse_far_too_big(conversation, settings)
    try:
        return _attempt(conversation, window, client, settings, sink, journal, stream, offered)
    except errors.ContextTooLongError as exc:
        if conversation.messages[-1].role != USER:
            raise  # part of a reply arrived and is kept: not a request to repeat
        refused = exc
        smaller = _shrunk(conversation, window, settings, refused)
    result = _attempt(conversation, smaller, client, settings, sink, journal, stream, offered)
    note = (f"the server said the conversation was too long; {len(smaller.dropped)} older messages "
            "were left out and it was asked again")
    return replace(result, notice="; ".join(filter(None, (note, result.notice))),
                   context_window=refused.limit)


def request_for(settings: Settings, messages: list[dict[str, Any]], *,
                tools: tuple[dict[str, Any], ...] = (), params: dict[str, Any] | None = None) -> ChatRequest:
    """The request for `messages` with the settings' model and sampling: the one place a
    ChatRequest is made from settings."""
    return ChatRequest(model=settings.model, messages=messages, temperature=settings.temperature,
                       max_tokens=settings.max_tokens, reasoning_effort=settings.reasoning_effort,
                       params=dict(settings.params) if params is None else params, tools=tools,
                       tool_choice="auto" if tools else None)


def _attempt(conversation: Conversation, window: Window, client: ChatClient, settings: Settings, sink: Sink,
             journal: Journal, stream: bool, offered: tuple[dict[str, Any], ...] = ()) -> TurnResult:
    request = request_for(settings, window.to_api(), tools=offered)
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
    if last is not None and last.tool_calls:
        return errors.UsageError("nothing to continue: the last reply called tools",
                                 hint="/retry asks again; or say how to go on")
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
    request = request_for(settings, messages, params=params)
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
    thinking come first, and a failure before any new text leaves it as it was). Each event is
    folded into the reply and given to every listener (the sink, the journal) under
    errors.HOLD (a SIGTERM waits for both); Ctrl-C while it is being shown keeps it, since part
    of it may be on the screen already."""
    fold = Fold(prefix)
    started, answer_after = time.monotonic(), None
    events = client.stream(request)
    try:
        for event in events:
            with errors.HOLD:  # kept and shown together, or neither
                shown = fold.feed(event)
                if shown is not None:
                    sink.event(shown)
            if isinstance(shown, TextDelta | ReasoningDelta | ToolCallDelta):
                journal.event(shown)
            if isinstance(event, RequestSent):
                started = time.monotonic()
            elif isinstance(shown, TextDelta | ToolCallDelta) and answer_after is None:
                answer_after = time.monotonic() - started
            if fold.full:
                break
    except KeyboardInterrupt:
        _keep_partial(conversation, fold, INTERRUPTED, journal)
        _cut(sink, INTERRUPTED)
        raise errors.Interrupted("reply interrupted") from None
    except errors.ChatcliError:
        _keep_partial(conversation, fold, ERROR, journal)
        _cut(sink, ERROR)
        raise
    except BaseException:  # SIGTERM/SIGHUP, stdout closed (`| head`), anything: keep the words
        _keep_partial(conversation, fold, INTERRUPTED, journal)
        _cut(sink, INTERRUPTED)
        raise
    finally:
        events.close()
        sink.end()
    return replace(_commit(conversation, fold, window, settings, journal), answer_after=answer_after)


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
    fold = Fold()
    for event in fold.whole(completion):
        sink.event(event)
    sink.end()
    return replace(_commit(conversation, fold, window, settings, journal), response=completion.response)


def _keep_partial(conversation: Conversation, fold: Fold, status: str, journal: Journal) -> None:
    partial = fold.partial(status)
    if partial is not None:
        conversation.messages.append(journal.reply_done(partial))


def _commit(conversation: Conversation, fold: Fold, window: Window, settings: Settings,
            journal: Journal) -> TurnResult:
    reply, usage, hidden = fold.message(window.tokens)
    notice = "; ".join(filter(None, (_notice(fold.finish, settings, empty=not reply.content and not
                                             reply.tool_calls), hidden))) or None
    reply = journal.reply_done(reply)
    conversation.messages.append(reply)
    return TurnResult(reply, usage, window, notice)


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
