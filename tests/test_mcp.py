"""MCP servers: their tables, the names and results the model sees, and real servers spoken
to through the protocol (mcp-server-time and mcp-server-git from PyPI, and
tests/mcp_server.py for the ways a server goes wrong, over stdio and streamable HTTP)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chatcli import errors
from chatcli.config import merge, parse_config
from chatcli.store import Store
from chatcli.tools import ToolError
from chatcli.tools.mcp import (
    MAX_DESCRIPTION,
    MAX_TOOLS,
    Listed,
    McpTools,
    environment,
    result_text,
    server_of,
    tool_name,
    tools_of,
)
from tests.conftest import TEST_KEY
from tests.fake_server import Reply

HERE = Path(__file__).parent
FAULTS = [sys.executable, str(HERE / "mcp_server.py")]
BIN = Path(sys.executable).parent


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _faults_table(name: str = "faults", *args: str, timeout: float = 60, **keys: str) -> str:
    extra = "".join(f"{key} = {value}\n" for key, value in keys.items())
    return (f"[mcp.servers.{name}]\ncommand = {json.dumps(FAULTS[0])}\n"
            f"args = {json.dumps([FAULTS[1], *args])}\ntimeout = {timeout}\n{extra}")


def _said():
    lines: list[tuple[str, str]] = []
    return lines, lambda text, style: lines.append((text, style))


def _servers(text: str, tmp_path: Path, monkeypatch, chosen=None):
    """McpTools for the servers of config `text`, connected as chatcli connects them."""
    from chatcli.cli.tooling import connection

    monkeypatch.setenv("CHATCLI_DATA_DIR", str(tmp_path / "data"))
    settings = merge(parse_config(text, tmp_path / "c.toml"), {}, {})
    lines, say = _said()
    servers = {name: server_of(name, table) for name, table in settings.mcp_servers.items()}
    return McpTools(servers, chosen, lambda server: connection(server, settings), say), lines


# -- tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "said"), [
    ('command = "x"\nurl = "http://127.0.0.1/mcp"', "either command"),
    ('args = ["x"]', "either command"),
    ('command = "x"\nheaders = { A = "b" }', "headers: only for a server with a url"),
    ('url = "ftp://host/x"', "url: expected an http"),
    ('command = "x"\napprove = "sometimes"', 'approve: expected "always"'),
    ('command = "x"\ntimeout = 0', "timeout: expected a number"),
    ('command = "x"\ncolour = "red"', "unknown key 'colour'"),
    ('url = "http://127.0.0.1/x"\nkey_env = "A"\nkey_command = "b"', "expected one of them"),
])
def test_a_bad_server_table_is_one_line_naming_the_file_line_and_key(tmp_path, table, said):
    text = f'model = "m"\n\n[mcp.servers.git]\n{table}\n'
    with pytest.raises(errors.ConfigError) as caught:
        parse_config(text, tmp_path / "c.toml")
    assert f"{tmp_path / 'c.toml'}:3: mcp.servers.git: " in caught.value.message
    assert said in caught.value.message and "\n" not in caught.value.line()


def test_a_profile_adds_servers_and_replaces_one_of_the_same_name(tmp_path):
    text = ('[mcp.servers.time]\ncommand = "mcp-server-time"\n[mcp.servers.git]\ncommand = "mcp-server-git"\n'
            '[profiles.work]\nmodel = "m"\n[profiles.work.mcp.servers.git]\ncommand = "other-git"\n'
            '[profiles.work.mcp.servers.tracker]\nurl = "https://example.com/mcp"\n')
    data = parse_config(text, tmp_path / "c.toml")
    plain = merge(data, {}, {})
    assert {name: t.get("command") for name, t in plain.mcp_servers.items()} == {
        "time": "mcp-server-time", "git": "mcp-server-git"}
    work = merge(data, {}, {"profile": "work"})
    assert work.mcp_servers["git"]["command"] == "other-git" and "tracker" in work.mcp_servers
    assert work.model == "m"


def test_a_role_chooses_servers_and_tools(endpoint, run, tmp_path):
    _config(tmp_path, _faults_table() + _faults_table("other") + '[roles.e]\nsystem = "Talk."\n'
            'mcp = ["faults:e*"]\n')
    endpoint.queue(Reply(text="Hi."))
    assert run("ask", "-r", "e", "hi").stdout == "Hi.\n"
    assert sorted(t["function"]["name"] for t in endpoint.chat_requests[0]["tools"]) == [
        "faults__echo", "faults__env"]
    endpoint.queue(Reply(text="Hi."))
    assert run("ask", "--mcp", "other:where", "-r", "e", "hi").code == 0
    assert sorted(t["function"]["name"] for t in endpoint.chat_requests[1]["tools"]) == [
        "faults__echo", "faults__env", "other__where"]
    result = run("ask", "--mcp", "nope", "hi")
    assert result.code == errors.EXIT_USAGE and "no MCP server named nope" in result.stderr


def test_tool_names_are_what_the_api_takes_and_stay_apart():
    assert tool_name("git", "git_status") == "git__git_status"
    odd = tool_name("srv", "read file.v2")
    assert odd.startswith("srv__read_file_v2-") and len(odd) <= 64
    long = [tool_name("server", "x" * 80 + suffix) for suffix in ("a", "b")]
    assert all(len(name) <= 64 for name in long) and long[0] != long[1]
    assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
               for name in [odd, *long])


def test_a_stdio_server_gets_a_small_environment_and_never_a_key_of_ours():
    server = server_of("s", {"command": "x", "env": {"TOKEN": "${GH_TOKEN}", "MODE": "fast"}})
    env = {"PATH": "/bin", "HOME": "/home/u", "LANG": "zh_CN.UTF-8", "OPENAI_API_KEY": "sk-1",
           "DEEPSEEK_API_KEY": "sk-2", "GH_TOKEN": "ghp", "AWS_SECRET_ACCESS_KEY": "aws"}
    got = environment(server, env, {"OPENAI_API_KEY", "DEEPSEEK_API_KEY"})
    assert got == {"PATH": "/bin", "HOME": "/home/u", "LANG": "zh_CN.UTF-8", "TOKEN": "ghp", "MODE": "fast"}
    leak = server_of("s", {"command": "x", "env": {"K": "${OPENAI_API_KEY}"}})
    with pytest.raises(ToolError, match="an API key chatcli sends to its endpoint"):
        environment(leak, env, {"OPENAI_API_KEY"})
    unset = server_of("s", {"command": "x", "env": {"K": "${NOT_SET_ANYWHERE}"}})
    with pytest.raises(ToolError, match=r"NOT_SET_ANYWHERE\}, which is not set"):
        environment(unset, env)


def test_every_kind_of_result_part_reaches_the_model_as_text_or_by_name():
    parts = [{"type": "text", "text": "first"},
             {"type": "image", "data": "AAAA" * 10, "mimeType": "image/png"},
             {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
             {"type": "resource_link", "uri": "file:///a.txt", "name": "a"},
             {"type": "resource", "resource": {"uri": "file:///b.txt", "text": "inside b"}},
             {"type": "resource", "resource": {"uri": "file:///c.bin", "blob": "AAAA", "mimeType": "x/bin"}},
             {"type": "hologram"}]
    text = result_text(parts)
    for said in ("first", "[image: image/png, 30 bytes]", "[audio: audio/wav", "file:///a.txt", "inside b",
                 "file:///c.bin: x/bin", "[hologram content, not passed on]"):
        assert said in text
    assert result_text([], {"temperature": 21}) == '{\n  "temperature": 21\n}'
    assert result_text([]) == "(no output)"


def test_the_tools_offered_follow_the_allow_list_the_role_and_the_limits():
    server = server_of("s", {"command": "x", "tools": ["git_*", "big"]})
    listed = [Listed("git_status", "Status.", {"type": "object"}), Listed("git_push", "x" * 5000, {}),
              Listed("rm_rf", "Remove.", {}), Listed("big", "Big.", {"type": "object", "x": "y" * 40_000})]
    tools, notes = tools_of(server, listed, ("*",), lambda tool, arguments: "")
    assert [t.name for t in tools] == ["s__git_status", "s__git_push"]
    assert len(tools[1].description) == MAX_DESCRIPTION and tools[1].description.endswith("…")
    assert tools[0].parameters == {"type": "object", "properties": {}}
    assert notes and "schema over" in notes[0] and "big" in notes[0]
    only, _ = tools_of(server, listed, ("git_s*",), lambda tool, arguments: "")
    assert [t.name for t in only] == ["s__git_status"]
    many = [Listed(f"t{n}", "", {}) for n in range(MAX_TOOLS + 50)]
    offered, notes = tools_of(server_of("m", {"command": "x"}), many, ("*",), lambda t, a: "")
    assert len(offered) == MAX_TOOLS and f"{MAX_TOOLS + 50:,} tools listed" in notes[0]


# -- real servers over stdio -----------------------------------------------------------------


def test_mcp_server_time_answers_through_the_protocol_and_the_result_reaches_the_next_request(
        endpoint, run, tmp_path, db):
    _config(tmp_path, f'[mcp.servers.time]\ncommand = "{BIN / "mcp-server-time"}"\n'
                      'args = ["--local-timezone", "UTC"]\napprove = "never"\n')
    endpoint.queue(Reply(text="", tool_calls=[{"id": "c1", "name": "time__get_current_time",
                                               "arguments": json.dumps({"timezone": "Asia/Shanghai"})}]),
                   Reply(text="It is evening in Shanghai."))
    result = run("ask", "what time is it in Shanghai?")
    assert result.code == 0 and result.stdout == "It is evening in Shanghai.\n"
    offered = {t["function"]["name"]: t["function"] for t in endpoint.chat_requests[0]["tools"]}
    assert set(offered) == {"time__get_current_time", "time__convert_time"}
    assert offered["time__get_current_time"]["parameters"]["required"] == ["timezone"]
    told = endpoint.chat_requests[1]["messages"][-1]
    assert told["role"] == "tool" and told["tool_call_id"] == "c1"
    assert json.loads(told["content"])["timezone"] == "Asia/Shanghai"
    assert "starting MCP server time" in result.stderr and "2 tools, started in" in result.stderr
    (call,) = Store(db).load(1)[1].tool_calls
    assert call.name == "time__get_current_time" and "Asia/Shanghai" in call.result.content


def test_mcp_server_git_reads_a_repository(endpoint, run, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    for step in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "第一次提交"]):
        subprocess.run(["git", *step], cwd=repo, check=True, env={**os.environ, **git})
    (repo / "new.txt").write_text("untracked\n")
    _config(tmp_path, f'[mcp.servers.git]\ncommand = "{BIN / "mcp-server-git"}"\nargs = ["--repository", '
                      f'"{repo}"]\ntools = ["git_status", "git_log"]\n')
    endpoint.queue(Reply(text="", tool_calls=[
        {"id": "c1", "name": "git__git_status", "arguments": json.dumps({"repo_path": str(repo)})},
        {"id": "c2", "name": "git__git_log", "arguments": json.dumps({"repo_path": str(repo)})}]),
        Reply(text="One untracked file."))
    result = run("ask", "--yes", "what is the state of the repo?")
    assert result.code == 0 and result.stdout == "One untracked file.\n"
    assert sorted(t["function"]["name"] for t in endpoint.chat_requests[0]["tools"]) == [
        "git__git_log", "git__git_status"]
    status, log = endpoint.chat_requests[1]["messages"][-2:]
    assert "new.txt" in status["content"] and "第一次提交" in log["content"]


def test_without_a_yes_an_mcp_call_is_refused_and_a_role_can_offer_none(endpoint, run, tmp_path):
    _config(tmp_path, _faults_table() + '[roles.plain]\nsystem = "Talk."\nmcp = []\n')
    endpoint.queue(Reply(text="", tool_calls=[{"id": "c1", "name": "faults__echo",
                                               "arguments": json.dumps({"text": "hi"})}]), Reply(text="No."))
    assert run("ask", "say hi").stdout == "No.\n"
    assert endpoint.chat_requests[1]["messages"][-1]["content"].startswith("refused:")
    endpoint.queue(Reply(text="Plain."))
    assert run("ask", "-r", "plain", "hi").stdout == "Plain.\n"
    assert "tools" not in endpoint.chat_requests[2]
    endpoint.queue(Reply(text="None."))
    assert run("ask", "--no-tools", "hi").stdout == "None.\n"
    assert "tools" not in endpoint.chat_requests[3]


def test_a_server_marked_approve_never_still_runs_only_its_allowed_tools(tmp_path, monkeypatch):
    servers, _ = _servers(_faults_table(tools='["echo"]', approve='"never"'), tmp_path, monkeypatch)
    try:
        tools = servers.tools()
        assert list(tools) == ["faults__echo"]
        assert servers.trusted(tools["faults__echo"])
        assert tools["faults__echo"].run({"text": "你好"}, None) == "echo: 你好"
    finally:
        servers.close()


def test_results_that_are_errors_images_and_huge_reach_the_model_as_such(tmp_path, monkeypatch):
    servers, _ = _servers(_faults_table(), tmp_path, monkeypatch)
    try:
        tools = servers.tools()
        with pytest.raises(ToolError, match="it went wrong"):
            tools["faults__fail"].run({}, None)
        assert tools["faults__image"].run({}, None) == "[image: image/png, 72 bytes]\na red pixel"
        assert len(tools["faults__huge"].run({"size": 3_000_000}, None)) == 3_000_000
        assert tools["faults__where"].run({}, None) == os.getcwd()
    finally:
        servers.close()


def test_a_huge_result_is_cut_for_the_model_and_kept_whole(endpoint, run, tmp_path, db):
    _config(tmp_path, _faults_table(approve='"never"'))
    endpoint.queue(Reply(text="", tool_calls=[{"id": "c1", "name": "faults__huge",
                                               "arguments": json.dumps({"size": 2_000_000})}]),
                   Reply(text="Long."))
    assert run("ask", "go").stdout == "Long.\n"
    told = endpoint.chat_requests[1]["messages"][-1]["content"]
    assert len(told) < 40_000 and "cut here to keep within tool_output_tokens" in told
    (call,) = Store(db).load(1)[1].tool_calls
    assert len(call.result.whole) == 2_000_000


def test_a_server_that_cannot_start_says_why_in_one_line_and_the_rest_go_on(tmp_path, monkeypatch):
    text = (_faults_table("dies", "--die", "boom: no token configured \x1b[2J\u202e")
            + '[mcp.servers.missing]\ncommand = "no-such-mcp-server-here"\n' + _faults_table("fine"))
    servers, lines = _servers(text, tmp_path, monkeypatch)
    try:
        tools = servers.tools()
        assert "fine__echo" in tools and not any(name.startswith(("dies", "missing")) for name in tools)
        warned = [text for text, style in lines if style == "yellow"]
        assert any("MCP server dies:" in line and "boom: no token configured" in line for line in warned)
        assert not any("\x1b" in line or "\u202e" in line for line in warned)  # its stderr is data
        assert any("`no-such-mcp-server-here` was not found" in line for line in warned)
        assert servers.state("dies").startswith("failed:") and servers.state("fine").startswith("running")
        said = [text for text, _ in lines]
        first_done = next(i for i, text in enumerate(said) if "started in" in text or "exited" in text)
        assert all(i < first_done for i, text in enumerate(said) if text.startswith("starting"))  # together
        log = tmp_path / "data" / "logs" / "mcp-dies.log"
        assert "boom: no token configured" in log.read_text() and log.stat().st_mode & 0o077 == 0
        servers.tools()
        assert len([line for line in lines if "MCP server dies:" in line[0]]) == 1  # not tried again
    finally:
        servers.close()


def test_a_crash_mid_call_a_hang_and_garbage_each_end_in_one_line(tmp_path, monkeypatch):
    text = _faults_table(timeout=2) + _faults_table("garbage", "--garbage")
    servers, lines = _servers(text, tmp_path, monkeypatch)
    try:
        tools = servers.tools()
        with pytest.raises(ToolError, match="did not answer within 2 s"):
            tools["faults__hang"].run({}, None)
        assert tools["faults__echo"].run({"text": "still here"}, None) == "echo: still here"
        with pytest.raises(ToolError, match="not an MCP message"):
            tools["garbage__say"].run({}, None)
        with pytest.raises(ToolError, match="exited during the call; it said: crashing as asked"):
            tools["faults__crash"].run({}, None)
        with pytest.raises(ToolError, match="is not running"):
            tools["faults__echo"].run({"text": "again"}, None)
        assert not any(name.startswith("faults__") for name in servers.tools())
        assert any("faults: it exited; its tools are not offered" in line for line, _ in lines)
        assert servers.toggle("faults") is False and servers.toggle("faults") is True
        assert servers.tools()["faults__echo"].run({"text": "back"}, None) == "echo: back"  # started again
    finally:
        servers.close()


def test_an_enormous_tools_list_is_cut_to_what_a_request_takes(tmp_path, monkeypatch):
    servers, lines = _servers(_faults_table("many", "--tools", "400"), tmp_path, monkeypatch)
    try:
        assert len(servers.tools()) == MAX_TOOLS
        assert any("409 tools listed; the first 128 are offered" in line for line, _ in lines)
    finally:
        servers.close()


# -- streamable HTTP -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["streamable-http", "sse"])
def http_server(request):
    port = _free_port()
    sse = request.param == "sse"
    process = subprocess.Popen([*FAULTS, "--http", str(port), *(["--sse"] if sse else [])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                pytest.fail("the HTTP MCP server did not start")
            threading.Event().wait(0.05)
        yield (f'url = "http://127.0.0.1:{port}/sse"\ntransport = "sse"' if sse
               else f'url = "http://127.0.0.1:{port}/mcp"')
    finally:
        process.terminate()
        process.wait(10)


def test_the_same_server_over_streamable_http_and_sse(http_server, tmp_path, monkeypatch):
    servers, _ = _servers(f'[mcp.servers.web]\n{http_server}\n', tmp_path, monkeypatch)
    try:
        tools = servers.tools()
        assert tools["web__echo"].run({"text": "over HTTP"}, None) == "echo: over HTTP"
        with pytest.raises(ToolError, match="it went wrong"):
            tools["web__fail"].run({}, None)
    finally:
        servers.close()


class _Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        seen.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.send_header("WWW-Authenticate", "Bearer")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


seen: list[str | None] = []


def test_a_remote_server_that_needs_auth_says_so_and_gets_the_key_from_its_variable(tmp_path, monkeypatch):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("TRACKER_TOKEN", "tok-123")
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
        servers, lines = _servers(f'[mcp.servers.tracker]\nurl = "{url}"\nkey_env = "TRACKER_TOKEN"\n',
                                  tmp_path, monkeypatch)
        assert servers.tools() == {}
        (warning,) = [line for line, style in lines if style == "yellow"]
        assert "needs authorization (HTTP 401)" in warning and "key_env" in warning
        assert "tok-123" not in warning and seen and seen[0] == "Bearer tok-123"
    finally:
        httpd.shutdown()


# -- the command line --------------------------------------------------------------------------


def test_mcp_list_tools_and_test(run, tmp_path):
    _config(tmp_path, _faults_table(tools='["echo", "fail"]') + _faults_table("off", enabled="false")
            + '[mcp.servers.missing]\ncommand = "no-such-mcp-server-here"\n')
    listing = run("mcp", "list")
    assert listing.code == 0
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "ok, started in" in rows["faults"] and " 2 " in rows["faults"]
    assert "disabled" in rows["off"] and "FAILED: the command `no-such-mcp-server-here`" in rows["missing"]
    tools = run("mcp", "tools", "faults")
    assert tools.code == 0 and "faults__echo" in tools.stdout and "Say the text back." in tools.stdout
    tested = run("mcp", "test", "faults")
    assert tested.code == 0 and "faults: started and listed 9 tools" in tested.stdout
    assert "faults: stopped in" in tested.stdout
    failed = run("mcp", "test", "missing")
    assert failed.code == errors.EXIT_SERVER and "was not found" in failed.stderr
    assert run("mcp", "test", "nope").code == errors.EXIT_USAGE


def test_mcp_import_writes_tables_without_copying_keys(run, tmp_path):
    config = _config(tmp_path, 'model = "m"\n[mcp.servers.time]\ncommand = "mine"\n')
    source = tmp_path / "claude_desktop_config.json"
    source.write_text(json.dumps({"mcpServers": {
        "time": {"command": "theirs"},
        "github.com/gh": {"command": "npx", "args": ["-y", "server-github"],
                          "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_real_secret", "LOG": "1"}},
        "tracker": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer abc123"}},
        "old": {"type": "sse", "url": "http://127.0.0.1:9/sse", "disabled": True},
        "broken": {"neither": 1}}}))
    result = run("mcp", "import", str(source))
    assert result.code == 0
    text = config.read_text()
    assert "ghp_real_secret" not in text and "abc123" not in text
    data = parse_config(text, config)
    servers = data["mcp"]["servers"]
    assert servers["time"] == {"command": "mine"}  # left as it was
    assert servers["github-com-gh"]["env"] == {
        "GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_PERSONAL_ACCESS_TOKEN}", "LOG": "1"}
    assert servers["tracker"]["headers"] == {"Authorization": "Bearer ${MCP_TRACKER_AUTHORIZATION}"}
    assert servers["old"] == {"url": "http://127.0.0.1:9/sse", "transport": "sse", "enabled": False}
    assert "GITHUB_PERSONAL_ACCESS_TOKEN, MCP_TRACKER_AUTHORIZATION" in result.stderr
    assert "broken: it has neither command nor url" in result.stderr
    assert data["model"] == "m"
    assert run("mcp", "import", str(tmp_path / "none.json")).code == errors.EXIT_USAGE


def test_doctor_checks_each_server(endpoint, run, tmp_path):
    _config(tmp_path, _faults_table() + '[mcp.servers.missing]\ncommand = "no-such-mcp-server-here"\n')
    endpoint.queue(Reply(text="ok"))
    result = run("doctor")
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    assert "ok" in rows["MCP server faults"] and "9 tools" in rows["MCP server faults"]
    assert "FAIL" in rows["MCP server missing"] and result.code == errors.EXIT_SERVER


def test_servers_configured_but_unused_do_not_load_the_sdk(endpoint, tmp_path):
    """With servers configured, `ask --no-tools` never imports the MCP SDK (start-up as before;
    the table is checked by chatcli.tools.mcp, which is the standard library only)."""
    _config(tmp_path, _faults_table())
    endpoint.queue(Reply(text="Hi."))
    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": TEST_KEY,
           "CHATCLI_MODEL": "test-model", "CHATCLI_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatcli", "ask", "--no-tools", "hi"],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0 and done.stdout == "Hi.\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "chatcli.cli.base" in imported  # the import log is what it seems
    sdk = {name for name in imported if name.split(".")[0] in ("mcp", "mcp_types")}
    assert not sdk and "chatcli.tools.mcp_client" not in imported


def test_switching_roles_in_a_session_switches_their_servers(server, tmp_path):
    from chatcli.tools import Context
    from chatcli.tools.box import ToolBox
    from tests.test_repl import Harness

    tables = {"time": {"command": "t"}, "git": {"command": "g"}, "off": {"command": "o", "enabled": False}}
    harness = Harness(server, tmp_path, mcp={"servers": tables},
                      roles={"clock": {"system": "Tell the time.", "mcp": ["time:get_*", "off"]}})
    servers = McpTools({name: server_of(name, table) for name, table in tables.items()}, None,
                       lambda server: pytest.fail("nothing starts here"), lambda text, style: None)
    harness.session.tools = ToolBox([], context=Context(cwd=tmp_path), mcp=servers)
    assert servers.on == {"time": ("*",), "git": ("*",)}
    harness.session.set_role("clock")
    assert servers.on == {"time": ("get_*",), "off": ("*",)}
    harness.session.set_role(None)
    assert servers.on == {"time": ("*",), "git": ("*",)}
