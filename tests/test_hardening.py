"""Hardening: retries, context limits, huge input, signals, proxies, private CAs, `doctor`."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatcli.store import Store
from tests.conftest import TEST_KEY
from tests.fake_server import CONTEXT_TOO_LONG, FakeServer, Reply, error_body
from tests.proxy import Proxy
from tests.terminal import BIN


def config(tmp_path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


# --- retries ------------------------------------------------------------------------


def test_rate_limits_are_retried_after_retry_after_and_the_user_is_told(run, endpoint):
    endpoint.queue(Reply(status=429, error=error_body("slow down", "requests"), headers={"Retry-After": "1"}))
    started = time.monotonic()
    result = run("ask", "hi")
    assert result.code == 0 and result.stdout == "Hello! How can I help?\n"
    assert time.monotonic() - started >= 1  # it waited as asked
    assert "rate limited (429); trying again in 1.0 s (1 of 2)" in result.stderr
    assert len(endpoint.chat_requests) == 2


def test_server_errors_back_off_up_to_max_retries(run, endpoint, tmp_path):
    fail = Reply(status=503, error=error_body("overloaded", "server_error"),
                 headers={"retry-after-ms": "10"})
    endpoint.queue(fail, fail, fail)
    result = run("ask", "--config", config(tmp_path, "max_retries = 2\n"), "hi")
    assert result.code == 6
    assert len(endpoint.chat_requests) == 3
    assert result.stderr.count("trying again") == 2


def test_quota_and_key_errors_are_never_retried(run, endpoint):
    endpoint.queue(Reply(status=429, error=error_body("quota", "insufficient_quota", "insufficient_quota")))
    assert run("ask", "hi").code == 4
    endpoint.queue(Reply(status=401, error=error_body("bad key", "invalid_request_error", "invalid_api_key")))
    assert run("ask", "hi").code == 3
    assert len(endpoint.chat_requests) == 2


def test_a_retry_after_longer_than_a_minute_is_reported_not_waited(run, endpoint):
    endpoint.queue(Reply(status=429, error=error_body("later", "requests"), headers={"Retry-After": "120"}))
    result = run("ask", "hi")
    assert result.code == 4 and "wait 120s" in result.stderr
    assert len(endpoint.chat_requests) == 1


def test_max_retries_zero(run, endpoint, tmp_path):
    endpoint.queue(Reply(status=500, error=error_body("boom", "server_error"),
                         headers={"retry-after-ms": "1"}))
    assert run("ask", "--config", config(tmp_path, "max_retries = 0\n"), "hi").code == 6
    assert len(endpoint.chat_requests) == 1


def test_connect_timeout_is_its_own_setting(run, endpoint, monkeypatch, tmp_path):
    # A listening socket whose queue is full: connecting hangs, as to a host that drops packets.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    started = time.monotonic()
    result = run("ask", "--config", config(tmp_path, "connect_timeout = 0.5\ntimeout = 30\n"), "hi")
    assert result.code == 5
    assert time.monotonic() - started < 10
    for sock in [listener, *fillers]:
        sock.close()


# --- context limits and huge input -----------------------------------------------------


def test_context_too_long_drops_older_turns_and_asks_once_more(run, endpoint):
    for n in range(3):
        run("ask", "--session", "long", f"question {n}")
    endpoint.queue(Reply(status=400, error={"error": CONTEXT_TOO_LONG}), Reply(text="fits now"))
    result = run("ask", "--session", "long", "--usage", "one more")
    assert result.code == 0 and result.stdout == "fits now\n"
    first, second = endpoint.chat_requests[-2:]
    assert len(second["messages"]) < len(first["messages"])
    assert second["messages"][-1]["content"] == "one more"
    assert "too long; 4 older messages were left out and it was asked again" in result.stderr


def test_far_too_big_input_is_refused_before_sending(run, endpoint, tmp_path):
    text = "word " * 50_000  # ~50,000 tokens
    result = run("ask", "--config", config(tmp_path, "context_window = 4096\n"), "summarise", input=text)
    assert result.code == 7
    assert "far more than fits the context window of 4,096 tokens" in result.stderr
    assert endpoint.chat_requests == []


def test_a_huge_message_typed_in_is_refused_with_its_estimate(run, endpoint, tmp_path):
    result = run("ask", "--config", config(tmp_path, "context_window = 1000\n"), "lorem " * 3000)
    assert result.code == 7
    assert "the message is about 6,004 tokens (estimated)" in result.stderr
    assert endpoint.chat_requests == []


def test_a_ten_megabyte_pipe_is_refused_having_read_only_a_bounded_part(endpoint):
    writer = subprocess.Popen([sys.executable, "-c", "import sys\nfor _ in range(10):\n"
                               "    sys.stdout.write('x' * 1_000_000)\n"], stdout=subprocess.PIPE)
    done = subprocess.run([str(BIN), "ask", "summarise"], stdin=writer.stdout, capture_output=True,
                          timeout=60, env=os.environ.copy())
    writer.stdout.close()
    writer.wait(timeout=30)
    assert done.returncode == 7
    assert b"stdin holds more than 2.0 MB" in done.stderr
    assert endpoint.chat_requests == []


# --- signals and closed pipes ----------------------------------------------------------


def slow_reply(endpoint):
    endpoint.queue(Reply(text="streaming words " * 3000, chunk_chars=8, delay=0.002))


def wait_for_partial(db: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            rows = sqlite3.connect(db).execute(
                "SELECT length(content) FROM messages WHERE role = 'assistant'").fetchall()
        except sqlite3.Error:
            rows = []
        if rows and rows[0][0] > 50:
            return
        time.sleep(0.05)
    raise AssertionError("no partial reply was saved")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_quietly_and_save_the_partial_reply(endpoint, tmp_path, signum):
    slow_reply(endpoint)
    process = subprocess.Popen([str(BIN), "ask", "--session", "sig", "tell me"], env=os.environ.copy(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = tmp_path / "data" / "chatcli.db"
    wait_for_partial(db)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signum
    assert err == b""
    saved = Store(db).load(1)
    assert saved[1].finish_reason == "interrupted"
    assert saved[1].content == out.decode().removesuffix("\n")  # all that was shown was saved


def test_a_closed_pipe_keeps_the_partial_reply(endpoint, tmp_path):
    slow_reply(endpoint)
    done = subprocess.run(["sh", "-c", f"'{BIN}' ask --session pipe hi | head -c 100 > /dev/null"],
                          capture_output=True, timeout=60, env=os.environ.copy(),
                          stdin=subprocess.DEVNULL)
    assert done.stderr == b""
    saved = Store(tmp_path / "data" / "chatcli.db").load(1)
    assert saved[1].finish_reason == "interrupted" and saved[1].content.startswith("streaming words")


# --- proxies and private CAs -------------------------------------------------------------


def test_http_proxy_is_used_and_no_proxy_is_honoured(run, server, monkeypatch):
    with Proxy() as proxy:
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        monkeypatch.setenv("CHATCLI_MODEL", "test-model")
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost")
        port = server.base_url.split(":")[2].split("/")[0]
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
        assert run("ask", "through the proxy").stdout == "Hello! How can I help?\n"
        assert proxy.seen == [f"POST http://127.0.0.1:{port}/v1/chat/completions"]
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://localhost:{port}/v1")
        assert run("ask", "around the proxy").code == 0
        assert len(proxy.seen) == 1
    assert len(server.chat_requests) == 2


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory):
    import trustme

    authority = trustme.CA()
    leaf = authority.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("ca")
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return folder / "ca.pem", context


def test_a_private_ca_is_trusted_with_ca_bundle_and_through_https_proxy(run, private_ca, tmp_path,
                                                                          monkeypatch):
    bundle, context = private_ca
    with FakeServer(tls=context) as server, Proxy() as proxy:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        monkeypatch.setenv("CHATCLI_MODEL", "test-model")
        refused = run("ask", "--config", config(tmp_path, "max_retries = 0\n"), "hi")
        assert refused.code == 5 and "certificate" in refused.stderr.lower()
        trusted = config(tmp_path, f'ca_bundle = "{bundle}"\n')
        assert run("ask", "--config", trusted, "hi").stdout == "Hello! How can I help?\n"
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        assert run("ask", "--config", trusted, "via the tunnel").code == 0
        assert proxy.seen == [f"CONNECT {server.base_url.split('//')[1].split('/')[0]}"]


def test_a_ca_bundle_that_cannot_be_read_is_one_line_naming_it(run, endpoint, tmp_path):
    """A CA file that cannot be read fails when the TLS context is built: one line that
    names it, a configuration error's exit code, and nothing is sent."""
    missing = tmp_path / "no-such-ca.pem"
    result = run("ask", "--config", config(tmp_path, f'ca_bundle = "{missing}"\n'), "hi")
    assert result.code == 2  # a configuration that cannot work, as every config error
    assert f"ca_bundle {missing} cannot be used" in result.stderr and "Traceback" not in result.stderr
    assert endpoint.chat_requests == []


