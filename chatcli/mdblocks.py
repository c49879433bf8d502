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
from collections.abc import Iterator

_FENCE = re.compile(r"^ *(?P<marker>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_LIST_ITEM = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])(\s|$)")


class BlockSplitter:
    """Feed text in any chunks; get back finished blocks, oldest first.

    Each feed costs time in proportion to the new text, however long the open
    block or its unfinished line has grown (a 4 MB paragraph with no newline).
    """

    def __init__(self) -> None:
        self._pieces: list[str] = []  # the line still being received, as it came
        self._lines: list[str] = []  # the open block's complete lines
        self._fence: str | None = None  # the marker of the open fenced code block
        self._fence_is_block = False  # the fence is the block (not inside a list)
        self._in_list = False
        self._after_blank = False

    @property
    def open_text(self) -> str:
        """The open block as received so far, including a partial last line."""
        partial = "".join(self._pieces)
        return "\n".join(self._lines + ([partial] if partial else []))

    def open_tail(self, limit: int) -> tuple[str, bool]:
        """The end of the open block: all of it when it holds at most 2 * `limit` characters,
        else its last `limit` to 2 * `limit`, starting at a line's start where there is one
        (after a space in one enormous line); and whether anything was left out. Costs
        about `limit`, however long the block has grown."""
        want = 2 * limit
        taken: list[str] = []
        size = 0
        for element in self._backwards():
            if size + len(element) > want:
                taken.append(element[len(element) - (want - size):])
                break
            taken.append(element)
            size += len(element)
        else:
            return "".join(reversed(taken)), False
        text = "".join(reversed(taken))
        start = text.find("\n", 0, len(text) - limit) + 1 or text.find(" ", 0, len(text) - limit) + 1
        return text[start:], True

    def _backwards(self) -> Iterator[str]:
        """The open block's text in pieces, last first (what open_text joins)."""
        yield from reversed(self._pieces)
        for number, line in enumerate(reversed(self._lines)):
            if number or self._pieces:
                yield "\n"
            yield line

    @property
    def open_fence(self) -> str | None:
        """The fence marker when the open block is a fenced code block still being received."""
        return self._fence if self._fence_is_block else None

    @property
    def open_fence_line(self) -> str:
        """The line that opened the open fenced code block (its info string names the language)."""
        return self._lines[0] if self.open_fence and self._lines else ""

    def feed(self, text: str) -> list[str]:
        if "\n" not in text:
            if text:
                self._pieces.append(text)
            return []
        lines = ("".join(self._pieces) + text).split("\n")
        last = lines.pop()
        self._pieces = [last] if last else []
        done: list[str] = []
        for line in lines:
            done += self._line(line.rstrip("\r"))
        return done

    def close(self) -> list[str]:
        """End of the reply: the open block, and a partial line, are finished too."""
        partial = "".join(self._pieces)
        done = self._line(partial) if partial else []
        self._pieces = []
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


# A live view of an unfinished block: what Markdown would show raw only because the
# rest has not arrived yet (`**bo`, an open `code span`, a lone `#`) is completed or
# held back, so the open block is always seen rendered, never as markers.
_RUN = re.compile(r"`+|\*+|_+|~~+")
_MARKER_LINE = re.compile(r"^ {0,3}(#{1,6}|`{1,2}|~{1,2}|[-*+]|\d{1,9}[.)]?)$")
_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def live_markdown(text: str, *, cut_start: bool = False) -> str:
    """`text` (an unfinished block) as it may be shown live: emphasis and code spans that are
    still open are closed, a delimiter or marker line that is still arriving is held back,
    and, when the start of the block was left out (`cut_start`), closers whose openers
    went with it are dropped."""
    head, newline, last = text.rpartition("\n")
    if _MARKER_LINE.match(last):
        text = head  # "#", "``", "-": what the line will be is not known yet
    elif not newline and _MARKER_LINE.match(text):
        return ""
    out: list[str] = []
    opened: list[str] = []
    position = 0
    for match in _RUN.finditer(text):
        if match.start() < position:
            continue  # inside a code span already passed over
        run = match.group()
        out.append(text[position:match.start()])
        position = match.end()
        if match.end() == len(text):
            break  # a run still arriving: "**" or "*" or "`" at the very end is held back
        if run[0] == "`":
            close = re.compile(rf"(?<!`){run}(?!`)").search(text, match.end())
            if close is None:
                out.append(run + text[match.end():].rstrip() + run)
                position = len(text)
                break
            out.append(text[match.start():close.end()])
            position = close.end()
            continue
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end()]
        opens = not after.isspace() and (after not in _PUNCT or before.isspace() or before in _PUNCT)
        closes = not before.isspace() and (before not in _PUNCT or after.isspace() or after in _PUNCT)
        if run[0] == "_" and before.isalnum() and after.isalnum():
            opens = closes = False  # snake_case is not emphasis
        if closes and run in opened:
            while opened and opened.pop() != run:
                pass
        elif opens:
            opened.append(run)
        elif closes and cut_start:
            continue  # its opener was in the part left out
        out.append(run)
    out.append(text[position:])
    shown = "".join(out).rstrip()
    return shown + "".join(reversed(opened)) if shown else ""


_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def hard_breaks(block: str) -> str:
    """A block with each single newline inside its text made a line break, as chat
    interfaces show replies (Markdown would join the lines into one). Code, tables and
    the structure of lists, headings and fences are left as they are."""
    lines = block.split("\n")
    if _opens_fence(lines[0]) or (len(lines) > 1 and _TABLE_DELIMITER.match(lines[1])):
        return block
    out = []
    fence: str | None = None
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if fence is not None:
            fence = None if _closes(line, fence) else fence
        elif marker := _opens_fence(line):
            fence = marker
        elif line.strip() and following.strip() and not _starts_structure(following) \
                and not line.endswith(("  ", "\\")):
            line += "  "  # a hard line break in CommonMark
        out.append(line)
    return "\n".join(out)


def _starts_structure(line: str) -> bool:
    """A line that begins something of its own: a list item, a heading, a fence, a table row."""
    return bool(_LIST_ITEM.match(line) or _HEADING.match(line) or _opens_fence(line)
                or line.lstrip().startswith("|"))


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
