"""The openai adapter: one request in, a stream of small events out.

The only module that imports openai, and only when a request is near (the
import costs about 300 ms). The official client sends the request (key,
headers, proxies, TLS, status errors); the body that comes back is read here,
with bounds, and checked before anything above sees it (chunks.py, sse.py): a
server is trusted for nothing. Every SDK exception and network failure leaves
as a chatcli error with a one-line message; servers that deviate from OpenAI
(no usage in streams, no stream_options, no finish_reason, errors in a 200,
a JSON body where a stream was asked for) are smoothed over here so nothing
above has to know.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from chatcli import errors
from chatcli.client.deadline import Deadlines, install
from chatcli.client.failures import describe_for_retry, images_refused, retry_delay, translate
from chatcli.client.reading import BodyReader, capped_body
from chatcli.config import Endpoint, same_endpoint
from chatcli.events import ChatRequest, Completion, Event, RequestSent, StreamEnd, TextDelta, UsageReport
from chatcli.quirks import Quirks
from chatcli.textsafe import Redactor, shown, url_host, url_secrets, url_shown

if TYPE_CHECKING:
    import ssl

    import openai


__all__ = ["ChatRequest", "Completion", "Event", "OpenAIClient", "StreamEnd", "TextDelta",
           "UsageReport", "load_sdk", "warm_up"]

Debug = Callable[[str], None]

T = TypeVar("T")


class OpenAIClient:
    """Talks to one endpoint with the official openai client, created on first use."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        debug: Debug | None = None,
        notify: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        quirks: Quirks | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._quirks = quirks or Quirks(None)
        self._key = endpoint.api_key
        self._debug = debug
        self._notify = notify
        self._sleep = sleep
        self._clock = clock
        self._sdk: openai.OpenAI | None = None
        self.redact = Redactor(endpoint.api_key, *endpoint.headers.values(), *url_secrets(endpoint.base_url))
        self.usage_in_stream = True  # False once the server rejects stream_options
        self._deadlines = Deadlines(clock)
        self._reader = BodyReader(endpoint, clock=clock, redact=self.redact, debug=debug,
                                  deadlines=self._deadlines, notify=notify)

    def _client(self) -> openai.OpenAI:
        if self._sdk is None:
            import openai

            s = self.endpoint
            # HTTPS_PROXY, HTTP_PROXY and NO_PROXY are honoured by the HTTP client itself.
            http_client = openai.DefaultHttpxClient(
                verify=_trust(s.ca_bundle) if s.ca_bundle else True,
                event_hooks={"request": [self._on_request], "response": [capped_body]},
            )
            # A query in base_url (`?api-version=...`, a gateway's `?token=...`) goes with every
            # request as a query, not glued into the path.
            base_url, _, query = s.base_url.partition("?")
            self._sdk = openai.OpenAI(
                api_key=self._key,
                base_url=base_url,
                default_query=dict(parse_qsl(query, keep_blank_values=True)) or None,
                timeout=openai.Timeout(s.timeout, connect=s.connect_timeout),
                max_retries=0,  # retried here, where the policy and the user's view are ours
                default_headers=dict(s.headers),
                http_client=http_client,
            )
            install(http_client, self._deadlines)
        return self._sdk

    def _on_request(self, request: Any) -> None:
        """A redirect anywhere but base_url's own scheme, host and port gets none of our
        headers: the key and every configured header (an Azure `api-key`, say) stay with
        the endpoint they were configured for, as the HTTP client does for Authorization."""
        if not same_endpoint(str(request.url), self.endpoint.base_url):
            for name in ("authorization", *self.endpoint.headers):
                if name in request.headers:
                    del request.headers[name]

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Call, retrying rate limits and server errors with backoff (failures.retry_delay)."""
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:
                delay = retry_delay(exc, attempt, self.endpoint.max_retries)
                if delay is None:
                    raise
                attempt += 1
                if self._notify:
                    wait = f"{delay:.1f}" if delay < 10 else f"{delay:.0f}"
                    self._notify(f"{describe_for_retry(exc)}; trying again in {wait} s "
                                 f"({attempt} of {self.endpoint.max_retries})")
                self._sleep(delay)

    # --- requests ----------------------------------------------------------------

    def stream(self, request: ChatRequest) -> Generator[Event, None, None]:
        """Stream one reply as events; closing the iterator closes the HTTP stream."""
        started = self._clock()
        response = self._guard(lambda: self._open_stream(request), request)
        yield RequestSent()
        try:
            events = self._reader.events(response.http_response, request, started=started)
            while True:
                event = self._guard(lambda: next(events, None), request, midstream=True)
                if event is None:
                    return
                yield event
        finally:
            response.http_response.close()

    def complete(self, request: ChatRequest) -> Completion:
        """One reply without streaming: its text, ending and usage, and the response object."""

        def call() -> Completion:
            started = self._clock()
            http = self._send_adapting(request.body()).http_response
            try:
                self._show_response(http)
                return self._reader.completion(http, request, started=started)
            finally:
                http.close()

        return self._guard(call, request)

    def models(self) -> list[str]:
        """Model ids the endpoint lists (GET /models)."""

        def call() -> list[str]:
            listing = self._client().models.with_streaming_response
            http = self._retrying(lambda: self._headers_in_time(
                lambda: listing.list().__enter__())).http_response
            try:
                return self._reader.model_ids(http)
            finally:
                http.close()

        return self._guard(lambda: call(), None)

    def context_limit(self, model: str) -> int | None:
        """The context size a server on this machine states for `model`: vLLM's max_model_len
        or llama.cpp's meta.n_ctx in /models, else llama.cpp's /props. None when it states none
        or the question fails: this is a hint for trimming, never an error. Remote endpoints
        are not asked (it would cost every session a request)."""
        from chatcli.config import is_local

        if not is_local(self.endpoint.base_url):
            return None
        try:
            return self._guard(lambda: self._stated_context(model), None)
        except errors.ChatcliError:
            return None

    def _stated_context(self, model: str) -> int | None:
        import httpx2

        sdk: Any = self._client()
        raw = {"headers": {"X-Stainless-Raw-Response": "stream"}}  # the body is read here, bounded
        root = self.endpoint.base_url.partition("?")[0].rstrip("/").removesuffix("/v1")
        for path, find in (("/models", _listed_context), (root + "/props", _props_context)):
            def get(path: str = path) -> Any:
                return sdk.get(path, cast_to=httpx2.Response, options=raw)

            http = self._headers_in_time(get)
            try:
                found = find(self._reader.small_json(http), model) if http.status_code == 200 else None
            finally:
                http.close()
            if found is not None:
                return found
        return None

    def _send(self, body: dict[str, Any]) -> Any:
        """Send, and wait for the response's headers, for no longer than `timeout` however they
        trickle in; the body is not read yet (that is done here, with bounds)."""
        import httpx2

        sdk: Any = self._client()
        # The body is plain JSON already: posted as it is (the SDK's create() would walk every
        # message and tool schema against its types first, a cost that grows with the history),
        # with the SDK's key, headers, base URL, errors and streaming all the same.
        payload = {k: v for k, v in body.items() if k != "extra_body"} | dict(body.get("extra_body") or {})
        raw = {"headers": {"X-Stainless-Raw-Response": "stream"}}
        http = self._headers_in_time(lambda: sdk.post("/chat/completions", body=payload,
                                                      cast_to=httpx2.Response, options=raw))
        return _Sent(http)

    def _headers_in_time(self, send: Callable[[], T]) -> T:
        seconds = min(self.endpoint.timeout, self.endpoint.reply_timeout or self.endpoint.timeout)
        until = self._clock() + seconds
        with self._deadlines.until(until, "response headers"):
            try:
                return send()
            except Exception:
                if not self._deadlines.passed(until) or not self._deadlines.received:
                    raise  # a failure, or a server that sent nothing at all (said as such)
        host = url_host(self.endpoint.base_url)
        raise errors.NetworkError(f"{host} did not finish sending its response headers within {seconds:g} s",
                                  hint="the server, or a proxy on the way, is stalling; try again, or raise "
                                  "`timeout` in the config")

    def _open_stream(self, request: ChatRequest) -> Any:
        response = self._send_adapting({**request.body(), "stream": True})
        self._show_response(response.http_response)
        return response

    def _send_adapting(self, body: dict[str, Any]) -> Any:
        """Send `body` as this endpoint's model takes it, learning from a refusal what it
        does not take (stream_options, max_tokens, a temperature) and asking again. Tools
        offered to a model that takes none are not sent again: ToolsUnsupported says so."""
        import openai

        model = str(body.get("model"))
        if body.get("tools") and self._quirks.get(self.endpoint.base_url, model).get("tools") is False:
            raise _no_tools(model, remembered=True)
        for _ in range(4):  # each refusal is learnt once: a few rounds at most
            adapted = self._adapted(body)
            self._show_request(adapted)
            try:
                return self._retrying(lambda: self._send(adapted))  # noqa: B023 (called at once)
            except (openai.BadRequestError, openai.UnprocessableEntityError, openai.NotFoundError) as exc:
                if adapted.get("tools") and refuses_tools(f"{exc.message}"):
                    self._quirks.learn(self.endpoint.base_url, model, "tools", False)
                    raise _no_tools(model, remembered=False) from None
                if isinstance(exc, openai.NotFoundError) or not self._learn(f"{exc.message} {exc.param}",
                                                                            adapted):
                    raise
        return self._retrying(lambda: self._send(self._adapted(body)))

    def _adapted(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        if body.get("stream") and self.usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        known = self._quirks.get(self.endpoint.base_url, str(body.get("model")))
        field = self.endpoint.max_tokens_param
        if field == "auto":
            field = known.get("max_tokens_param", "max_tokens")
        if field == "max_completion_tokens" and "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
        if known.get("temperature") is False:
            body.pop("temperature", None)
        if known.get("system_role") in ("developer", "user"):
            body["messages"] = _without_system(body["messages"], known["system_role"])
        return body

    def _learn(self, refusal: str, body: dict[str, Any]) -> bool:
        """Whether `refusal` names something of `body` the server does not take (now learnt)."""
        model = str(body.get("model"))
        if body.get("stream_options") and "stream_options" in refusal:
            # Some servers reject stream_options: usage is estimated for the rest of the session.
            self.usage_in_stream = False
            if self._debug:
                self._debug("server rejected stream_options; retrying without it")
            return True
        automatic = self.endpoint.max_tokens_param == "auto"
        if "max_tokens" in body and "max_completion_tokens" in refusal and automatic:
            self._quirks.learn(self.endpoint.base_url, model, "max_tokens_param", "max_completion_tokens")
            self._tell(f"{model} takes max_completion_tokens, not max_tokens: sent as that from now on "
                       "(remembered for this endpoint and model)")
            return True
        lowered = refusal.lower()
        if "temperature" in body and "temperature" in lowered and ("only the default" in lowered
                                                                    or "unsupported" in lowered):
            self._quirks.learn(self.endpoint.base_url, model, "temperature", False)
            self._tell(f"{model} takes only its default temperature: none is sent from now on "
                       "(remembered for this endpoint and model)")
            return True
        roles = {m.get("role") for m in body.get("messages", [])}
        for role, instead, how in (("system", "developer", "as a developer message"),
                                   ("developer", "user", "at the start of the first question")):
            if role in roles and f"'{role}'" in refusal and ".role" in refusal:
                self._quirks.learn(self.endpoint.base_url, model, "system_role", instead)
                self._tell(f"{model} does not take a {role} message: the system prompt is sent {how} "
                           "from now on (remembered for this endpoint and model)")
                return True
        return False

    def _tell(self, text: str) -> None:
        if self._notify is not None:
            self._notify(text)

    # --- reading what came back ---------------------------------------------------

    # --- errors and --debug ---------------------------------------------------------

    def _guard(self, call: Callable[[], T], request: ChatRequest | None, *, midstream: bool = False) -> T:
        try:
            return call()
        except Exception as exc:
            error = exc if isinstance(exc, errors.ChatcliError) else self._translate(exc, request,
                                                                                       midstream=midstream)
            raise images_refused(error, request) from None

    def _show_request(self, body: dict[str, Any]) -> None:
        if self._debug:
            import json

            from chatcli.config import visible_headers

            headers = {"Authorization": "Bearer ***", **visible_headers(self.endpoint.headers)}
            base, mark, query = self.endpoint.base_url.partition("?")
            self._debug(f"→ POST {url_shown(base.rstrip('/') + '/chat/completions' + mark + query)}")
            self._debug(f"→ headers {self.redact(json.dumps(headers))}")
            shown = {k: v for k, v in body.items() if k != "extra_body"} | body.get("extra_body", {})
            self._debug(f"→ body {self.redact(_short_images(json.dumps(shown, ensure_ascii=False)))}")

    def _show_response(self, response: Any) -> None:
        if self._debug:
            import json

            wanted = ("content-type", "x-request-id", "openai-processing-ms", "retry-after")
            shown = {k: v for k, v in response.headers.items() if k.lower() in wanted
                     or k.lower().startswith("x-ratelimit")}
            self._debug(f"← {response.status_code} {self.redact(json.dumps(shown))}")

    def _translate(self, exc: Exception, request: ChatRequest | None, *,
                   midstream: bool) -> errors.ChatcliError:
        return translate(exc, self.endpoint, request, redact=self.redact, midstream=midstream)


# How servers say a model takes no tools: Ollama ("... does not support tools"), llama.cpp
# started without --jinja ("tools param requires --jinja flag"), OpenRouter ("No endpoints
# found that support tool use"), vLLM without --enable-auto-tool-choice ("auto" tool choice
# requires --enable-auto-tool-choice and --tool-call-parser to be set), and the like.
_TOOL_REFUSALS = ("does not support tools", "requires --jinja", "support tool use",
                  "enable-auto-tool-choice", "tools are not supported", "tool use is not supported",
                  "does not support function calling", "function calling is not supported",
                  "tool calling is not supported", "tool_choice is not supported")


def refuses_tools(message: str) -> bool:
    lowered = message.lower()
    return any(words in lowered for words in _TOOL_REFUSALS)


def _no_tools(model: str, *, remembered: bool) -> errors.ToolsUnsupported:
    said = "said before (remembered for this endpoint and model)" if remembered else "says the server"
    return errors.ToolsUnsupported(f"{shown(model)} does not take tools ({said})",
                                   hint="ask without them (tool_fallback = \"answer\" does so each time), "
                                   "or use a model that calls tools")


class _Sent:
    """A sent request's response, its body not read yet."""

    def __init__(self, http: Any) -> None:
        self.http_response = http


