"""Time and size limits a server cannot dodge (issue 19): headers that trickle in, a reply
that stops in the middle of a read, floods of lines that hold no event. Each must end with
its one line and exit code, however the server paces itself; no assertion here is timed."""

from __future__ import annotations

import zlib

from tests.fake_server import Reply
from tests.test_trust_server import saved


def config(tmp_path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


def test_response_headers_sent_one_slow_line_at_a_time_are_bounded_by_timeout(run, endpoint, tmp_path):
    """Each header line comes well within `timeout`; the whole of them used to be waited for."""
    endpoint.queue(Reply(fault="slow_headers", delay=0.1))
    result = run("ask", "--config", config(tmp_path, "timeout = 1\nreply_timeout = 10\n"), "q")
    assert result.code == 5
    assert "did not finish sending its response headers within 1 s" in result.stderr


def test_a_server_that_sends_nothing_at_all_is_still_said_to_send_nothing(run, endpoint, tmp_path):
    endpoint.queue(Reply(fault="hang"))
    result = run("ask", "--config", config(tmp_path, "timeout = 0.5\n"), "q")
    assert result.code == 5 and "sent nothing for 0.5s" in result.stderr


def test_reply_timeout_ends_a_read_that_is_still_waiting(run, endpoint, tmp_path):
    """The reply's deadline passes while a read waits (timeout 30 s): it ends at the deadline,
    not 30 s later, and what came is kept."""
    def then_silence():
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "Begun "}}]}\n\n'
        endpoint.stopping.wait(30)
        yield b""

    endpoint.queue(Reply(body=then_silence))
    result = run("ask", "--config", config(tmp_path, "timeout = 30\nreply_timeout = 1\n"),
                 "--session", "s", "q")
    assert result.code == 5 and "still not complete after 1 s (reply_timeout)" in result.stderr
    assert saved(tmp_path)[1].content == "Begun "


def endless(piece: bytes):
    def produce():
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
        for _ in range(20_000):  # a gigabyte of it, if nothing stops reading
            yield piece
    return produce


def test_a_flood_of_empty_lines_is_stopped_long_before_reply_timeout(run, endpoint, tmp_path):
    endpoint.queue(Reply(body=endless(b"\n" * 50_000)))
    result = run("ask", "--session", "s", "q")
    assert result.code == 6 and "100,000 lines without a single event" in result.stderr
    assert saved(tmp_path)[1].content == "Hi"


def test_a_flood_of_comment_lines_is_stopped_too(run, endpoint, tmp_path):
    endpoint.queue(Reply(body=endless(b": ping\n" * 10_000)))
    result = run("ask", "q")
    assert result.code == 6 and "lines without a single event" in result.stderr


def test_a_megabyte_of_gzip_that_expands_to_a_gigabyte_of_newlines(run, endpoint, tmp_path):
    first = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'

    def bomb():
        stream = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
        yield stream.compress(first)
        block = b"\n" * 1_000_000
        for _ in range(1000):
            out = stream.compress(block)
            if out:
                yield out
        yield stream.flush()

    endpoint.queue(Reply(body=bomb, headers={"Content-Encoding": "gzip"}))
    result = run("ask", "q")
    assert result.code == 6 and "without a single event" in result.stderr
