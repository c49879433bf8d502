"""Thinking sent inline: `<think>…</think>` at the start of a reply's content, as Ollama,
llama.cpp without a reasoning parser and the distilled R1 models send it.

`ThinkSplitter` turns content, in whatever pieces it arrives, into reasoning and
answer events: the tags may be split across chunks, the think block may be
empty, and text before the opening tag may only be whitespace. Pure (standard
library only), like chunks.py.
"""

from __future__ import annotations

from chatcli.events import ReasoningDelta, TextDelta

OPEN, CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Feed content as it arrives; get back what is known to be reasoning or answer.

    Before anything else, leading whitespace and a possible start of `<think>` are
    held back; inside a think block, a possible start of `</think>` is. Content that
    does not open with `<think>` is the answer, unchanged."""

    def __init__(self) -> None:
        self._state = "start"  # start -> thinking -> answer, or start -> answer
        self._held = ""
        self._gap = True  # the answer's leading newlines after </think> are dropped
        self._fresh = True  # and so are the thinking's, after <think>

    def feed(self, text: str) -> list[TextDelta | ReasoningDelta]:
        self._held += text
        out: list[TextDelta | ReasoningDelta] = []
        while self._held:
            if self._state == "start":
                stripped = self._held.lstrip()
                if stripped.startswith(OPEN):
                    self._state, self._held = "thinking", stripped[len(OPEN):]
                elif OPEN.startswith(stripped):  # whitespace, or part of the tag: wait
                    return out
                else:
                    self._state, self._gap = "answer", False
            elif self._state == "thinking":
                if self._fresh:
                    self._held = self._held.lstrip("\n")
                    self._fresh = not self._held
                    if not self._held:
                        return out
                end = self._held.find(CLOSE)
                if end >= 0:
                    if self._held[:end]:
                        out.append(ReasoningDelta(self._held[:end]))
                    self._state, self._held = "answer", self._held[end + len(CLOSE):]
                    continue
                keep = _partial_suffix(self._held, CLOSE)
                if len(self._held) > keep:
                    out.append(ReasoningDelta(self._held[: len(self._held) - keep]))
                    self._held = self._held[len(self._held) - keep:]
                return out
            else:
                answer, self._held = self._held, ""
                if self._gap:
                    answer = answer.lstrip("\n")
                    self._gap = not answer
                if answer:
                    out.append(TextDelta(answer))
        return out

    def close(self) -> list[TextDelta | ReasoningDelta]:
        """The end of the content: what was held back is what it looked like."""
        held, self._held = self._held, ""
        if not held:
            return []
        if self._state == "thinking":
            return [ReasoningDelta(held)]  # a think block cut off: all of it was thinking
        if self._state == "start":
            return [TextDelta(held)] if held.strip() else []
        return [TextDelta(held)]


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def unopened_think(content: str) -> tuple[str, str]:
    """A whole content's (reasoning, answer) when its template swallowed the opening tag: it
    starts with the thinking and only `</think>` shows (some R1 distills' templates put
    `<think>` in the prompt). The stream showed it as it came; what is kept and sent again
    is the answer alone. Content with no such tag is all answer."""
    end = content.find(CLOSE)
    after = content[end + len(CLOSE):end + len(CLOSE) + 1]
    # As R1 writes it: the tag on a line of its own. An answer that mentions </think> in a
    # sentence, or after <think>, is an answer.
    if end < 0 or OPEN in content[:end] or content[end - 1:end] not in ("\n", "") or after not in ("\n", ""):
        return "", content
    return content[:end].strip("\n"), content[end + len(CLOSE):].lstrip("\n")


def split_think(content: str) -> tuple[str, str]:
    """A whole content's (reasoning, answer)."""
    splitter = ThinkSplitter()
    events = splitter.feed(content) + splitter.close()
    return ("".join(e.text for e in events if isinstance(e, ReasoningDelta)),
            "".join(e.text for e in events if isinstance(e, TextDelta)))