def _short_images(text: str) -> str:
    """An image's data URL in --debug as its start and size, not pages of base64."""
    import re

    return re.sub(r"(data:image/[\w.+-]+;base64,)([A-Za-z0-9+/=]{40,})",
                  lambda m: f"{m.group(1)}{m.group(2)[:16]}… ({len(m.group(2)):,} characters)", text)


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


def load_sdk() -> None:
    """Import openai now, for a caller near the top of the stack (see the note in cli/chatting.py:
    openai's thousand nested imports, started ~25 calls deep, cost 40-60 ms more)."""
    import openai  # noqa: F401


def warm_up() -> None:
    """Import openai in the background, so the REPL's prompt need not wait for it."""
    import contextlib
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # the first request will report it properly
            load_sdk()

    threading.Thread(target=load, name="import-openai", daemon=True).start()


def _without_system(messages: list[dict[str, Any]], instead: str) -> list[dict[str, Any]]:
    """The messages for a model that refuses the system role: system (and developer) messages
    sent as developer messages, or folded into the first user message when those are refused
    too (o1-mini takes neither)."""
    if instead == "developer":
        return [{**m, "role": "developer"} if m.get("role") == "system" else m for m in messages]
    folded = [m["content"] for m in messages if m.get("role") in ("system", "developer")
              and isinstance(m.get("content"), str)]
    rest = [m for m in messages if m.get("role") not in ("system", "developer")]
    first = next((n for n, m in enumerate(rest) if m.get("role") == "user"), None)
    if not folded or first is None:
        return rest
    preface = "\n\n".join(folded)
    content = rest[first]["content"]
    if isinstance(content, list):
        content = [{"type": "text", "text": preface}, *content]
    else:
        content = f"{preface}\n\n{content}"
    return [*rest[:first], {**rest[first], "content": content}, *rest[first + 1:]]


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _listed_context(data: Any, model: str) -> int | None:
    """max_model_len (vLLM) or meta.n_ctx (llama.cpp) of `model` in a /models list (or of its
    only entry: llama.cpp lists its one model under whatever name it was given)."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    entries = [m for m in items if isinstance(m, dict)]
    chosen = [m for m in entries if m.get("id") == model] or (entries if len(entries) == 1 else [])
    if not chosen:
        return None
    meta = chosen[0].get("meta")
    stated = meta.get("n_ctx") if isinstance(meta, dict) else None
    return _whole(chosen[0].get("max_model_len")) or _whole(stated)


def _props_context(data: Any, model: str) -> int | None:
    """llama.cpp's /props: default_generation_settings.n_ctx (older servers: n_ctx at the top)."""
    if not isinstance(data, dict):
        return None
    settings = data.get("default_generation_settings")
    return _whole(settings.get("n_ctx") if isinstance(settings, dict) else None) or _whole(data.get("n_ctx"))
