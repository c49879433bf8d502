"""Unicode format characters (bidi controls, zero-width and tag characters, separators) where
text is shown: made visible as data, kept in prose where a language needs them, removed from
code that is copied or saved (issue 19). `chatcli cmd` refuses them: test_shellcmd.py."""

from __future__ import annotations

import io
import os
import sqlite3
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from chatcli.conversation import Message, title_from
from chatcli.render import MarkdownSink
from chatcli.store import Store
from chatcli.textsafe import FORMAT, shown, visible, visible_code
from tests.fake_server import Reply
from tests.terminal import environment, on_a_terminal

FORMAT_CHARS = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cf", "Zl", "Zp")}


def test_the_table_of_format_characters_holds_every_one_unicode_knows():
    import re

    table = re.compile(f"[{FORMAT}]")
    missing = sorted(f"U+{ord(c):04X}" for c in FORMAT_CHARS if not table.fullmatch(c))
    assert missing == []


def test_prose_keeps_what_arabic_hebrew_and_emoji_need_and_signs_overrides():
    arabic = "قال \u2067مرحبا\u2069 \u200fو\u200e done"  # isolates and marks
    emoji = "family: 👨\u200d👩\u200d👧 and ZWNJ: می\u200cخواهم"
    assert visible(arabic) == arabic and visible(emoji) == emoji
    assert visible("abc\u202edcb") == "abc<U+202E>dcb"
    assert visible("hi\U000e0072\U000e006d") == "hi<U+E0072><U+E006D>"
    assert visible("one\u2028two\u2029three") == "one\ntwo\nthree"


def test_code_and_data_show_every_format_character():
    trojan = "ls \u2067; touch X \u2066#\u2069\u2069"
    assert visible_code(trojan) == "ls <U+2067>; touch X <U+2066>#<U+2069><U+2069>"
    assert visible_code("a\tb\nc\u200b") == "a\tb\nc<U+200B>"
    assert shown("evil\nchatcli: error: forged\tname") == "evil^Jchatcli: error: forged^Iname"


@given(st.text())
def test_data_shown_holds_no_line_break_and_no_format_character(text):
    out = shown(text)
    assert not set(out) & (FORMAT_CHARS | {"\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"})
    assert not set(visible_code(text)) & FORMAT_CHARS


def render(text: str) -> str:
    out = io.StringIO()
    sink = MarkdownSink(Console(file=out, force_terminal=True, width=100, color_system=None))
    sink.text(text)
    sink.end()
    return out.getvalue()


def test_a_code_block_in_a_reply_shows_its_bidi_characters_prose_keeps_isolates():
    shown_text = render("Say \u2067שלום\u2069 to run:\n\n"
                        "```sh\nls \u2067; touch X \u2066#\u2069\u2069\n```\n")
    assert "\u2067שלום\u2069" in shown_text  # the Hebrew in prose, as written
    assert "ls <U+2067>; touch X <U+2066>#<U+2069><U+2069>" in shown_text


def test_a_title_with_a_line_separator_is_not_cut_there():
    assert title_from(Message("user", "first part\u2028second part")) == "first part second part"


@pytest.mark.parametrize(("title", "signed"), [("report\u202etxt.exe", "report<U+202E>txt.exe"),
                                              ("a \u2066isolated\u2069 b", "a <U+2066>isolated<U+2069> b")])
def test_sessions_list_shows_bidi_characters_in_a_title_as_signs(endpoint, tmp_path, title, signed):
    """A title is data on one line: even an isolate, which prose keeps, is signed there, so
    it cannot reorder the columns of the listing."""
    store = Store(tmp_path / "data" / "chatcli.db")
    cid = store.create(title=title)
    store.add(cid, Message("user", "q"))
    store.add(cid, Message("assistant", "a"))
    store.close()
    for args in (["sessions", "list"], ["sessions", "search", "q"]):
        received = on_a_terminal(*args, env=environment(endpoint, tmp_path), cols=120, check=False)
        assert signed in received and not set(received) & {"\u202e", "\u2066", "\u2069"}


def test_attached_file_names_are_shown_as_data(run, endpoint, tmp_path, monkeypatch):
    here = tmp_path / "work"
    (here / "dir").mkdir(parents=True)
    (here / "dir" / "bidi\u202etxt.exe").write_text("x\n")
    (here / "dir" / "evil\nERROR: forged line.txt").write_text("y\n")
    monkeypatch.chdir(here)
    endpoint.queue(Reply(text="ok"))
    result = run("ask", "-f", "dir", "hi")
    assert result.code == 0 and "bidi<U+202E>txt.exe" in result.stderr and "\u202e" not in result.stderr
    assert "evil^JERROR: forged line.txt" in result.stderr
    assert not any(line.startswith("ERROR") for line in result.stderr.splitlines())


@pytest.fixture
def harness(server, tmp_path, monkeypatch):
    from tests.test_repl import Harness

    monkeypatch.chdir(tmp_path)
    return Harness(server, tmp_path)


def test_copy_and_save_leave_out_the_hidden_characters_and_say_so(harness, tmp_path):
    harness.server.queue(Reply(text="Here:\n\n```sh\nls -la \u2067; touch X \u2066#\u2069\u2069\n```\n"))
    harness.run("go\r/copy 1\r/save 1 run.sh\r\x04")
    assert (tmp_path / "run.sh").read_text() == "ls -la ; touch X #\n"
    err = harness.err.getvalue() + harness.out.getvalue()
    assert err.count("removed 4 invisible or direction-changing characters (U+2067 at line 1, column 8;") == 2
    import base64

    assert base64.b64encode(b"ls -la ; touch X #").decode() in harness.out.getvalue()


def test_save_never_writes_through_a_symbolic_link(harness, tmp_path):
    target = tmp_path / "elsewhere" / "authorized_keys"
    target.parent.mkdir()
    (tmp_path / "out.txt").symlink_to(target)  # dangling: nothing there yet
    harness.server.queue(Reply(text="```\nssh-ed25519 AAAA attacker\n```"))
    harness.run("key?\r/save out.txt\r\x04", answers=(False,))
    said = harness.err.getvalue()
    assert "out.txt is a symbolic link (to " in said and "not saved" in said
    assert not target.exists()
    harness.run("/save out.txt\r\x04", answers=(True,))  # yes: the link is replaced, not followed
    assert not target.exists() and not (tmp_path / "out.txt").is_symlink()
    assert (tmp_path / "out.txt").read_text() == "ssh-ed25519 AAAA attacker\n"


def test_the_whole_reply_copied_loses_only_overrides_and_tags(harness):
    harness.server.queue(Reply(text="مرحبا \u2067x\u2069 and \u202eevil"))
    harness.run("hi\r/copy\r\x04")
    import base64

    copied = "مرحبا \u2067x\u2069 and evil".encode()
    assert base64.b64encode(copied).decode() in harness.out.getvalue()
    assert "removed the direction overrides" in harness.out.getvalue()


def test_the_stored_outcome_of_a_refused_command_is_saved(run, endpoint, db):
    endpoint.queue(Reply(text="echo \u202egnp.exe"))
    assert run("cmd", "x").code == 6
    rows = sqlite3.connect(db).execute("SELECT outcome FROM messages WHERE role = 'assistant'").fetchall()
    assert rows == [("refused, not run",)]
    assert os.path.exists(db)
