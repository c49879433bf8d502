"""The openai adapter: one request in, a stream of small events out.

The only module that imports openai, and only when a request is near (the
import costs about 300 ms). Every SDK exception and network failure leaves
here as a chatcli error with a one-line message; servers that deviate from
OpenAI (no usage in streams, no stream_options, no finish_reason, their own
error shapes) are smoothed over here so nothing above has to know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chatcli import errors

if TYPE_CHECKING:
    import openai

    from chatcli.config import Settings


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    temperature: float | None = None
    max_tokens: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self.messages}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class StreamEnd:
    """The stream finished; `finish_reason` is None when the server never sent one."""

    finish_reason: str | None


Event = TextDelta | UsageReport | StreamEnd
Debug = Callable[[str], None]

# Codes, types and phrases different servers use for "the prompt does not fit":
# OpenAI and DeepSeek (context_length_exceeded), vLLM ("maximum context
# length"), llama.cpp (exceed_context_size_error, "exceeds the available
# context size"), Moonshot ("exceeded model token limit"), TGI, Anthropic-style.
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error", "string_above_max_length"}
_CONTEXT_PHRASES = re.compile(
    r"maximum context length|context[ _-]?(length|size|window)|too many tokens|"
    r"prompt is too long|input is too long|exceeded model token limit|"
    r"tokens \+ `?max_new_tokens|reduce the length of the messages",
    re.IGNORECASE,
)
_KEYLIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*.]{4,}")


def is_context_too_long(code: str | None, type_: str | None, message: str) -> bool:
    """Recognise a context-length error whatever the server calls it."""
    if (code or "") in _CONTEXT_CODES or (type_ or "") in _CONTEXT_CODES:
        return True
    return bool(_CONTEXT_PHRASES.search(message))


class OpenAIClient:
    """Talks to one endpoint with the official openai client, created on first use."""

    def __init__(self, settings: Settings, api_key: str, *, debug: Debug | None = None) -> None:
        self.settings = settings
        self._key = api_key
        self._debug = debug
        self._sdk: openai.OpenAI | None = None
        self.usage_in_stream = True  # False once the server rejects stream_options

    def _client(self) -> openai.OpenAI:
        if self._sdk is None:
            import openai

            s = self.settings
            self._sdk = openai.OpenAI(
                api_key=self._key,
                base_url=s.base_url,
                timeout=openai.Timeout(s.timeout, connect=min(s.timeout, 10.0)),
                max_retries=s.max_retries,
                default_headers=dict(s.headers),
            )
        return self._sdk

    def redact(self, text: str) -> str:
        """Remove the key, and anything that looks like one, from text we show."""
        if self._key:
            text = text.replace(self._key, "***")
        return _KEYLIKE.sub(r"\1-***", text)

    def stream(self, request: ChatRequest) -> Iterator[Event]:
        """Stream one reply as events; closing the iterator closes the HTTP stream."""
        sdk_stream = self._guard(lambda: self._open_stream(request), request)
        finish: str | None = None
        try:
            for chunk in self._guarded_iter(sdk_stream, request):
                if self._debug:
                    self._debug("← " + self.redact(chunk.model_dump_json(exclude_unset=True)))
                if chunk.usage is not None:
                    u = chunk.usage
                    yield UsageReport(u.prompt_tokens or 0, u.completion_tokens or 0)
                for choice in chunk.choices or ():
                    if choice.index not in (0, None):
                        continue
                    text = choice.delta.content if choice.delta else None
                    if text:
                        yield TextDelta(text)
                    finish = choice.finish_reason or finish
            yield StreamEnd(finish)
        finally:
            sdk_stream.close()

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        """One reply without streaming: the server's complete response object."""

        def call() -> dict[str, Any]:
            body = request.body()
            self._show_request(body)
            raw = self._client().chat.completions.with_raw_response.create(**body)
            self._show_response(raw.http_response)
            data = raw.http_response.json()
            if self._debug:
                self._debug("← " + self.redact(json.dumps(data, ensure_ascii=False)))
            if not isinstance(data, dict) or not data.get("choices"):
                raise errors.ServerError("the server answered without any choices")
            return data

        return self._guard(call, request)

    def models(self) -> list[str]:
        """Model ids the endpoint lists (GET /models)."""
        return self._guard(lambda: sorted(m.id for m in self._client().models.list()), None)

    def _open_stream(self, request: ChatRequest) -> Any:
        import openai

        body = {**request.body(), "stream": True}
        if self.usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        self._show_request(body)
        try:
            raw = self._client().chat.completions.with_raw_response.create(**body)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if not self.usage_in_stream or "stream_options" not in f"{exc.message} {exc.param}":
                raise
            # Some servers reject stream_options; ask again without it and
            # estimate usage for the rest of the session.
            self.usage_in_stream = False
            if self._debug:
                self._debug("server rejected stream_options; retrying without it")
            return self._open_stream(request)
        self._show_response(raw.http_response)
        return raw.parse()

    def _guarded_iter(self, sdk_stream: Any, request: ChatRequest) -> Iterator[Any]:
        iterator = iter(sdk_stream)
        while True:
            chunk = self._guard(lambda: next(iterator, None), request, midstream=True)
            if chunk is None:
                return
            yield chunk

    def _guard(self, call: Callable[[], Any], request: ChatRequest | None, *, midstream=False):
        try:
            return call()
        except errors.ChatcliError:
            raise
        except Exception as exc:
            raise self._translate(exc, request, midstream=midstream) from None

    def _show_request(self, body: dict[str, Any]) -> None:
        if self._debug:
            headers = {"Authorization": "Bearer ***", **dict(self.settings.headers)}
            self._debug(f"→ POST {self.settings.base_url.rstrip('/')}/chat/completions")
            self._debug(f"→ headers {self.redact(json.dumps(headers))}")
            self._debug(f"→ body {self.redact(json.dumps(body, ensure_ascii=False))}")

    def _show_response(self, response: Any) -> None:
        if self._debug:
            wanted = ("content-type", "x-request-id", "openai-processing-ms", "retry-after")
            shown = {k: v for k, v in response.headers.items() if k.lower() in wanted
                     or k.lower().startswith("x-ratelimit")}
            self._debug(f"← {response.status_code} {self.redact(json.dumps(shown))}")

    def _translate(self, exc: Exception, request: ChatRequest | None, *, midstream: bool):
        return translate(exc, self.settings, request, redact=self.redact, midstream=midstream)


