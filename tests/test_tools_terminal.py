"""The approval menu and a running tool in a real terminal: keys typed ahead never answer,
hidden characters are shown, a call taller than the screen cannot be approved, Ctrl-C stops
the tool and not the session."""

from __future__ import annotations

import json
import time

import pexpect

from tests.fake_server import Reply
from tests.terminal import PROMPT, expect, spawn

MENU = r"run it\? \[y\]es"


def command_call(command: str) -> Reply:
    return Reply(text="", delay=0.05, tool_calls=[{"id": "c1", "name": "run_command",
                                                    "arguments": json.dumps({"command": command})}])


def tall_command(marker) -> str:
    """61 lines, the last making `marker`: taller than a 30-row screen."""
    return "\n".join([*(f"echo {n}" for n in range(60)), f"touch {marker}"])


def test_a_key_typed_before_the_menu_does_not_answer_it(endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    endpoint.queue(Reply(text="Let me check.", delay=0.2, chunk_chars=2, tool_calls=[
        {"id": "c1", "name": "run_command", "arguments": json.dumps({"command": f"touch {marker}"})}]),
        Reply(text="Not run, then."))
    child = spawn(endpoint, tmp_path, "-T", "run_command", cwd=str(tmp_path))
    expect(child, PROMPT)
    child.send("make the file\r")
    child.send("y")  # typed ahead, while the reply streams: thrown away
    expect(child, MENU)
    time.sleep(1.0)
    assert not marker.exists()
    child.send("n")
    expect(child, r"refused: the user did not allow this call[\s\S]*Not run, then")  # one read: the
    expect(child, PROMPT)  # helper drops what follows a match while it answers the terminal
    assert not marker.exists()
    assert endpoint.chat_requests[1]["messages"][-1]["content"] == "refused: the user did not allow this call"
    endpoint.queue(command_call(f"touch {marker}"), Reply(text="Made it."))
    child.send("again\r")
    expect(child, MENU)
    child.send("y")
    expect(child, "Made")
    assert marker.exists()
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_direction_changing_characters_are_shown_as_signs(endpoint, tmp_path):
    endpoint.queue(command_call("echo safe \u202e; rm -rf ~ \u202c"), Reply(text="ok"))
    child = spawn(endpoint, tmp_path, "-T", "run_command", cwd=str(tmp_path))
    expect(child, PROMPT)
    child.send("go\r")
    expect(child, r"echo safe <U\+202E>; rm -rf ~ <U\+202C>")
    expect(child, "invisible or direction-changing characters")
    expect(child, MENU)
    assert "\u202e" not in child.before
    child.send("n")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_a_call_taller_than_the_screen_cannot_be_approved(endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    command = tall_command(marker)
    endpoint.queue(command_call(command), Reply(text="fine"))
    child = spawn(endpoint, tmp_path, "-T", "run_command", cwd=str(tmp_path), rows=30)
    expect(child, PROMPT)
    child.send("go\r")
    expect(child, "more than the screen shows: it cannot")
    expect(child, r"\[n\]o  \[e\]dit")
    child.send("y")
    expect(child, "cannot be approved here")
    child.send("n")
    expect(child, "fine")
    assert not marker.exists()
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_ctrl_c_stops_the_tool_keeps_its_output_and_the_session_goes_on(endpoint, tmp_path):
    marker = tmp_path / "late.txt"
    endpoint.queue(command_call(f"echo started; sleep 20; touch {marker}"))
    child = spawn(endpoint, tmp_path, "-T", "run_command", cwd=str(tmp_path))
    expect(child, PROMPT)
    child.send("run the slow thing\r")
    expect(child, MENU)
    child.send("y")
    expect(child, "▸ run_command")
    time.sleep(1.5)
    child.sendintr()
    expect(child, "stopped; nothing more runs, and what ran is kept")
    expect(child, PROMPT)
    endpoint.queue(Reply(text="It printed started."))
    child.send("what happened?\r")
    expect(child, "printed")
    sent = endpoint.chat_requests[-1]["messages"]
    assert sent[2]["role"] == "tool" and sent[2]["content"].startswith("started")
    assert "stopped by the user" in sent[2]["content"]
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert not marker.exists()


def test_edit_changes_the_call_which_is_shown_again_before_it_runs(endpoint, tmp_path):
    endpoint.queue(command_call("touch first.txt"), Reply(text="edited"))
    child = spawn(endpoint, tmp_path, "-T", "run_command", cwd=str(tmp_path),
                  EDITOR="sed -i s/first.txt/second.txt/", VISUAL="")
    expect(child, PROMPT)
    child.send("go\r")
    expect(child, MENU)
    child.send("e")
    expect(child, r"touch second\.txt[\s\S]*" + MENU)  # what will run now, asked about again
    child.send("y")
    expect(child, "edited")
    assert (tmp_path / "second.txt").exists() and not (tmp_path / "first.txt").exists()
    told = endpoint.chat_requests[1]["messages"][-1]["content"]
    assert told.startswith('(the user edited the arguments to: {"command": "touch second.txt"})')
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_a_model_without_tools_is_asked_about_once_then_answered_without_them(endpoint, tmp_path):
    endpoint.refuses_tools = "registry.ollama.ai/library/gemma2:latest does not support tools"
    endpoint.queue(Reply(text="plain answer"), Reply(text="second answer"))
    child = spawn(endpoint, tmp_path, "-T", "read_file", cwd=str(tmp_path))
    expect(child, PROMPT)
    child.send("hi\r")
    expect(child, r"does not take tools \(says the server\): ask without tools")
    child.send("y")
    expect(child, "plain answer")
    expect(child, PROMPT)
    child.send("again\r")
    expect(child, "second answer")
    assert [("tools" in body) for body in endpoint.chat_requests] == [True, False, False]
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_a_tall_call_read_whole_in_the_pager_may_then_be_approved(endpoint, tmp_path):
    marker = tmp_path / "ran.txt"
    command = tall_command(marker)
    endpoint.queue(command_call(command), Reply(text="ran it"))
    child = spawn(endpoint, tmp_path, "-T", "run_command", cwd=str(tmp_path), rows=30, PAGER="cat")
    expect(child, PROMPT)
    child.send("go\r")
    expect(child, r"\[v\]iew whole")
    child.send("v")
    expect(child, r"touch [\s\S]*" + MENU)  # the pager showed it to its end; now it may be approved
    child.send("y")
    expect(child, "ran it")
    assert marker.exists()
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