# --- doctor ----------------------------------------------------------------------------


def test_doctor_all_good(run, endpoint):
    result = run("doctor")
    assert result.code == 0, result.stdout
    for check in ("config file", "API key", "endpoint", "model", "streaming", "usage in streams"):
        assert check in result.stdout
    assert "FAIL" not in result.stdout and TEST_KEY not in result.stdout
    assert "environment variable OPENAI_API_KEY" in result.stdout


def test_doctor_checks_the_conversation_database_without_creating_it(run, endpoint, tmp_path):
    database = tmp_path / "data" / "chatcli.db"
    result = run("doctor")
    assert result.code == 0 and "none saved yet" in result.stdout and not database.exists()
    assert run("ask", "hello").code == 0
    result = run("doctor")
    assert result.code == 0 and re.search(r"conversations\s+ok\s+1 conversation in", result.stdout)
    # A file of its own (a new inode: no connection left open in this process shares it),
    # its pages overwritten after SQLite's header.
    data = database.read_bytes()
    for file in tmp_path.glob("data/chatcli.db*"):
        file.unlink()
    database.write_bytes(data[:16] + b"\x07" * (len(data) - 16))
    result = run("doctor")
    assert result.code == 8 and "FAIL" in result.stdout, result.stdout
    assert run("doctor", env={"CHATCLI_DATA_DIR": str(tmp_path / "elsewhere")}).code == 0


