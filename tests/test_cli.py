"""`chatcli ask` and pipes through typer's CliRunner: stdout carries the answer only."""

from __future__ import annotations

import json

import pytest
import typer

from chatcli import __version__
from tests.conftest import ANSI, TEST_KEY
from tests.fake_server import CONTEXT_TOO_LONG, Reply, error_body


def test_version(run):
    result = run("--version")
    assert (result.code, result.stdout) == (0, f"chatcli {__version__}\n")


def test_ask_prints_the_answer_on_stdout_and_nothing_else(run, endpoint):
    result = run("ask", "Who won the world series in 2020?")
    assert result.code == 0
    assert result.stdout == "Hello! How can I help?\n"
    assert result.stderr == ""
    assert endpoint.chat_requests[0]["messages"] == [
        {"role": "user", "content": "Who won the world series in 2020?"}]


def test_ask_joins_several_words(run, endpoint):
    run("ask", "what", "is", "2+2?")
    assert endpoint.chat_requests[0]["messages"][0]["content"] == "what is 2+2?"


def test_piped_text_and_question_make_one_delimited_message(run, endpoint):
    result = run("ask", "summarise this", input="line one\nline two\n")
    assert result.code == 0
    assert endpoint.chat_requests[0]["messages"] == [
        {"role": "user", "content": "### stdin\n\n```\nline one\nline two\n```\n\nsummarise this"}]


def test_bare_chatcli_answers_piped_text_and_exits(run, endpoint):
    result = run(input="translate to English: 你好\n")
    assert result.code == 0
    assert result.stdout == "Hello! How can I help?\n"
    assert endpoint.chat_requests[0]["messages"][0]["content"] == "translate to English: 你好"


def test_bare_chatcli_with_empty_stdin_is_a_usage_error(run, endpoint):
    result = run(input="")
    assert result.code == 2
    assert "stdin was empty" in result.stderr
    assert endpoint.requests == []


def test_no_question_and_no_stdin_is_a_usage_error(run, endpoint):
    result = run("ask")
    assert result.code == 2
    assert result.stderr.startswith("chatcli: error: nothing to ask")
    assert result.stderr.count("\n") == 1


def test_options_reach_the_request(run, endpoint):
    result = run("ask", "-m", "deepseek-chat", "-s", "Be brief.", "-t", "0.2", "--max-tokens", "64", "hi")
    assert result.code == 0
    sent = endpoint.chat_requests[0]
    assert sent["model"] == "deepseek-chat"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 64)


def test_options_before_the_subcommand_apply_too(run, endpoint):
    run("-m", "deepseek-chat", "ask", "hi")
    assert endpoint.chat_requests[0]["model"] == "deepseek-chat"


