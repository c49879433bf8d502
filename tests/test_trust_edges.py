"""Small hard edges: early signals, closed pipes, absurd values, odd references."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fake_server import Reply
from tests.terminal import BIN


def catches_sigterm(pid: int) -> bool:
    """True once the process has installed a SIGTERM handler: chatcli's own code is running
    (before that, Python itself is starting, which no program can make quiet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone already
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_first_moments_never_prints_a_traceback(endpoint, signum):
    endpoint.default = Reply(text="answer " * 50, delay=0.01)
    for step in range(12):  # from the first line of chatcli's code to the middle of the reply
        process = subprocess.Popen([str(BIN), "ask", "hi"], env=os.environ.copy(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while not catches_sigterm(process.pid):
            time.sleep(0.001)
        time.sleep(step * 0.02)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
        assert b"Traceback" not in err and b"Exception ignored" not in err, (step, err.decode())
        assert process.returncode in (0, 128 + signum), (step, process.returncode, err)
        if signum == signal.SIGTERM:
            assert err == b"", err  # told to stop: it stops without a word


def test_a_reader_that_leaves_gives_the_sigpipe_exit_code_quietly(endpoint):
    endpoint.queue(Reply(text="line\n" * 5000, chunk_chars=50))
    done = subprocess.run(["bash", "-c", f"'{BIN}' ask hi | head -1; echo \"status ${{PIPESTATUS[0]}}\""],
                          capture_output=True, timeout=60, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    assert done.stdout == b"line\nstatus 141\n"
    assert done.stderr == b""


def test_a_listing_into_a_closed_pipe_is_quiet_too(run, endpoint, tmp_path):
    for n in range(40):
        run("ask", "--session", f"s{n}", f"question {n}")
    done = subprocess.run(["bash", "-c", f"'{BIN}' sessions list | head -1 >/dev/null; "
                                         "echo ${PIPESTATUS[0]}"],
                          capture_output=True, timeout=60, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    assert done.stdout.strip() in (b"0", b"141") and done.stderr == b""


def config(tmp_path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("args", "words"), [
    (["ask", "--config", "/dev/zero", "hi"], "holds more than 1 MB; it is not a config file"),
    (["ask", "--config", "/nonexistent/missing.toml", "hi"], "the config file /nonexistent/missing.toml "
                                                              "does not exist"),
    (["config", "show", "--config", "/nonexistent/missing.toml"], "does not exist"),
    (["sessions", "show", "99999999999999999999999"], "no conversation '99999999999999999999999'"),
    (["sessions", "show", "²"], "no conversation '²'"),
    (["sessions", "search", ""], "nothing to search for"),
    (["sessions", "search", "  "], "nothing to search for"),
])
def test_odd_input_is_one_line_and_exit_2(run, endpoint, args, words):
    result = run(*args)
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr


def test_an_absurd_context_window_is_refused_before_anything_is_read(run, endpoint, tmp_path):
    result = run("ask", "--config", config(tmp_path, "context_window = 99999999999999999\n"), "hi",
                 input="some text")
    assert result.code == 2
    assert "context_window: expected a whole number from 256 to 100000000" in result.stderr


def test_config_init_still_creates_a_file_that_does_not_exist_yet(run, tmp_path):
    path = tmp_path / "fresh.toml"
    assert run("config", "init", "--config", str(path)).code == 0 and path.exists()
    assert run("config", "path", "--config", str(tmp_path / "other.toml")).code == 0


@pytest.mark.parametrize(("text", "words"), [
    ('base_url = "http://127.0.0.1:9/v1\\r\\nX-Injected: 1"\n', "base_url: expected an http"),
    ('base_url = "http://127.0.0.1:9/v1 "\n', "base_url: expected an http:// or https:// URL"),
    ('base_url = "http:///v1"\n', "base_url: expected an http:// or https:// URL"),
    ('model = ""\n', "model: expected a model name"),
    ('model = "gpt-4o\\n"\n', "model: expected a model name"),
    ('[profiles.p]\nbase_url = "https://user:hunter2-secret@x.example/v1\\n"\n', "profiles.p.base_url"),
])
def test_a_base_url_or_model_that_could_not_be_sent_is_refused_when_the_config_is_read(
        run, endpoint, tmp_path, text, words):
    profile = ["-p", "p"] if "profiles" in text else []
    result = run("ask", "--config", config(tmp_path, text), *profile, "hi")
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr
    assert "hunter2-secret" not in result.stderr
    assert endpoint.chat_requests == []


@pytest.mark.parametrize(("env", "words"), [
    ({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1\r\nX-Injected: 1"}, "OPENAI_BASE_URL: expected an http"),
    ({"OPENAI_BASE_URL": "ftp://127.0.0.1/v1"}, "OPENAI_BASE_URL: expected an http"),
    ({"CHATCLI_MODEL": "gpt-4o\n"}, "CHATCLI_MODEL: expected a model name"),
])
def test_the_same_values_from_the_environment_are_refused_too(run, endpoint, monkeypatch, env, words):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = run("ask", "hi")
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr
    assert endpoint.chat_requests == []
