"""The installed `chatcli` in a real pseudo-terminal, driven like a person would (pexpect)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time

import pexpect
import pytest

from tests.conftest import TEST_KEY
from tests.fake_server import Reply
from tests.terminal import BIN, PROMPT, expect, seen, spawn


def test_type_a_question_see_the_answer_interrupt_a_slow_reply_and_leave(endpoint, tmp_path):
    endpoint.queue(Reply(text="The **Dodgers** won in 2020.", prompt_tokens=20, completion_tokens=9),
                   Reply(text="slow " * 3000, chunk_chars=5, delay=0.003),
                   Reply(text="你好！我在。"))
    child = spawn(endpoint, tmp_path)
    expect(child, "/help for commands")
    expect(child, PROMPT)
    child.send("Who won the world series in 2020?\r")
    expect(child, r"tokens: 20 prompt \+ 9 completion = 29")
    assert "Dodgers won in 2020." in seen(child) and "**" not in seen(child)
    expect(child, PROMPT)

    child.send("Tell me a very long story\r")
    expect(child, "slow slow")
    started = time.monotonic()
    child.sendintr()
    expect(child, "interrupted; the partial reply is kept")
    assert time.monotonic() - started < 2
    expect(child, PROMPT)

    child.send("你好吗？\r")
    expect(child, "你好！我在。")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    requests = endpoint.chat_requests
    assert requests[2]["messages"][-1] == {"role": "user", "content": "你好吗？"}
    assert requests[2]["messages"][-2]["role"] == "assistant"  # the partial reply was kept


def test_piped_text_then_the_keyboard(endpoint, tmp_path):
    endpoint.queue(Reply(text="Summary of the pipe."), Reply(text="Follow-up answer."))
    child = spawn(endpoint, tmp_path, command=f"printf 'notes from a file' | '{BIN}' -i")
    expect(child, "Summary of the pipe.")
    expect(child, PROMPT)
    child.send("and more?\r")
    expect(child, "Follow-up answer.")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert [r["messages"][-1]["content"] for r in endpoint.chat_requests] == [
        "notes from a file", "and more?"]


def test_input_history_survives_a_restart(endpoint, tmp_path):
    child = spawn(endpoint, tmp_path)
    expect(child, PROMPT)
    child.send("a question worth repeating\r")
    expect(child, "tokens:")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child = spawn(endpoint, tmp_path)
    expect(child, PROMPT)
    child.send("\x1b[A\r")  # Up, Enter
    expect(child, "tokens:")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert [r["messages"][-1]["content"] for r in endpoint.chat_requests] == [
        "a question worth repeating"] * 2


def test_first_run_without_a_key_explains_the_setup(endpoint, tmp_path):
    child = spawn(endpoint, tmp_path, OPENAI_API_KEY="", OPENAI_BASE_URL="https://api.example.com/v1")
    child.expect(pexpect.EOF)
    child.close()
    text = seen(child).replace("\r\n  ", " ")  # one message, broken between words at the edge
    assert child.exitstatus == 2
    assert "OPENAI_API_KEY" in text and "api_key_cmd" in text and "config init" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("keys", ["/exit\r", "\x04"])
def test_leaving(endpoint, tmp_path, keys):
    child = spawn(endpoint, tmp_path)
    expect(child, PROMPT)
    child.send(keys)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_no_markdown_prints_the_reply_as_it_comes(endpoint, tmp_path):
    endpoint.queue(Reply(text="Some **bold** words."))
    child = spawn(endpoint, tmp_path, "--no-markdown")
    expect(child, PROMPT)
    child.send("hi\r")
    expect(child, "tokens:")
    assert "Some **bold** words." in seen(child)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_the_interactive_session_needs_a_terminal_on_stdout(endpoint, tmp_path):
    child = spawn(endpoint, tmp_path, command=f"'{BIN}' -i | cat")
    child.expect(pexpect.EOF)
    assert "needs a terminal on stdout" in seen(child)


def test_attach_a_file_with_tab_completion_then_ask_about_it(endpoint, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes-2026.txt").write_text("the meeting moved to Friday\n")
    endpoint.queue(Reply(text="It moved to **Friday**."))
    child = spawn(endpoint, tmp_path, cwd=str(work))
    expect(child, PROMPT)
    child.send("/file notes\t")
    expect(child, "-2026.txt")  # Tab wrote the rest of the name
    child.send("\r")
    expect(child, r"attached notes-2026.txt \(1 line\)")
    expect(child, r"attached: notes-2026.txt \| context")  # the bottom bar says so
    child.send("when is the meeting?\r")
    expect(child, "tokens: ")
    assert "It moved to Friday." in seen(child)
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert endpoint.parts == [[{"type": "text", "text": (
        "### notes-2026.txt\n\n```\nthe meeting moved to Friday\n```\n\nwhen is the meeting?")}]]


def test_a_session_opened_with_a_file_sends_it_with_the_first_message(endpoint, tmp_path):
    (tmp_path / "todo.md").write_text("- call Li Wei\n")
    # A relative path: an absolute one under pytest's basetemp grows with its run counter, and
    # at 100 columns a long enough one wraps inside the name the test looks for.
    child = spawn(endpoint, tmp_path, "-f", "todo.md", cwd=str(tmp_path))
    expect(child, r"todo.md \(1 line\):\s+sent\s+with\s+your\s+first\s+message")  # wrapped, maybe
    expect(child, r"attached: todo.md \| context")
    child.send("what is first?\r")
    expect(child, "tokens: ")
    expect(child, r"gpt-4o-mini \| context|test-model \| context")  # the bar: nothing attached now
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    sent = endpoint.parts[0][0]["text"]
    assert sent.endswith("todo.md\n\n```markdown\n- call Li Wei\n```\n\nwhat is first?")


@pytest.mark.skipif(shutil.which("tmux") is None,
                    reason="needs tmux, a terminal that reflows (apt install tmux)")
def test_narrowing_a_real_terminal_during_a_reply_leaves_no_stale_copy(endpoint, tmp_path):
    """tmux reflows its rows when the window narrows and pushes the top ones into the
    scrollback, where the live view cannot erase them: what was shown must stay instead."""
    words = [f"w{i:03d}" for i in range(300)]
    endpoint.queue(Reply(text=" ".join(words[:120]) + "\n\n" + " ".join(words[120:]), chunk_chars=5,
                         delay=0.03))
    socket = f"chatcli-test-{os.getpid()}"

    def tmux(*args: str) -> str:
        done = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=True)
        return done.stdout

    env = {"OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": TEST_KEY, "CHATCLI_MODEL": "test-model",
           "CHATCLI_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm-256color"}
    command = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    tmux("new-session", "-d", "-x", "100", "-y", "30", f"env {command} {BIN} ask go; echo EXITED; sleep 60")
    try:
        def pane() -> str:
            return tmux("capture-pane", "-p", "-J", "-S", "-")

        deadline = time.monotonic() + 60
        while "w130" not in pane():  # well into the second paragraph, drawn live
            assert time.monotonic() < deadline, pane()
            time.sleep(0.05)
        tmux("resize-window", "-x", "60")
        while "EXITED" not in pane():
            assert time.monotonic() < deadline, pane()
            time.sleep(0.1)
        shown = pane().split("EXITED")[0]
        assert re.sub(r"\s", "", shown) == "".join(words), shown
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
