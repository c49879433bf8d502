"""Server-sent events from raw bytes, with a bound on how much one event may hold.

A hostile or broken server can send a line that never ends; the decoder
refuses a line or an event larger than `limit` instead of growing without
end, and a flood of lines with no event in them (blank lines, comments: a
megabyte of gzip can expand to a gigabyte of newlines) is stopped after
MAX_QUIET_LINES lines or twice `limit` in bytes. Lines end in LF, CRLF or CR
(the SSE standard allows all three), and a CRLF split across two reads is one
line end. Each `feed` costs time in
proportion to the new bytes, however long the pending line. Standard library
only.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")
FIELDS = frozenset({"data", "event", "id", "retry"})


class TooLarge(ValueError):
    """A line or an event passed the decoder's limit."""


class NotEventStream(ValueError):
    """The body does not start like an event stream (an HTML page, plain text)."""


class NoEvents(ValueError):
    """Too many lines or bytes without a single event (a flood of blank or comment lines)."""


# A stream that sends this many lines, or twice the event limit in bytes, without one event
# has nothing to say: keep-alive comments come every few seconds, not by the thousand.
MAX_QUIET_LINES = 100_000


class SSEDecoder:
    """Feed bytes as they arrive; get back the complete events as (name, data) pairs."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._data: list[str] = []
        self._size = 0
        self._name = ""
        self._lines_seen = 0
        self._quiet_lines = 0  # lines, and bytes, since the last event
        self._quiet_bytes = 0

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._quiet_bytes += len(chunk)
        if self._quiet_bytes > 2 * self.limit:
            raise NoEvents(f"{_mb(self._quiet_bytes)} without a single event")
        buffer = self._buffer
        # What is buffered holds no line end (but perhaps a final CR): search only the new bytes.
        position = max(len(buffer) - 1, 0)
        buffer += chunk
        events: list[tuple[str, str]] = []
        start = 0
        while (match := _LINE_END.search(buffer, position)) is not None:
            if match.group() == b"\r" and match.end() == len(buffer):
                break  # may be the first half of a CRLF: wait for the next byte
            event = self._line(bytes(buffer[start:match.start()]))
            start = position = match.end()
            if event is not None:
                events.append(event)
        del buffer[:start]
        if len(buffer) > self.limit:
            raise TooLarge(f"a line of more than {_mb(self.limit)} without an end")
        return events

    def close(self) -> list[tuple[str, str]]:
        """The end of the body: a last line and an event without their blank line count too."""
        events = []
        if self._buffer:
            line, self._buffer = bytes(self._buffer.rstrip(b"\r")), bytearray()
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._dispatch()
        return [*events, event] if event is not None else events

    def _line(self, line: bytes) -> tuple[str, str] | None:
        self._quiet_lines += 1
        if self._quiet_lines > MAX_QUIET_LINES:
            raise NoEvents(f"{self._quiet_lines - 1:,} lines without a single event")
        if not line:
            return self._dispatch()
        text = line.decode("utf-8", errors="replace")
        name, colon, value = text.partition(":")
        self._lines_seen += 1
        if name and name not in FIELDS:
            if self._lines_seen == 1:
                raise NotEventStream(text)
            return None  # unknown fields are ignored, as the standard says
        value = value.removeprefix(" ") if colon else ""
        if name == "data":
            self._size += len(value)
            if self._size > self.limit:
                raise TooLarge(f"an event of more than {_mb(self.limit)}")
            self._data.append(value)
        elif name == "event":
            self._name = value
        return None

    def _dispatch(self) -> tuple[str, str] | None:
        if not self._data:
            self._name = ""
            return None
        event = (self._name, "\n".join(self._data))
        self._data, self._size, self._name = [], 0, ""
        self._quiet_lines = self._quiet_bytes = 0
        return event


def _mb(size: int) -> str:
    return f"{size / 1_000_000:g} MB"
