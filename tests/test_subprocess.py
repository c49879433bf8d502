"""The installed `chatcli` as a separate process, the way a shell runs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import TEST_KEY
from tests.fake_server import Reply, error_body
from tests.terminal import BIN, on_a_terminal


def chatcli(*args: str, input: bytes = b"", env: dict[str, str] | None = None, module=False):
    command = [sys.executable, "-m", "chatcli", *args] if module else [str(BIN), *args]
    return subprocess.run(command, input=input, capture_output=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture(autouse=True)
def installed():
    if not BIN.exists():
        pytest.fail(f"{BIN} is missing: install the project (see README) before running the tests")


def test_pipe_in_pipe_out(endpoint):
    done = chatcli(input="translate to English: 你好\n".encode())
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"Hello! How can I help?\n"
    assert done.stderr == b""
    assert endpoint.chat_requests[0]["messages"][0]["content"] == "translate to English: 你好"


def test_ask_with_piped_text_and_usage_line(endpoint):
    endpoint.queue(Reply(text="A short summary.", prompt_tokens=40, completion_tokens=4))
    done = chatcli("ask", "--usage", "summarise this", input=b"some notes\n")
    assert done.returncode == 0
    assert done.stdout == b"A short summary.\n"
    assert done.stderr == b"tokens: 40 prompt + 4 completion = 44\n"


def test_python_dash_m_and_version():
    done = chatcli("--version", module=True)
    assert done.returncode == 0 and done.stdout.startswith(b"chatcli ")


def test_errors_are_one_line_with_their_exit_code_and_no_traceback(endpoint, tmp_path):
    (tmp_path / "c.toml").write_text("max_retries = 0\n")
    endpoint.queue(Reply(status=401, error=error_body(f"Incorrect API key provided: {TEST_KEY}",
                                                      "invalid_request_error", "invalid_api_key")))
    done = chatcli("ask", "--config", str(tmp_path / "c.toml"), "hi")
    assert done.returncode == 3
    assert done.stdout == b""
    assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
    assert TEST_KEY.encode() not in done.stderr


def test_broken_config_file(endpoint, tmp_path):
    (tmp_path / "c.toml").write_text("model = [unclosed\n")
    done = chatcli("ask", "--config", str(tmp_path / "c.toml"), "hi")
    assert done.returncode == 2
    assert done.stderr.decode().startswith(f"chatcli: error: {tmp_path / 'c.toml'}:1: invalid TOML")


def test_a_closed_pipe_on_stdout_ends_quietly(endpoint):
    endpoint.queue(Reply(text="line\n" * 2000, chunk_chars=50))
    head = shutil.which("head")
    command = f"'{BIN}' ask hi | '{head}' -n 1"
    done = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60, env=os.environ.copy(),
                          stdin=subprocess.DEVNULL)
    assert done.stdout == b"line\n"
    assert b"Traceback" not in done.stderr and b"Error" not in done.stderr


@pytest.mark.parametrize("options", [(), ("-m", "test-model")], ids=["read without typer", "read by typer"])
def test_ask_leaves_with_its_whole_answer_out_and_the_conversation_saved_and_closed(endpoint, db, options):
    """`ask` ends without the interpreter's teardown (cli/base.finish): what it wrote still
    reaches the pipe whole, the usage line is there, and the conversation is in a database
    that was closed (SQLite's log folded back in, no -wal file left), so the next ask has it."""
    text = "".join(f"line {n} of a long answer\n" for n in range(10000))  # far over a pipe's 64 kB
    endpoint.queue(Reply(text=text, chunk_chars=5000))
    done = chatcli("ask", *options, "--usage", "the long one")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == text
    assert done.stderr.startswith(b"tokens: ")
    assert db.exists() and not db.with_name(db.name + "-wal").exists()
    endpoint.queue(Reply(text="Again."))
    assert chatcli("ask", "-c", "once more").returncode == 0
    sent = endpoint.chat_requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["the long one", "once more"]
    assert sent[-2] == {"role": "assistant", "content": text}


def test_answering_into_a_pipe_never_imports_rich(endpoint):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatcli", "ask", "hi"],
                          capture_output=True, timeout=60, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0
    imported = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "openai" in imported
    assert not any(name.split(".")[0] == "rich" for name in imported)


def test_an_ask_that_offers_no_tools_and_saves_nothing_imports_neither(endpoint):
    """What a one-line answer does not use, it does not import (its start-up is the SDK's
    plus chatcli's own work): no tools/ without tools, no store without saving, and the
    patterns only a failure or a CJK line needs are not compiled."""
    endpoint.queue(Reply(text="Paris."))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatcli", "ask", "--no-save", "hi"],
                          capture_output=True, timeout=60, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout == b"Paris.\n"
    imported = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert {"chatcli.session", "chatcli.client", "openai"} <= imported  # the log is what it seems
    assert not imported & {"chatcli.tools", "chatcli.tools.box", "chatcli.tools.mcp", "chatcli.cli.tooling",
                           "chatcli.store", "chatcli.recorder", "chatcli.export", "sqlite3"}


def test_version_imports_neither_typer_nor_openai():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatcli", "--version"],
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert not imported & {"typer", "openai", "rich", "prompt_toolkit"}


MARKDOWN = "# Title\n\nSome **bold** text.\n\n```python\nx = 1\n```\n"


def test_on_a_terminal_the_answer_is_rendered_markdown(endpoint):
    endpoint.default = Reply(text=MARKDOWN)
    shown = on_a_terminal("ask", "hi", env={**os.environ, "TERM": "xterm-256color"}, rows=30, cols=80)
    assert "\x1b[" in shown
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "**bold**" not in text and "```" not in text
    assert "Title" in text and "Some bold text." in text and "x = 1" in text


def test_no_color_gives_plain_text_even_on_a_terminal(endpoint):
    endpoint.default = Reply(text=MARKDOWN)
    shown = on_a_terminal("ask", "hi", env={**os.environ, "TERM": "xterm-256color", "NO_COLOR": "1"}, rows=30,
                          cols=80)
    assert shown.replace("\r\n", "\n") == MARKDOWN
