"""One chat turn over real HTTP: what is sent, what is kept, what the user is told."""

from __future__ import annotations

import pytest

from chatcli import errors
from chatcli.chat import run_turn, send, window_for
from chatcli.client import OpenAIClient
from chatcli.config import endpoint_of, merge
from chatcli.conversation import ASSISTANT, USER, Conversation, Message
from chatcli.events import ReasoningDelta, TextDelta
from tests.conftest import TEST_KEY
from tests.fake_server import Reply


class Collect:
    def __init__(self, stop_after: int | None = None) -> None:
        self.parts: list[str] = []
        self.thinking: list[str] = []
        self.ended = 0
        self.stop_after = stop_after

    def event(self, event) -> None:
        if isinstance(event, ReasoningDelta):
            self.thinking.append(event.text)
            return
        if not isinstance(event, TextDelta):
            return  # the end of a reply cut short
        self.parts.append(event.text)
        if self.stop_after is not None and len(self.parts) >= self.stop_after:
            raise KeyboardInterrupt

    def end(self) -> None:
        self.ended += 1


def setup(server, **overrides):
    settings = merge({"base_url": server.base_url, "model": "test-model", "max_retries": 0,
                      "timeout": 5, **overrides}, {}, {})
    return settings, OpenAIClient(endpoint_of(settings, TEST_KEY))


