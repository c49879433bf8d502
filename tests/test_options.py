"""The options `chatcli` and `chatcli ask` share: declared once, the same before and after
`ask`, and 0 and "" are values like any other."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY
from tests.fake_server import Reply
from tests.terminal import environment, on_a_terminal


def positions(*option: str) -> list[tuple[list[str], list[str]]]:
    """The option before `ask`, and after it."""
    return [([*option], []), ([], [*option])]


@pytest.mark.parametrize(("option", "field", "sent"), [
    (["-t", "0"], "temperature", 0.0),
    (["--temperature", "2"], "temperature", 2.0),
    (["--max-tokens", "1"], "max_tokens", 1),
    (["--max-tokens", "100000000"], "max_tokens", 100_000_000),
    (["-m", "deepseek-chat"], "model", "deepseek-chat"),
])
@pytest.mark.parametrize("where", ["before ask", "after ask"])
def test_each_value_reaches_the_request_in_either_position(run, endpoint, option, field, sent, where):
    before, after = positions(*option)[0 if where == "before ask" else 1]
    result = run(*before, "ask", *after, "hi")
    assert result.code == 0, result.stderr
    assert endpoint.chat_requests[-1][field] == sent


def test_after_ask_wins_even_when_it_is_zero(run, endpoint):
    assert run("-t", "1", "ask", "-t", "0", "hi").code == 0
    assert endpoint.chat_requests[-1]["temperature"] == 0.0
    assert run("-t", "0", "ask", "hi").code == 0
    assert endpoint.chat_requests[-1]["temperature"] == 0.0
    assert run("-m", "gpt-4o-mini", "ask", "-m", "test-model", "hi").code == 0
    assert endpoint.chat_requests[-1]["model"] == "test-model"


@pytest.mark.parametrize(("option", "words"), [
    (["-t", "2.5"], "'--temperature' / '-t': Input should be less than or equal to 2"),
    (["-t", "-0.1"], "'--temperature' / '-t': Input should be greater than or equal to 0"),
    (["-t", "nan"], "--temperature"),
    (["-t", "inf"], "--temperature"),
    (["-t", "hot"], "--temperature"),
    (["--max-tokens", "0"], "'--max-tokens': Input should be greater than or equal to 1"),
    (["--max-tokens", "100000001"], "'--max-tokens': Input should be less than or equal to 100000000"),
    (["-m", ""], "--model needs a model name"),
    (["--session", ""], "--session needs a name or a number"),
    (["--config", ""], "config"),
])
@pytest.mark.parametrize("where", ["before ask", "after ask"])
def test_impossible_values_are_one_line_and_exit_2_in_either_position(run, endpoint, option, words, where):
    before, after = positions(*option)[0 if where == "before ask" else 1]
    result = run(*before, "ask", *after, "hi")
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr
    assert endpoint.chat_requests == []


def config(tmp_path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("where", ["before ask", "after ask"])
def test_empty_system_and_profile_mean_none(run, endpoint, tmp_path, where):
    path = config(tmp_path, 'system_prompt = "Be terse."\nprofile = "other"\n'
                            '[profiles.other]\nbase_url = "http://127.0.0.1:9/v1"\n')
    before, after = positions("-s", "", "-p", "")[0 if where == "before ask" else 1]
    result = run("--config", path, *before, "ask", *after, "hi")
    assert result.code == 0, result.stderr
    assert endpoint.chat_requests[-1]["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("where", ["before ask", "after ask"])
def test_switches_work_in_either_position(run, endpoint, where):
    from chatcli.store import Store

    def saved() -> int:
        db = Path(os.environ["CHATCLI_DATA_DIR"]) / "chatcli.db"
        return len(Store(db).conversations()) if db.exists() else 0

    for switch, check in (
        ("--usage", lambda r, count: r.stderr.startswith("tokens: ")),
        ("--json", lambda r, count: json.loads(r.stdout)["object"] == "chat.completion"),
        ("--no-stream", lambda r, count: "stream" not in endpoint.chat_requests[-1]),
        ("--no-save", lambda r, count: saved() == count),
    ):
        count = saved()
        before, after = positions(switch)[0 if where == "before ask" else 1]
        result = run(*before, "ask", *after, "hi")
        assert result.code == 0 and check(result, count), (switch, result)


@pytest.mark.parametrize("args", [["--no-markdown", "ask", "hi"], ["ask", "--no-markdown", "hi"],
                                  ["--config", "{config}", "ask", "hi"]],
                         ids=["before ask", "after ask", "markdown = false"])
def test_ask_honours_every_way_of_asking_for_plain_text(endpoint, tmp_path, args):
    endpoint.default = Reply(text="Some **bold** words.")
    path = config(tmp_path, "markdown = false\n")
    args = [a.replace("{config}", path) for a in args]
    shown = on_a_terminal(*args, env=environment(endpoint), rows=30, cols=80)
    assert "Some **bold** words." in shown and "\x1b[1m" not in shown


def test_line_breaks_survive_on_a_terminal_in_ask_and_sessions_show(endpoint, tmp_path, monkeypatch):
    import pyte

    monkeypatch.setenv("CHATCLI_DATA_DIR", str(tmp_path / "data"))
    endpoint.default = Reply(text="Roses are **red**\nViolets are blue")
    for args in (["ask", "--session", "poem", "a poem"], ["sessions", "show", "poem"]):
        screen = pyte.Screen(80, 30)
        pyte.Stream(screen).feed(on_a_terminal(*args, env=environment(endpoint), rows=30, cols=80))
        rows = [row.rstrip() for row in screen.display]
        assert "Roses are red" in rows and "Violets are blue" in rows, rows


def test_the_switches_read_without_typer_are_the_ones_typer_declares():
    """base.ASK_SWITCHES (read by __main__ for `chatcli ask words`) and options.SHARED
    (what typer parses) name the same on/off options and fill the same fields."""
    import typing

    from chatcli.cli.base import ASK_SWITCHES
    from chatcli.cli.options import SHARED

    declared = {}
    for _, field, annotation in SHARED:
        base, *meta = typing.get_args(annotation)
        info = next(m for m in meta if hasattr(m, "param_decls"))
        # In Annotated, typer takes the first name as the OptionInfo's `default`.
        names = (info.default, *info.param_decls) if isinstance(info.default, str) else info.param_decls
        for name in (names if base == (bool | None) else ()):
            declared[name] = field
    assert set(ASK_SWITCHES) <= set(declared)
    assert all(declared[name] == field for name, field in ASK_SWITCHES.items())


@pytest.mark.parametrize("argv", [
    ["ask", "hello"], ["ask", "--no-save", "capital?"], ["ask", "a", "--usage", "b", "-c"],
    ["ask", "--json", "--no-stream", "--no-markdown", "--debug", "x"], ["ask", "--continue", "x", "y"],
    ["ask", "-x", "a jq filter"], ["ask", "a", "--code"],
])
def test_ask_without_typer_reads_what_typer_reads(argv, run, endpoint, monkeypatch):
    import chatcli.cli.app
    from chatcli.cli.base import simple_ask

    seen = []
    monkeypatch.setattr(chatcli.cli.app, "ask_words",
                        lambda flags, words: seen.append((flags, words)))
    assert run(*argv).code == 0
    assert simple_ask(argv) == seen[0]


@pytest.mark.parametrize("argv", [["ask"], ["ask", "-t", "0", "hi"], ["ask", "--help"], ["ask", "--", "-x"],
                                  ["--no-save", "ask", "hi"], ["sessions", "list"], ["ask", "-"]])
def test_anything_else_is_left_to_typer(argv):
    from chatcli.cli.base import simple_ask

    assert simple_ask(argv) is None


def test_chatcli_ask_words_answers_without_importing_typer(endpoint, tmp_path):
    import subprocess

    # `ask` ends with os._exit once its answer is out (cli/base.finish): the probe speaks then.
    probe = ("import os, sys; end = os._exit; os._exit = lambda code: (sys.stderr.write('typer loaded: %s' % "
             "('typer' in sys.modules)), sys.stderr.flush(), end(code)); "
             "sys.argv = ['chatcli', 'ask', '--no-save', 'hi']; from chatcli.__main__ import main; main()")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": TEST_KEY,
                               "CHATCLI_MODEL": "test-model", "CHATCLI_DATA_DIR": str(tmp_path)},
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout == "Hello! How can I help?\n"
    assert "typer loaded: False" in done.stderr
