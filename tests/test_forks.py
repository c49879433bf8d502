"""Finish what was cut off (/continue), edit what was asked (/edit-last), go back (/rewind) and
fork (/fork, sessions fork) without losing anything."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from chatcli.client import OpenAIClient
from chatcli.config import endpoint_of, merge
from chatcli.conversation import Message
from chatcli.events import TextDelta
from chatcli.render import Diagnostics, PlainSink
from chatcli.repl import Repl
from chatcli.session import Session
from chatcli.store import STREAMING, Store
from tests.conftest import TEST_KEY
from tests.fake_server import Reply


class Saved:
    """A session that saves to a database, driven by the REPL over a pipe."""

    def __init__(self, server, tmp_path: Path, **settings) -> None:
        self.server = server
        self.store = Store(tmp_path / "chatcli.db")
        data = {"base_url": server.base_url, "model": "test-model", "max_retries": 0, "timeout": 5,
                **settings}
        self.err = io.StringIO()
        self.out = io.StringIO()
        self.session = Session(merge(data, {}, {}),
                               client_factory=lambda s: OpenAIClient(endpoint_of(s, TEST_KEY)),
                               store=self.store, warn=Diagnostics(self.err, color=False).warning)

    def run(self, keys: str, env: dict[str, str] | None = None) -> None:
        from prompt_toolkit.input import create_pipe_input
        from prompt_toolkit.output import DummyOutput

        with create_pipe_input() as keyboard:
            keyboard.send_text(keys)
            Repl(self.session, console=Console(file=self.out, width=120, force_terminal=False),
                 diag=Diagnostics(self.err, color=False), markdown=False, input=keyboard,
                 output=DummyOutput(), env=env if env is not None else os.environ).run()

    def contents(self, conversation_id: int) -> list[str]:
        return [m.content for m in self.store.load(conversation_id)]


@pytest.fixture
def saved(server, tmp_path) -> Saved:
    return Saved(server, tmp_path)


# --- the store -------------------------------------------------------------------------


def test_a_fork_copies_the_first_messages_links_its_parent_and_leaves_the_original(tmp_path):
    store = Store(tmp_path / "chatcli.db")
    original = store.create(title="plans")
    for n in range(3):
        question = store.add(original, Message("user", f"q{n}"))
        store.add(original, Message("assistant", f"a{n}", reasoning=f"thought {n}"), reply_to=question)
    fork = store.fork(original, 3)
    assert [m.content for m in store.load(fork)] == ["q0", "a0", "q1"]
    assert store.load(fork)[1].reasoning == "thought 0"
    assert len(store.load(original)) == 6
    info = store.info(fork)
    assert info is not None and (info.parent_id, info.forked_at) == (original, 3)
    assert info.title == "plans (fork of 1)"  # told apart from its original
    store.delete(original)
    assert store.info(fork).parent_id is None and len(store.load(fork)) == 3  # the fork stays


def test_a_reply_cut_off_by_a_crash_is_forked_with_the_text_it_had(tmp_path):
    store = Store(tmp_path / "chatcli.db")
    original = store.create(title="t")
    question = store.add(original, Message("user", "q"))
    reply = store.add(original, Message("assistant", "first part", finish_reason=STREAMING),
                      reply_to=question)
    store.append(reply, 1, ", second part")
    fork = store.fork(original)
    copied = store.load(fork)[-1]
    assert (copied.content, copied.finish_reason) == ("first part, second part", "interrupted")


# --- /fork, /rewind, sessions fork, the listing -----------------------------------


def test_fork_in_the_session_carries_on_in_a_copy(saved):
    saved.run("one\rtwo\r/fork 2\rthree\r\x04")
    sent = saved.server.chat_requests[-1]["messages"]
    assert [m["content"] for m in sent] == ["one", "Hello! How can I help?", "three"]
    original, fork = (c.id for c in sorted(saved.store.conversations(), key=lambda c: c.id))
    assert len(saved.store.load(original)) == 4 and len(saved.store.load(fork)) == 4
    assert saved.store.info(fork).parent_id == original
    assert f"forked conversation {original} (the first 2 messages) into {fork}" in saved.out.getvalue()


def test_rewind_goes_back_to_a_message_and_keeps_the_whole_conversation(saved):
    saved.run("one\rtwo\rthree\r/rewind 2\ranother second question\r\x04")
    sent = saved.server.chat_requests[-1]["messages"]
    assert [m["content"] for m in sent] == ["one", "Hello! How can I help?", "another second question"]
    original = saved.store.info(saved.session.conversation_id).parent_id
    assert saved.contents(original)[::2] == ["one", "two", "three"]  # nothing lost
    assert "back at message 2" in saved.out.getvalue()


def test_rewind_past_the_end_is_refused(saved):
    saved.run("one\r/rewind 5\r\x04")
    assert "no message 5; /history lists 1 to 2" in saved.err.getvalue()


def test_sessions_fork_and_the_list_and_show_name_the_parent(run, endpoint):
    run("ask", "--session", "trip", "where to?")
    run("ask", "--session", "trip", "and when?")
    forked = run("sessions", "fork", "trip", "--at", "2")
    assert forked.code == 0
    fork = forked.stdout.strip()
    listed = run("sessions", "list").stdout
    assert "trip (fork of 1)" in listed.splitlines()[1] and listed.splitlines()[1].startswith(fork)
    shown = run("sessions", "show", fork).stdout
    assert "forked from 1 at message 2" in shown and "where to?" in shown and "and when?" not in shown
    assert run("sessions", "fork", "trip", "--at", "9").code == 2
    run("ask", "--session", fork, "in May")
    assert [m["content"] for m in endpoint.chat_requests[-1]["messages"]] == [
        "where to?", "Hello! How can I help?", "in May"]


# --- /edit-last ------------------------------------------------------------------------


def test_edit_last_sends_the_edited_question_in_its_place_and_keeps_the_original(saved, tmp_path):
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/Paris/Lyon/" "$1"\n')
    editor.chmod(0o755)
    saved.run("hello\rtrains to Paris?\r/edit-last\r\x04", env={**os.environ, "EDITOR": str(editor)})
    sent = saved.server.chat_requests[-1]["messages"]
    assert [m["content"] for m in sent] == ["hello", "Hello! How can I help?", "trains to Lyon?"]
    original = saved.store.info(saved.session.conversation_id).parent_id
    assert saved.contents(original)[2] == "trains to Paris?" and len(saved.contents(original)) == 4


# --- /continue ---------------------------------------------------------------------------


def test_continue_after_max_tokens_asks_to_go_on_and_extends_the_same_message(saved):
    saved.server.queue(Reply(text="The three steps are: first, mix", finish_reason="length"),
                       Reply(text=" the flour; second, bake."))
    saved.run("how?\r/continue\r\x04")
    assert "/continue finishes it" in saved.err.getvalue()  # the cut reply said how to finish it
    cont = saved.server.chat_requests[1]["messages"]
    assert cont[-2] == {"role": "assistant", "content": "The three steps are: first, mix"}
    assert cont[-1]["role"] == "user" and "Continue it exactly where it stopped" in cont[-1]["content"]
    messages = saved.session.conversation.messages
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[-1].content == "The three steps are: first, mix the flour; second, bake."
    stored = saved.store.load(saved.session.conversation_id)[-1]
    assert (stored.content, stored.finish_reason) == (messages[-1].content, "stop")
    assert stored.id == messages[-1].id  # the same message, extended
    assert " the flour; second, bake." in saved.out.getvalue()
    assert saved.out.getvalue().count("The three steps are") == 1  # not shown again


@pytest.mark.parametrize(("style", "last", "extra"), [
    ("prefix", {"role": "assistant", "content": "Cut", "prefix": True}, {}),
    ("continue_final_message", {"role": "assistant", "content": "Cut"},
     {"continue_final_message": True, "add_generation_prompt": False}),
])
def test_native_continuations_send_the_reply_last(style, last, extra, server, tmp_path):
    saved = Saved(server, tmp_path, continue_style=style)
    server.queue(Reply(text="Cut", finish_reason="length"), Reply(text=" short."))
    saved.run("q\r/continue\r\x04")
    body = server.chat_requests[1]
    assert body["messages"][-1] == last
    assert {key: body[key] for key in extra} == extra
    assert saved.session.conversation.messages[-1].content == "Cut short."


def test_continue_after_a_connection_dropped_in_the_middle(saved):
    saved.server.queue(Reply(text="partial answer that breaks", fault="drop"), Reply(text=", then ends."))
    saved.run("q\r/continue\r\x04")
    assert saved.session.conversation.messages[-1].content.endswith(", then ends.")
    assert saved.session.conversation.messages[-1].finish_reason == "stop"


def test_a_reply_that_ended_normally_has_nothing_to_continue(saved):
    saved.run("q\r/continue\r\x04")
    assert "nothing to continue: the last reply ended normally" in saved.err.getvalue()
    assert len(saved.server.chat_requests) == 1


def test_a_continuation_that_fails_leaves_the_reply_as_it_was(saved):
    from tests.fake_server import error_body

    saved.server.queue(Reply(text="half", finish_reason="length"),
                       Reply(status=500, error=error_body("boom", "server_error")))
    saved.run("q\r/continue\r\x04")
    last = saved.store.load(saved.session.conversation_id)[-1]
    assert (last.content, last.finish_reason) == ("half", "length")


def test_after_kill_9_resume_and_continue_finishes_the_reply(endpoint, tmp_path):
    from tests.terminal import BIN

    endpoint.queue(Reply(text="word " * 3000, chunk_chars=10, delay=0.01), Reply(text="THE END."))
    env = {**os.environ, "CHATCLI_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen([str(BIN), "ask", "--session", "long", "a long story"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    database = tmp_path / "data" / "chatcli.db"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until some of the reply is saved
        try:
            chunks = sqlite3.connect(database).execute("SELECT count(*) FROM message_chunks").fetchone()[0]
        except sqlite3.Error:
            chunks = 0
        if chunks:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = Store(database)
    session = Session(merge({}, os.environ, {}),
                      client_factory=lambda s: OpenAIClient(endpoint_of(s, TEST_KEY)), store=store)
    assert session.resume_latest() is not None  # chatcli -c
    cut = session.conversation.messages[-1]
    assert cut.finish_reason == "interrupted" and cut.content.startswith("word word")
    session.continue_last(PlainSink(io.StringIO()))
    assert endpoint.chat_requests[-1]["messages"][-2] == {"role": "assistant", "content": cut.content}
    finished = store.load(session.conversation_id)[-1]
    assert finished.content == cut.content + "THE END." and finished.finish_reason == "stop"


def test_a_continuation_inside_a_code_block_is_drawn_as_code(server, tmp_path):
    from chatcli.render import MarkdownSink

    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    sink = MarkdownSink(console)
    sink.resume_after("Here:\n\n```python\ndef add(a, b):\n")
    for piece in ("    return a + b\n", "```\n\nDone."):
        sink.text(piece)
    sink.end()
    shown = console.file.getvalue()
    assert "    return a + b" in shown and "```" not in shown  # code, not prose with fences
    assert "Here:" not in shown  # what was shown before is not printed again
    assert "def add(a, b):" not in shown  # nor the start of the cut code block: it goes on as code


def test_a_continuation_is_saved_as_it_arrives(tmp_path):
    from chatcli.recorder import Recorder

    store = Store(tmp_path / "chatcli.db")
    conversation = store.create(title="t")
    question = store.add(conversation, Message("user", "q"))
    cut = Message("assistant", "The first half", finish_reason="length",
                  id=store.add(conversation, Message("assistant", "The first half", finish_reason="length"),
                               reply_to=question))
    recorder = Recorder(store, conversation, meta=dict, interval=0)
    recorder.continuing(cut)
    recorder.event(TextDelta(" and"))
    recorder.event(TextDelta(" more"))
    crashed = store.load(conversation)[-1]  # what chatcli -c finds if the process dies now
    assert (crashed.content, crashed.finish_reason) == ("The first half and more", "interrupted")
    assert len(store.load(conversation)) == 2  # the same message, not a new one


def test_continue_on_a_terminal_prints_only_the_new_text(endpoint, tmp_path):
    """The live view and the scrollback show what follows the cut, not the cut paragraph
    again; a code block goes on as code."""
    import pexpect

    from tests.terminal import ANSI, PROMPT, expect, spawn

    endpoint.queue(Reply(text="The three steps are: first, mix", finish_reason="length"),
                   Reply(text=" the flour; second, bake.", chunk_chars=3, delay=0.02),
                   Reply(text="Code:\n\n```python\nx = 1\ny =", finish_reason="length"),
                   Reply(text=" 2\nprint(x + y)\n```\n\nDone.", chunk_chars=3, delay=0.02))
    log: list[str] = []
    child = spawn(endpoint, tmp_path)
    child.logfile_read = type("Log", (), {"write": lambda self, t: log.append(t),
                                          "flush": lambda self: None})()
    expect(child, PROMPT)
    child.send("how?\r")
    expect(child, PROMPT)
    child.send("/continue\r")
    expect(child, "second, bake")
    expect(child, PROMPT)
    child.send("code?\r")
    expect(child, PROMPT)
    child.send("/continue\r")
    expect(child, "Done")
    expect(child, PROMPT)
    child.send("/continue\r")
    expect(child, "nothing to continue")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    shown = ANSI.sub("", "".join(log))
    assert shown.count("The three steps are") == 1 and "the flour; second, bake." in shown
    assert shown.count("x = 1") == 1 and "print(x + y)" in shown
    last = shown.rsplit("/continue", 1)[1]
    assert "continuing the last reply" not in last  # refused before it is announced
