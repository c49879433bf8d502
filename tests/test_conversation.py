"""The pure core: token estimates, turns, the rolling window, composing a message."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli.conversation import (
    ASSISTANT,
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    STDIN,
    SYSTEM,
    USER,
    Message,
    Part,
    Usage,
    build_window,
    estimate_tokens,
    reply_budget,
    turns,
    unanswered,
    user_message,
)


@pytest.mark.parametrize(
    ("text", "at_least"),
    [
        ("", 0),
        ("hello", 1),
        ("Who won the world series in 2020?", 9),  # cl100k: 9 tokens
        ("你好，世界", 5),  # one per CJK character, the comma included
        ("機械学習はおもしろい", 10),
        ("안녕하세요", 5),
        ("def f(x):\n    return x ** 2\n", 12),
        ("1234567890", 4),
        ("Привет, как дела?", 8),
        ("🙂🙂", 4),
    ],
)
def test_estimate_errs_high(text, at_least):
    assert estimate_tokens(text) >= at_least


def test_estimate_counts_chinese_about_one_token_per_character():
    text = "人工智能可以帮助改写文本内容" * 10
    assert len(text) <= estimate_tokens(text) <= len(text) * 1.2


def test_estimate_grows_with_text():
    assert estimate_tokens("word " * 1000) > estimate_tokens("word " * 100) * 9


def test_message_records_whether_its_size_is_estimated():
    estimated = Message(USER, "hello there")
    reported = Message(ASSISTANT, "hello there", tokens=7)
    assert estimated.estimated and estimated.tokens == estimate_tokens("hello there") + MESSAGE_OVERHEAD
    assert not reported.estimated and reported.tokens == 7


def conversation(n_turns: int, *, size: int = 10) -> list[Message]:
    history = []
    for i in range(n_turns):
        history.append(Message(USER, f"question {i}", tokens=size))
        history.append(Message(ASSISTANT, f"answer {i}", tokens=size))
    return history


def test_turns_start_at_user_messages():
    history = [Message(ASSISTANT, "greeting"), *conversation(2)]
    assert [list(r) for r in turns(history)] == [[0], [1, 2], [3, 4]]


def test_window_keeps_everything_that_fits():
    history = [*conversation(3), Message(USER, "now", tokens=10)]
    window = build_window("be brief", history, max_messages=20, budget=10_000)
    assert window.messages[0] == Message(SYSTEM, "be brief")
    assert window.messages[1:] == tuple(history)
    assert window.dropped == ()


def test_window_obeys_the_twenty_message_limit_of_the_api():
    history = [*conversation(15), Message(USER, "latest", tokens=10)]
    window = build_window("sys", history, max_messages=20, budget=10**9)
    assert len(window.messages) <= 20
    assert window.messages[0].role == SYSTEM
    assert window.messages[-1].content == "latest"
    # whole turns went: the oldest kept message is a question
    assert window.messages[1].role == USER
    assert [m.content for m in window.dropped][:2] == ["question 0", "answer 0"]


def test_window_obeys_the_token_budget():
    history = [*conversation(10, size=100), Message(USER, "latest", tokens=100)]
    window = build_window(None, history, max_messages=100, budget=550)
    assert window.tokens <= 550
    assert window.tokens == sum(m.tokens for m in window.messages) + REPLY_PRIMING
    assert window.messages[-1].content == "latest"


def test_window_reports_when_even_the_newest_message_does_not_fit():
    history = [*conversation(2), Message(USER, "huge", tokens=5000)]
    window = build_window(None, history, max_messages=20, budget=1000)
    assert window.over_budget
    assert window.messages == (history[-1],)
    assert len(window.dropped) == 4


def test_pinned_turns_survive_trimming():
    history = conversation(12)
    history[2] = Message(USER, "question 1", tokens=10, pinned=True)
    history.append(Message(USER, "latest", tokens=10))
    window = build_window(None, history, max_messages=10, budget=10**9)
    kept = [m.content for m in window.messages]
    assert "question 1" in kept and "answer 1" in kept
    assert len(window.messages) <= 10


def test_reply_budget_keeps_room_for_the_reply():
    assert reply_budget(8192, 1000) == 7192
    assert reply_budget(128000, None) == 128000 - 4096
    assert reply_budget(4096, None) == 4096 - 1024


def test_piped_text_is_a_part_sent_before_the_question_and_alone_it_is_the_question():
    piped = Part("text", STDIN, "line 1\nline 2\n")
    assert user_message("summarise this", [piped]).to_api() == {
        "role": "user", "content": "### stdin\n\n```\nline 1\nline 2\n```\n\nsummarise this"}
    assert user_message(None, [Part("text", STDIN, "just text\n")]) == Message(USER, "just text")
    assert user_message("question") == Message(USER, "question")


def test_usage_cost_and_sum():
    usage = Usage(1_000_000, 500_000)
    assert usage.total_tokens == 1_500_000
    assert usage.cost(0.15, 0.60) == pytest.approx(0.45)
    assert usage.cost(None, None) is None
    assert (Usage(1, 2) + Usage(3, 4, estimated=True)) == Usage(4, 6, estimated=True)


# --- the trimming invariants, over arbitrary conversations -------------------

messages = st.builds(
    Message,
    role=st.sampled_from([USER, ASSISTANT]),
    content=st.text(max_size=20),
    tokens=st.integers(min_value=1, max_value=400),
    pinned=st.sampled_from([False] * 6 + [True]),  # pins are rare
)


@st.composite
def histories(draw):
    history = draw(st.lists(messages, max_size=40))
    history.append(draw(st.builds(Message, role=st.just(USER), content=st.text(max_size=20),
                                  tokens=st.integers(1, 400))))
    return history


@settings(max_examples=300, deadline=None)
@given(
    history=histories(),
    system=st.none() | st.text(min_size=1, max_size=30),
    max_messages=st.integers(min_value=2, max_value=25),
    budget=st.integers(min_value=0, max_value=6000),
)
def test_trimming_invariants(history, system, max_messages, budget):
    window = build_window(system, history, max_messages=max_messages, budget=budget)
    sent = list(window.messages)
    if system:
        assert sent[0] == Message(SYSTEM, system)
        sent = sent[1:]
    # the newest user message is always sent, last
    assert sent[-1] is history[-1]
    # kept and dropped partition the history but for the questions that got no reply, each in
    # the original order; those are never sent again
    skipped = unanswered(history)
    ids = {id(m): i for i, m in enumerate(history)}
    kept_idx = [ids[id(m)] for m in sent]
    dropped_idx = [ids[id(m)] for m in window.dropped]
    assert kept_idx == sorted(kept_idx) and dropped_idx == sorted(dropped_idx)
    assert sorted(kept_idx + dropped_idx) == [i for i in range(len(history)) if i not in skipped]
    # pinned messages are never dropped
    assert not any(m.pinned for m in window.dropped)
    # whole turns only: an assistant reply is never sent without its question
    groups = turns(history)
    for group in groups:
        inside = {i in kept_idx for i in group}
        assert len(inside) == 1, "a turn was split"
    # the reported size is what is sent
    assert window.tokens == sum(m.tokens for m in window.messages) + REPLY_PRIMING
    # limits hold unless only what may not be dropped is left
    droppable = [g for g in groups[:-1] if not any(history[i].pinned for i in g) and g[0] not in skipped]
    if any(g[0] in kept_idx for g in droppable):
        assert len(window.messages) <= max_messages
        assert window.tokens <= budget
    # minimal: the oldest turns go first, and no more than needed
    if window.dropped:
        last_dropped = max(dropped_idx)
        later_droppable = [g for g in droppable if g[0] > last_dropped]
        assert all(g[0] in kept_idx for g in later_droppable)
        newest_dropped = next(g for g in reversed(droppable) if g[0] in dropped_idx)
        restored_count = len(window.messages) + len(newest_dropped)
        restored_tokens = window.tokens + sum(history[i].tokens for i in newest_dropped)
        assert restored_count > max_messages or restored_tokens > budget


def test_a_question_that_got_no_reply_is_not_sent_again_with_the_next():
    history = [Message(USER, "a 45 KB log that overflowed the context"), Message(USER, "why did it crash?"),
               Message(ASSISTANT, "because"), Message(USER, "again?"), Message(USER, "again?")]
    sent = build_window("Be brief.", history, budget=10_000).to_api()
    assert sent == [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "why did it crash?"},
                    {"role": "assistant", "content": "because"},
                    {"role": "user", "content": "again?"}]
    assert unanswered(history) == {0, 3} and unanswered(history[:2], last=True) == {0, 1}


def test_messages_of_one_role_that_still_meet_are_sent_as_one():
    """Two replies in a row (a history written by another program): one message."""
    history = [Message(USER, "q"), Message(ASSISTANT, "part one"), Message(ASSISTANT, "part two"),
               Message(USER, "next")]
    sent = build_window(None, history, budget=10_000).to_api()
    assert sent[1] == {"role": "assistant", "content": "part one\n\npart two"}


@given(st.lists(st.sampled_from([USER, ASSISTANT]), max_size=12))
def test_no_two_roles_in_a_row_whatever_the_history(roles):
    history = [Message(role, f"{role} {n}") for n, role in enumerate(roles)]
    sent = build_window(None, history, budget=10_000).to_api()
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(sent))
    # nothing lost but the questions that got no reply
    assert "".join(m["content"] for m in sent).count(" ") == len(roles) - len(unanswered(history))
