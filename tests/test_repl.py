"""The interactive loop, driven by prompt_toolkit's pipe input against the fake server.

Keys are sent as a terminal sends them: "\\r" is Enter, "\\x1b\\r" is Alt-Enter,
"\\n" is Ctrl-J, "\\x03" is Ctrl-C, "\\x04" is Ctrl-D (every script ends with it).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from chatcli.client import OpenAIClient
from chatcli.config import endpoint_of, merge
from chatcli.keybindings import SlashCompleter, toolbar
from chatcli.render import Diagnostics
from chatcli.repl import Repl
from chatcli.session import Session
from tests.conftest import TEST_KEY
from tests.fake_server import Reply, error_body

ENTER, ALT_ENTER, CTRL_C, CTRL_D, UP = "\r", "\x1b\r", "\x03", "\x04", "\x1b[A"


class Harness:
    def __init__(self, server, tmp_path: Path, **settings) -> None:
        self.server = server
        data = {"base_url": server.base_url, "model": "test-model", "max_retries": 0, "timeout": 5,
                **settings}
        self.settings = merge(data, {}, {})
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.session = Session(self.settings, client_factory=lambda s: OpenAIClient(endpoint_of(s, TEST_KEY)),
                               load_profile=self._profile, profiles=["other"],
                               warn=Diagnostics(self.err, color=False).warning)
        self.history = tmp_path / "history"

    def _profile(self, name):
        if name != "other":
            from chatcli.errors import ConfigError

            raise ConfigError(f"profile {name!r} does not exist")
        return merge({"base_url": self.server.base_url, "model": "deepseek-chat",
                      "profiles": {"other": {}}}, {}, {"profile": "other"})

    def run(self, keys: str, *, first: str | None = None, markdown: bool = True, vi: bool = False,
            env: dict[str, str] | None = None, answers: tuple[bool, ...] = ()) -> int:
        """Type `keys`; a yes-or-no question (which throws keys typed ahead away) gets `answers`."""
        replies = list(answers)
        with create_pipe_input() as keyboard:
            keyboard.send_text(keys)
            repl = Repl(self.session, console=Console(file=self.out, width=120, force_terminal=False),
                        diag=Diagnostics(self.err, color=False), markdown=markdown,
                        history_path=self.history, vi_mode=vi, input=keyboard, output=DummyOutput(),
                        env=env if env is not None else os.environ,
                        confirm=lambda question: self.err.write(question + "\n") and replies.pop(0))
            return repl.run(first_message=first)

    @property
    def sent(self) -> list[list[dict]]:
        return [r["messages"] for r in self.server.chat_requests]

    @property
    def questions(self) -> list[str]:
        return [m[-1]["content"] for m in self.sent]


@pytest.fixture
def repl(server, tmp_path) -> Harness:
    return Harness(server, tmp_path)


def test_a_question_is_answered_rendered_and_followed_by_a_usage_line(repl):
    repl.server.queue(Reply(text="**Hello** there", prompt_tokens=9, completion_tokens=3))
    assert repl.run("hi" + ENTER + CTRL_D) == 0
    assert repl.questions == ["hi"]
    out = repl.out.getvalue()
    assert "Hello there" in out and "**" not in out
    assert "tokens: 9 prompt + 3 completion = 12 · this conversation: 12 tokens" in out


def test_the_conversation_carries_on_across_turns(repl):
    repl.run("one" + ENTER + "two" + ENTER + CTRL_D)
    assert [m["role"] for m in repl.sent[1]] == ["user", "assistant", "user"]
    assert repl.session.total.total_tokens > 0


def test_alt_enter_and_ctrl_j_insert_newlines(repl):
    repl.run("first" + ALT_ENTER + "second" + "\n" + "third" + ENTER + CTRL_D)
    assert repl.questions == ["first\nsecond\nthird"]


def test_a_bracketed_paste_is_one_message_sent_only_on_enter(repl):
    repl.run("\x1b[200~line 1\nline 2\r\nline 3\x1b[201~" + " and more" + ENTER + CTRL_D)
    assert repl.questions == ["line 1\nline 2\nline 3 and more"]


def test_ctrl_c_at_the_prompt_clears_the_line(repl):
    repl.run("half-typed" + CTRL_C + "hello" + ENTER + CTRL_D)
    assert repl.questions == ["hello"]


def test_ctrl_d_on_an_empty_line_leaves_and_exit_too(repl):
    assert repl.run(CTRL_D) == 0
    assert repl.run("/exit" + ENTER + "never sent" + ENTER + CTRL_D) == 0
    assert repl.run("/quit" + ENTER) == 0
    assert repl.server.chat_requests == []


def test_wide_characters_type_move_and_delete(repl):
    # Backspace twice deletes two characters; Ctrl-A goes home; Ctrl-F moves one character right.
    repl.run("你好世界" + "\x7f\x7f" + ENTER + "中文" + "\x01" + "\x06" + "X" + ENTER + CTRL_D)
    assert repl.questions == ["你好", "中X文"]


def test_vi_mode(repl):
    repl.run("hello" + "\x1b" + "0" + "i" + "X" + ENTER + CTRL_D, vi=True)
    assert repl.questions == ["Xhello"]


def test_input_history_persists_across_sessions(repl, server, tmp_path):
    repl.run("remember me" + ENTER + CTRL_D)
    assert "remember me" in repl.history.read_text()
    assert oct(repl.history.stat().st_mode & 0o777) == "0o600"
    again = Harness(server, tmp_path)
    again.run(UP + ENTER + CTRL_D)
    assert again.questions == ["remember me", "remember me"]  # the same server saw both sessions


def test_suggestions_from_history_are_taken_with_right_arrow(repl):
    repl.run("what is the capital of France?" + ENTER + CTRL_D)
    with create_pipe_input() as keyboard:
        keyboard.send_text("what is the c")
        # The suggestion is computed as the person types; Right takes it a moment later.
        threading.Timer(0.5, keyboard.send_text, args=("\x1b[C" + ENTER + CTRL_D,)).start()
        Repl(repl.session, console=Console(file=repl.out), diag=Diagnostics(repl.err, color=False),
             history_path=repl.history, input=keyboard, output=DummyOutput()).run()
    assert repl.questions[-1] == "what is the capital of France?"


def test_ctrl_r_searches_history(repl, server, tmp_path):
    repl.run("alpha question" + ENTER + "beta question" + ENTER + CTRL_D)
    again = Harness(server, tmp_path)
    again.run("\x12alpha" + ENTER + ENTER + CTRL_D)
    assert again.questions[-1] == "alpha question"


def test_double_slash_sends_text_starting_with_a_slash(repl):
    repl.run("//etc/hosts is a file" + ENTER + CTRL_D)
    assert repl.questions == ["/etc/hosts is a file"]


def test_help_lists_every_command(repl):
    from chatcli.commands import COMMANDS

    repl.run("/help" + ENTER + CTRL_D)
    out = repl.out.getvalue()
    for command in COMMANDS:
        assert "/" + command.name in out
    assert "[name]" in out  # arguments are shown, not eaten as markup


def test_unknown_command_suggests_the_closest(repl):
    repl.run("/modle x" + ENTER + CTRL_D)
    assert "unknown command /modle (did you mean /model?)" in repl.err.getvalue()
    assert repl.server.chat_requests == []


def test_model_system_temperature_and_max_tokens_change_the_next_request(repl):
    keys = ["/model deepseek-chat", "/system Answer in French.", "/temperature 0.3",
            "/max-tokens 99", "bonjour"]
    repl.run(ENTER.join(keys) + ENTER + CTRL_D)
    sent = repl.server.chat_requests[0]
    assert sent["model"] == "deepseek-chat"
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert (sent["temperature"], sent["max_tokens"]) == (0.3, 99)


def test_bad_values_are_one_line_errors_and_change_nothing(repl):
    repl.run("/temperature 7" + ENTER + "/max-tokens lots" + ENTER + "hi" + ENTER + CTRL_D)
    assert "temperature must be a number from 0 to 2" in repl.err.getvalue()
    assert "temperature" not in repl.server.chat_requests[0]


def test_showing_settings(repl):
    repl.run("/model" + ENTER + "/system" + ENTER + "/temperature" + ENTER + CTRL_D)
    out = repl.out.getvalue()
    assert "model: test-model" in out and "no system prompt" in out
    assert "temperature: the server default" in out


def test_profile_switch(repl):
    repl.run("/profile" + ENTER + "/profile other" + ENTER + "hi" + ENTER + "/profile nope" + ENTER
             + CTRL_D)
    assert "profiles: other" in repl.out.getvalue()
    assert repl.server.chat_requests[0]["model"] == "deepseek-chat"
    assert "profile 'nope' does not exist" in repl.err.getvalue()


def test_clear_keeps_the_system_prompt(repl):
    repl.run("/system Be terse." + ENTER + "one" + ENTER + "/clear" + ENTER + "two" + ENTER + CTRL_D)
    assert repl.sent[1] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "two"}]


def test_undo_removes_the_last_turn(repl):
    repl.run("one" + ENTER + "two" + ENTER + "/undo" + ENTER + "three" + ENTER + CTRL_D)
    assert [m["content"] for m in repl.sent[2] if m["role"] == "user"] == ["one", "three"]


def test_retry_regenerates_the_last_reply(repl):
    repl.server.queue(Reply(text="first answer"), Reply(text="second answer"))
    repl.run("question" + ENTER + "/retry" + ENTER + CTRL_D)
    assert repl.sent[1] == [{"role": "user", "content": "question"}]
    assert [m.content for m in repl.session.conversation.messages] == ["question", "second answer"]


def test_an_error_is_one_line_the_session_goes_on_and_retry_resends(repl):
    repl.server.queue(Reply(status=500, error=error_body("boom", "server_error")))
    repl.run("important question" + ENTER + "/retry" + ENTER + CTRL_D)
    err = repl.err.getvalue()
    assert "chatcli: error: the server failed (500): boom" in err
    assert "your question is kept, marked no reply; it is not sent with your next question" in err
    assert repl.sent[1] == [{"role": "user", "content": "important question"}]
    assert "Hello! How can I help?" in repl.out.getvalue()


def test_history_shows_what_is_sent_and_what_is_left_out(server, tmp_path):
    repl = Harness(server, tmp_path, max_messages=3)
    repl.run("one" + ENTER + "two" + ENTER + "three" + ENTER + "/history" + ENTER + CTRL_D)
    assert [m["content"] for m in repl.sent[2]] == ["two", "Hello! How can I help?", "three"]
    out = repl.out.getvalue()
    assert "2 older messages left out to fit max_messages = 3 (/history)" in out  # said after the reply
    assert "4 left out to fit max_messages = 3 (the API document allows 20" in out
    assert "next request: 2 messages" in out and "4 left out" in out
    table = out[out.index("next request"):]
    assert table.count("left out") == 5 and table.count(" sent ") == 2


def test_pin_keeps_a_message_through_trimming(server, tmp_path):
    repl = Harness(server, tmp_path, max_messages=4)
    repl.run("keep this fact" + ENTER + "/pin 1" + ENTER + "two" + ENTER + "three" + ENTER + CTRL_D)
    assert "keep this fact" in [m["content"] for m in repl.sent[-1]]
    assert "pinned" in repl.out.getvalue()


def test_tokens_reports_session_usage_and_cost(server, tmp_path):
    repl = Harness(server, tmp_path, price_input=1.0, price_output=2.0)
    server.queue(Reply(prompt_tokens=1000, completion_tokens=500))
    repl.run("hi" + ENTER + "/tokens" + ENTER + CTRL_D)
    out = repl.out.getvalue()
    assert "this conversation: 1,000 prompt + 500 completion = 1,500; cost $0.002" in out
    assert "next request: ~" in out


def test_copy_sends_osc52_with_the_reply_or_a_code_block(repl):
    import base64

    repl.server.queue(Reply(text="Try:\n\n```sh\nls -la\n```\n\nand\n\n```py\nprint(1)\n```\n"))
    repl.run("hi" + ENTER + "/copy 2" + ENTER + "/copy" + ENTER + "/copy 3" + ENTER + CTRL_D)
    out = repl.out.getvalue()
    assert f"\x1b]52;c;{base64.b64encode(b'print(1)').decode()}\a" in out
    assert "\x1b]52;c;" + base64.b64encode(b"Try:").decode()[:4] in out
    assert "has 2 code blocks" in repl.err.getvalue()
    assert "OSC 52" in repl.err.getvalue()


def test_edit_opens_the_editor_and_sends_what_was_saved(repl, tmp_path):
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nprintf 'written in the editor\\n' > \"$1\"\n")
    editor.chmod(0o755)
    env = {**os.environ, "EDITOR": str(editor)}
    repl.run("/edit" + ENTER + CTRL_D, env=env)
    assert repl.questions == ["written in the editor\n"]


def test_ctrl_x_ctrl_e_edits_the_current_line(repl, tmp_path, monkeypatch):
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/draft/final/' \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.delenv("VISUAL", raising=False)
    with create_pipe_input() as keyboard:
        keyboard.send_text("a draft text" + "\x18\x05")
        # Enter comes after the editor is closed, as it does for a person.
        threading.Timer(1.0, keyboard.send_text, args=(ENTER + CTRL_D,)).start()
        Repl(repl.session, console=Console(file=repl.out), diag=Diagnostics(repl.err, color=False),
             input=keyboard, output=DummyOutput()).run()
    assert repl.questions == ["a final text"]


def test_first_message_from_a_pipe_then_the_session_continues(repl):
    repl.run("and then this" + ENTER + CTRL_D, first="piped text")
    assert repl.questions == ["piped text", "and then this"]


def test_plain_output_when_markdown_is_off(repl):
    repl.server.queue(Reply(text="**raw** text"))
    repl.run("hi" + ENTER + CTRL_D, markdown=False)
    assert "**raw** text\n" in repl.out.getvalue()


def interrupt_a_long_reply(repl: Harness) -> None:
    """Ask, press Ctrl-C (a real SIGINT) once the reply is streaming, then ask again."""
    repl.server.queue(Reply(text="word " * 2000, chunk_chars=5, delay=0.002), Reply(text="next one"))
    done = threading.Event()

    def interrupt_when_streaming():
        while not repl.out.getvalue().strip() and not done.is_set():
            done.wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=interrupt_when_streaming)
    killer.start()
    try:
        repl.run("long question" + ENTER + "after" + ENTER + CTRL_D, markdown=False)
    finally:
        done.set()
        killer.join()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_reply_stops_it_and_keeps_the_partial_reply(repl):
    interrupt_a_long_reply(repl)
    messages = repl.session.conversation.messages
    assert messages[1].finish_reason == "interrupted"
    assert 0 < len(messages[1].content) < len("word " * 2000)
    assert "interrupted; the partial reply is kept" in repl.err.getvalue()
    assert repl.questions == ["long question", "after"]
    assert messages[-1].content == "next one"


def completions(session, text):
    completer = SlashCompleter(session)
    return [c.text for c in completer.get_completions(Document(text), None)]


def test_tab_completes_commands_and_model_names_fetched_once(repl):
    assert completions(repl.session, "/mo") == ["/model"]
    assert "/quit" in completions(repl.session, "/q")
    assert completions(repl.session, "/model dee") == ["deepseek-chat"]
    assert completions(repl.session, "/model ") == sorted(repl.server.models)
    assert [r.path for r in repl.server.requests].count("/v1/models") == 1
    assert completions(repl.session, "/profile ") == ["other"]
    assert completions(repl.session, "hello /mo") == []


def test_toolbar_shows_profile_model_and_context(repl):
    repl.run("hi" + ENTER + CTRL_D)
    assert toolbar(repl.session).strip().startswith("test-model | context 0% | /help")  # no profile
    repl.session.settings = replace(repl.session.settings, profile="work")
    assert toolbar(repl.session).strip().startswith("profile work | test-model | context 0%")


def test_each_command_declares_its_argument_which_parses_helps_and_completes(server, tmp_path):
    from chatcli.store import Store

    harness = Harness(server, tmp_path)
    harness.session.store = Store(tmp_path / "chatcli.db")
    harness.session.new()
    harness.run("Rust lifetimes explained" + ENTER + "/new" + ENTER + "second" + ENTER
                + "/undo now" + ENTER + "/sessions everything" + ENTER + "/temperature 3" + ENTER
                + "/max-tokens 0" + ENTER + "/copy x" + ENTER + "/resume" + ENTER + "/help" + ENTER
                + CTRL_D)
    err = harness.err.getvalue()
    assert "/undo takes no argument" in err
    assert "/sessions takes all, not 'everything'" in err
    assert "temperature must be a number from 0 to 2, or 'default'" in err
    assert "max tokens must be a whole number from 1 to 100000000, or 'default'" in err
    assert "the code block number must be a whole number of at least 1" in err
    assert "/resume needs ID | title" in err
    out = harness.out.getvalue()
    assert "[x | default]" in out and "ID | title" in out and "[all]" in out  # /help, from the same Arg
    assert completions(harness.session, "/sessions ") == ["all"]
    assert completions(harness.session, "/temperature d") == ["default"]
    assert completions(harness.session, "/system ") == ["-"]
    assert completions(harness.session, "/resume rust") == ["1"]  # put in as its number
    # prompt_toolkit completes in a thread of its own (complete_in_thread): the store too
    found: list[list[str]] = []
    worker = threading.Thread(target=lambda: found.append(completions(harness.session, "/resume rust")))
    worker.start()
    worker.join()
    assert found == [["1"]]
    assert completions(harness.session, "/resume ") == ["2", "1"]
    assert completions(harness.session, "/undo ") == []


def test_piped_lines_are_marked_as_typed_lines_are(repl):
    repl.run(CTRL_D, first="first line\nsecond line\nthird line")
    out = repl.out.getvalue()
    assert "> first line\n. second line\n. third line\n" in out  # as Alt-Enter lines look at the prompt


def test_tab_after_resume_tells_conversations_of_one_title_apart(server, tmp_path):
    from chatcli.store import Store

    harness = Harness(server, tmp_path)
    harness.session.store = store = Store(tmp_path / "chatcli.db")
    harness.session.new()
    harness.run("你好" + ENTER + "/new" + ENTER + "你好" + ENTER + "/fork" + ENTER + CTRL_D)
    offered = list(SlashCompleter(harness.session).get_completions(Document("/resume 你"), None))
    shown = [" ".join(text for _, text in c.display) for c in offered]
    assert [c.text for c in offered] == ["3", "2", "1"]
    assert shown[0].startswith("3  你好 (fork of 2)") and shown[1].startswith("2  你好")
    assert all(" ".join(text for _, text in c.display_meta).startswith("20") for c in offered)  # the date
    assert store.info(3).title == "你好 (fork of 2)"
    harness.run("/resume 你好" + ENTER + CTRL_D)
    assert "conversations are called '你好': 2, 1" in harness.err.getvalue()
    harness.run("/resume 你" + ENTER + CTRL_D)
    assert "conversations have titles that start with '你': 3, 2, 1" in harness.err.getvalue()
