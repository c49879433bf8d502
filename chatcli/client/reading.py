"""Reading what a server sent back, with bounds, into checked events.

The official client sends the request and raises for error statuses; the body
is read here: no more than a bounded amount is ever held (a line of a stream,
a whole JSON reply, an error page), a whole reply must finish within
`reply_timeout`, and every chunk is checked (chunks.py) before anything above
sees it. Part of the client room; imports httpx2 (openai's transport) lazily.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from chatcli import errors
from chatcli.client.chunks import (
    BodyError,
    Malformed,
    SurrogateMender,
    chunk_events,
    completion_events,
    find_error,
    load_json,
)
from chatcli.client.deadline import Deadlines
from chatcli.client.failures import from_body
from chatcli.client.sse import NoEvents, NotEventStream, SSEDecoder, TooLarge
from chatcli.events import (
    ChatRequest,
    Completion,
    Event,
    ReasoningDelta,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    UsageReport,
)
from chatcli.textsafe import shown, url_host
from chatcli.think import ThinkSplitter, split_think

if TYPE_CHECKING:
    from chatcli.config import Endpoint

# Bounds on what a server can make us hold. No real reply comes near them.
MAX_EVENT_BYTES = 4_000_000  # one line, or one event, of a stream
MAX_BODY_BYTES = 64_000_000  # a whole JSON reply (a 10 MB answer, escaped)
MAX_LIST_BYTES = 4_000_000  # the list of models
MAX_ERROR_BYTES = 1_000_000  # the body of an error status or a redirect
DEBUG_CHARS = 2_000  # --debug shows at most this much of each chunk
# Once a reply has its finish_reason, what may follow (the usage, an error, [DONE]) follows at
# once: a server or proxy that then holds the connection open is not waited for longer.
FINISH_GRACE_SECONDS = 2.0


class BodyReader:
    """Reads response bodies for one client: its endpoint, clock, --debug and redaction."""

    def __init__(self, endpoint: Endpoint, *, clock: Callable[[], float],
                 redact: Callable[[str], str], debug: Callable[[str], None] | None,
                 deadlines: Deadlines | None = None, notify: Callable[[str], None] | None = None) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self.redact = redact
        self._debug = debug
        self._deadlines = deadlines or Deadlines(clock)
        self._notify = notify
        self._unknown_told: set[str] = set()

    def _unknown_part(self, kind: str) -> None:
        """A content part that is neither text nor thinking: said once per kind, never fatal."""
        if kind not in self._unknown_told and self._notify is not None:
            self._unknown_told.add(kind)
            self._notify(f"the reply holds a part of type {shown(kind)!r} that chatcli cannot show; "
                         "it is left out")

    def completion(self, http: Any, request: ChatRequest, *, started: float | None = None) -> Completion:
        raw = b"".join(self._bytes(http, MAX_BODY_BYTES, self._deadline(started)))
        if self._debug:
            self._debug("← " + self.redact(raw[:DEBUG_CHARS].decode("utf-8", "replace")))
        data = self._json_body(raw)
        self._raise_error_in(data, request)
        text, finish, usage, reasoning, calls = completion_events(data, self._unknown_part)
        inline, text = split_think(text)
        return Completion(text, finish, usage, data, reasoning=reasoning or inline,
                          tool_calls=tuple(calls))

    def model_ids(self, http: Any) -> list[str]:
        data = self._json_body(b"".join(self._bytes(http, MAX_LIST_BYTES, self._deadline())))
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise Malformed("a model list that is not a list")
        return sorted({m["id"] for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)})

    def small_json(self, http: Any) -> Any:
        """A small JSON document (a model list, llama.cpp's /props), read with the list's bound."""
        return self._json_body(b"".join(self._bytes(http, MAX_LIST_BYTES, self._deadline())))

    def _deadline(self, started: float | None = None) -> float | None:
        """When the reply must be complete: reply_timeout after the request was sent."""
        limit = self.endpoint.reply_timeout
        return (self._clock() if started is None else started) + limit if limit else None

    def _bytes(self, http: Any, limit: int | None, deadline: float | None) -> Iterator[bytes]:
        """The body as it arrives, stopping at `limit` bytes and at the reply's deadline (also
        in the middle of a read: a trickle of bytes cannot stretch it)."""
        total = 0
        with self._deadlines.until(deadline, "reply"):
            try:
                for chunk in http.iter_bytes():
                    total += len(chunk)
                    if limit is not None and total > limit:
                        raise TooLarge(f"a body of more than {limit / 1e6:g} MB")
                    if self._deadlines.passed(deadline):
                        raise self._too_late()
                    yield chunk
            except Exception as exc:
                if isinstance(exc, errors.ChatcliError) or not self._deadlines.passed(deadline):
                    raise
                raise self._too_late() from None

    def _too_late(self) -> errors.NetworkError:
        return errors.NetworkError(
            f"the reply was still not complete after {self.endpoint.reply_timeout:g} s (reply_timeout)",
            hint="raise reply_timeout in the config (0 means no limit), or ask for less")

    def events(self, http: Any, request: ChatRequest, *, started: float | None = None) -> Iterator[Event]:
        """A streamed body as events: server-sent events, or a whole JSON reply from a server
        that does not stream; an error in either is raised, and so is a stream with no reply."""
        chunks = self._bytes(http, None, self._deadline(started))
        head = b""
        for chunk in chunks:
            head += chunk
            if head.strip() or len(head) > MAX_EVENT_BYTES:
                break
        start = head.lstrip()[:1]
        if start in (b"{", b"["):
            yield from self._whole_as_events(self._bytes_after(head, chunks), request)
            return
        if start == b"<":
            raise self._not_chat_data(head[:200].decode("utf-8", "replace"))
        mender, thinking, think = SurrogateMender(), SurrogateMender(), ThinkSplitter()
        finish: str | None = None
        answered = counted = False
        stream = _server_events(itertools.chain([head], chunks))
        with contextlib.ExitStack() as after_finish:
            while finish is None or not counted:
                try:
                    name, data = next(stream)
                except StopIteration:
                    break
                except Exception as exc:
                    if finish is None or isinstance(exc, errors.ChatcliError):
                        raise
                    if self._debug:  # the reply was whole; only the end of the stream was missing
                        self._debug(f"the stream did not end within {FINISH_GRACE_SECONDS:g} s of the "
                                    "reply's end; stopped reading it")
                    break
                if data.strip() == "[DONE]":
                    break
                for event in self._chunk(name, data, mender, thinking, request):
                    if isinstance(event, StreamEnd):
                        if finish is None:  # what may still come (usage, an error) comes at once
                            after_finish.enter_context(self._deadlines.until(
                                self._clock() + FINISH_GRACE_SECONDS, "end of the stream"))
                        finish = event.finish_reason
                        continue
                    # Usage counts once it comes with the end or after it (some servers send
                    # running figures with every chunk, and the whole ones last).
                    counted = counted or (finish is not None and isinstance(event, UsageReport))
                    # Content may open with a <think> block: its text is reasoning too.
                    for part in think.feed(event.text) if isinstance(event, TextDelta) else [event]:
                        answered = answered or isinstance(part, TextDelta | ReasoningDelta | ToolCallDelta)
                        yield part
        for part in think.feed(mender.close()) + think.close():
            answered = True
            yield part
        if reasoning_tail := thinking.close():
            yield ReasoningDelta(reasoning_tail)
        if not answered and finish is None:
            raise errors.ServerError("the server ended the stream without sending any reply",
                                     hint="try again; --debug shows what came back")
        yield StreamEnd(finish)

    def _bytes_after(self, head: bytes, chunks: Iterator[bytes]) -> bytes:
        body = bytearray(head)
        for chunk in chunks:
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise TooLarge(f"a body of more than {MAX_BODY_BYTES / 1e6:g} MB")
        return bytes(body)

    def _chunk(self, name: str, data: str, mender: SurrogateMender, thinking: SurrogateMender,
               request: ChatRequest) -> list[Event]:
        if self._debug:
            self._debug("← " + self.redact(data[:DEBUG_CHARS]))
        parsed = load_json(data)
        error = find_error(parsed)
        if error is None and name == "error":
            error = BodyError(data if not isinstance(parsed, dict) else str(parsed.get("message", data)))
        if error is not None:
            raise from_body(error, self.endpoint, request.model, self.redact, midstream=True)
        return chunk_events(parsed, mender, thinking, self._unknown_part)

    def _whole_as_events(self, raw: bytes, request: ChatRequest) -> Iterator[Event]:
        """A server that answered a streaming request with one JSON body (an error, usually)."""
        if self._debug:
            self._debug("← " + self.redact(raw[:DEBUG_CHARS].decode("utf-8", "replace")))
        data = self._json_body(raw)
        self._raise_error_in(data, request)
        text, finish, usage, reasoning, calls = completion_events(data, self._unknown_part)
        inline, text = split_think(text)
        if not text and not (reasoning or inline) and not calls and finish is None:
            raise errors.ServerError("the server answered without any reply",
                                     hint="try again; --debug shows what came back")
        if reasoning or inline:
            yield ReasoningDelta(reasoning or inline)
        if text:
            yield TextDelta(text)
        yield from calls
        if usage is not None:
            yield usage
        yield StreamEnd(finish)

    def _json_body(self, raw: bytes) -> Any:
        try:
            return load_json(raw)
        except Malformed:
            raise self._not_chat_data(raw[:200].decode("utf-8", "replace")) from None

    def _raise_error_in(self, data: Any, request: ChatRequest) -> None:
        error = find_error(data)
        if error is not None:
            raise from_body(error, self.endpoint, request.model, self.redact)

    def _not_chat_data(self, start: str) -> errors.ServerError:
        host = url_host(self.endpoint.base_url)
        kind = "an HTML page" if start.lstrip().startswith("<") else "something else"
        quoted = " ".join(self.redact(start).split())[:80]
        return errors.ServerError(
            f"{host} answered with {kind}, not chat-completions data: {quoted!r}",
            hint="check that base_url points at an OpenAI-compatible API (it usually ends in /v1)")


def _server_events(chunks: Iterator[bytes]) -> Iterator[tuple[str, str]]:
    decoder = SSEDecoder(MAX_EVENT_BYTES)
    try:
        for chunk in chunks:
            yield from decoder.feed(chunk)
        yield from decoder.close()
    except NotEventStream as exc:
        raise Malformed(f"a body that is not an event stream: {' '.join(str(exc).split())[:80]!r}") from None
    except NoEvents as exc:
        raise Malformed(f"{exc}, and no reply") from None


def capped_body(response: Any) -> None:
    """The SDK reads the whole body of an error (or a redirect): not more than MAX_ERROR_BYTES."""
    if response.status_code >= 300:
        response.stream = _capped_stream_type()(response.stream, MAX_ERROR_BYTES)


@functools.cache
def _capped_stream_type() -> type:
    import httpx2

    class Capped(httpx2.SyncByteStream):
        def __init__(self, inner: Any, limit: int) -> None:
            self.inner, self.limit = inner, limit

        def __iter__(self) -> Iterator[bytes]:
            total = 0
            for chunk in self.inner:
                total += len(chunk)
                if total > self.limit:
                    raise TooLarge(f"an error page of more than {self.limit / 1e6:g} MB")
                yield chunk

        def close(self) -> None:
            self.inner.close()

    return Capped
