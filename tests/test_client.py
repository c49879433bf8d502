"""The openai adapter against a real HTTP server on 127.0.0.1: events, deviations, every failure."""

from __future__ import annotations

import socket
import time

import pytest

from chatcli import errors
from chatcli.client import ChatRequest, OpenAIClient, StreamEnd, TextDelta, UsageReport
from chatcli.client.failures import is_context_too_long
from chatcli.config import endpoint_of, merge
from chatcli.events import RequestSent
from tests.conftest import TEST_KEY
from tests.fake_server import CONTEXT_TOO_LONG, Reply, error_body

REQUEST = ChatRequest(model="test-model", messages=[{"role": "user", "content": "hi"}])


def make_client(server, *, debug=None, **overrides) -> OpenAIClient:
    data = {"base_url": server.base_url, "max_retries": 0, "timeout": 5, **overrides}
    return OpenAIClient(endpoint_of(merge(data, {}, {}), TEST_KEY), debug=debug)


def collect(client, request=REQUEST):
    return list(client.stream(request))


def test_stream_yields_text_usage_and_finish(server):
    server.queue(Reply(text="Hello world", chunk_chars=3, prompt_tokens=9, completion_tokens=2))
    events = collect(make_client(server))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello world"
    assert UsageReport(9, 2) in events
    assert events[-1] == StreamEnd("stop")
    sent = server.chat_requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_request_carries_model_messages_and_parameters(server):
    request = ChatRequest(model="test-model", messages=[{"role": "system", "content": "s"},
                                                        {"role": "user", "content": "q"}],
                          temperature=0.2, max_tokens=77)
    collect(make_client(server, headers={"X-Title": "chatcli"}), request)
    sent = server.chat_requests[0]
    assert sent["messages"] == request.messages
    assert (sent["temperature"], sent["max_tokens"], sent["model"]) == (0.2, 77, "test-model")
    headers = server.requests[0].headers
    assert headers["authorization"] == f"Bearer {TEST_KEY}"
    assert headers["x-title"] == "chatcli"


def test_unset_parameters_are_not_sent(server):
    collect(make_client(server))
    assert "temperature" not in server.chat_requests[0]
    assert "max_tokens" not in server.chat_requests[0]


def test_server_without_usage_in_stream(server):
    server.queue(Reply(usage=False))
    events = collect(make_client(server))
    assert not any(isinstance(e, UsageReport) for e in events)
    assert events[-1] == StreamEnd("stop")


def test_server_that_rejects_stream_options_is_asked_again_without(server):
    server.rejects_stream_options = True
    server.queue(Reply(text="fine"), Reply(text="again"))
    client = make_client(server)
    events = collect(client)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "fine"
    assert "stream_options" in server.chat_requests[0]
    assert "stream_options" not in server.chat_requests[1]
    assert not any(isinstance(e, UsageReport) for e in events)
    collect(client)  # remembered for the rest of the session
    assert len(server.chat_requests) == 3
    assert "stream_options" not in server.chat_requests[2]


def test_finish_reason_length_and_missing(server):
    server.queue(Reply(finish_reason="length"), Reply(fault="no_finish", text="partial text"))
    client = make_client(server)
    assert collect(client)[-1] == StreamEnd("length")
    events = collect(client)
    assert events[-1] == StreamEnd(None)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "partial text"


