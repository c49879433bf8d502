"""Servers as they really answer: shapes recorded from real providers that chatcli once got
wrong, and a model that refuses the system role."""

from __future__ import annotations

import json

import pytest

from tests.test_trust_server import body, chunk, saved, sse


def test_an_error_in_a_chunk_that_also_has_choices_is_an_error_not_a_finished_reply(run, endpoint, tmp_path):
    # OpenRouter, when the provider fails mid-way: finish_reason length, then the error.
    endpoint.queue(body(sse(chunk("The first part of"), chunk(" the answer", finish="length"),
                            {"id": "x", "object": "chat.completion.chunk",
                             "error": {"message": "Provider returned error", "code": 502},
                             "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]})))
    result = run("ask", "hi", env={"CHATCLI_DATA_DIR": str(tmp_path / "data")})
    assert result.code == 6, result.stderr
    assert "Provider returned error" in result.stderr
    assert result.stdout.startswith("The first part of the answer")
    assert saved(tmp_path)[-1].content == "The first part of the answer"  # what came is kept


def test_an_empty_error_object_beside_choices_is_not_an_error(run, endpoint):
    endpoint.queue(body(sse({**chunk("fine"), "error": {}}, chunk(finish="stop"))))
    result = run("ask", "hi")
    assert result.code == 0 and result.stdout == "fine\n"


MISTRAL_THINKING = [
    chunk([{"type": "thinking", "thinking": [{"type": "text", "text": "Two and two "}]}]),
    chunk([{"type": "thinking", "thinking": [{"type": "text", "text": "make four."}]}]),
    chunk([{"type": "text", "text": "The answer is "}]),
    chunk([{"type": "text", "text": "4."}], finish="stop"),
]


def test_content_as_typed_parts_gives_thinking_as_thinking_and_text_as_the_answer(run, endpoint, tmp_path):
    endpoint.queue(body(sse(*MISTRAL_THINKING)))
    result = run("ask", "--reasoning", "show", "2+2?", env={"CHATCLI_DATA_DIR": str(tmp_path / "data")})
    assert result.code == 0, result.stderr
    assert result.stdout == "The answer is 4.\n"
    assert "Two and two make four." in result.stderr  # thinking goes to stderr in a pipe
    reply = saved(tmp_path)[-1]
    assert (reply.content, reply.reasoning) == ("The answer is 4.", "Two and two make four.")


def test_a_content_part_of_an_unknown_type_is_named_once_and_the_answer_goes_on(run, endpoint):
    endpoint.queue(body(sse(chunk([{"type": "audio", "audio": {"data": "AAAA"}}]),
                            chunk([{"type": "text", "text": "heard"}, {"type": "audio", "audio": {}}]),
                            chunk(finish="stop"))))
    result = run("ask", "hi")
    assert result.code == 0, result.stderr
    assert result.stdout == "heard\n"
    assert result.stderr.count("the reply holds a part of type 'audio' that chatcli cannot show") == 1


def test_typed_parts_in_a_whole_response_too(run, endpoint):
    parts = [{"type": "thinking", "thinking": "short thought"}, {"type": "text", "text": "whole answer"}]
    whole = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": parts}}]}
    endpoint.queue(body(json.dumps(whole).encode(), "application/json"))
    result = run("ask", "--no-stream", "--reasoning", "hide", "hi")
    assert result.code == 0, result.stderr
    assert result.stdout == "whole answer\n" and "short thought" not in result.stdout


@pytest.fixture
def system_prompt(tmp_path) -> str:
    path = tmp_path / "c.toml"
    path.write_text('system_prompt = "Answer in French."\n')
    return str(path)


def test_a_refused_system_role_is_sent_as_developer_said_once_and_remembered(run, endpoint, system_prompt):
    endpoint.rejects = {"system"}
    first = run("ask", "--config", system_prompt, "hi")
    assert first.code == 0, first.stderr
    assert first.stderr.count("does not take a system message: the system prompt is sent as a "
                              "developer message from now on") == 1
    sent = endpoint.chat_requests
    assert sent[0]["messages"][0]["role"] == "system"
    assert sent[1]["messages"][0] == {"role": "developer", "content": "Answer in French."}
    again = run("ask", "--config", system_prompt, "hello")  # a new run: sent right at once
    assert again.code == 0 and "does not take" not in again.stderr
    assert len(endpoint.chat_requests) == 3
    assert endpoint.chat_requests[2]["messages"][0]["role"] == "developer"


def test_a_model_that_takes_neither_gets_the_system_prompt_in_the_first_question(run, endpoint,
                                                                               system_prompt):
    endpoint.rejects = {"system", "developer"}
    result = run("ask", "--config", system_prompt, "hi")
    assert result.code == 0, result.stderr
    assert "sent at the start of the first question" in result.stderr
    last = endpoint.chat_requests[-1]["messages"]
    assert last == [{"role": "user", "content": "Answer in French.\n\nhi"}]
