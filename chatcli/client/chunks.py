"""What the client takes from a server's JSON, checked: types, ranges, encodings.

A chunk of a stream or a whole response is read into events only after its
parts have been checked: usage figures must be whole numbers in a sane range
(anything else is dropped, and the usage estimated), content must be text (a
number is taken as its digits, a list of text parts is joined; anything else
is malformed), and lone UTF-16 surrogates, which cannot be stored or printed,
become U+FFFD, even when a server splits a pair across two chunks. An `error`
object in place of `choices` is found wherever a server puts it. Standard
library only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from chatcli.events import Event, ReasoningDelta, StreamEnd, TextDelta, ToolCallDelta, UsageReport

MAX_TOKENS_FIGURE = 10**9  # no request uses a billion tokens: a larger figure is nonsense
_FINISH_CHARS = 40
_SURROGATE = re.compile("[\ud800-\udfff]")


class Malformed(ValueError):
    """Well-formed JSON that is not chat-completions data."""


@dataclass(frozen=True)
class BodyError:
    """An error the server put in a body (a 200 with `error`, an error event in a stream)."""

    message: str
    code: str | None = None
    type: str | None = None
    status: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the error object, for its other fields


_DECODER = json.JSONDecoder(strict=False)  # raw tabs and newlines inside strings happen


def load_json(text: str | bytes) -> Any:
    """JSON, or Malformed: also for nesting too deep to parse and absurdly long numbers."""
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")  # as json.loads does
        return _DECODER.decode(text)  # one decoder for every chunk, not one per call
    except (ValueError, RecursionError) as exc:
        raise Malformed("a chunk that is not JSON" if isinstance(exc, ValueError)
                        else "JSON nested too deeply to read") from None


def find_error(data: Any) -> BodyError | None:
    """The error a body carries instead of a reply, in any of the shapes servers use; an
    `error` object is one even beside `choices` (OpenRouter ends a failed stream with
    `{"error": {...}, "choices": [{"delta": {}}]}`)."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and (error or not data.get("choices")):
        return _error(error.get("message") or error.get("msg") or error, error)
    if isinstance(error, str) and error.strip():
        return _error(error, data)
    if data.get("choices"):
        return None
    if data.get("object") == "error" or ("message" in data and "choices" not in data):
        return _error(data.get("message"), data)  # vLLM, and plain {"code", "message"}
    if "detail" in data and "choices" not in data:
        return _error(data["detail"], data)  # FastAPI-style servers
    return None


def _error(message: Any, fields: dict[str, Any]) -> BodyError:
    text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)[:500]
    code = fields.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) else fields.get("status")
    return BodyError(
        details=fields,
        message=text.strip() or "(no message)",
        code=str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        type=fields.get("type") if isinstance(fields.get("type"), str) else None,
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
    )


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_TOKENS_FIGURE:
        return value
    return None


def read_usage(raw: Any) -> UsageReport | None:
    """The usage figures, or None when they are missing or cannot be right."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = _count(raw.get("prompt_tokens")), _count(raw.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = raw.get("completion_tokens_details")
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    return UsageReport(prompt, completion, reasoning if reasoning and reasoning <= completion else None)


def read_content(content: Any, unknown: Callable[[str], None] | None = None) -> tuple[str, str]:
    """A message's content: its text and its thinking. A string, a number's digits, or a list
    of parts: text parts are the answer, thinking parts (Mistral's reasoning models:
    `{"type": "thinking", "thinking": [{"type": "text", ...}]}`) the thinking; a part of any
    other type (audio, an image) is named to `unknown` and left out, never fatal."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    if isinstance(content, int | float) and not isinstance(content, bool):
        return str(content), ""
    if not isinstance(content, list):
        raise Malformed(f"content that is not text ({type(content).__name__})")
    texts: list[str] = []
    thoughts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise Malformed(f"a content part that is not an object ({type(part).__name__})")
        kind = part.get("type", "text")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise Malformed("a text part whose text is not a string")
            texts.append(part["text"])
        elif kind in ("thinking", "reasoning"):
            thoughts.append(_part_text(part.get(kind)))
        elif unknown is not None:
            unknown(str(kind)[:_FINISH_CHARS])
    return "".join(texts), "".join(thoughts)


