"""Reasoning models (issue 11): the thinking, in each server's dialect, is parsed apart from
the answer, kept with the reply, and never sent back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli.chat import run_turn
from chatcli.conversation import Conversation
from chatcli.events import ReasoningDelta, TextDelta
from chatcli.store import Store
from chatcli.think import ThinkSplitter, split_think
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


def test_ask_into_a_pipe_writes_the_answer_alone_or_the_thinking_to_stderr_when_asked(run, endpoint):
    for dialect in DIALECTS:
        endpoint.queue(Reply(text="Paris.", reasoning="France, capital...", dialect=dialect))
        quiet = run("ask", "capital?")
        assert quiet.stdout == "Paris.\n" and "France" not in quiet.stderr
        endpoint.queue(Reply(text="Paris.", reasoning="France, capital...", dialect=dialect))
        shown = run("ask", "--reasoning", "show", "capital?")
        assert shown.stdout == "Paris.\n" and "France, capital..." in shown.stderr
    assert run("ask", "--reasoning", "loud", "x").code == 2


def on_a_pty(endpoint, tmp_path, *args: str, rows: int = 40) -> tuple[str, list[str]]:
    from tests.terminal import terminal_screen

    return terminal_screen(endpoint, tmp_path, *args, rows=rows, cols=100)


THOUGHT = "".join(f"Step {n}: weigh the options carefully.\n" for n in range(1, 41))


def test_on_a_terminal_the_thinking_streams_dim_then_folds_to_one_line(endpoint, tmp_path):
    from tests.terminal import ANSI

    endpoint.queue(Reply(text="The **answer** is 42.", reasoning=THOUGHT, chunk_chars=12, delay=0.01))
    received, screen = on_a_pty(endpoint, tmp_path, "ask", "what is the answer?")
    plain = ANSI.sub("", received)
    assert "thinking…" in plain and "Step 3: weigh" in plain  # shown live while it lasted
    shown = [line for line in screen if line.strip()]
    assert shown[0].startswith("thought for ") and shown[0].endswith(" tokens")  # folded to one line
    assert shown[1] == "The answer is 42."  # and the answer, rendered
    assert not any("Step" in line for line in screen)  # the live view is gone
    assert "\x1b[2m" in received  # dim


def test_reasoning_show_keeps_the_thinking_and_hide_shows_only_the_line(endpoint, tmp_path):
    endpoint.queue(Reply(text="42.", reasoning=THOUGHT, chunk_chars=40))
    _, screen = on_a_pty(endpoint, tmp_path, "ask", "--reasoning", "show", "q", rows=60)
    shown = [line for line in screen if line.strip()]
    assert shown[0] == "Step 1: weigh the options carefully." and shown[39].startswith("Step 40")
    assert shown[40].startswith("thought for ") and shown[41] == "42."
    endpoint.queue(Reply(text="42.", reasoning=THOUGHT, chunk_chars=40, delay=0.005))
    received, screen = on_a_pty(endpoint, tmp_path, "ask", "--reasoning", "hide", "q")
    assert "Step" not in received
    assert next(line for line in screen if line.strip()).startswith("thought for ")


def test_a_long_chain_of_thought_never_floods_the_screen(endpoint, tmp_path):
    thought = "".join(f"line {n}\n" for n in range(5000))
    endpoint.queue(Reply(text="Done.", reasoning=thought, chunk_chars=200))
    received, screen = on_a_pty(endpoint, tmp_path, "ask", "q")
    assert [line for line in screen if line.strip()][1] == "Done."
    assert received.count("line 4999") <= 2  # drawn as the live view's tail, not printed


def test_in_the_session_reasoning_and_thinking(server, tmp_path):
    from tests.test_repl import CTRL_D, ENTER, Harness

    server.queue(Reply(text="Paris.", reasoning="Thinking about France."))
    harness = Harness(server, tmp_path)
    harness.run("capital?" + ENTER + "/thinking" + ENTER + "/reasoning hide" + ENTER + "/reasoning" + ENTER
                + "/reasoning loud" + ENTER + CTRL_D)
    out = harness.out.getvalue()
    assert "Thinking about France." in out  # /thinking prints it whole
    assert harness.session.settings.reasoning == "hide" and "reasoning: hide" in out
    assert "/reasoning takes show or collapse or hide, not 'loud'" in harness.err.getvalue()


def test_the_usage_line_shows_the_reasoning_tokens_and_when_the_answer_began(run, endpoint):
    endpoint.queue(Reply(text="Paris.", reasoning="x" * 320, completion_tokens=16, chunk_chars=40,
                         delay=0.05))
    shown = run("ask", "--usage", "capital?").stderr
    assert "96 completion (80 reasoning) = 107" in shown
    after = float(shown.split("answer after ")[1].split(" s")[0])
    assert after >= 0.3  # eight pieces of thinking, 0.05 s apart, came first
    assert "answer after" not in run("ask", "--usage", "no thinking here").stderr


def test_max_tokens_refused_for_max_completion_tokens_is_resent_said_once_and_remembered(run, endpoint):
    endpoint.rejects = {"max_tokens"}
    first = run("ask", "--max-tokens", "100", "hi")
    assert first.code == 0 and first.stdout == "Hello! How can I help?\n"
    assert first.stderr.count("takes max_completion_tokens, not max_tokens") == 1
    sent = endpoint.chat_requests
    assert sent[0]["max_tokens"] == 100 and "max_completion_tokens" not in sent[0]
    assert sent[1]["max_completion_tokens"] == 100 and "max_tokens" not in sent[1]
    again = run("ask", "--no-stream", "--max-tokens", "50", "hi")  # a new run: asked right at once
    assert again.code == 0 and "max_completion_tokens" not in again.stderr
    assert endpoint.chat_requests[2]["max_completion_tokens"] == 50 and len(endpoint.chat_requests) == 3


def test_a_temperature_refused_is_dropped_said_once_and_remembered(run, endpoint):
    endpoint.rejects = {"temperature"}
    first = run("ask", "-t", "0.2", "hi")
    assert first.code == 0 and "takes only its default temperature" in first.stderr
    assert endpoint.chat_requests[0]["temperature"] == 0.2 and "temperature" not in endpoint.chat_requests[1]
    run("ask", "-t", "0.7", "hi")
    assert "temperature" not in endpoint.chat_requests[2] and len(endpoint.chat_requests) == 3


def test_the_config_can_force_the_token_limit_field(run, endpoint, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('max_tokens_param = "max_completion_tokens"\nmax_tokens = 64\n')
    run("ask", "--config", str(config), "hi")
    sent = endpoint.chat_requests[0]
    assert sent["max_completion_tokens"] == 64 and "max_tokens" not in sent
    config.write_text('max_tokens_param = "sometimes"\n')
    assert run("ask", "--config", str(config), "hi").code == 2


def test_reasoning_effort_from_the_flag_the_config_and_the_session(run, endpoint, server, tmp_path):
    from tests.test_repl import CTRL_D, ENTER, Harness

    run("ask", "--reasoning-effort", "low", "hi")
    assert endpoint.chat_requests[-1]["reasoning_effort"] == "low"
    run("ask", "hi")
    assert "reasoning_effort" not in endpoint.chat_requests[-1]
    assert run("ask", "--reasoning-effort", "extreme", "hi").code == 2
    harness = Harness(server, tmp_path)
    harness.run("/effort high" + ENTER + "one" + ENTER + "/effort default" + ENTER + "two" + ENTER + CTRL_D)
    assert server.chat_requests[-2]["reasoning_effort"] == "high"
    assert "reasoning_effort" not in server.chat_requests[-1]
    assert "reasoning effort: the server default" in harness.out.getvalue()


def test_extra_request_fields_from_the_config_a_profile_the_flag_and_the_session(run, endpoint, server,
                                                                               tmp_path):
    from tests.test_repl import CTRL_D, ENTER, Harness

    config = tmp_path / "c.toml"
    config.write_text('params = { top_p = 0.9, seed = 1 }\n'
                      '[profiles.qwen]\nparams = { enable_thinking = false }\n')
    run("ask", "--config", str(config), "-p", "qwen", "--param", "seed=7", "--param",
        'thinking={"type": "enabled"}', "--param", "user=me", "hi")
    sent = endpoint.chat_requests[-1]
    assert (sent["top_p"], sent["seed"], sent["enable_thinking"], sent["thinking"], sent["user"]) == (
        0.9, 7, False, {"type": "enabled"}, "me")
    debug = run("ask", "--config", str(config), "--debug", "hi").stderr
    assert '"top_p": 0.9' in debug and "extra_body" not in debug
    shown = run("config", "show", "--config", str(config)).stdout
    assert "params = " in shown and "top_p" in shown
    refused = run("ask", "--param", "model=other", "hi")
    assert refused.code == 2 and "'model' is set by chatcli itself" in refused.stderr
    config.write_text('params = { messages = [] }\n')
    assert run("ask", "--config", str(config), "hi").code == 2
    harness = Harness(server, tmp_path)
    harness.run("/param top_k=40" + ENTER + "one" + ENTER + "/param -top_k" + ENTER + "two" + ENTER
                + "/param stream=false" + ENTER + CTRL_D)
    assert server.chat_requests[-2]["top_k"] == 40 and "top_k" not in server.chat_requests[-1]
    assert "'stream' is set by chatcli itself" in harness.err.getvalue()


def test_a_reply_cut_while_thinking_is_resumed_as_such():
    from chatcli.conversation import Message
    from chatcli.export import last_exchange

    shown = last_exchange([Message("user", "q"), Message("assistant", "", finish_reason="interrupted",
                                                         reasoning="half a thought")])
    assert shown[1] == "  assistant (interrupted): (only its thinking, /thinking shows it)"


def test_export_leaves_the_thinking_out_unless_asked(run, endpoint):
    endpoint.queue(Reply(text="Paris.", reasoning="France.\nIts capital."))
    run("ask", "--session", "geo", "capital?")
    plain = run("sessions", "export", "geo").stdout
    assert "France." not in plain and "Paris." in plain
    with_thinking = run("sessions", "export", "geo", "--reasoning").stdout
    assert "*Thinking:*\n\n> France.\n> Its capital.\n\nParis." in with_thinking
    data = json.loads(run("sessions", "export", "geo", "--format", "json", "--reasoning").stdout)
    assert data["messages"][1] == {"role": "assistant", "content": "Paris.",
                                   "reasoning": "France.\nIts capital."}
    plain_json = json.loads(run("sessions", "export", "geo", "--format", "json").stdout)
    assert "reasoning" not in plain_json["messages"][1]


def test_kill_9_while_it_thinks_keeps_the_thinking_so_far(endpoint, db):
    import os
    import signal
    import sqlite3
    import subprocess
    import time

    from tests.terminal import BIN

    endpoint.queue(Reply(text="never reached", reasoning="pondering deeply " * 3000, chunk_chars=8,
                         delay=0.002))
    victim = subprocess.Popen([str(BIN), "ask", "--session", "deep", "think about it"], env=os.environ.copy(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until part of the thinking is on disk
        try:  # (the database may not be there yet, or not yet migrated)
            rows = sqlite3.connect(db).execute(
                "SELECT length(reasoning) FROM messages WHERE finish_reason = 'streaming'").fetchall() \
                if db.exists() else []
        except sqlite3.Error:
            rows = []
        if rows and rows[0][0] > 100:
            break
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    kept = Store(db).load(1)[1]
    assert kept.finish_reason == "interrupted" and kept.content == ""
    assert kept.reasoning.startswith("pondering deeply pondering")
    again = subprocess.run([str(BIN), "ask", "--session", "deep", "go on"], env=os.environ.copy(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert again.returncode == 0
    assert "pondering" not in json.dumps(endpoint.chat_requests[-1]["messages"])


def test_thinking_whose_opening_tag_was_swallowed_is_not_sent_back(run, endpoint, db):
    endpoint.queue(Reply(text="I should recall Europe.\n</think>\n\nParis."))
    said = run("ask", "--session", "s", "capital?").stderr
    assert "the reply began with the model's thinking" in said
    kept = Store(db).load(1)[1]
    assert (kept.reasoning, kept.content) == ("I should recall Europe.", "Paris.")
    run("ask", "--session", "s", "and Italy?")
    assert endpoint.chat_requests[-1]["messages"][1] == {"role": "assistant", "content": "Paris."}


@pytest.mark.parametrize("answer", ["The closing tag is </think>.", "Write <think> then </think>\nlater.",
                                    "Use `</think>` to close."])
def test_an_answer_that_mentions_the_tag_is_an_answer(answer):
    from chatcli.think import unopened_think

    assert unopened_think(answer) == ("", answer)
