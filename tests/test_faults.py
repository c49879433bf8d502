"""The fault matrix: every fault the test server can produce, against `ask` and the REPL.

For each: the documented exit code (or the REPL's one-line message and a session
that goes on), the conversation intact in the store, a partial reply kept with its
status, and no traceback.
"""

from __future__ import annotations

import socket
import time

import pytest

from chatcli.store import Store
from tests.conftest import TEST_KEY
from tests.fake_server import CONTEXT_TOO_LONG, Reply, error_body
from tests.test_repl import CTRL_D, ENTER, Harness

HALF = "The first half of this reply arrives, and then "


def status(code: int, message: str, type_: str, err_code: str | None = None, **headers: str) -> Reply:
    return Reply(status=code, error=error_body(message, type_, err_code), headers=headers)


# (fault, exit code, words in the error line, status of the partial reply or None)
FAULTS = {
    "401": (status(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
            3, "rejected the API key", None),
    "403": (status(403, "Project does not have access", "permission_denied"), 3, "not allowed", None),
    "404 model": (None, 7, "model 'missing-model' was not found", None),
    "429 rate limit": (status(429, "Rate limit reached", "requests", "rate_limit_exceeded",
                              **{"Retry-After": "300"}), 4, "rate limited (429)", None),
    "429 quota": (status(429, "You exceeded your current quota", "insufficient_quota",
                         "insufficient_quota"), 4, "out of quota", None),
    "500": (status(500, "The server had an error", "server_error"), 6, "server failed (500)", None),
    "503": (status(503, "The engine is overloaded", "server_error"), 6, "server failed (503)", None),
    "context too long": (Reply(status=400, error={"error": CONTEXT_TOO_LONG}), 7,
                         "too long for the model", None),
    "connection refused": (None, 5, "cannot reach", None),
    "dropped mid-stream": (Reply(text=HALF * 4, fault="drop"), 5, "broke during the reply", "error"),
    "malformed chunk": (Reply(text=HALF * 4, fault="malformed"), 6, "not valid chat-completions",
                        "error"),
    "error event in stream": (Reply(text=HALF * 4, fault="error_event"), 6,
                              "reported an error during the reply", "error"),
    "never answers": (Reply(fault="hang"), 5, "sent nothing for 1s", None),
    "stops halfway": (Reply(text=HALF * 4, fault="stall"), 5, "in the middle of the reply", "error"),
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def arrange(name: str, server, monkeypatch) -> str:
    """Queue the fault; return the model to ask for."""
    reply = FAULTS[name][0]
    if reply is not None:
        server.queue(reply)
    if name == "connection refused":
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    return "missing-model" if name == "404 model" else "test-model"


@pytest.mark.parametrize("name", list(FAULTS))
def test_ask(name, run, endpoint, monkeypatch, tmp_path):
    _, code, words, partial = FAULTS[name]
    config = tmp_path / "c.toml"
    config.write_text("timeout = 1\nmax_retries = 0\n")
    model = arrange(name, endpoint, monkeypatch)
    started = time.monotonic()
    result = run("ask", "--config", str(config), "--session", "s", "-m", model, "the question")
    assert result.code == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatcli: error: ") and words in lines[0], lines
    assert "Traceback" not in result.stdout + result.stderr
    assert TEST_KEY not in result.stdout + result.stderr
    assert time.monotonic() - started < 10
    saved = Store(tmp_path / "data" / "chatcli.db").load(1)
    assert saved[0].content == "the question"
    if partial:
        assert saved[1].finish_reason == partial and saved[1].content.startswith("The first half")
        assert result.stdout.startswith("The first half")  # what arrived was shown
    else:
        assert len(saved) == 1 and result.stdout == ""


@pytest.mark.parametrize("name", list(FAULTS))
def test_repl(name, server, tmp_path, monkeypatch):
    harness = Harness(server, tmp_path, timeout=1, max_retries=0)
    model = arrange(name, server, monkeypatch)
    if name == "connection refused":
        harness.session.update(base_url=f"http://127.0.0.1:{closed_port()}/v1")
    harness.session.update(model=model)
    harness.run("the question" + ENTER + f"/model test-model{ENTER}/retry" + ENTER + CTRL_D)
    err = harness.err.getvalue()
    _, _, words, partial = FAULTS[name]
    assert words in err and "Traceback" not in err
    assert ("the partial reply is kept" if partial else "your question is kept, marked no reply; it is "
            "not sent with your next question (/retry sends it again)") in err
    messages = harness.session.conversation.messages
    assert messages[0].content == "the question"
    if name != "connection refused":  # the session goes on: /retry got an answer
        assert messages[-1].content == "Hello! How can I help?"
        assert [m.content for m in messages] == ["the question", "Hello! How can I help?"]
    if partial:
        assert "The first half" in harness.out.getvalue()
