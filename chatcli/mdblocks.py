"""Split streamed Markdown into finished blocks, so each is rendered exactly once.

Text arrives in arbitrary chunks. A block is finished when nothing that comes
later can change how it renders: a paragraph at the blank line after it (once
the next line shows it is not the continuation of a list), a fenced code
block at its closing fence, a heading at the end of its line. What is not
finished yet is the open block, which the renderer shows live and redraws.
Standard library only; the renderer in render.py does the drawing.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ *(?P<marker>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_LIST_ITEM = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])(\s|$)")


class BlockSplitter:
    """Feed text in any chunks; get back finished blocks, oldest first."""

    def __init__(self) -> None:
        self._partial = ""  # the line still being received
        self._lines: list[str] = []  # the open block's complete lines
        self._fence: str | None = None  # the marker of the open fenced code block
        self._fence_is_block = False  # the fence is the block (not inside a list)
        self._in_list = False
        self._after_blank = False

    @property
    def open_text(self) -> str:
        """The open block as received so far, including a partial last line."""
        lines = self._lines + ([self._partial] if self._partial else [])
        return "\n".join(lines)

    @property
    def open_fence(self) -> str | None:
        """The fence marker when the open block is a fenced code block still being received."""
        return self._fence if self._fence_is_block else None

    def feed(self, text: str) -> list[str]:
        done: list[str] = []
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            done += self._line(line.rstrip("\r"))
        return done

    def close(self) -> list[str]:
        """End of the reply: the open block, and a partial line, are finished too."""
        done = self._line(self._partial) if self._partial else []
        self._partial = ""
        return [*done, *self._flush()]

    def _line(self, line: str) -> list[str]:
        if self._fence is not None:
            self._lines.append(line)
            if _closes(line, self._fence):
                self._fence = None
                if self._fence_is_block:
                    return self._flush()
            return []
        if not line.strip():
            if not self._in_list:
                return self._flush()  # a blank line ends anything but a list
            self._lines.append(line)
            self._after_blank = True
            return []
        done: list[str] = []
        if self._after_blank and not _continues_list(line):
            done = self._flush()
        self._after_blank = False
        fence = _opens_fence(line)
        nested = self._in_list and bool(self._lines) and line.startswith((" ", "\t"))
        if _HEADING.match(line) and not nested:
            return [*done, *self._flush(), line]
        if fence and not nested:
            done += self._flush()
            self._fence, self._fence_is_block = fence, True
        elif fence:
            self._fence, self._fence_is_block = fence, False
        if not self._lines:
            self._in_list = bool(_LIST_ITEM.match(line))
        self._lines.append(line)
        return done

    def _flush(self) -> list[str]:
        while self._lines and not self._lines[-1].strip():
            self._lines.pop()
        block = "\n".join(self._lines)
        self._lines = []
        self._in_list = self._after_blank = self._fence_is_block = False
        self._fence = None
        return [block] if block else []


def _opens_fence(line: str) -> str | None:
    """The fence marker if `line` opens a fenced code block (a backtick fence's
    info string cannot hold a backtick, which rules out inline ```code```)."""
    match = _FENCE.match(line.lstrip(" \t") if line.startswith("\t") else line)
    if not match or (match["marker"][0] == "`" and "`" in match["info"]):
        return None
    return match["marker"]


def _closes(line: str, marker: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(marker) and not stripped.strip(marker[0])


def _continues_list(line: str) -> bool:
    return line.startswith((" ", "\t")) or bool(_LIST_ITEM.match(line))


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks in `text`, in order, without the fences.

    A fence indented inside a list item has that indentation removed from its
    lines, so the code comes out as it would be typed.
    """
    blocks: list[str] = []
    marker: str | None = None
    indent = 0
    lines: list[str] = []
    for line in text.split("\n"):
        if marker is None:
            marker = _opens_fence(line)
            indent = len(line) - len(line.lstrip(" "))
            lines = []
        elif _closes(line, marker):
            blocks.append("\n".join(lines))
            marker = None
        else:
            cut = min(indent, len(line) - len(line.lstrip(" ")))
            lines.append(line[cut:])
    if marker is not None:  # a reply cut off inside a code block still has its code
        blocks.append("\n".join(lines))
    return blocks
