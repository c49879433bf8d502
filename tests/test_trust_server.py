"""A server that misbehaves on purpose: errors in a 200, malformed values, hostile sizes and pace.

Each case is a body a real server (or something pretending to be one) has sent;
chatcli must answer with the documented exit code and one line, keep the
question, keep what arrived of the reply, and never save an empty reply.
"""

from __future__ import annotations

import json
import time

import pytest

from chatcli.store import Store
from tests.fake_server import Reply
from tests.test_repl import CTRL_D, ENTER, Harness


def chunk(content=None, *, finish=None, usage=None, **delta) -> dict:
    if content is not None:
        delta["content"] = content
    data = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        data["usage"] = usage
    return data


def sse(*events, done: bool = True) -> bytes:
    body = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


def body(data: bytes, content_type: str = "text/event-stream") -> Reply:
    return Reply(body=lambda: [data], content_type=content_type)


def saved(tmp_path):
    return Store(tmp_path / "data" / "chatcli.db").load(1)


ERROR_200 = {
    "quota": ({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                         "code": "insufficient_quota"}}, 4, "out of quota"),
    "context": ({"error": {"message": "This model's maximum context length is 4096 tokens",
                           "type": "invalid_request_error", "code": "context_length_exceeded"}}, 7,
                "too long for the model"),
    "auth": ({"error": {"message": "Invalid API key", "type": "authentication_error",
                        "code": "invalid_api_key"}}, 3, "rejected the API key"),
    "status in body": ({"error": {"message": "Too many requests", "code": 429}}, 4, "rate limited"),
    "vllm shape": ({"object": "error", "message": "engine is dead", "type": "InternalError",
                    "code": 500}, 6, "engine is dead"),
    "other": ({"error": {"message": "something odd happened", "type": "server_error"}}, 6,
              "reported an error instead of a reply: something odd happened"),
    "plain message": ({"code": "X1", "message": "账户余额不足"}, 6, "账户余额不足"),
}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
@pytest.mark.parametrize("name", list(ERROR_200))
def test_an_error_in_a_200_is_shown_classified_and_nothing_empty_is_saved(run, endpoint, tmp_path,
                                                                          name, stream):
    payload, code, words = ERROR_200[name]
    endpoint.queue(body(json.dumps(payload).encode(), "application/json"))
    if name == "context":  # chatcli asks once more with less; the server refuses again
        endpoint.queue(body(json.dumps(payload).encode(), "application/json"))
    result = run("ask", "--session", "s", *([] if stream else ["--no-stream"]), "the question")
    assert result.code == code, result.stderr
    assert words in result.stderr and result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert [m.content for m in saved(tmp_path)] == ["the question"]


def test_an_error_event_inside_a_stream_is_classified_too(run, endpoint, tmp_path):
    endpoint.queue(body(sse(chunk("Partial "), {"error": {"message": "quota exhausted",
                                                           "type": "insufficient_quota"}})))
    result = run("ask", "--session", "s", "q")
    assert result.code == 4 and "out of quota" in result.stderr
    assert result.stdout == "Partial \n"
    assert saved(tmp_path)[1].content == "Partial " and saved(tmp_path)[1].finish_reason == "error"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_an_html_page_is_named_as_such(run, endpoint, stream):
    page = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>"
    endpoint.queue(body(page, "text/html"))
    result = run("ask", *([] if stream else ["--no-stream"]), "q")
    assert result.code == 6
    assert "answered with an HTML page, not chat-completions data" in result.stderr
    assert "502 Bad Gateway" in result.stderr and "base_url" in result.stderr


def test_plain_text_where_a_stream_was_expected(run, endpoint):
    endpoint.queue(body(b"upstream connect error or disconnect/reset before headers\n", "text/plain"))
    result = run("ask", "q")
    assert result.code == 6 and "upstream connect error" in result.stderr


def test_a_server_that_ignores_stream_true_and_sends_json_is_understood(run, endpoint):
    whole = {"id": "x", "object": "chat.completion", "created": 1, "model": "test-model",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "Whole answer."},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    endpoint.queue(body(json.dumps(whole).encode(), "application/json"))
    result = run("ask", "--usage", "q")
    assert result.code == 0 and result.stdout == "Whole answer.\n"
    assert "tokens: 7 prompt + 3 completion = 10" in result.stderr


