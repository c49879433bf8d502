"""What went wrong with a request, in the user's words: SDK and network failures become
chatcli errors, and the retry policy decides which of them are worth another try.

Part of the client room: it imports openai (lazily, inside functions).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chatcli import errors
from chatcli.client.chunks import BodyError, Malformed
from chatcli.client.sse import TooLarge
from chatcli.textsafe import url_host, url_shown

if TYPE_CHECKING:
    from chatcli.config import Endpoint
    from chatcli.events import ChatRequest

# Codes, types and phrases different servers use for "the prompt does not fit":
# OpenAI and DeepSeek (context_length_exceeded), vLLM ("maximum context
# length"), llama.cpp (exceed_context_size_error, "exceeds the available
# context size"), Moonshot ("exceeded model token limit"), TGI, Anthropic-style.
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error", "string_above_max_length"}
# The patterns here are strings, compiled when first searched (re's own cache): an answer
# that never fails never pays for compiling them.
_CONTEXT_PHRASES = (
    r"(?i)maximum context length|context[ _-]?(length|size|window)|too many tokens|"
    r"prompt is too long|input is too long|exceeded model token limit|"
    r"tokens \+ `?max_new_tokens|reduce the length of the messages")


def is_context_too_long(code: str | None, type_: str | None, message: str) -> bool:
    """Recognise a context-length error whatever the server calls it."""
    if (code or "") in _CONTEXT_CODES or (type_ or "") in _CONTEXT_CODES:
        return True
    return bool(re.search(_CONTEXT_PHRASES, message))



def translate(
    exc: Exception,
    endpoint: Endpoint,
    request: ChatRequest | None,
    *,
    redact: Callable[[str], str],
    midstream: bool = False,
) -> errors.ChatcliError:
    """One chatcli error, with what to do next, for any failure of a request."""
    import httpx2
    import openai

    host = url_host(endpoint.base_url)
    model = request.model if request else "the model"
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return errors.NetworkError(
            f"{host} sent nothing for {endpoint.timeout:g}s"
            + (" in the middle of the reply" if midstream else ""),
            hint="the server may be overloaded; try again, or raise `timeout` in the config",
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        cause = redact(str(exc.__cause__ or exc) if isinstance(exc, openai.APIConnectionError) else str(exc))
        cause = cause or type(exc).__name__
        if midstream:
            return errors.NetworkError(f"the connection to {host} broke during the reply: {cause}",
                                       hint="try again")
        return errors.NetworkError(
            f"cannot reach {url_shown(endpoint.base_url)}: {cause}",
            hint="check base_url, your network, and HTTPS_PROXY if you use a proxy",
        )
    if isinstance(exc, openai.APIStatusError):
        return _from_status(exc, endpoint, model, redact)
    if isinstance(exc, TooLarge):
        return errors.ServerError(f"{host} sent {exc}, which no chat-completions reply holds; "
                                  "reading stopped there",
                                  hint="check base_url; --debug shows the start of what came back")
    if isinstance(exc, Malformed):
        return errors.ServerError(f"{host} sent something that is not valid chat-completions data "
                                  f"({redact(str(exc))})",
                                  hint="check that base_url points at an OpenAI-compatible API; "
                                       "--debug shows the data")
    if isinstance(exc, ValueError | TypeError | AttributeError | KeyError | httpx2.DecodingError):
        return errors.ServerError(
            f"{host} sent a reply that is not valid chat-completions data ({type(exc).__name__})",
            hint="check that base_url points at an OpenAI-compatible API; --debug shows the data",
        )
    return errors.ChatcliError(f"request failed: {redact(str(exc)) or type(exc).__name__}")


_IMAGE_WORDS = r"(?i)image|vision|multi-?modal|mmproj"


def images_refused(error: errors.ChatcliError, request: ChatRequest | None) -> errors.ChatcliError:
    """A request with images that the server rejected in words about images: the model
    reads no images. Said as that, naming the model; nothing is sent again without them."""
    if (request is None or type(error) is not errors.RequestError
            or not re.search(_IMAGE_WORDS, error.message)):
        return error
    if not any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
               for m in request.messages):
        return error
    return errors.RequestError(
        f"the model {request.model!r} does not take images; nothing was answered ({error.message})",
        hint="choose a model that reads images (--model, /model), or leave the image out (/detach)")


def _server_message(exc: Any) -> str:
    """The server's own words: the error body's message, not the SDK's wrapping of it."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str) and message.strip():
        return message
    return re.sub(r"^Error code: \d+ - ", "", str(exc.message))


def _from_status(exc: Any, endpoint: Endpoint, model: str,
                 redact: Callable[[str], str]) -> errors.ChatcliError:
    retry = exc.response.headers.get("retry-after")
    return classify(exc.status_code, redact(_server_message(exc)), exc.code, exc.type, endpoint, model,
                    retry_after=retry, quota=_is_quota(exc), details=exc.body)