def test_doctor_names_a_missing_model_and_the_fix(run, endpoint):
    result = run("doctor", "-m", "gpt-9")
    assert result.code == 7
    assert "gpt-9 is not among the endpoint's models" in result.stdout
    assert "it lists: deepseek-chat, gpt-4o-mini, test-model" in result.stdout


def test_doctor_unreachable_endpoint(run, endpoint, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    result = run("doctor")
    assert result.code == 5 and "cannot reach" in result.stdout and "HTTPS_PROXY" in result.stdout


def test_doctor_without_a_key_and_with_a_broken_file(run, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.com/v1")
    result = run("doctor")
    assert result.code == 2 and "API key" in result.stdout and "FAIL" in result.stdout
    result = run("doctor", "--config", config(tmp_path, "model = [\n"))
    assert result.code == 2 and "invalid TOML" in result.stdout


def test_doctor_notes_a_server_without_usage_in_streams(run, endpoint):
    endpoint.rejects_stream_options = True
    result = run("doctor")
    assert result.code == 0
    assert "rejects stream_options" in result.stdout and "estimated" in result.stdout


def test_doctor_flags_a_readable_config_file_holding_a_key(run, endpoint, tmp_path):
    path = Path(config(tmp_path, 'api_key = "sk-in-the-file-123456"\n'))
    path.chmod(0o644)
    result = run("doctor", "--config", str(path))
    assert result.code == 2 and f"chmod 600 {path}" in result.stdout
    assert "sk-in-the-file-123456" not in result.stdout + result.stderr


def test_closing_the_terminal_mid_reply_saves_the_partial_reply(endpoint, tmp_path):
    """The terminal closing sends SIGHUP, and the shell forwards another: both at once."""
    import pexpect

    from tests.terminal import PROMPT, expect

    slow_reply(endpoint)
    child = pexpect.spawn(str(BIN), env=os.environ.copy(), encoding="utf-8", timeout=20,
                          dimensions=(40, 120))
    expect(child, PROMPT)
    child.send("a long story\r")
    wait_for_partial(tmp_path / "data" / "chatcli.db")
    os.kill(child.pid, signal.SIGHUP)
    os.kill(child.pid, signal.SIGHUP)
    child.expect(pexpect.EOF)
    child.close()
    saved = Store(tmp_path / "data" / "chatcli.db").load(1)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[1].finish_reason == "interrupted" and saved[1].content.startswith("streaming words")


def test_after_the_first_termination_signal_the_next_ones_wait(monkeypatch):
    """Seen in tmux: closing a window sends SIGHUP, then the shell forwards one more, which
    arrived while the partial reply was being saved and cut the save short."""
    from chatcli.cli.base import terminate as _terminate
    from chatcli.errors import Terminated

    calls: dict = {}
    monkeypatch.setattr(signal, "signal", lambda s, h: calls.__setitem__(s, h))
    for signum in (signal.SIGHUP, signal.SIGTERM):
        calls.clear()
        with pytest.raises(Terminated) as info:
            _terminate(signum, None)
        assert info.value.exit_code == 128 + signum
        assert calls == {signal.SIGTERM: signal.SIG_IGN, signal.SIGHUP: signal.SIG_IGN}


def test_doctor_on_a_server_on_this_machine_says_no_key_is_needed(run, endpoint, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    result = run("doctor")
    assert result.code == 0, result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("API key"))
    assert "ok" in row and "not needed (a server on this machine)" in row
