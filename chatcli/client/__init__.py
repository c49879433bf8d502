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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatcli import errors
from chatcli.client.failures import describe_for_retry, retry_delay, translate

if TYPE_CHECKING:
    import ssl

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
_KEYLIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*.]{4,}")


class OpenAIClient:
    """Talks to one endpoint with the official openai client, created on first use."""

    def __init__(
        self,
        settings: Settings,
        api_key: str,
        *,
        debug: Debug | None = None,
        notify: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._key = api_key
        self._debug = debug
        self._notify = notify
        self._sleep = sleep
        self._sdk: openai.OpenAI | None = None
        self.usage_in_stream = True  # False once the server rejects stream_options

    def _client(self) -> openai.OpenAI:
        if self._sdk is None:
            import openai

            s = self.settings
            # HTTPS_PROXY, HTTP_PROXY and NO_PROXY are honoured by the HTTP client itself.
            http_client = openai.DefaultHttpxClient(verify=_trust(s.ca_bundle)) if s.ca_bundle else None
            self._sdk = openai.OpenAI(
                api_key=self._key,
                base_url=s.base_url,
                timeout=openai.Timeout(s.timeout, connect=s.connect_timeout),
                max_retries=0,  # retried here, where the policy and the user's view are ours
                default_headers=dict(s.headers),
                http_client=http_client,
            )
        return self._sdk

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Call, retrying rate limits and server errors with backoff (failures.retry_delay)."""
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:
                delay = retry_delay(exc, attempt, self.settings.max_retries)
                if delay is None:
                    raise
                attempt += 1
                if self._notify:
                    wait = f"{delay:.1f}" if delay < 10 else f"{delay:.0f}"
                    self._notify(f"{describe_for_retry(exc)}; trying again in {wait} s "
                                 f"({attempt} of {self.settings.max_retries})")
                self._sleep(delay)

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
            raw = self._retrying(lambda: self._client().chat.completions.with_raw_response.create(**body))
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
        return self._guard(lambda: self._retrying(lambda: sorted(m.id for m in self._client().models.list())),
                           None)

    def _open_stream(self, request: ChatRequest) -> Any:
        import openai

        body = {**request.body(), "stream": True}
        if self.usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        self._show_request(body)
        try:
            raw = self._retrying(lambda: self._client().chat.completions.with_raw_response.create(**body))
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
            from chatcli.config import visible_headers

            headers = {"Authorization": "Bearer ***", **visible_headers(self.settings.headers)}
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


def _trust(ca_bundle: str) -> ssl.SSLContext:
    """An SSL context that trusts the certificate authorities in `ca_bundle` (PEM)."""
    import ssl
    from pathlib import Path

    path = Path(ca_bundle).expanduser()
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(f"ca_bundle {path} cannot be used: {exc.strerror or exc}",
                                 hint="point ca_bundle at a PEM file of CA certificates") from None


def warm_up() -> None:
    """Import openai in the background, so the REPL's prompt need not wait for it."""
    import contextlib
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # the first request will report it properly
            import openai  # noqa: F401

    threading.Thread(target=load, name="import-openai", daemon=True).start()