def test_complete_returns_the_reply_and_the_servers_response_object(server):
    completion = make_client(server).complete(REQUEST)
    assert (completion.text, completion.finish_reason) == ("Hello! How can I help?", "stop")
    assert completion.usage == UsageReport(11, 5)
    data = completion.response
    assert set(data) >= {"id", "object", "created", "model", "usage", "choices"}
    assert data["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert "stream" not in server.chat_requests[0]


def test_models_lists_the_endpoint(server):
    assert make_client(server).models() == sorted(server.models)


FAULTS = [
    (Reply(status=401, error=error_body("Incorrect API key provided: sk-test-4f9c****7a1b.",
                                        "invalid_request_error", "invalid_api_key")),
     errors.AuthError, 3, "rejected the API key"),
    (Reply(status=403, error=error_body("Country not supported", "permission_denied")),
     errors.AuthError, 3, "not allowed"),
    (Reply(status=429, error=error_body("Rate limit reached", "requests", "rate_limit_exceeded"),
           headers={"Retry-After": "7"}), errors.RateLimitError, 4, "wait 7s"),
    (Reply(status=429, error=error_body("You exceeded your current quota", "insufficient_quota",
                                        "insufficient_quota")),
     errors.RateLimitError, 4, "out of quota"),
    (Reply(status=500, error=error_body("boom", "server_error")), errors.ServerError, 6, "failed (500)"),
    (Reply(status=503, error=error_body("overloaded", "server_error")), errors.ServerError, 6, "(503)"),
    (Reply(status=400, error={"error": CONTEXT_TOO_LONG}), errors.ContextTooLongError, 7, "too long"),
    (Reply(status=400, error=error_body("Invalid value for temperature", "invalid_request_error")),
     errors.RequestError, 7, "rejected the request (400)"),
    (Reply(fault="drop"), errors.NetworkError, 5, "broke during the reply"),
    (Reply(fault="malformed"), errors.ServerError, 6, "not valid chat-completions data"),
    (Reply(fault="error_event"), errors.ServerError, 6, "error during the reply"),
]


@pytest.mark.parametrize(("reply", "kind", "code", "words"), FAULTS)
def test_every_failure_becomes_a_one_line_chatcli_error(server, reply, kind, code, words):
    server.queue(reply)
    with pytest.raises(kind) as info:
        collect(make_client(server))
    assert info.value.exit_code == code
    line = info.value.line()
    assert words in line and "\n" not in line
    assert TEST_KEY not in line


def test_unknown_model_is_named(server):
    with pytest.raises(errors.RequestError, match="model 'gpt-9' was not found"):
        collect(make_client(server), ChatRequest("gpt-9", REQUEST.messages))


def test_wrong_path_says_base_url_usually_ends_in_v1(server):
    client = make_client(server, base_url=server.base_url.removesuffix("/v1") + "/wrong")
    with pytest.raises(errors.RequestError, match="ends in /v1"):
        client.complete(REQUEST)


def test_a_server_that_never_answers_times_out(server):
    server.queue(Reply(fault="hang"))
    started = time.monotonic()
    with pytest.raises(errors.NetworkError, match=r"sent nothing for 0\.5s"):
        collect(make_client(server, timeout=0.5))
    assert time.monotonic() - started < 4


def test_a_stream_that_stalls_times_out_midway(server):
    server.queue(Reply(fault="stall", text="some words that stall"))
    with pytest.raises(errors.NetworkError, match="in the middle of the reply"):
        collect(make_client(server, timeout=0.5))


def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenAIClient(endpoint_of(merge({"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0},
                                            {}, {}), TEST_KEY))
    with pytest.raises(errors.NetworkError, match="cannot reach"):
        collect(client)


def test_rate_limits_are_retried_honouring_retry_after(server):
    server.queue(Reply(status=429, error=error_body("slow down", "requests"), headers={"Retry-After": "0"}),
                 Reply(text="second time lucky"))
    events = collect(make_client(server, max_retries=2))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "second time lucky"
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize(
    ("code", "type_", "message"),
    [
        ("context_length_exceeded", "invalid_request_error", "This model's maximum context length is 8192"),
        ("400", "exceed_context_size_error", "request (4476 tokens) exceeds the available context size"),
        (None, "BadRequestError",
         "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens"),
        (None, None, "Invalid request: Your request exceeded model token limit: 8192"),
        (None, None, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096"),
        (None, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
    ],
)
def test_context_too_long_is_recognised_across_servers(code, type_, message):
    assert is_context_too_long(code, type_, message)


def test_ordinary_bad_requests_are_not_context_errors():
    assert not is_context_too_long(None, "invalid_request_error", "temperature must be at most 2")


def test_llamacpp_style_context_error_over_http(server):
    body = {"error": {"code": 400, "message": "request (4476 tokens) exceeds the available context size "
                      "(4096 tokens)", "type": "exceed_context_size_error", "n_prompt_tokens": 4476,
                      "n_ctx": 4096}}
    server.queue(Reply(status=400, error=body))
    with pytest.raises(errors.ContextTooLongError):
        collect(make_client(server))


def test_debug_shows_request_and_response_without_the_key(server):
    lines: list[str] = []
    server.queue(Reply(headers={"x-request-id": "req-42"}))
    collect(make_client(server, debug=lines.append))
    text = "\n".join(lines)
    assert "→ POST" in text and '"messages"' in text and "req-42" in text and "← {" in text
    assert "Bearer ***" in text
    assert TEST_KEY not in text


def test_closing_the_stream_early_closes_the_connection(server):
    server.queue(Reply(text="x" * 400, chunk_chars=1, delay=0.01))
    stream = make_client(server).stream(REQUEST)
    assert isinstance(next(stream), RequestSent)  # every stream opens with it
    assert isinstance(next(stream), TextDelta)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 1
