"""Fuzzing with hypothesis: broken config files, any slash-command line, mangled SSE streams.

The property is always the same: a clear chatcli error or a result, never anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatcli import errors
from chatcli.client import ChatRequest, OpenAIClient, StreamEnd, TextDelta
from chatcli.commands import dispatch
from chatcli.config import endpoint_of, merge, parse_config
from chatcli.conversation import ASSISTANT, USER, Message
from chatcli.schema import KEYS
from chatcli.session import Session
from tests.conftest import TEST_KEY
from tests.fake_server import FakeServer, Reply

P = Path("/fuzz/config.toml")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

toml_lines = st.lists(
    st.one_of(
        st.sampled_from([k.name for k in KEYS] + ["profile", "profiles", "[profiles.x]", "[headers]",
                                                   "[profiles.x.headers]", "[[profiles]]", "nonsense"]),
        st.text(max_size=30),
    ).flatmap(lambda key: st.builds(
        lambda value, sep: f"{key}{sep}{value}",
        st.one_of(st.integers().map(str), st.floats(allow_nan=False).map(repr), st.text(max_size=20).map(
            json.dumps), st.sampled_from(["true", "[", "{", '"unterminated', "[1, 2]", "{ a = 1 }"])),
        st.sampled_from([" = ", "=", " ", ""]),
    )),
    max_size=12,
).map("\n".join)


@FUZZ
@given(text=st.one_of(toml_lines, st.text(max_size=300)))
def test_any_config_file_loads_or_fails_with_one_line(text):
    try:
        data = parse_config(text, P)
        profile = next(iter(data.get("profiles", {})), None)
        merge(data, {}, {"profile": profile}, path=P)
    except errors.ConfigError as exc:
        line = exc.line()
        assert line.startswith(str(P)) and "\n" not in line


class NoNetwork:
    """A client that must never be reached by a slash command (only /retry sends)."""

    usage_in_stream = True

    def models(self) -> list[str]:
        return ["a-model", "b-model"]

    def stream(self, request):
        raise errors.NetworkError("no network in this test")

    def complete(self, request):
        raise errors.NetworkError("no network in this test")


def make_session() -> Session:
    session = Session(merge({}, {}, {}), client_factory=lambda s: NoNetwork(), profiles=["p"],
                      load_profile=lambda name: merge({"profiles": {"p": {}}}, {}, {"profile": "p"}))
    session.conversation.messages += [Message(USER, "q"), Message(ASSISTANT, "```py\nx\n```")]
    return session


@FUZZ
@given(line=st.builds(lambda name, rest: f"/{name}{rest}",
                      st.one_of(st.sampled_from(["help", "model", "system", "temperature", "max-tokens",
                                                 "pin", "copy", "undo", "clear", "profile", "history",
                                                 "tokens", "sessions", "resume", "rename", "new", "edit",
                                                 "retry", "exit", "quit", "?"]), st.text(max_size=12)),
                      st.text(max_size=25)))
def test_any_slash_command_line_is_handled_or_explained(line):
    session = make_session()
    try:
        out = dispatch(session, line)
    except errors.ChatcliError as exc:
        assert "\n" not in exc.line()
        return
    assert out.action in (None, "exit", "retry", "edit", "copy")


def valid_stream(text: str) -> bytes:
    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "test-model"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
              for piece in text.split(" ")]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return body.encode()


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=2000),
    garbage=st.binary(max_size=40),
    where=st.integers(min_value=0, max_value=2000),
)
def test_sse_streams_cut_anywhere_or_mixed_with_garbage(cut, garbage, where):
    data = valid_stream("the quick brown fox jumps over the lazy dog " * 3)
    data = data[: cut % (len(data) + 1)]
    at = where % (len(data) + 1)
    data = data[:at] + garbage + data[at:]
    with FakeServer() as server:
        server.queue(Reply(raw=data))
        client = OpenAIClient(endpoint_of(merge({"base_url": server.base_url, "max_retries": 0, "timeout": 5},
                                                {}, {}), TEST_KEY))
        try:
            events = list(client.stream(ChatRequest("test-model", [{"role": "user", "content": "hi"}])))
        except errors.ChatcliError as exc:
            assert "\n" not in exc.line()
            return
    assert isinstance(events[-1], StreamEnd)
    assert all(isinstance(e.text, str) for e in events if isinstance(e, TextDelta))


# Wrong types and values inside well-formed JSON: what a broken or hostile server sends
# when its bytes are fine but its data is not.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40) | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
deltas = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "content": st.one_of(json_values, st.text(max_size=12)), "role": json_values}))
choices = st.one_of(json_values, st.lists(st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "index": st.one_of(st.just(0), json_values), "delta": deltas,
    "finish_reason": st.one_of(st.sampled_from(["stop", "length", None]), json_values)})), max_size=2))
usages = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "prompt_tokens": json_values, "completion_tokens": json_values}))
chunks = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "choices": choices, "usage": usages, "error": json_values, "message": json_values}))


def check_events(events) -> None:
    from chatcli.client import UsageReport
    from chatcli.client.chunks import MAX_TOKENS_FIGURE
    from chatcli.events import RequestSent

    for event in events:
        if isinstance(event, TextDelta):
            assert isinstance(event.text, str)
            event.text.encode("utf-8")  # no lone surrogate: it can be printed and stored
        elif isinstance(event, UsageReport):
            for figure in (event.prompt_tokens, event.completion_tokens):
                assert type(figure) is int and 0 <= figure <= MAX_TOKENS_FIGURE
        elif not isinstance(event, RequestSent):
            assert isinstance(event, StreamEnd)
            assert event.finish_reason is None or isinstance(event.finish_reason, str)


@settings(max_examples=600, deadline=None)
@given(data=st.lists(chunks, max_size=4))
def test_checked_chunks_give_clean_events_or_say_they_are_malformed(data):
    from chatcli.client.chunks import Malformed, SurrogateMender, chunk_events, find_error

    mender = SurrogateMender()
    for item in data:
        if find_error(item) is not None:
            continue
        try:
            check_events(chunk_events(item, mender))
        except Malformed as exc:
            assert "\n" not in str(exc)


@FUZZ
@given(data=st.lists(chunks, min_size=1, max_size=4))
def test_streams_of_wrongly_typed_chunks_end_in_events_or_one_line(data):
    body = "".join(f"data: {json.dumps(item)}\n\n" for item in data) + "data: [DONE]\n\n"
    with FakeServer() as server:
        server.queue(Reply(raw=body.encode()))
        client = OpenAIClient(endpoint_of(merge({"base_url": server.base_url, "max_retries": 0, "timeout": 5},
                                                {}, {}), TEST_KEY))
        try:
            events = list(client.stream(ChatRequest("test-model", [{"role": "user", "content": "hi"}])))
        except errors.ChatcliError as exc:
            assert "\n" not in exc.line() and exc.exit_code in (3, 4, 5, 6, 7)
            return
    check_events(events)
    assert isinstance(events[-1], StreamEnd)
