"""A question that got no reply stays in the conversation, marked "no reply", and is never
sent again with a later question unless the user says so (/retry)."""

from __future__ import annotations

import time

import pexpect

from chatcli.conversation import USER, Message
from chatcli.store import Store
from tests.fake_server import Reply, error_body
from tests.test_repl import CTRL_D, ENTER, Harness

TOO_LONG = Reply(status=400, error=error_body("This model's maximum context length is 4096 tokens",
                                              "invalid_request_error", "context_length_exceeded"))


def test_a_failed_question_is_not_resent_with_the_next_one_attachment_and_all(server, tmp_path):
    big = tmp_path / "big.log"
    big.write_text("ERROR something happened\n" * 1800)  # 45 KB: more than the model takes
    server.queue(TOO_LONG, Reply(text="Hello."))
    harness = Harness(server, tmp_path)
    harness.run(f"/file {big}{ENTER}what is wrong?{ENTER}hello{ENTER}/history{ENTER}{CTRL_D}")
    err, out = harness.err.getvalue(), harness.out.getvalue()
    assert "your question is kept, marked no reply; it is not sent with your next question" in err
    last = harness.sent[-1]
    assert last == [{"role": "user", "content": "hello"}]  # the log and its question stay behind
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].isdigit()}  # /history
    assert "no reply" in rows["1"] and "no reply" not in rows["2"] and "no reply" not in rows["3"]
    messages = harness.session.conversation.messages
    assert [m.content for m in messages] == ["what is wrong?", "hello", "Hello."]  # kept, not lost


def test_retry_sends_the_question_that_got_no_reply(server, tmp_path):
    server.queue(Reply(status=500, error=error_body("boom", "server_error")), Reply(text="Now it works."))
    harness = Harness(server, tmp_path)
    harness.run(f"important question{ENTER}/retry{ENTER}{CTRL_D}")
    assert harness.sent[-1] == [{"role": "user", "content": "important question"}]
    assert "Now it works." in harness.out.getvalue()


def test_ctrl_c_before_any_reply_does_not_speak_of_a_partial_reply(endpoint, tmp_path):
    from tests.terminal import PROMPT, expect, spawn

    endpoint.queue(Reply(fault="hang"), Reply(text="answered"))
    child = spawn(endpoint, tmp_path)
    expect(child, PROMPT)
    child.send("a slow question\r")
    time.sleep(1.0)
    child.sendintr()
    expect(child, "interrupted before any reply; your question is kept, marked no reply")
    assert "partial reply" not in child.before
    expect(child, PROMPT)
    child.send("next\r")
    expect(child, "answered")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert endpoint.chat_requests[-1]["messages"] == [{"role": "user", "content": "next"}]


def test_a_question_left_by_a_crash_before_any_reply_is_not_sent_with_the_next(run, endpoint, tmp_path):
    data = tmp_path / "data"
    store = Store(data / "chatcli.db")
    conversation = store.create(title="crashed")
    store.add(conversation, Message(USER, "the question that was never answered"))
    store.close()
    result = run("ask", "--session", str(conversation), "a new question",
                 env={"CHATCLI_DATA_DIR": str(data)})
    assert result.code == 0, result.stderr
    assert endpoint.chat_requests[-1]["messages"] == [{"role": "user", "content": "a new question"}]
    shown = run("sessions", "show", str(conversation), env={"CHATCLI_DATA_DIR": str(data)})
    assert "no reply" in shown.stdout


def test_lines_typed_before_the_prompt_is_ready_are_sent_one_by_one(endpoint, tmp_path):
    """Typed while chatcli starts (or while a command runs): the terminal's normal mode turns
    each Enter into a line feed, which the prompt read as "new line", joining the two."""
    from tests.terminal import PROMPT, expect, spawn

    endpoint.queue(Reply(text="first answer"), Reply(text="second answer", chunk_chars=2, delay=0.05),
                   Reply(text="third answer"))
    child = spawn(endpoint, tmp_path)
    child.send("first question\r")  # at once: the prompt is not drawn yet
    expect(child, "first answer")
    child.send("second question\r")
    expect(child, "second answer")
    child.send("third question\r")  # while nothing reads the keyboard, between two prompts
    expect(child, "third answer")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert [r["messages"][-1]["content"] for r in endpoint.chat_requests] == [
        "first question", "second question", "third question"]
