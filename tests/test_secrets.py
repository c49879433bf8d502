"""A unique key is planted; it must appear in no output and in no file chatcli writes."""

from __future__ import annotations

import os

import pexpect

from tests.fake_server import Reply, error_body
from tests.terminal import BIN, PROMPT, expect


def test_the_planted_key_is_nowhere(run, endpoint, tmp_path, monkeypatch):
    secret = "sk-planted-" + os.urandom(12).hex()
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    outputs: list[str] = []

    def record(*args, **kw):
        result = run(*args, **kw)
        outputs.extend([result.stdout, result.stderr])
        return result

    record("ask", "--session", "s", "hello")
    record("ask", "--debug", "--session", "s", "again")
    record("ask", "--json", "--debug", "--no-stream", "json please")
    record("-p", "nope", "ask", "bad profile")
    endpoint.queue(Reply(status=401, error=error_body(f"Incorrect API key provided: {secret}.",
                                                      "invalid_request_error", "invalid_api_key")))
    assert record("ask", "rejected").code == 3
    endpoint.queue(Reply(fault="error_event"))
    record("ask", "--debug", "stream error")
    record("config", "show")
    record("doctor")
    record("sessions", "list")
    record("sessions", "export", "s", "--format", "json")
    record("sessions", "search", "hello")

    child = pexpect.spawn(str(BIN), ["--debug", "--session", "s"], env=os.environ.copy(),
                          encoding="utf-8", timeout=20, dimensions=(40, 120))
    expect(child, PROMPT)
    child.send("from the terminal\r")
    expect(child, "tokens:")
    outputs.append(child.before or "")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    outputs.append(child.before or "")

    assert endpoint.requests[0].headers["authorization"] == f"Bearer {secret}"  # it was really used
    for text in outputs:
        assert secret not in text
        assert secret[3:] not in text  # not even without its prefix
    files = [p for root in (tmp_path / "data", tmp_path / "config") if root.exists()
             for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "chatcli.db" for p in files) and any(p.name == "input_history" for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


def test_a_readable_config_file_with_a_key_gets_a_warning_naming_the_fix(run, endpoint, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('api_key = "sk-file-key-0123456789"\n')
    path.chmod(0o640)
    result = run("ask", "--config", str(path), "hi")
    assert result.code == 0
    assert f"can be read by other users (mode 640); fix it with: chmod 600 {path}" in result.stderr
    assert "sk-file-key-0123456789" not in result.stderr
    path.chmod(0o600)
    assert "chmod" not in run("ask", "--config", str(path), "hi").stderr


def test_an_internal_error_under_debug_shows_a_traceback_without_local_values(run, endpoint,
                                                                               monkeypatch):
    import chatcli.session

    def broken(self, text, sink, **kw):
        key_in_a_local = os.environ["OPENAI_API_KEY"]  # noqa: F841 (must not be printed)
        raise RuntimeError("a bug")

    monkeypatch.setattr(chatcli.session.Session, "ask", broken)
    quiet = run("ask", "hi")
    assert quiet.code == 1 and "Traceback" not in quiet.stderr
    assert "internal error (RuntimeError: a bug); please report it" in quiet.stderr
    loud = run("ask", "--debug", "hi")
    assert "Traceback" in loud.stderr and "RuntimeError: a bug" in loud.stderr
    assert os.environ["OPENAI_API_KEY"] not in loud.stderr