def test_a_turn_sends_system_first_then_history_then_the_question(server):
    settings, client = setup(server)
    conv = Conversation(system="You are terse.")
    sink = Collect()
    first = run_turn(conv, "Who won the world series in 2020?", client=client, settings=settings, sink=sink)
    assert "".join(sink.parts) == first.reply.content == "Hello! How can I help?"
    server.queue(Reply(text="Arlington, Texas."))
    run_turn(conv, "Where was it played?", client=client, settings=settings, sink=Collect())
    sent = server.chat_requests[1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "You are terse."
    assert sent[-1]["content"] == "Where was it played?"
    assert [m.role for m in conv.messages] == [USER, ASSISTANT, USER, ASSISTANT]
    assert sink.ended == 1


def test_server_usage_is_used_and_counted_on_the_reply(server):
    settings, client = setup(server)
    server.queue(Reply(prompt_tokens=30, completion_tokens=12))
    result = run_turn(Conversation(), "hi", client=client, settings=settings, sink=Collect())
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (30, 12)
    assert not result.usage.estimated
    assert result.reply.tokens == 12 + 4 and not result.reply.estimated


def test_usage_is_estimated_when_the_server_reports_none(server):
    settings, client = setup(server)
    server.queue(Reply(usage=False, text="你好，世界"))
    result = run_turn(Conversation(), "说你好", client=client, settings=settings, sink=Collect())
    assert result.usage.estimated
    assert result.usage.completion_tokens >= 5
    assert result.usage.prompt_tokens >= 3


def test_long_conversations_are_trimmed_to_twenty_messages_and_reported(server):
    settings, client = setup(server)
    conv = Conversation(system="sys")
    for i in range(15):
        conv.messages += [Message(USER, f"q{i}"), Message(ASSISTANT, f"a{i}")]
    result = run_turn(conv, "latest", client=client, settings=settings, sink=Collect())
    sent = server.chat_requests[0]["messages"]
    assert len(sent) <= 20
    assert sent[0] == {"role": "system", "content": "sys"}
    assert sent[1]["role"] == "user"
    assert sent[-1] == {"role": "user", "content": "latest"}
    assert len(result.window.dropped) == 31 - (len(sent) - 1)
    assert len(conv.messages) == 32  # trimming never forgets: it only leaves out of the request


def test_max_messages_is_configurable(server):
    settings, client = setup(server, max_messages=4)
    conv = Conversation(system="sys")
    for i in range(5):
        conv.messages += [Message(USER, f"q{i}"), Message(ASSISTANT, f"a{i}")]
    run_turn(conv, "latest", client=client, settings=settings, sink=Collect())
    assert [m["content"] for m in server.chat_requests[0]["messages"]] == ["sys", "q4", "a4", "latest"]


def test_reply_cut_by_max_tokens_says_so(server):
    settings, client = setup(server, max_tokens=5)
    server.queue(Reply(finish_reason="length"))
    result = run_turn(Conversation(), "hi", client=client, settings=settings, sink=Collect())
    assert "cut short by max_tokens (5)" in result.notice
    assert result.reply.finish_reason == "length"


def test_stream_without_finish_reason_keeps_text_and_warns(server):
    settings, client = setup(server)
    server.queue(Reply(fault="no_finish", text="half an ans"))
    result = run_turn(Conversation(), "hi", client=client, settings=settings, sink=Collect())
    assert result.reply.content == "half an ans"
    assert "may be cut off" in result.notice


def test_an_error_mid_stream_keeps_the_question_and_the_partial_reply(server):
    settings, client = setup(server)
    server.queue(Reply(fault="drop", text="This reply will be cut in the middle"))
    conv = Conversation()
    sink = Collect()
    with pytest.raises(errors.NetworkError):
        run_turn(conv, "hi", client=client, settings=settings, sink=sink)
    assert conv.messages[0] == Message(USER, "hi")
    assert conv.messages[1].finish_reason == "error"
    assert conv.messages[1].content == "".join(sink.parts) != ""
    assert sink.ended == 1


def test_an_error_before_any_text_keeps_the_question_for_a_retry(server):
    settings, client = setup(server)
    server.queue(Reply(status=503, error={"error": {"message": "busy", "type": "server_error"}}))
    conv = Conversation()
    with pytest.raises(errors.ServerError):
        run_turn(conv, "hi", client=client, settings=settings, sink=Collect())
    assert conv.messages == [Message(USER, "hi")]
    send(conv, client=client, settings=settings, sink=Collect())  # the retry
    assert [m.role for m in conv.messages] == [USER, ASSISTANT]
    assert server.chat_requests[-1]["messages"] == [{"role": "user", "content": "hi"}]


def test_ctrl_c_mid_stream_keeps_the_partial_reply_marked_interrupted(server):
    settings, client = setup(server)
    server.queue(Reply(text="word " * 200, chunk_chars=5, delay=0.005))
    conv = Conversation()
    sink = Collect(stop_after=3)
    with pytest.raises(errors.Interrupted) as info:
        run_turn(conv, "hi", client=client, settings=settings, sink=sink)
    assert info.value.exit_code == 130
    assert conv.messages[1].finish_reason == "interrupted"
    assert conv.messages[1].content == "".join(sink.parts)
    assert sink.ended == 1


def test_no_stream_returns_the_whole_response(server):
    settings, client = setup(server)
    sink = Collect()
    result = run_turn(Conversation(), "hi", client=client, settings=settings, sink=sink, stream=False)
    assert result.response["object"] == "chat.completion"
    assert "".join(sink.parts) == "Hello! How can I help?"
    assert "stream" not in server.chat_requests[0]


def test_window_for_uses_the_context_budget(server):
    settings, _ = setup(server, context_window=1000, max_tokens=200)
    conv = Conversation(messages=[Message(USER, "x", tokens=500), Message(ASSISTANT, "y", tokens=500),
                                  Message(USER, "z", tokens=10)])
    window = window_for(conv, settings)
    assert window.budget == 800
    assert [m.content for m in window.messages] == ["z"]


class TermMidShow(Collect):
    """A sink that a SIGTERM reaches half way through showing its third piece."""

    def event(self, event) -> None:
        import signal

        from chatcli.cli.base import terminate

        if not isinstance(event, TextDelta):
            return
        self.parts.append(event.text[:1])
        if len(self.parts) == 3:
            try:
                terminate(signal.SIGTERM, None)  # what the signal handler does, at this moment
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
        self.parts[-1] = event.text  # the rest of the piece reaches the screen


def test_a_termination_signal_while_a_piece_is_shown_waits_so_saved_is_shown(server):
    """Show, then save: the partial reply kept is exactly what reached the screen, however the
    signal falls (issue 19: it used to save a piece that was never shown, now and then)."""
    settings, client = setup(server)
    server.queue(Reply(text="one two three four five six", chunk_chars=4))
    conv = Conversation()
    sink = TermMidShow()
    with pytest.raises(errors.Terminated):
        run_turn(conv, "count", client=client, settings=settings, sink=sink)
    assert conv.messages[-1].content == "".join(sink.parts) == "one two thre"
    assert conv.messages[-1].finish_reason == "interrupted"


def test_the_answer_is_timed_from_the_request_not_from_start_up(monkeypatch):
    """Importing the HTTP library and connecting come before the request is sent: they are
    not the model's thinking. A clock of our own makes the figures exact."""
    import chatcli.chat as chat
    from chatcli.events import RequestSent, StreamEnd

    now = [0.0]
    monkeypatch.setattr(chat.time, "monotonic", lambda: now[0])

    class SlowToStart:
        usage_in_stream = True

        def stream(self, request):
            now[0] += 100.0  # start-up: imports, a slow connection
            yield RequestSent()
            yield ReasoningDelta("hmm")
            now[0] += 2.5  # the thinking
            yield TextDelta("answer")
            yield StreamEnd("stop")

    settings = merge({"model": "test-model"}, {}, {})
    result = run_turn(Conversation(), "hi", client=SlowToStart(), settings=settings, sink=Collect())
    assert result.answer_after == 2.5
