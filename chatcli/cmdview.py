"""A suggested shell command as the user must see it before it may run: whole, exact, checked.

What runs is exactly what was shown, so the view hides nothing and changes nothing:
each line of the command is wrapped by us, character by character at the screen's width
(a run of spaces keeps its width, it never folds into a line break), a command of
several lines is numbered with its blank lines marked, and its height on this screen is
known before it is drawn, so one taller than the screen is refused instead of scrolled.
Control and Unicode format characters (bidi controls, zero-width and tag characters,
separators) are refused outright; non-ASCII characters are allowed (file names in
Chinese), but each is marked on screen and named below the command (`а U+0430 CYRILLIC
SMALL LETTER A`), so a homoglyph in a host name is seen. Pure: render.py draws it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from chatcli.textsafe import describe_hidden, hidden_characters, non_ascii, shown

GUTTER_CONTINUED = "┆"
GUTTER_LINE = "│"


@dataclass(frozen=True)
class Row:
    """One row of the screen: `text` is what it shows, the part of the command's line `line`
    (counted from 1) that starts at `start`; `first` when the line starts on this row."""

    line: int
    start: int
    text: str
    first: bool = True
    blank: bool = False  # the line is empty or only spaces


def refusal(command: str) -> str | None:
    """Why `command` may not be offered to run at all, or None."""
    for number, line in enumerate(command.split("\n"), 1):
        for column, char in enumerate(line, 1):
            if unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):  # a tab too: its width varies
                return (f"it holds the control character {shown(char)} (line {number}, column {column}): "
                        f"{shown(command)[:200]}")
    found = hidden_characters(command)
    if found:
        return (f"it holds invisible or direction-changing characters ({describe_hidden(found)}), which "
                "can make a terminal show something other than what would run")
    return None


def char_width(char: str) -> int:
    """The columns a character takes on a terminal (East Asian wide and full-width: 2)."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def rows(command: str, width: int) -> list[Row]:
    """The screen rows of `command` at `width` columns of text (the gutter not included)."""
    width = max(width, 8)
    out: list[Row] = []
    for number, line in enumerate(command.split("\n"), 1):
        start, used = 0, 0
        for index, char in enumerate(line):
            size = char_width(char)
            if used + size > width:
                out.append(Row(number, start, line[start:index], first=start == 0))
                start, used = index, 0
            used += size
        out.append(Row(number, start, line[start:], first=start == 0, blank=not line.strip()))
    return out


@dataclass(frozen=True)
class View:
    """What the screen shows of a command: a heading (several lines), its rows behind a gutter
    (several lines, or one line that wraps), and the names of its non-ASCII characters."""

    heading: str | None
    rows: list[Row]
    gutter: int  # columns of the line-number gutter, 0 for a short one-line command
    notes: list[str]
    width: int

    @property
    def height(self) -> int:
        """Rows on the screen, the notes' wrapped rows included."""
        notes = sum(-(-sum(map(char_width, note)) // max(self.width, 1)) for note in self.notes)
        return (1 if self.heading else 0) + len(self.rows) + notes


def view(command: str, width: int) -> View:
    """The command laid out for a screen `width` columns wide."""
    lines = command.count("\n") + 1
    plain = rows(command, width)
    gutter = 0
    if lines > 1 or len(plain) > 1:
        gutter = len(str(lines)) + 3  # "12 │ "
        plain = rows(command, width - gutter)
    heading = f"a command of {lines} lines (numbered; blank lines marked):" if lines > 1 else None
    strange = non_ascii(command)
    notes = [f"non-ASCII characters (marked): {', '.join(strange)}"] if strange else []
    return View(heading, plain, gutter, notes, width)


def too_tall(shape: View, height: int, *, reserved: int = 2) -> str | None:
    """Why the command cannot be shown whole on a screen `height` rows high (`reserved` rows
    kept for the menu), or None."""
    room = height - reserved
    if shape.height <= room:
        return None
    lines = shape.rows[-1].line if shape.rows else 0
    size = f"{lines} lines, " if lines > 1 else ""
    return (f"the suggested command is too tall to be shown whole ({size}{shape.height} rows on a screen "
            f"of {height}), so it is not offered to run")