def translate(
    exc: Exception,
    settings: Settings,
    request: ChatRequest | None,
    *,
    redact: Callable[[str], str],
    midstream: bool = False,
) -> errors.ChatcliError:
    """One chatcli error, with what to do next, for any failure of a request."""
    import openai

    host = urlsplit(settings.base_url).netloc or settings.base_url
    model = request.model if request else settings.model
    if isinstance(exc, openai.APITimeoutError):
        return errors.NetworkError(
            f"{host} sent nothing for {settings.timeout:g}s"
            + (" in the middle of the reply" if midstream else ""),
            hint="the server may be overloaded; try again, or raise `timeout` in the config",
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = redact(str(exc.__cause__ or exc))
        if midstream:
            return errors.NetworkError(f"the connection to {host} broke during the reply: {cause}",
                                       hint="try again")
        return errors.NetworkError(
            f"cannot reach {settings.base_url}: {cause}",
            hint="check base_url, your network, and HTTPS_PROXY if you use a proxy",
        )
    if isinstance(exc, openai.APIStatusError):
        return _from_status(exc, settings, model, redact)
    if isinstance(exc, openai.APIError):  # an error object inside a stream
        message = redact(exc.message)
        if is_context_too_long(exc.code, exc.type, message):
            return _context_error(message)
        return errors.ServerError(f"the server reported an error during the reply: {message}",
                                  hint="try again")
    if isinstance(exc, ValueError | TypeError | AttributeError | KeyError):
        return errors.ServerError(
            f"{host} sent a reply that is not valid chat-completions data ({type(exc).__name__})",
            hint="check that base_url points at an OpenAI-compatible API; --debug shows the data",
        )
    return errors.ChatcliError(f"request failed: {redact(str(exc)) or type(exc).__name__}")


def _server_message(exc: Any) -> str:
    """The server's own words: the error body's message, not the SDK's wrapping of it."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"].strip():
        return body["message"]
    return re.sub(r"^Error code: \d+ - ", "", exc.message)


def _from_status(exc: Any, settings: Settings, model: str, redact: Callable[[str], str]):
    status = exc.status_code
    message = redact(_server_message(exc))
    code, type_ = exc.code, exc.type
    if status == 401:
        return errors.AuthError(f"the server rejected the API key (401): {message}",
                                hint="check the key and which variable or command provides it "
                                     "(`chatcli config show`)")
    if status == 403:
        return errors.AuthError(f"the key is not allowed to do this (403): {message}",
                                hint="check your account's access to this model and region")
    if status == 404:
        if code == "model_not_found" or "model" in message.lower():
            return errors.RequestError(f"model {model!r} was not found at {settings.base_url}",
                                       hint="pick another with --model or `model` in the config")
        return errors.RequestError(f"{settings.base_url} has no chat-completions endpoint (404)",
                                   hint="base_url usually ends in /v1")
    if status == 429:
        retry = exc.response.headers.get("retry-after")
        if "quota" in f"{code} {type_} {message}".lower():
            return errors.RateLimitError(f"the account is out of quota: {message}",
                                         hint="check your plan and billing with the provider")
        return errors.RateLimitError(
            f"rate limited (429): {message}",
            hint=f"wait {retry}s and try again" if retry else "wait a little and try again",
        )
    if is_context_too_long(code, type_, message):
        return _context_error(message)
    if status >= 500:
        return errors.ServerError(f"the server failed ({status}): {message}",
                                  hint="try again later")
    return errors.RequestError(f"the server rejected the request ({status}): {message}",
                               hint="check the model name and parameters; --debug shows the request")


def _context_error(message: str) -> errors.ContextTooLongError:
    return errors.ContextTooLongError(
        f"the conversation is too long for the model: {message}",
        hint="set context_window in the config to the model's size, lower max_messages, "
             "or send less text",
    )


def warm_up() -> None:
    """Import openai in the background, so the REPL's prompt need not wait for it."""
    import contextlib
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # the first request will report it properly
            import openai  # noqa: F401

    threading.Thread(target=load, name="import-openai", daemon=True).start()
