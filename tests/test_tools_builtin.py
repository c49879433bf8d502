"""The built-in tools and the user's command tools, run directly: what they may touch, what
they refuse, how much they return, and Ctrl-C while a command runs."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatcli import errors
from chatcli.config import merge, parse_config
from chatcli.tools import Context, Stopped, ToolError
from chatcli.tools.builtin import BUILTIN_BY_NAME, MAX_MATCHES, change_preview
from chatcli.tools.command import command_tool


def run(name: str, ctx: Context, **args):
    return BUILTIN_BY_NAME[name].run(args, ctx)


@pytest.fixture
def work(tmp_path):
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return '你好'\n", encoding="utf-8")
    (root / "README.md").write_text("# Demo\nrun main\n", encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("secret = yes\n")
    (root / "image.bin").write_bytes(b"\x89PNG\0\0\0data")
    (tmp_path / "outside.txt").write_text("not yours\n")
    return Context(cwd=root, timeout=10)


def test_read_file_reads_text_inside_the_working_directory(work):
    assert run("read_file", work, path="src/app.py") == "def main():\n    return '你好'\n"
    assert run("read_file", work, path="src/app.py", start_line=2) == "    return '你好'\n"


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "src/../../outside.txt", "~/x"])
def test_paths_outside_the_working_directory_are_refused(work, path):
    with pytest.raises(ToolError, match=r"outside the working directory|does not exist"):
        run("read_file", work, path=path)


def test_a_link_pointing_outside_is_refused(work):
    os.symlink(work.cwd.parent / "outside.txt", work.cwd / "link.txt")
    with pytest.raises(ToolError, match="outside the working directory"):
        run("read_file", work, path="link.txt")


def test_binary_files_are_refused_and_big_ones_read_in_part(work):
    with pytest.raises(ToolError, match="binary"):
        run("read_file", work, path="image.bin")
    (work.cwd / "big.txt").write_text("x" * 600_000)
    text = run("read_file", work, path="big.txt")
    assert len(text) < 300_000 and text.endswith("[only the first 256 kB of the file was read]")


def test_list_files_leaves_out_version_control_and_takes_a_pattern(work):
    listed = run("list_files", work).split("\n")
    assert sorted(listed) == ["README.md", "image.bin", "src/app.py"]
    assert run("list_files", work, pattern="*.py") == "src/app.py"


def test_search_files_finds_lines_and_stops_at_its_bound(work):
    assert run("search_files", work, pattern=r"你好") == "src/app.py:2:     return '你好'"
    assert run("search_files", work, pattern="secret") == "(no matches)"  # .git is not searched
    (work.cwd / "many.txt").write_text("hit\n" * 1000)
    found = run("search_files", work, pattern="hit", glob="many.txt")
    assert found.count("\n") == MAX_MATCHES and found.endswith(f"[stopped at {MAX_MATCHES} matches]")
    with pytest.raises(ToolError, match="not a valid regular expression"):
        run("search_files", work, pattern="(")


def test_write_and_edit_show_a_diff_first_and_change_exactly_what_it_shows(work):
    new = {"path": "notes/todo.md", "content": "- 买菜\n"}
    assert change_preview(new, work).splitlines() == ["--- /dev/null", "+++ b/notes/todo.md",
                                                      "@@ -0,0 +1 @@", "+- 买菜"]
    assert run("write_file", work, **new) == "wrote notes/todo.md (1 lines)"
    edit = {"path": "README.md", "old_text": "run main", "new_text": "run main()"}
    assert "-run main\n+run main()" in change_preview(edit, work)
    run("edit_file", work, **edit)
    assert (work.cwd / "README.md").read_text() == "# Demo\nrun main()\n"
    with pytest.raises(ToolError, match="found 0 times"):
        run("edit_file", work, path="README.md", old_text="nowhere", new_text="x")
    with pytest.raises(ToolError, match="outside"):
        run("write_file", work, path="../outside.txt", content="overwritten")
    assert (work.cwd.parent / "outside.txt").read_text() == "not yours\n"


def test_run_command_returns_output_and_exit_code(work):
    out = run("run_command", work, command="echo out; echo err >&2; exit 3")
    assert out == "out\nerr\n[exit code 3]"
    assert run("run_command", work, command="pwd").startswith(str(work.cwd.resolve()))


def test_a_command_past_its_timeout_is_stopped(work):
    started = time.monotonic()
    out = run("run_command", Context(cwd=work.cwd, timeout=0.5), command="echo begun; sleep 30")
    assert out.startswith("begun") and "still running after 0.5 s" in out
    assert time.monotonic() - started < 20


def test_ctrl_c_stops_the_command_and_keeps_what_it_printed(work):
    marker = work.cwd / "after.txt"
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(Stopped) as stopped:
        run("run_command", work, command=f"echo first; sleep 2; touch {marker}")
    assert stopped.value.output.startswith("first") and "stopped by the user" in stopped.value.output
    time.sleep(2.5)
    assert not marker.exists()  # the whole process group went


class _Pages(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = (b"<html><head><style>x{}</style></head><body><h1>Title</h1><script>evil()</script>"
                b"<p>First &amp; second</p></body></html>") if self.path == "/page" else b"\0\1"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8" if self.path == "/page" else "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_fetch_url_gives_a_page_as_text_and_refuses_other_schemes(work):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert run("fetch_url", work, url=f"{base}/page") == "[200 text/html]\nTitle\nFirst & second"
        with pytest.raises(ToolError, match="image/png, not text"):
            run("fetch_url", work, url=f"{base}/image")
    finally:
        httpd.shutdown()
    for url in ("file:///etc/passwd", "ftp://example.com/x", "http://"):
        with pytest.raises(ToolError, match="only http"):
            run("fetch_url", work, url=url)


def test_a_command_tool_gets_its_arguments_as_json_on_stdin(work):
    tool = command_tool("count", {"description": "count words", "command": "python3 -c 'import json,sys; "
                                  "print(len(json.load(sys.stdin)[\"text\"].split()))'"})
    assert tool.effect == "run" and tool.parameters == {"type": "object", "properties": {}}
    assert tool.run({"text": "one two 三"}, work) == "3\n[exit code 0]"


@pytest.mark.parametrize(("table", "message"), [
    ('[tools.x]\ndescription = "d"\n', "command: expected the command"),
    ('[tools.x]\ncommand = "true"\n', "description: expected"),
    ('[tools.x]\ncommand = "true"\ndescription = "d"\nparameters = 3\n', "parameters: expected"),
    ('[tools.x]\ncommand = "true"\ndescription = "d"\nsecret = 1\n', "unknown key 'secret'"),
    ('[tools."9bad"]\ncommand = "true"\ndescription = "d"\n', "a tool's name is letters"),
    ('[tools]\nenabled = "read_file"\n', "tools.enabled: expected a list of tool names"),
])
def test_a_wrong_tools_table_is_one_line_naming_its_place(tmp_path, table, message):
    with pytest.raises(errors.ConfigError, match=message) as caught:
        parse_config(table, tmp_path / "config.toml")
    assert "config.toml:" in caught.value.message and "\n" not in caught.value.message


def test_the_tools_table_becomes_settings(tmp_path):
    data = parse_config('[tools]\nenabled = ["read_file"]\napprove = ["read_file"]\n'
                        '[tools.count]\ndescription = "d"\ncommand = "wc -w"\n', tmp_path / "c.toml")
    settings = merge(data, {}, {})
    assert settings.tools == ("read_file",) and settings.approve_tools == ("read_file",)
    assert dict(settings.custom_tools) == {"count": {"description": "d", "command": "wc -w"}}
    role = merge({**data, "roles": {"coder": {"tools": ["run_command"]}}}, {}, {"role": "coder"})
    assert role.tools == ("run_command",)
    json.dumps(dict(settings.custom_tools))  # plain data, as config show prints it
