"""Tools from the command line: -T, --yes, no terminal to ask on, --json, what is saved and
resumed, servers that take no tools, `chatcli tools`."""

from __future__ import annotations

import json

from chatcli.store import Store
from tests.fake_server import Reply

READ = {"id": "call_1", "name": "read_file", "arguments": json.dumps({"path": "notes.txt"})}


def _notes(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("the meeting is on 星期三\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)


def test_yes_runs_the_call_and_the_answer_alone_reaches_stdout(endpoint, run, tmp_path, monkeypatch):
    _notes(tmp_path, monkeypatch)
    endpoint.queue(Reply(text="", tool_calls=[READ]), Reply(text="Wednesday."))
    result = run("ask", "-T", "read_file", "--yes", "when is the meeting?")
    assert result.code == 0 and result.stdout == "Wednesday.\n"
    assert "--yes: every tool call runs without asking" in result.stderr
    assert "▸ read_file" in result.stderr
    follow = endpoint.chat_requests[1]["messages"]
    assert follow[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "the meeting is on 星期三\n"}
    assert [t["function"]["name"] for t in endpoint.chat_requests[0]["tools"]] == ["read_file"]


def test_without_a_terminal_a_call_needing_a_yes_is_refused_and_the_model_told(endpoint, run, tmp_path,
                                                                               monkeypatch):
    _notes(tmp_path, monkeypatch)
    endpoint.queue(Reply(text="", tool_calls=[READ]), Reply(text="I could not read it."))
    result = run("ask", "-T", "read_file", "when is the meeting?")
    assert result.code == 0 and result.stdout == "I could not read it.\n"
    told = endpoint.chat_requests[1]["messages"][-1]["content"]
    assert told == "refused: there was no terminal to ask the user on, and --yes was not given"
    assert "refused" in result.stderr


def test_approve_in_the_config_lets_a_read_tool_run_but_never_a_command(endpoint, run, tmp_path, monkeypatch):
    _notes(tmp_path, monkeypatch)
    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir()
    config.write_text('[tools]\nenabled = ["read_file"]\napprove = ["read_file"]\n')
    endpoint.queue(Reply(text="", tool_calls=[READ]), Reply(text="Wednesday."))
    assert run("ask", "when?").stdout == "Wednesday.\n"
    assert "星期三" in endpoint.chat_requests[1]["messages"][-1]["content"]
    config.write_text('[tools]\napprove = ["run_command"]\n')
    result = run("ask", "-T", "run_command", "list")
    assert result.code == 2 and "only tools that read may run without asking" in result.stderr


def test_an_unknown_tool_is_a_usage_error_before_anything_is_sent(endpoint, run):
    result = run("ask", "-T", "rm_everything", "hi")
    assert result.code == 2 and "no tool named rm_everything" in result.stderr
    assert endpoint.chat_requests == []


def test_json_holds_the_calls_that_ran(endpoint, run, tmp_path, monkeypatch):
    _notes(tmp_path, monkeypatch)
    endpoint.queue(Reply(text="", tool_calls=[READ]), Reply(text="Wednesday."))
    data = json.loads(run("ask", "--json", "-T", "read_file", "--yes", "when?").stdout)
    assert data["choices"][0]["message"]["content"] == "Wednesday."
    (call,) = data["chatcli_tool_calls"]
    assert call["name"] == "read_file" and call["status"] == "ok" and "星期三" in call["result"]


def test_calls_and_results_are_saved_shown_searched_and_resumed(endpoint, run, tmp_path, monkeypatch, db):
    _notes(tmp_path, monkeypatch)
    endpoint.queue(Reply(text="", tool_calls=[READ]), Reply(text="Wednesday."))
    run("ask", "-T", "read_file", "--yes", "when is the meeting?")
    messages = Store(db).load(1)
    assert [m.role for m in messages] == ["user", "assistant", "assistant"]
    (call,) = messages[1].tool_calls
    assert call.name == "read_file" and call.result.status == "ok" and "星期三" in call.result.content
    shown = run("sessions", "show", "1").stdout
    assert "Tool call `read_file`" in shown and "the meeting is on 星期三" in shown
    assert "星期三" in run("sessions", "search", "星期三").stdout
    exported = json.loads(run("sessions", "export", "1", "--format", "json").stdout)
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant", "tool", "assistant"]
    endpoint.queue(Reply(text="You're welcome."))
    run("ask", "-c", "thanks")
    resumed = endpoint.chat_requests[-1]["messages"]
    assert [m["role"] for m in resumed] == ["user", "assistant", "tool", "assistant", "user"]
    assert resumed[1]["tool_calls"][0]["id"] == "call_1" and resumed[2]["tool_call_id"] == "call_1"


OLLAMA = "registry.ollama.ai/library/gemma2:latest does not support tools"


def test_a_model_without_tools_is_one_line_then_remembered(endpoint, run, tmp_path, monkeypatch):
    endpoint.refuses_tools = OLLAMA
    result = run("ask", "-T", "read_file", "hi")
    assert result.code == 7 and "test-model does not take tools (says the server)" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3
    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir()
    config.write_text('tool_fallback = "answer"\n')
    endpoint.queue(Reply(text="Hello without tools."))
    before = len(endpoint.chat_requests)
    result = run("ask", "-T", "read_file", "hi")
    assert result.code == 0 and result.stdout == "Hello without tools.\n"
    assert "remembered for this endpoint and model" in result.stderr and "asked without them" in result.stderr
    sent = endpoint.chat_requests[before:]
    assert len(sent) == 1 and "tools" not in sent[0]  # remembered: not offered again to be refused


def test_tools_lists_them_with_what_they_can_do(run, tmp_path):
    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir()
    config.write_text('[tools]\nenabled = ["read_file"]\napprove = ["read_file"]\n'
                      '[tools.count]\ndescription = "Count words."\ncommand = "wc -w"\n')
    out = run("tools").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"read_file", "list_files", "search_files", "run_command", "write_file", "edit_file",
                         "fetch_url", "count"}
    assert "yes" in rows["read_file"] and "runs without asking" in rows["read_file"]
    assert "run" in rows["run_command"] and "asks" in rows["run_command"]
    assert "Count words." in rows["count"]


def test_a_command_the_model_runs_cannot_read_the_api_keys(endpoint, run, monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-secret")
    monkeypatch.setenv("PLAIN_VARIABLE", "kept")
    monkeypatch.chdir(tmp_path)
    command = 'echo "[$OPENAI_API_KEY][$DEEPSEEK_API_KEY][$PLAIN_VARIABLE]"'
    endpoint.queue(Reply(text="", tool_calls=[{"id": "c", "name": "run_command",
                                                "arguments": json.dumps({"command": command})}]),
                   Reply(text="done"))
    run("ask", "-T", "run_command", "--yes", "show the environment")
    assert endpoint.chat_requests[1]["messages"][-1]["content"] == "[][][kept]\n[exit code 0]"
