"""Reasoning models (issue 11): the thinking, in each server's dialect, is parsed apart from
the answer, kept with the reply, and never sent back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli.chat import run_turn
from chatcli.client.think import ThinkSplitter, split_think
from chatcli.conversation import Conversation
from chatcli.events import ReasoningDelta, TextDelta
from chatcli.store import Store
from tests.fake_server import Reply
from tests.test_chat import Collect, setup

DIALECTS = ["reasoning_content", "reasoning", "think"]


@pytest.mark.parametrize(("content", "expected"), [
    ("<think>\nweighing it up\n</think>\n\nThe answer.", ("weighing it up\n", "The answer.")),
    ("<think></think>The answer.", ("", "The answer.")),
    ("  \n<think>hmm</think>x", ("hmm", "x")),
    ("plain <think> in the middle", ("", "plain <think> in the middle")),
    ("<think>cut off before the end", ("cut off before the end", "")),
    ("<3 is a heart", ("", "<3 is a heart")),
    ("\n\nHello", ("", "\n\nHello")),
    ("", ("", "")),
    ("<thinking>not our tag</thinking>", ("", "<thinking>not our tag</thinking>")),
])
def test_a_think_block_opening_the_content_is_reasoning(content, expected):
    assert split_think(content) == expected


@settings(max_examples=300, deadline=None)
@given(thought=st.text(alphabet="ab <>/think\n", max_size=30),
       answer=st.text(alphabet="ab <>\n", max_size=30),
       cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=12))
def test_the_split_is_the_same_however_the_content_is_chunked(thought, answer, cuts):
    whole = f"<think>{thought.replace('</think>', '')}</think>{answer}"
    points = sorted({min(c, len(whole)) for c in cuts})
    pieces = [whole[a:b] for a, b in zip([0, *points], [*points, len(whole)], strict=True)]
    splitter = ThinkSplitter()
    events = [e for piece in pieces for e in splitter.feed(piece)] + splitter.close()
    got = ("".join(e.text for e in events if isinstance(e, ReasoningDelta)),
           "".join(e.text for e in events if isinstance(e, TextDelta)))
    assert got == split_think(whole)
    assert got[0] == thought.replace("</think>", "").lstrip("\n")


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_dialect_gives_the_answer_alone_and_keeps_the_thinking(server, dialect, stream):
    settings_, client = setup(server)
    server.queue(Reply(text="Paris.", reasoning="The capital of France... it is Paris.", dialect=dialect))
    conversation = Conversation()
    sink = Collect()
    result = run_turn(conversation, "capital of France?", client=client, settings=settings_, sink=sink,
                      stream=stream)
    assert "".join(sink.parts) == "Paris."
    assert result.reply.content == "Paris."
    assert result.reply.reasoning.strip() == "The capital of France... it is Paris."


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_thinking_is_saved_but_never_sent_back(run, endpoint, db, dialect):
    endpoint.queue(Reply(text="Paris.", reasoning="Let me think about France.", dialect=dialect))
    first = run("ask", "--session", "geo", "capital of France?")
    assert first.code == 0 and first.stdout == "Paris.\n"  # a pipe gets the answer only
    saved = Store(db).load(1)
    assert saved[1].content == "Paris." and saved[1].reasoning.strip() == "Let me think about France."
    run("ask", "--session", "geo", "and of Italy?")
    sent = endpoint.chat_requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": "Paris."}
    assert "France." not in json.dumps(sent[1:]) and "think" not in json.dumps(sent)


def test_json_output_has_the_reasoning_as_the_server_sent_it(run, endpoint):
    endpoint.queue(Reply(text="Paris.", reasoning="Thinking it over.", dialect="reasoning_content"))
    data = json.loads(run("ask", "--json", "capital?").stdout)
    assert data["choices"][0]["message"]["reasoning_content"] == "Thinking it over."


def test_a_reply_interrupted_while_thinking_keeps_the_thinking(server):
    settings_, client = setup(server)
    server.queue(Reply(text="The answer, at last.", reasoning="step " * 40, chunk_chars=5))
    conversation = Conversation()
    with pytest.raises(Exception):  # noqa: B017 - Ctrl-C during the answer's first words
        run_turn(conversation, "think hard", client=client, settings=settings_, sink=Collect(stop_after=1))
    kept = conversation.messages[-1]
    assert kept.finish_reason == "interrupted" and kept.reasoning == "step " * 40
