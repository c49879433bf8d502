"""The one terminal harness: the installed `chatcli` in a pseudo-terminal, driven as a person
would (pexpect), and the screen a terminal would show of it (pyte).

Every test that runs chatcli on a terminal goes through these, so a fix to how a test waits
(the cursor-position requests prompt_toolkit sends, keys drawn in pieces on a busy machine,
line wrapping) is made once.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pyte

from tests.conftest import TEST_KEY

BIN = Path(sys.executable).with_name("chatcli")
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\a]*\a|[()][A-Z0-9]|[=>])")
PROMPT = r"context \d+% \| /help"  # the toolbar, drawn with every prompt


def environment(endpoint, tmp_path: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a chatcli that talks to the fake `endpoint` with the test key."""
    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": TEST_KEY,
           "CHATCLI_MODEL": "test-model", "TERM": "xterm-256color"}
    if tmp_path is not None:
        env["CHATCLI_DATA_DIR"] = str(tmp_path / "data")
    return {**env, **extra}


def spawn(endpoint, tmp_path, *args: str, command: str | None = None, cwd: str | None = None,
          rows: int = 40, cols: int = 100, timeout: float = 20, **env: str) -> pexpect.spawn:
    """`chatcli ARGS` (or a shell `command`) on a terminal of `rows` x `cols`."""
    full_env = environment(endpoint, tmp_path, **env)
    if command is not None:
        return pexpect.spawn("/bin/sh", ["-c", command], env=full_env, dimensions=(rows, cols),
                             encoding="utf-8", timeout=timeout, cwd=cwd)
    return pexpect.spawn(str(BIN), list(args), env=full_env, dimensions=(rows, cols), encoding="utf-8",
                         timeout=timeout, cwd=cwd)


def expect(child, pattern) -> None:
    """child.expect, answering the terminal's cursor-position requests as a terminal would."""
    text = ""
    while True:
        index = child.expect([pattern, "\x1b\\[6n"])
        text += child.before
        if index == 0:
            break
        child.send("\x1b[1;1R")
    # A request can follow the match; answer it before the test types anything.
    while child.expect(["\x1b\\[6n", pexpect.TIMEOUT], timeout=0.3) == 0:
        child.send("\x1b[1;1R")
    child.before = text


def watched(child, cols: int = 100, rows: int = 40) -> pyte.Screen:
    """A terminal's screen, fed with everything `child` writes from now on."""
    screen = pyte.Screen(cols, rows)
    stream = pyte.Stream(screen)
    child.logfile_read = type("Feed", (), {"write": lambda self, text: stream.feed(text),
                                           "flush": lambda self: None})()
    return screen


def on_screen(child, screen, text: str, timeout: float = 30) -> None:
    """Read until `text` is on the emulated `screen` (child.logfile_read feeds it). Keys typed
    at once can be drawn in several pieces on a busy machine, so what was typed need never
    arrive as one string: wait for the screen, not for the bytes."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in screen.display):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared; the screen: {screen.display}")
        try:
            data = child.read_nonblocking(65536, timeout=0.2)
        except pexpect.TIMEOUT:
            continue
        if "\x1b[6n" in data:
            child.send("\x1b[1;1R")


def seen(child) -> str:
    """What `child` wrote before the last match, without escape sequences."""
    return ANSI.sub("", child.before or "")


def on_a_terminal(*args: str, env: dict[str, Any], rows: int = 40, cols: int = 100,
                  check: bool = True) -> str:
    """Everything the terminal received from one run of `chatcli ARGS`, to its end (and, with
    `check`, that it exited 0)."""
    received: list[str] = []
    child = pexpect.spawn(str(BIN), list(args), env=env, dimensions=(rows, cols), encoding="utf-8",
                          timeout=30)
    while True:
        try:
            received.append(child.read_nonblocking(65536, timeout=30))
        except pexpect.EOF:
            break
    child.close()
    if check:
        assert child.exitstatus == 0, "".join(received)
    return "".join(received)


def screen_of(received: str, rows: int, cols: int) -> list[str]:
    """The lines a terminal of `rows` x `cols` shows after `received`, without trailing spaces."""
    screen = pyte.Screen(cols, rows)
    pyte.Stream(screen).feed(received)
    return [line.rstrip() for line in screen.display]


def terminal_screen(endpoint, tmp_path, *args: str, rows: int = 60, cols: int = 60) -> tuple[str, list[str]]:
    """Run chatcli ARGS on a pty to its end: what it sent, and the terminal's last screen."""
    received = on_a_terminal(*args, env=environment(endpoint, tmp_path), rows=rows, cols=cols, check=False)
    return received, screen_of(received, rows, cols)
