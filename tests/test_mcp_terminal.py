"""MCP servers in a real terminal: the start is shown as it happens, the menu names the
server, Ctrl-C cancels a call that hangs and the session goes on, /mcp shows and toggles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pexpect

from tests.fake_server import Reply
from tests.terminal import PROMPT, expect, spawn

SERVER = Path(__file__).with_name("mcp_server.py")
MENU = r"run it\? \[y\]es"


def _configure(tmp_path: Path) -> None:
    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(f"[mcp.servers.faults]\ncommand = {json.dumps(sys.executable)}\n"
                      f"args = [{json.dumps(str(SERVER))}]\n", encoding="utf-8")


def _call(name: str, arguments: dict[str, str] | None = None) -> Reply:
    return Reply(text="", delay=0.05, tool_calls=[{"id": "c1", "name": name,
                                                    "arguments": json.dumps(arguments or {})}])


def test_ctrl_c_cancels_a_call_that_hangs_and_the_session_goes_on(endpoint, tmp_path):
    _configure(tmp_path)
    endpoint.queue(_call("faults__hang"))
    child = spawn(endpoint, tmp_path, cwd=str(tmp_path), timeout=60)
    expect(child, PROMPT)
    child.send("wait for it\r")
    expect(child, r"starting MCP server faults[\s\S]*MCP server faults: 9 tools, started in")
    expect(child, r"faults__hang \(hang of the MCP server faults\)[\s\S]*" + MENU)
    child.send("y")
    expect(child, "▸ faults__hang")
    child.sendintr()
    expect(child, "stopped; nothing more runs")
    expect(child, PROMPT)
    endpoint.queue(_call("faults__echo", {"text": "你好"}), Reply(text="It said hello."))
    child.send("again\r")
    expect(child, MENU)  # the same server, still running: no second start
    child.send("y")
    expect(child, "It said hello")
    assert "starting MCP server" not in child.before
    sent = endpoint.chat_requests[-1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": "c1", "content": "echo: 你好"}
    hung = next(m for m in sent if m["role"] == "tool")
    assert "stopped by the user" in hung["content"]
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_slash_mcp_shows_the_servers_and_turns_one_off(endpoint, tmp_path):
    _configure(tmp_path)
    child = spawn(endpoint, tmp_path, cwd=str(tmp_path), timeout=60)
    expect(child, PROMPT)
    child.send("/mcp\r")
    expect(child, r"faults[\s\S]*starts with the next question[\s\S]*asks each time")
    child.send("/mcp faults\r")
    expect(child, "faults is off")
    expect(child, PROMPT)
    endpoint.queue(Reply(text="No tools."))
    child.send("hi\r")
    expect(child, "No tools")
    assert "tools" not in endpoint.chat_requests[-1]
    child.send("/mcp faults\r")
    expect(child, "faults is on")
    endpoint.queue(Reply(text="With tools."))
    child.send("hi again\r")
    expect(child, r"MCP server faults: 9 tools[\s\S]*With tools")
    assert "faults__echo" in [t["function"]["name"] for t in endpoint.chat_requests[-1]["tools"]]
    child.send("/mcp\r")
    expect(child, r"running, 9 tools")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