@pytest.mark.parametrize("data", [b"", b"data: [DONE]\n\n", sse(chunk(""), chunk(role="assistant")),
                                  sse(chunk(usage=None), done=False), b": just a comment\n\n"],
                         ids=["nothing", "only DONE", "empty deltas", "no DONE", "comment"])
def test_a_stream_without_a_reply_is_an_error_never_exit_0(run, endpoint, tmp_path, data):
    endpoint.queue(body(data))
    result = run("ask", "--session", "s", "q")
    assert result.code == 6, result.stderr
    assert "ended the stream without sending any reply" in result.stderr
    assert [m.content for m in saved(tmp_path)] == ["q"]


def test_retry_after_an_error_in_a_200_sends_the_question_again(server, tmp_path):
    server.queue(body(json.dumps({"error": {"message": "busy", "type": "server_error"}}).encode(),
                      "application/json"))
    harness = Harness(server, tmp_path)
    harness.run("my question" + ENTER + "/retry" + ENTER + CTRL_D)
    assert "reported an error instead of a reply: busy" in harness.err.getvalue()
    assert [m.content for m in harness.session.conversation.messages] == [
        "my question", "Hello! How can I help?"]
    assert harness.questions == ["my question", "my question"]


# --- malformed values in well-formed JSON ----------------------------------------------------


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": "12", "completion_tokens": "3"},
    {"prompt_tokens": 10**30, "completion_tokens": 10**30},
    {"prompt_tokens": -5, "completion_tokens": 3},
    {"prompt_tokens": float("nan"), "completion_tokens": 3},
    {"prompt_tokens": True, "completion_tokens": 3},
    "lots",
    [1, 2],
], ids=["strings", "10^30", "negative", "NaN", "bool", "string", "list"])
def test_unusable_usage_is_dropped_and_estimated(run, endpoint, tmp_path, usage):
    data = sse(chunk("An answer."), chunk(finish="stop"), {"choices": [], "usage": usage})
    endpoint.queue(body(data))
    result = run("ask", "--session", "s", "--usage", "q")
    assert result.code == 0, result.stderr
    assert result.stdout == "An answer.\n"
    assert "(estimated)" in result.stderr and "-5" not in result.stderr
    assert saved(tmp_path)[1].content == "An answer."


def test_unusable_usage_in_a_whole_response_is_estimated_too(run, endpoint):
    whole = {"choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": -1, "completion_tokens": "x"}}
    endpoint.queue(body(json.dumps(whole).encode(), "application/json"))
    result = run("ask", "--no-stream", "--usage", "q")
    assert result.code == 0 and result.stdout == "ok\n" and "(estimated)" in result.stderr


def test_content_that_is_a_number_or_a_list_of_parts_is_taken_as_text(run, endpoint):
    parts = [{"type": "text", "text": " and parts"}]
    endpoint.queue(body(sse(chunk(42), chunk(parts), chunk(finish="stop"))))
    result = run("ask", "q")
    assert result.code == 0 and result.stdout == "42 and parts\n"


def test_content_that_is_not_text_is_a_server_error_and_the_partial_reply_is_kept(run, endpoint, tmp_path):
    endpoint.queue(body(sse(chunk("Kept words. "), chunk({"evil": True}), chunk(finish="stop"))))
    result = run("ask", "--session", "s", "q")
    assert result.code == 6 and "content that is not text" in result.stderr
    assert result.stdout == "Kept words. \n"
    assert saved(tmp_path)[1].content == "Kept words. " and saved(tmp_path)[1].finish_reason == "error"


@pytest.mark.parametrize("event", ["42", "null", "[1, 2]", '"text"', '{"choices": 7}',
                                   '{"choices": [3]}', '{"choices": [{"delta": "x"}]}',
                                   "[" * 100_000 + "]" * 100_000, "1" * 5000],
                         ids=["number", "null", "list", "string", "choices number", "choice number",
                              "delta string", "deep nesting", "huge number"])
def test_chunks_of_the_wrong_shape_are_a_server_error(run, endpoint, tmp_path, event):
    endpoint.queue(body(sse(chunk("Before. "), event, chunk(finish="stop"))))
    result = run("ask", "--session", "s", "q")
    assert result.code == 6, result.stderr
    assert result.stderr.startswith("chatcli: error: ") and result.stderr.count("\n") == 1
    assert saved(tmp_path)[1].content == "Before. "


