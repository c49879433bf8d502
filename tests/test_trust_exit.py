"""`chatcli ask` ends when the reply has ended, whatever the server does with the connection.

A reply is whole once its finish_reason has come (and the usage, when it follows). A server
or proxy that then holds the connection open, without `[DONE]` and without closing it, used
to keep `ask` waiting after the whole answer was printed: up to `timeout`. Each run here has
a watchdog: a run that does not end in time is made to dump every thread's stack
(faulthandler, on SIGABRT), and the dump is the failure message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest

from tests.conftest import TEST_KEY
from tests.fake_server import Reply
from tests.terminal import BIN

HOLD_SECONDS = 120  # the server keeps the connection open this long after the reply
WATCHDOG_SECONDS = 60  # far beyond a loaded machine's ask, far below the hold


def chunk(content=None, *, finish=None, usage=None) -> bytes:
    data = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "delta": {"content": content} if content else {},
                         "finish_reason": finish}]}
    if usage is not None:
        data["usage"] = usage
    return f"data: {json.dumps(data)}\n\n".encode()


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def holding(*pieces: bytes, released: threading.Event) -> Reply:
    """The pieces, then the connection held open (no [DONE], no close) until `released`."""
    def body():
        yield from pieces
        released.wait(HOLD_SECONDS)
    return Reply(body=body)


def ask(server, tmp_path, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "c.toml"
    config.write_text("timeout = 300\nreply_timeout = 0\n")  # no timeout could end the wait
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": TEST_KEY,
           "CHATCLI_MODEL": "test-model", "CHATCLI_DATA_DIR": str(tmp_path / "data"),
           "CHATCLI_CONFIG": str(config), "PYTHONFAULTHANDLER": "1"}
    child = subprocess.Popen([str(BIN), "ask", *args], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=WATCHDOG_SECONDS)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        out, err = child.communicate()
        pytest.fail(f"ask did not end after its reply; printed {out!r}; its threads:\n{err[-6000:]}")
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


@pytest.fixture
def released():
    event = threading.Event()
    yield event
    event.set()  # let the server's handler go


def test_ask_ends_when_the_reply_and_its_usage_have_come_though_the_stream_never_ends(
        server, tmp_path, released):
    server.queue(holding(chunk("The answer."), chunk(finish="stop"), chunk(usage=USAGE), released=released))
    done = ask(server, tmp_path, "--usage", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The answer.\n"
    assert "tokens: 7 prompt + 3 completion = 10" in done.stderr  # the server's figures, not ~


def test_ask_ends_soon_after_the_finish_when_no_usage_follows(server, tmp_path, released):
    server.queue(holding(chunk("Only text."), chunk(finish="stop"), released=released))
    done = ask(server, tmp_path, "--usage", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Only text.\n"
    assert "~" in done.stderr  # usage estimated, said as such


def test_an_error_right_after_the_finish_is_still_read(server, tmp_path, released):
    error = {"error": {"message": "Provider returned error", "code": 502},
             "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}
    server.queue(holding(chunk("Cut"), chunk(finish="length"), f"data: {json.dumps(error)}\n\n".encode(),
                         released=released))
    done = ask(server, tmp_path, "hi")
    assert done.returncode == 6 and "Provider returned error" in done.stderr


def test_running_figures_in_every_chunk_then_the_whole_ones_after_the_finish(server, tmp_path, released):
    running = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
    server.queue(holding(chunk("a", usage=running), chunk("b", usage=running), chunk(finish="stop"),
                         chunk(usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}),
                         released=released))
    done = ask(server, tmp_path, "--usage", "hi")
    assert done.returncode == 0 and done.stdout == "ab\n"
    assert "tokens: 7 prompt + 2 completion = 9" in done.stderr


def test_many_short_asks_in_a_row_each_end_after_its_reply(server, tmp_path, released):
    """The stress loop: short replies of every ending a server gives (with [DONE], closed,
    held open with and without usage), one after another, each under the watchdog."""
    endings = [
        lambda n: Reply(text=f"reply {n}", chunk_chars=3),
        lambda n: Reply(text=f"reply {n}", chunk_chars=3, usage=False),
        lambda n: holding(chunk(f"reply {n}"), chunk(finish="stop"), chunk(usage=USAGE), released=released),
        lambda n: holding(chunk(f"reply {n}"), chunk(finish="stop", usage=USAGE), released=released),
    ]
    for n in range(24):
        server.queue(endings[n % len(endings)](n))
        done = ask(server, tmp_path, f"question {n}")
        assert done.returncode == 0, (n, done.stderr)
        assert done.stdout == f"reply {n}\n"


def test_deadlines_left_in_any_order_leave_none_behind():
    """The reply's deadline and the one after its finish are entered by generators, which end
    in whatever order their readers close them: neither may outlive its own end."""
    from chatcli.client.deadline import Deadlines

    deadlines = Deadlines(lambda: 0.0)
    reply, grace = deadlines.until(600.0, "reply"), deadlines.until(2.0, "end of the stream")
    reply.__enter__()
    grace.__enter__()
    assert deadlines.current() == (2.0, "end of the stream")
    reply.__exit__(None, None, None)  # the body's reader ended first
    assert deadlines.current() == (2.0, "end of the stream")
    grace.__exit__(None, None, None)
    assert deadlines.current() is None


def test_after_a_stream_left_open_the_next_request_has_no_stale_deadline(server, tmp_path, released):
    """A stream ended by the wait after its finish, then a question long after the first
    reply's deadline would have passed: it is answered (a stale deadline failed it at once)."""
    from chatcli.client import OpenAIClient
    from chatcli.config import endpoint_of, merge
    from chatcli.events import ChatRequest, TextDelta

    now = [1000.0]
    settings = merge({"base_url": server.base_url, "model": "test-model", "max_retries": 0,
                      "reply_timeout": 600}, {}, {})
    client = OpenAIClient(endpoint_of(settings, TEST_KEY), clock=lambda: now[0])
    server.queue(holding(chunk("first"), chunk(finish="stop"), released=released), Reply(text="second"))

    def text(question: str) -> str:
        request = ChatRequest("test-model", [{"role": "user", "content": question}])
        return "".join(e.text for e in client.stream(request) if isinstance(e, TextDelta))

    assert text("one") == "first"
    now[0] += 3600  # an hour later, by the client's clock
    assert text("two") == "second"
