"""While nothing of the reply has come: what is being waited for, and for how long, on the
terminal only, gone when the reply starts."""

from __future__ import annotations

import json
import subprocess

import pexpect

from tests.fake_server import Reply
from tests.terminal import BIN, PROMPT, expect, on_screen, spawn, watched


def slow_to_start(server, seconds: float, text: str) -> Reply:
    """Nothing for `seconds` (the model is loading, the queue is long), then the reply."""
    def body():
        server.stopping.wait(seconds)
        piece = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(piece)}\n\ndata: [DONE]\n\n".encode()
    return Reply(body=body)


def test_ask_on_a_terminal_says_what_it_waits_for_then_the_line_goes(endpoint, tmp_path):
    endpoint.queue(slow_to_start(endpoint, 3.0, "Finally, the answer."))
    child = spawn(endpoint, tmp_path, "ask", "a question for a slow server")
    screen = watched(child)
    on_screen(child, screen, "waiting for test-model… 1 s")
    on_screen(child, screen, "Finally, the answer.")
    child.expect(pexpect.EOF)
    assert not any("waiting for" in line for line in screen.display)  # cleared, not left behind


def test_the_session_says_it_too(endpoint, tmp_path):
    endpoint.queue(slow_to_start(endpoint, 3.0, "Here."))
    child = spawn(endpoint, tmp_path)
    screen = watched(child)
    expect(child, PROMPT)
    child.send("hello?\r")
    on_screen(child, screen, "waiting for test-model… 1 s")
    on_screen(child, screen, "Here.")
    expect(child, PROMPT)
    assert not any("waiting for" in line for line in screen.display)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_nothing_of_it_reaches_a_pipe(endpoint, tmp_path):
    import os

    endpoint.queue(slow_to_start(endpoint, 1.5, "piped answer"))
    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": "sk-test",
           "CHATCLI_MODEL": "test-model", "CHATCLI_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([str(BIN), "ask", "hi"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "piped answer\n"
    assert "waiting" not in done.stderr


def test_long_messages_break_between_words_on_an_80_column_terminal(endpoint, tmp_path):
    """The terminal would cut words at its edge (`endpo` / `int`): diagnostics and the
    banner are broken between words instead, the lines after the first indented."""
    import os

    from tests.terminal import ANSI, PROMPT, expect

    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url + "/a/long/path/that/makes/the/line/wrap",
           "OPENAI_API_KEY": "sk-test", "CHATCLI_MODEL": "test-model",
           "CHATCLI_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm"}
    child = pexpect.spawn(str(BIN), [], env=env, dimensions=(24, 80), encoding="utf-8", timeout=30)
    written: list[str] = []
    child.logfile_read = type("Log", (), {"write": lambda self, text: written.append(text),
                                          "flush": lambda self: None})()
    expect(child, PROMPT)
    child.send("hello\r")
    expect(child, "usually ends in /v1")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    text = ANSI.sub("", "".join(written)).replace("\r", "")
    messages = (("chatcli 0", "/help for commands, Ctrl-D to leave"),
                ("chatcli: error", "no chat-completions endpoint (404) (base_url usually ends in /v1)"))
    for start, phrase in messages:
        message = text[text.index(start):]
        lines = [message.split("\n")[0]]
        for line in message.split("\n")[1:]:
            if not line.startswith("  "):
                break
            lines.append(line)
        assert len(lines) > 1 and all(len(line) <= 80 for line in lines), lines  # wrapped, to fit
        assert phrase in " ".join(line.strip() for line in lines)  # between words, none cut