def test_lone_surrogates_become_replacement_characters_and_split_pairs_are_joined(run, endpoint, tmp_path):
    line = 'data: {"choices": [{"index": 0, "delta": {"content": "%s"}, "finish_reason": %s}]}\n\n'
    events = line % ("bad \\ud800 here ", "null") + line % ("smile \\ud83d", "null")
    events += line % ("\\ude00!", '"stop"')
    endpoint.queue(body(events.encode()))
    result = run("ask", "--session", "s", "q")
    assert result.code == 0, result.stderr
    assert result.stdout == "bad \ufffd here smile 😀!\n"
    assert saved(tmp_path)[1].content == "bad \ufffd here smile 😀!"


def test_a_surrogate_in_a_whole_response_and_in_json_output(run, endpoint):
    raw = b'{"choices": [{"index": 0, "message": {"content": "x\\udfff"}, "finish_reason": "stop"}]}'
    endpoint.queue(body(raw, "application/json"), body(raw, "application/json"))
    assert run("ask", "--no-stream", "q").stdout == "x\ufffd\n"
    shown = run("ask", "--json", "q")
    assert shown.code == 0 and json.loads(shown.stdout)["choices"][0]["message"]["content"] == "x\udfff"


# --- sizes and pace ------------------------------------------------------------------------


def test_a_line_without_end_is_cut_at_a_few_megabytes(run, endpoint, tmp_path):
    def endless_line():
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "Start. "}}]}\n\n'
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "'
        for _ in range(400):  # 400 MB if nobody stops reading
            yield b"x" * 1_000_000

    endpoint.queue(Reply(body=endless_line))
    result = run("ask", "--session", "s", "q")
    assert result.code == 6
    assert "a line of more than 4 MB without an end" in result.stderr
    assert saved(tmp_path)[1].content == "Start. "
    deadline = time.monotonic() + 10
    while not endpoint.abandoned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert endpoint.abandoned == 1  # chatcli hung up rather than reading on


def test_a_server_that_trickles_forever_is_stopped_by_reply_timeout(run, endpoint, tmp_path):
    def trickle():
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "Slow "}}]}\n\n'
        for _ in range(600):
            time.sleep(0.05)
            yield b": keep-alive\n\n"

    endpoint.queue(Reply(body=trickle))
    config = tmp_path / "c.toml"
    config.write_text("reply_timeout = 1\n")
    result = run("ask", "--config", str(config), "--session", "s", "q")
    assert result.code == 5
    assert "still not complete after 1 s (reply_timeout)" in result.stderr
    assert saved(tmp_path)[1].content == "Slow " and saved(tmp_path)[1].finish_reason == "error"


def test_an_error_page_too_big_to_be_one_is_not_read_whole(run, endpoint):
    big = Reply(status=500, error={"error": {"message": "x" * 3_000_000, "type": "server_error"}})
    endpoint.queue(big)
    result = run("ask", "q")
    assert result.code == 6 and "error page of more than 1 MB" in result.stderr


def test_a_reply_far_larger_than_any_real_one_is_cut_and_kept_as_length(run, endpoint, tmp_path):
    piece = "a" * 999_999 + "\n"

    def endless():
        for _ in range(40):  # 40 MB if nobody stopped reading
            yield ("data: " + json.dumps(chunk(piece)) + "\n\n").encode()
        yield sse(chunk(finish="stop"))

    endpoint.queue(Reply(body=endless))
    result = run("ask", "--session", "s", "q")
    assert result.code == 0
    assert len(result.stdout) == 10_000_000  # (it ends in a newline of its own)
    assert "passed 10 million characters" in result.stderr and "cut off there and kept" in result.stderr
    reply = saved(tmp_path)[1]
    assert len(reply.content) == 10_000_000 and reply.finish_reason == "length"


def test_a_long_error_page_is_quoted_as_one_short_line(run, endpoint):
    endpoint.queue(Reply(status=400, error={"error": {"message": "boom " * 100_000, "type": "x"}}))
    result = run("ask", "q")
    assert result.code == 7 and result.stderr.count("\n") == 1 and len(result.stderr) < 2200