def from_body(error: BodyError, endpoint: Endpoint, model: str, redact: Callable[[str], str], *,
              midstream: bool = False) -> errors.ChatcliError:
    """An error a server put in a body (a 200 whose JSON is an `error`, an error event in a
    stream), classified as the same error with a proper HTTP status would be."""
    message = redact(error.message)
    if is_context_too_long(error.code, error.type, message):
        return _context_error(message, error.details)
    words = f"{error.code} {error.type} {message}".lower()
    status = error.status if error.status is not None and 400 <= error.status < 600 else None
    if status is None and ("quota" in words or "rate_limit" in words or "rate limit" in words):
        status = 429
    elif status is None and re.search(_AUTH_WORDS, f"{error.code} {error.type}"):
        status = 401
    if status is not None:
        return classify(status, message, error.code, error.type, endpoint, model, quota="quota" in words,
                        details=error.details)
    where = "during the reply" if midstream else "instead of a reply"
    return errors.ServerError(f"the server reported an error {where}: {message}",
                              hint="try again; --debug shows what came back")


_AUTH_WORDS = r"(?i)api[ _-]?key|unauthori[sz]ed|authenticat|permission|forbidden"


def classify(status: int, message: str, code: str | None, type_: str | None, endpoint: Endpoint,
             model: str, *, retry_after: str | None = None, quota: bool = False,
             details: Any = None) -> errors.ChatcliError:
    """The chatcli error for a server's error with this HTTP status, words and codes."""
    if status == 401:
        return errors.AuthError(f"the server rejected the API key (401): {message}",
                                hint="check the key and which variable or command provides it "
                                     "(`chatcli config show`)")
    if status == 403:
        return errors.AuthError(f"the key is not allowed to do this (403): {message}",
                                hint="check your account's access to this model and region")
    if status == 404:
        if code == "model_not_found" or "model" in message.lower():
            return errors.RequestError(f"model {model!r} was not found at {url_shown(endpoint.base_url)}",
                                       hint="pick another: --model, /model in a session, or `model` in "
                                            "the config (`chatcli doctor` lists them)")
        return errors.RequestError(f"{url_shown(endpoint.base_url)} has no chat-completions endpoint (404)",
                                   hint="base_url usually ends in /v1")
    if status == 429:
        if quota:
            return errors.RateLimitError(f"the account is out of quota: {message}",
                                         hint="check your plan and billing with the provider")
        return errors.RateLimitError(
            f"rate limited (429): {message}",
            hint=f"wait {retry_after}s and try again" if retry_after else "wait a little and try again",
        )
    if is_context_too_long(code, type_, message):
        return _context_error(message, details)
    if status >= 500:
        return errors.ServerError(f"the server failed ({status}): {message}",
                                  hint="try again later")
    return errors.RequestError(f"the server rejected the request ({status}): {message}",
                               hint="check the model name and parameters; --debug shows the request")


# How servers state the model's context size, and how much the request took.
_LIMIT_PHRASES = (
    r"(?i)maximum context length is (\d+)|context (?:window|size|length)(?: is| of)? (\d+)|"
    r"token limit:? (\d+)|max(?:imum)?[_ ]?(?:input|model)[_ ]?(?:length|tokens)(?: is|:)? (\d+)")
_USED_PHRASES = (r"(?i)resulted in (\d+) tokens|you requested (\d+) tokens|"
                 r"prompt (?:has|contains|is) (\d+) tokens")


def stated_sizes(message: str, details: Any = None) -> tuple[int | None, int | None]:
    """The context size the server states and the tokens it counted, where it says them:
    in its words (OpenAI, vLLM, Moonshot, TGI) or in fields (llama.cpp's n_ctx)."""
    fields = details if isinstance(details, dict) else {}

    def number(*candidates: Any) -> int | None:
        for value in candidates:
            if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9:
                return value
            if isinstance(value, str) and value.isdigit() and 0 < int(value) < 10**9:
                return int(value)
        return None

    limit_match = re.search(_LIMIT_PHRASES, message)
    used_match = re.search(_USED_PHRASES, message)
    limit = number(fields.get("n_ctx"), *(limit_match.groups() if limit_match else ()))
    used = number(fields.get("n_prompt_tokens"), *(used_match.groups() if used_match else ()))
    return limit, used


def _context_error(message: str, details: Any = None) -> errors.ContextTooLongError:
    limit, used = stated_sizes(message, details)
    return errors.ContextTooLongError(
        f"the conversation is too long for the model: {message}",
        hint="set context_window in the config to the model's size, lower max_messages, "
             "or send less text",
        limit=limit, used=used,
    )


RETRIED_STATUS = {408, 409, 429, 500, 502, 503, 504}
LONGEST_WAIT = 60.0  # a Retry-After longer than this is reported, not waited for


def retry_delay(exc: Exception, attempt: int, max_retries: int) -> float | None:
    """Seconds to wait before trying `exc`'s request again, or None to give up.

    Rate limits (429) and server errors (5xx) are retried, waiting as long as
    Retry-After says, or 0.5, 1, 2, 4... seconds; running out of quota and
    authentication failures never are: waiting does not fix them.
    """
    import openai

    if attempt >= max_retries or not isinstance(exc, openai.APIStatusError):
        return None
    if exc.status_code not in RETRIED_STATUS or _is_quota(exc):
        return None
    asked = _retry_after(exc.response.headers)
    if asked is not None:
        return asked if asked <= LONGEST_WAIT else None
    return min(0.5 * float(2**attempt), 8.0)


def _retry_after(headers: Any) -> float | None:
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils

        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _is_quota(exc: Any) -> bool:
    return "quota" in f"{exc.code} {exc.type} {_server_message(exc)}".lower()


def describe_for_retry(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return "rate limited (429)" if status == 429 else f"the server failed ({status})"