def _part_text(value: Any) -> str:
    """The text of a thinking part: a string, or a list of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(item if isinstance(item, str) else item.get("text", "") if isinstance(item, dict)
                       and isinstance(item.get("text", ""), str) else "" for item in value)
    return ""


def read_finish(value: Any) -> str | None:
    return value[:_FINISH_CHARS] if isinstance(value, str) and value else None


def _first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    choices = data.get("choices")
    if choices is None:
        return None
    if not isinstance(choices, list):
        raise Malformed(f"choices that are not a list ({type(choices).__name__})")
    for choice in choices:
        if not isinstance(choice, dict):
            raise Malformed(f"a choice that is not an object ({type(choice).__name__})")
        if choice.get("index", 0) in (0, None):
            return choice
    return None


# Where servers put the model's thinking: DeepSeek, Qwen (DashScope), vLLM's reasoning
# parsers, llama.cpp (--reasoning-format deepseek), Kimi and GLM say reasoning_content;
# OpenRouter, newer vLLM and Groq say reasoning. Inline <think> tags are think.py's.
REASONING_FIELDS = ("reasoning_content", "reasoning")


def read_reasoning(message: dict[str, Any]) -> str:
    """The thinking in a delta or message, if a server sent it as text (anything else,
    such as a structured `reasoning_details`, is not shown: an answer never fails over it)."""
    for name in REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def chunk_events(data: Any, mender: SurrogateMender, thinking: SurrogateMender | None = None,
                 unknown: Callable[[str], None] | None = None) -> list[Event]:
    """The events of one streamed chunk (its error, if it carries one, is the caller's).
    `thinking` mends the reasoning text as `mender` mends the answer's; `unknown` is told the
    type of each content part that is neither text nor thinking."""
    if not isinstance(data, dict):
        raise Malformed(f"a chunk that is not a JSON object ({type(data).__name__})")
    events: list[Event] = []
    choice = _first_choice(data)
    if choice is not None:
        delta = choice.get("delta")
        if delta is None:
            delta = choice.get("message")  # a few servers put the whole message in a chunk
        if delta is not None and not isinstance(delta, dict):
            raise Malformed(f"a delta that is not an object ({type(delta).__name__})")
        content, thought = read_content((delta or {}).get("content"), unknown)
        reasoning = (thinking or SurrogateMender()).feed(read_reasoning(delta or {}) + thought)
        if reasoning:
            events.append(ReasoningDelta(reasoning))
        text = mender.feed(content)
        if text:
            events.append(TextDelta(text))
        events.extend(read_tool_calls((delta or {}).get("tool_calls")))
        finish = read_finish(choice.get("finish_reason"))
        if finish is not None:
            events.append(StreamEnd(finish))
    usage = read_usage(data.get("usage"))
    if usage is not None:
        events.append(usage)
    return events


MAX_NAME_CHARS = 200  # a tool's name; the API allows 64


def read_tool_calls(value: Any) -> list[ToolCallDelta]:
    """The tool calls of a delta or a message, each as the piece it is: the index when it is
    a number, the id and the name when they are text, the arguments as JSON text (an object
    some servers send is written as JSON; anything else is malformed). Calls are read as
    servers send them, not as the API says they should: see reply.ToolCalls."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]  # one call sent as an object, not a list of one
    pieces = []
    for call in value:
        if not isinstance(call, dict):
            raise Malformed(f"a tool call that is not an object ({type(call).__name__})")
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        index, ident, name = call.get("index"), call.get("id"), function.get("name")
        arguments = function.get("arguments")
        if isinstance(arguments, dict | list):
            arguments = json.dumps(arguments, ensure_ascii=False)
        elif arguments is not None and not isinstance(arguments, str):
            raise Malformed(f"tool call arguments that are not text ({type(arguments).__name__})")
        pieces.append(ToolCallDelta(
            index=index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None,
            id=ident if isinstance(ident, str) and ident else None,
            name=_repaired(name[:MAX_NAME_CHARS]) if isinstance(name, str) and name else None,
            arguments=_repaired(arguments or "")))
    return pieces


def _repaired(text: str) -> str:
    """Text without lone surrogates (a whole field, so no pair is split)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class Whole(NamedTuple):
    text: str
    finish: str | None
    usage: UsageReport | None
    reasoning: str
    tool_calls: list[ToolCallDelta]


def completion_events(data: Any, unknown: Callable[[str], None] | None = None) -> Whole:
    """A whole (non-streamed) response: its text, finish reason, usage, reasoning and calls."""
    if not isinstance(data, dict):
        raise Malformed(f"a response that is not a JSON object ({type(data).__name__})")
    choice = _first_choice(data)
    if choice is None:
        raise Malformed("a response without any choices")
    message = choice.get("message")
    if message is not None and not isinstance(message, dict):
        raise Malformed(f"a message that is not an object ({type(message).__name__})")
    content, thought = read_content((message or {}).get("content"), unknown)
    mender = SurrogateMender()
    text = mender.feed(content) + mender.close()
    thinking = SurrogateMender()
    reasoning = thinking.feed(read_reasoning(message or {}) + thought) + thinking.close()
    return Whole(text, read_finish(choice.get("finish_reason")), read_usage(data.get("usage")), reasoning,
                 read_tool_calls((message or {}).get("tool_calls")))


class SurrogateMender:
    """Text with lone UTF-16 surrogates replaced by U+FFFD; a pair split across two
    chunks (servers that count in UTF-16) is joined into its character."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text, self._held = self._held + text, ""
        if not text or _SURROGATE.search(text) is None:
            return text
        if "\ud800" <= text[-1] <= "\udbff":  # a high surrogate: its pair may come next
            text, self._held = text[:-1], text[-1]
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")

    def close(self) -> str:
        held, self._held = self._held, ""
        return "\ufffd" if held else ""
