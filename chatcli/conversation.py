"""Pure values and policy: messages, token estimates, the rolling window.

Standard library only; no I/O, no clock, no environment. Everything here is a
plain function over plain values so the rules that decide what is sent can be
tested exhaustively (tests/test_conversation.py uses hypothesis).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, get_args

Role = Literal["system", "user", "assistant"]
SYSTEM: Role = "system"
USER: Role = "user"
ASSISTANT: Role = "assistant"

# Every message costs a few tokens of framing (role, separators) on top of its
# text, and the reply is primed with a few more. The figures are what OpenAI's
# chat format uses; other servers are close, and erring high is the point.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3

# The API document allows at most 20 history messages in one request.
DEFAULT_MAX_MESSAGES = 20
# Room kept free for the reply when the user sets no max_tokens.
DEFAULT_REPLY_RESERVE = 4096

# Han, kana, Hangul, CJK punctuation and full-width forms: tokenizers spend
# about one token (often more) on each of these characters.
_CJK = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff"
    "\u3200-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff"
    "\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff"
)
_PIECES = re.compile(
    rf"(?P<cjk>[{_CJK}])"
    r"|(?P<ascii>[A-Za-z]+)"
    r"|(?P<digits>[0-9]+)"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def estimate_tokens(text: str) -> int:
    """Estimate the tokens `text` costs, erring high, with no tokenizer tables.

    English words cost about one token per four letters, digits one per three,
    other alphabets one per two letters, each CJK character one, each
    punctuation mark one and each other symbol (emoji) two. Real tokenizers
    merge more than this, so the figure is an upper estimate for ordinary text.
    """
    total = 0
    for match in _PIECES.finditer(text):
        kind = match.lastgroup
        size = match.end() - match.start()
        if kind == "cjk":
            total += 1
        elif kind == "ascii":
            total += math.ceil(size / 4)
        elif kind == "digits":
            total += math.ceil(size / 3)
        elif kind == "word":
            total += math.ceil(size / 2)
        elif kind == "space":
            # A single space merges into the next word; runs and newlines do not.
            total += 0 if match.group() == " " else 1
        else:
            total += 1 if match.group().isascii() else 2
    return total


# Text takes at most about this many bytes per token (UTF-8 CJK: 3 bytes and one token;
# English: about 4 bytes a token): a file or piped text of more bytes than this many
# times the context window cannot fit, and is refused without being read whole.
BYTES_PER_TOKEN = 8

# Images cost tokens by the tile rule of OpenAI's vision guide: "low" detail a flat 85;
# otherwise the image is scaled to fit 2048 x 2048, then its shortest side to 768, and
# each 512-pixel tile costs 170 more. Other servers count differently; this errs high.
IMAGE_BASE_TOKENS = 85
IMAGE_TILE_TOKENS = 170
ImageDetail = Literal["low", "high", "auto"]
IMAGE_DETAILS: tuple[ImageDetail, ...] = get_args(ImageDetail)
STDIN = "stdin"  # the name of a part that was piped in


def image_tokens(width: int | None, height: int | None, detail: ImageDetail | None = None) -> int:
    """What an image costs; with its size unknown (a URL), the most an image can cost."""
    if detail == "low":
        return IMAGE_BASE_TOKENS
    w, h = (width, height) if width and height else (768, 2048)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = math.ceil(w * scale), math.ceil(h * scale)
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = math.ceil(w * scale), math.ceil(h * scale)
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * math.ceil(w / 512) * math.ceil(h / 512)


def fence_for(text: str) -> str:
    """A code fence longer than any run of backticks inside `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


@dataclass(frozen=True)
class Part:
    """Something sent with a message besides what was typed: a text file or piped text
    (`text`), or an image (`image`: its bytes, or an http(s) URL that is passed on)."""

    kind: Literal["text", "image"]
    name: str  # the path as given, "stdin", or an image URL
    text: str = ""
    language: str = ""  # a text part's fence language, from its extension
    data: bytes = field(default=b"", repr=False)  # an image's bytes (none for a URL)
    media_type: str = ""  # an image's type: image/png, image/jpeg, image/gif, image/webp
    url: str = ""  # an image given as a URL
    width: int | None = None
    height: int | None = None
    detail: ImageDetail | None = None  # None: the server's default
    digest: str = field(default="", compare=False)  # sha256 of the content: kept once in the store

    def __post_init__(self) -> None:
        if not self.digest and not self.url:
            import hashlib  # here, not at the top: most commands never attach anything

            content = self.data if self.kind == "image" else self.text.encode("utf-8", "surrogatepass")
            object.__setattr__(self, "digest", hashlib.sha256(content).hexdigest())

    @cached_property  # the bottom bar asks at every redraw; a file may be long
    def tokens(self) -> int:
        if self.kind == "image":
            return image_tokens(self.width, self.height, self.detail)
        return estimate_tokens(self.body())

    def body(self) -> str:
        """A text part as the model reads it: its name as a heading, then the text fenced."""
        fence = fence_for(self.text)
        return f"### {self.name}\n\n{fence}{self.language}\n{self.text.rstrip(chr(10))}\n{fence}"

    def to_api(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": self.body()}
        image: dict[str, str] = {"url": self.url or self.data_url()}
        if self.detail:
            image["detail"] = self.detail
        return {"type": "image_url", "image_url": image}

    def data_url(self) -> str:
        import base64

        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def label(self) -> str:
        """What a listing calls it: `notes.txt (12 lines)`, `cat.png (PNG, 640x480)`."""
        if self.kind == "text":
            lines = self.text.count("\n") + (0 if self.text.endswith("\n") or not self.text else 1)
            return f"{self.name} ({lines} line{'' if lines == 1 else 's'})"
        if self.url:
            return f"{self.name} (image URL)"
        kind = self.media_type.removeprefix("image/").upper()
        size = f", {self.width}x{self.height}" if self.width and self.height else ""
        return f"{self.name} ({kind}{size})"


ToolStatus = Literal["ok", "error", "refused", "interrupted", "not run"]
TOOL = "tool"  # the role of a tool's result on the wire (kept with its call here, never apart)


@dataclass(frozen=True)
class ToolResult:
    """What came of one tool call: `content` is what the model reads (cut to the budget),
    `output` the whole output when that was cut (else empty), `status` how it went."""

    content: str
    status: ToolStatus = "ok"
    output: str = ""
    seconds: float | None = None

    @property
    def whole(self) -> str:
        return self.output or self.content


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: its id (made up when the server sent none), the tool's name,
    the arguments as the model wrote them (JSON text, maybe not valid), and, once it has
    one, its result. A call and its result are one value, so they are kept, trimmed, saved
    and sent together."""

    id: str
    name: str
    arguments: str
    result: ToolResult | None = None

    @property
    def tokens(self) -> int:
        size = estimate_tokens(self.name) + estimate_tokens(self.arguments) + MESSAGE_OVERHEAD
        return size + (estimate_tokens(self.result.content) + MESSAGE_OVERHEAD if self.result else 0)

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments or "{}"}}

    def result_to_api(self) -> dict[str, Any]:
        content = self.result.content if self.result else NOT_RUN
        return {"role": TOOL, "tool_call_id": self.id, "content": content}


NOT_RUN = "not run: chatcli stopped before running this call"


@dataclass(frozen=True)
class Message:
    """One message of a conversation. `tokens` is its size including framing.

    Give `tokens` when the server reported it (an assistant reply's
    completion_tokens); otherwise it is estimated, and `estimated` says so.
    """

    role: Role
    content: str
    tokens: int = -1
    pinned: bool = False
    finish_reason: str | None = None
    estimated: bool = field(default=False, compare=False)
    id: int | None = field(default=None, compare=False)  # its row in the store, once saved
    reasoning: str = field(default="", compare=False)  # the model's thinking: kept, never sent
    parts: tuple[Part, ...] = ()  # files, piped text and images sent before the text
    outcome: str | None = field(default=None, compare=False)  # a suggested command: run, copied, not run
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls, each with its result once run

    def __post_init__(self) -> None:
        if self.tokens < 0:
            size = estimate_tokens(self.content) + sum(part.tokens for part in self.parts)
            size += sum(call.tokens for call in self.tool_calls)
            object.__setattr__(self, "tokens", size + MESSAGE_OVERHEAD)
            object.__setattr__(self, "estimated", True)

    def to_api(self) -> dict[str, Any]:
        """The message as the chat-completions API takes it: its content a string, or, when
        an image is attached, a list of parts. Text attachments alone are joined into the
        string (many servers, DeepSeek's among them, take no list), attachments first, so
        "summarise this" reads as an instruction about what is above it."""
        if not self.parts:
            return {"role": self.role, "content": self.content}
        if all(part.kind == "text" for part in self.parts):
            texts = [part.body() for part in self.parts] + ([self.content] if self.content else [])
            return {"role": self.role, "content": "\n\n".join(texts)}
        return {"role": self.role, "content": self.api_parts()}

    def api_messages(self) -> list[dict[str, Any]]:
        """The message as the API takes it, with its tool calls: the assistant's message with
        its calls, then each call's result as a `tool` message (a call never runs without
        one). The thinking goes back only here, inside a tool exchange: DeepSeek's and Kimi's
        thinking modes refuse a follow-up without it; elsewhere it is never sent again."""
        if not self.tool_calls:
            return [self.to_api()]
        first: dict[str, Any] = {"role": self.role, "content": self.content or None,
                                 "tool_calls": [call.to_api() for call in self.tool_calls]}
        if self.reasoning:
            first["reasoning_content"] = self.reasoning
        return [first, *(call.result_to_api() for call in self.tool_calls)]

    def with_result(self, index: int, result: ToolResult) -> Message:
        """This message with call `index` answered (its size estimated again)."""
        calls = list(self.tool_calls)
        calls[index] = replace(calls[index], result=result)
        return replace(self, tool_calls=tuple(calls), tokens=-1)

    def api_parts(self) -> list[dict[str, Any]]:
        """The content as a list of parts (the attachments, then the text), as JSON export
        keeps it whatever is attached."""
        content = [part.to_api() for part in self.parts]
        if self.content or not content:
            content.append({"type": "text", "text": self.content})
        return content


@dataclass(frozen=True)
class Usage:
    """Token usage of one request; `estimated` when the server reported none."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False
    reasoning_tokens: int | None = None  # part of completion_tokens: the thinking

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost(self, price_input: float | None, price_output: float | None) -> float | None:
        """Cost in the currency the prices are given in, per million tokens."""
        if price_input is None and price_output is None:
            return None
        return (
            self.prompt_tokens * (price_input or 0.0)
            + self.completion_tokens * (price_output or 0.0)
        ) / 1_000_000

    def __add__(self, other: Usage) -> Usage:
        reasoning = (None if self.reasoning_tokens is None and other.reasoning_tokens is None else
                     (self.reasoning_tokens or 0) + (other.reasoning_tokens or 0))
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
            reasoning,
        )


@dataclass(frozen=True)
class Window:
    """What one request sends: the system prompt, then the newest turns that fit."""

    messages: tuple[Message, ...]
    dropped: tuple[Message, ...]
    tokens: int
    budget: int
    max_messages: int = DEFAULT_MAX_MESSAGES
    # What made trimming drop turns: the message limit, the token budget, or both.
    limited_by: tuple[Literal["max_messages", "context"], ...] = ()

    @property
    def over_budget(self) -> bool:
        """True when even the irreducible part (system, pinned, newest turn) does not fit."""
        return self.tokens > self.budget

    def to_api(self) -> list[dict[str, Any]]:
        """The messages as the API takes them, never two of the same role in a row.

        A question that got no reply is left out of the window (see `unanswered`); should
        two messages of one role still meet (history written by another program), they
        are sent as one (once, if the second repeats the first), because many servers'
        chat templates reject two user messages in a row."""
        sent: list[dict[str, Any]] = []
        for message in self.messages:
            if message.tool_calls:
                sent.extend(message.api_messages())
                continue
            api = message.to_api()
            if sent and sent[-1]["role"] == api["role"]:
                if api["content"] != sent[-1]["content"]:
                    sent[-1] = {**sent[-1], "content": _joined(sent[-1]["content"], api["content"])}
                continue
            sent.append(api)
        return sent


def _joined(first: str | list[dict[str, Any]], second: str | list[dict[str, Any]]) -> Any:
    """Two contents as one: strings joined by a blank line, else their parts in order."""
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"

    def parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"type": "text", "text": content}] if isinstance(content, str) else content

    return parts(first) + parts(second)


def reply_budget(context_window: int, max_tokens: int | None) -> int:
    """Tokens the request may use: the context window minus the room kept for the reply."""
    reserve = max_tokens if max_tokens else min(DEFAULT_REPLY_RESERVE, context_window // 4)
    return max(context_window - reserve, 0)


def turns(history: Sequence[Message]) -> list[range]:
    """Split history into turns: each starts at a user message and runs to the next.

    Messages before the first user message (a greeting, say) form a turn of their own.
    """
    starts = [i for i, m in enumerate(history) if m.role == USER]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    ends = [*starts[1:], len(history)]
    return [range(s, e) for s, e in zip(starts, ends, strict=True) if e > s]


NO_REPLY = "no reply"  # how a question that got no answer is marked wherever it is shown


def unanswered(history: Sequence[Message], *, last: bool = False) -> set[int]:
    """The questions that got no reply (the request failed, or chatcli was stopped before
    any answer came): a user message followed by another user message, and with `last`, a
    user message that ends the conversation. They stay in the conversation, shown as
    "no reply", and are not sent again with later questions (/retry sends one again)."""
    found = {i for i in range(len(history) - 1)
             if history[i].role == USER and history[i + 1].role == USER}
    if last and history and history[-1].role == USER:
        found.add(len(history) - 1)
    return found


def build_window(
    system: str | None,
    history: Sequence[Message],
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    budget: int,
) -> Window:
    """Choose what to send: the system prompt and the newest turns that fit.

    Whole turns are dropped, oldest first, until the request holds at most
    `max_messages` messages (system prompt included) and at most `budget`
    tokens. The newest turn and pinned turns (a turn with any pinned message)
    are never dropped, so an assistant reply is never sent without its
    question. If what cannot be dropped is still too big, the window says so
    (`over_budget`) and the caller decides. A question that got no reply is not sent
    again with a later one (see `unanswered`).
    """
    head = (Message(SYSTEM, system),) if system else ()
    skipped = unanswered(history)
    history = [m for i, m in enumerate(history) if i not in skipped] if skipped else history
    groups = turns(history)
    count = len(head) + len(history)
    tokens = sum(m.tokens for m in head) + sum(m.tokens for m in history) + REPLY_PRIMING
    dropped: list[int] = []
    limits: set[Literal["max_messages", "context"]] = set()
    for group in groups[:-1]:
        if count <= max_messages and tokens <= budget:
            break
        if any(history[i].pinned for i in group):
            continue
        limits.add("max_messages" if count > max_messages else "context")
        dropped.extend(group)
        count -= len(group)
        tokens -= sum(history[i].tokens for i in group)
    gone = set(dropped)
    kept = [m for i, m in enumerate(history) if i not in gone]
    return Window(
        messages=(*head, *kept),
        dropped=tuple(history[i] for i in dropped),
        tokens=tokens,
        budget=budget,
        max_messages=max_messages,
        limited_by=tuple(sorted(limits, key=["max_messages", "context"].index)),
    )


class TextBuffer:
    """Text that grows by small pieces (a reply, a token at a time), held in memory in
    proportion to its length, not to the number of pieces: each run of pieces is joined into
    one string as it fills, so every character is copied a bounded number of times."""

    RUN = 256  # pieces joined at a time

    def __init__(self, start: str = "") -> None:
        self._joined: list[str] = [start] if start else []
        self._pieces: list[str] = []
        self._length = len(start)

    def add(self, piece: str) -> str:
        """Add `piece`; returns it."""
        self._pieces.append(piece)
        self._length += len(piece)
        if len(self._pieces) >= self.RUN:
            self._joined.append("".join(self._pieces))
            self._pieces = []
        return piece

    def text(self) -> str:
        return "".join(self._joined) + "".join(self._pieces)

    def __len__(self) -> int:
        return self._length


def title_from(message: Message, width: int = 60) -> str:
    """A conversation's title from its first message, without asking the model: its first
    line of text, else what is attached (the first part's name, or its first line)."""
    text = message.content
    if not text.strip() and message.parts:
        first = message.parts[0]
        text = first.text if first.name == STDIN else first.name
    line = next((line for line in text.split("\n") if line.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def user_message(question: str | None, parts: Sequence[Part] = ()) -> Message:
    """The user's message: what was typed, and what is attached (files, images, piped text).

    Piped text alone, with no question and nothing else attached, is the question itself
    (`echo "translate: 你好" | chatcli`)."""
    text = question or ""
    if not text.strip() and len(parts) == 1 and parts[0].name == STDIN and parts[0].kind == "text":
        return Message(USER, parts[0].text.strip("\n"))
    return Message(USER, text, parts=tuple(parts))


@dataclass
class Conversation:
    """A system prompt and the messages so far. The one mutable value here."""

    system: str | None = None
    messages: list[Message] = field(default_factory=list)

    def window(self, *, max_messages: int, budget: int) -> Window:
        return build_window(self.system, self.messages, max_messages=max_messages, budget=budget)