def test_profile_flag_selects_a_profile(run, endpoint, tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text(f'[profiles.local]\nbase_url = "{endpoint.base_url}"\nmodel = "deepseek-chat"\n'
                      'system_prompt = "From the profile."\n')
    monkeypatch.delenv("CHATCLI_MODEL")
    result = run("ask", "--config", str(config), "-p", "local", "hi")
    assert result.code == 0
    sent = endpoint.chat_requests[0]
    assert sent["model"] == "deepseek-chat"
    assert sent["messages"][0]["content"] == "From the profile."


def test_json_prints_the_complete_response_object(run, endpoint):
    result = run("ask", "--json", "hi")
    assert result.code == 0
    data = json.loads(result.stdout)
    assert set(data) >= {"id", "object", "created", "model", "usage", "choices"}
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Hello! How can I help?"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert "stream" not in endpoint.chat_requests[0]


def test_no_stream(run, endpoint):
    result = run("ask", "--no-stream", "hi")
    assert result.stdout == "Hello! How can I help?\n"
    assert "stream" not in endpoint.chat_requests[0]


def test_usage_goes_to_stderr(run, endpoint):
    endpoint.queue(Reply(prompt_tokens=56, completion_tokens=31))
    result = run("ask", "--usage", "hi")
    assert result.stdout == "Hello! How can I help?\n"
    assert result.stderr == "tokens: 56 prompt + 31 completion = 87\n"


def test_usage_estimated_when_the_server_sends_none(run, endpoint):
    endpoint.queue(Reply(usage=False))
    result = run("ask", "--usage", "hi")
    assert "(estimated)" in result.stderr and "~" in result.stderr


def test_cost_is_shown_when_prices_are_configured(run, endpoint, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("price_input = 1.0\nprice_output = 2.0\ncurrency = \"¥\"\n")
    endpoint.queue(Reply(prompt_tokens=1000, completion_tokens=500))
    result = run("ask", "--config", str(config), "--usage", "hi")
    assert result.stderr.strip().endswith("· ¥0.002")


def test_markdown_is_not_rendered_into_a_pipe(run, endpoint):
    endpoint.queue(Reply(text="# Title\n\n**bold** and `code`\n\n```py\nx = 1\n```\n"))
    result = run("ask", "hi")
    assert result.stdout == "# Title\n\n**bold** and `code`\n\n```py\nx = 1\n```\n"
    assert not ANSI.search(result.stdout + result.stderr)


def test_invalid_utf8_on_stdin_is_replaced_with_a_warning(run, endpoint):
    result = run("ask", "what is this?", input=b"caf\xe9 \xff ok\n")
    assert result.code == 0
    assert "not valid UTF-8" in result.stderr
    assert "caf\ufffd \ufffd ok" in endpoint.chat_requests[0]["messages"][0]["content"]


def test_no_api_key_tells_the_three_ways(run, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.com/v1")
    result = run("ask", "hi")
    assert result.code == 2
    assert "OPENAI_API_KEY" in result.stderr and "api_key_env" in result.stderr
    assert "api_key_cmd" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    [
        (Reply(status=401, error=error_body(f"Incorrect API key provided: {TEST_KEY}",
                                            "invalid_request_error", "invalid_api_key")),
         3, "rejected the API key"),
        (Reply(status=429, error=error_body("quota", "insufficient_quota", "insufficient_quota")),
         4, "quota"),
        (Reply(status=500, error=error_body("boom", "server_error")), 6, "server failed"),
        (Reply(status=400, error={"error": CONTEXT_TOO_LONG}), 7, "too long"),
        (Reply(fault="drop"), 5, "broke during the reply"),
        (Reply(fault="malformed"), 6, "not valid"),
    ],
)
def test_failures_exit_with_their_code_and_one_line(run, endpoint, tmp_path, reply, code, words):
    config = tmp_path / "c.toml"
    config.write_text("max_retries = 0\n")
    endpoint.queue(reply)
    result = run("ask", "--config", str(config), "hi")
    assert result.code == code
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("chatcli: error: ")
    assert "Traceback" not in result.stderr
    assert TEST_KEY not in result.stdout + result.stderr


def test_partial_reply_stays_on_stdout_when_the_connection_drops(run, endpoint):
    endpoint.queue(Reply(fault="drop", text="The first half arrives, then the line goes dead."))
    result = run("ask", "hi")
    assert result.code == 5
    assert result.stdout.startswith("The first half")


def test_unknown_model_exits_7(run, endpoint):
    result = run("ask", "-m", "no-such-model", "hi")
    assert result.code == 7
    assert "model 'no-such-model' was not found" in result.stderr


def test_reply_cut_by_length_warns_on_stderr(run, endpoint):
    endpoint.queue(Reply(finish_reason="length"))
    result = run("ask", "--max-tokens", "3", "hi")
    assert result.code == 0
    assert "cut short by max_tokens (3)" in result.stderr


def test_usage_errors_are_one_line(run):
    result = run("ask", "--temperature", "abc", "hi")
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and "--temperature" in result.stderr


def test_debug_redacts_the_key(run, endpoint):
    result = run("ask", "--debug", "hi")
    assert result.code == 0
    assert "→ POST" in result.stderr and "Bearer ***" in result.stderr
    assert TEST_KEY not in result.stderr + result.stdout
    assert result.stdout == "Hello! How can I help?\n"


def test_api_key_cmd_runs_once_per_ask(run, endpoint, tmp_path, monkeypatch):
    """A password manager may ask each time its command runs: once is enough."""
    monkeypatch.delenv("OPENAI_API_KEY")
    runs = tmp_path / "runs"
    config = tmp_path / "c.toml"
    config.write_text(f'base_url = "{endpoint.base_url}"\n'
                      f'api_key_cmd = "echo run >> {runs}; echo sk-from-the-manager"\n')
    result = run("ask", "--config", str(config), "hi")
    assert result.code == 0
    assert runs.read_text().splitlines() == ["run"]
    assert endpoint.requests[0].headers["authorization"] == "Bearer sk-from-the-manager"


def test_typer_usage_errors_are_caught_through_a_public_name(run):
    """app.CLICK_ERROR stands for click's ClickException without importing typer's private
    module: if typer renames or moves it, this fails before any user sees a traceback."""
    from chatcli.cli import typer_app
    from chatcli.cli.app import CLICK_ERROR

    assert CLICK_ERROR.__name__ == "ClickException" and issubclass(CLICK_ERROR, Exception)
    command = typer.main.get_command(typer_app())
    with pytest.raises(CLICK_ERROR):
        command.make_context("chatcli", ["--no-such-option"])
    root = command.make_context("chatcli", ["ask"], resilient_parsing=True)
    with pytest.raises(CLICK_ERROR):
        command.get_command(root, "ask").make_context("ask", ["--temperature", "warm", "hi"], parent=root)
    result = run("--no-such-option")
    assert result.code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_help_shows_arguments_as_a_person_reads_them(run):
    """Not typer's Python types (<list[str]>) nor braces around required arguments."""
    for command in (["ask"], ["sessions", "search"], ["sessions", "rm"], ["sessions", "show"],
                    ["sessions", "rename"], ["sessions", "list"], []):
        shown = run(*command, "--help").stdout
        assert "<list" not in shown and "<str>" not in shown and "{" not in shown, (command, shown)
    assert "Usage: chatcli sessions search [OPTIONS] TEXT..." in run("sessions", "search", "--help").stdout
    assert "Usage: chatcli sessions rm [OPTIONS] [ID|TITLE]..." in run("sessions", "rm", "--help").stdout
    assert "Usage: chatcli ask [OPTIONS] [QUESTION]..." in run("ask", "--help").stdout
    assert "  QUESTION...  The question" in run("ask", "--help").stdout
