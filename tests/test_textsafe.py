"""The sanitising step: what a terminal may receive of text that is data."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatcli.textsafe import is_plain, json_safe, visible, without_controls

UNSAFE = {chr(c) for c in range(32) if chr(c) not in "\n\t"} | {chr(c) for c in range(0x7F, 0xA0)}
# What prose shows otherwise: embeddings and overrides, the deprecated format characters,
# interlinear annotation and tags as signs, and the line and paragraph separators as newlines.
PROSE_CHANGED = ({chr(c) for c in range(0x202A, 0x202F)} | {chr(c) for c in range(0x206A, 0x2070)}
                 | {chr(c) for c in range(0xFFF9, 0xFFFC)} | {chr(0xE0001)}
                 | {chr(c) for c in range(0xE0020, 0xE0080)} | {"\u2028", "\u2029"})


@pytest.mark.parametrize(("text", "shown"), [
    ("plain 中文 text\n\twith tab", "plain 中文 text\n\twith tab"),
    ("\x1b]52;c;aGk=\x07", "^[]52;c;aGk=^G"),
    ("\x1b[2J", "^[[2J"),
    ("\x9b31m", "M-^[31m"),
    ("a\x7fb\x00c", "a^?b^@c"),
    ("line\r\nnext\rover", "line\nnextover"),
    ("\ud800 lone", "\ufffd lone"),
])
def test_control_characters_are_shown_not_obeyed(text, shown):
    assert visible(text) == shown


@given(st.text() | st.lists(st.sampled_from(["a", "ش", "\u2066", "\u2069", "\u200d", "\u200f",
                                             "\u202e", "\u2028", "\U000e0041", "\r", "\x1b"])
                           ).map("".join))
def test_nothing_unsafe_survives_and_safe_text_is_untouched(text):
    """Safe text includes the bidi isolates, marks and joiners that Arabic, Hebrew and emoji
    need: prose keeps them as they are."""
    shown = visible(text)
    assert not set(shown) & (UNSAFE | PROSE_CHANGED)
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in shown)
    if not set(text) & (UNSAFE | PROSE_CHANGED | {"\r"}) and not any(0xD800 <= ord(ch) <= 0xDFFF
                                                                     for ch in text):
        assert shown == text
    assert not set(without_controls(text)) & UNSAFE


@given(st.recursive(st.text() | st.integers(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_json_keeps_its_meaning_without_raw_c1_controls(value):
    text = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert not set(text) & UNSAFE


def test_is_plain():
    assert is_plain("gpt-4o-mini") and not is_plain("a\x1b[2J") and not is_plain("two\nlines")
