"""Escape sequences from the network or the database never reach the terminal.

A hostile (or prompt-injected) model, a hostile server and a replayed stored
attack each try a catalogue of sequences on every path that shows their text,
in a real pseudo-terminal: the reply (Markdown and plain), server errors on
stderr, model names (doctor, /model Tab), and every view of stored
conversations. None may reach the terminal as a control sequence; the text
after each one stays visible, with the escape shown as `^[`.
"""

from __future__ import annotations

import base64
import io

import pexpect
import pyte
import pytest

from chatcli.conversation import Message
from chatcli.store import Store
from tests.fake_server import Reply, error_body
from tests.terminal import PROMPT, environment, expect, on_a_terminal, spawn

CATALOGUE = {
    "OSC 52 clipboard": "\x1b]52;c;" + base64.b64encode(b"rm -rf ~").decode() + "\x1b\\",
    "OSC 0 title": "\x1b]0;PWNED-ZERO\x07",
    "OSC 2 title": "\x1b]2;PWNED-TWO\x1b\\",
    "OSC 8 link": "\x1b]8;;https://evil.example/\x1b\\innocent\x1b]8;;\x1b\\",
    "CSI 2J": "\x1b[2J\x1b[3J",
    "cursor moves": "\x1b[17;43H\x1b[9A\x1b7\x1b8",
    "DCS": "\x1bP$q\"p\x1b\\",
    "8-bit CSI": "\x9b7;7H\x9d2;PWNED-C1\x9c",
    "C0 and DEL": "\x07\x08\x08\x08\x7f",
}
# Attack texts: every sequence of the catalogue, then a lone ESC at the end of one
# chunk whose sequence ends in the next, and a title sequence split across chunks.
PIECES = ["Before. ", " ".join(CATALOGUE.values()), " then \x1b", "[31mRED-INJECT and \x1b]2;SPL",
          "IT-TITLE\x07 the end."]
ATTACK = "".join(PIECES)

# What must never appear in what the terminal receives.
FORBIDDEN = ["\x1b]52", "\x1b]0;", "\x1b]2;", "\x1b]8;", "\x1b[2J", "\x1b[3J", "\x1b[17;43H", "\x1b[9A",
             "\x1b7", "\x1b8", "\x1bP", "\x9b", "\x9d", "\x9c", "\x07", "\x7f",
             "\x1b[31mRED-INJECT"]  # not BS: the line editor moves the cursor back with it


def assert_harmless(received: str, *, visible_text: str = "RED-INJECT") -> pyte.Screen:
    """Nothing of the catalogue reached the terminal as a sequence; the text is still shown.

    The line editor redraws (and answers cursor-position requests our test terminal
    fakes), so for the interactive session the text is looked for in what was
    received; for one-shot commands, on the final screen."""
    for sequence in FORBIDDEN:
        assert sequence not in received, f"{sequence!r} reached the terminal"
    screen = pyte.Screen(120, 40)
    pyte.Stream(screen).feed(received)
    assert "PWNED" not in screen.title and "PWNED" not in screen.icon_name
    assert "SPLIT" not in screen.title
    assert visible_text in "\n".join(screen.display) or visible_text in received
    return screen


def stored_attack(tmp_path) -> None:
    """A conversation whose title and messages hold the catalogue, as a past attack left it."""
    store = Store(tmp_path / "data" / "chatcli.db")
    cid = store.create(name="evil", title="Title RED-INJECT " + ATTACK.replace("\n", " "), model="test-model",
                       system_prompt="System " + ATTACK)
    store.add(cid, Message("user", "Question " + ATTACK))
    store.add(cid, Message("assistant", "Answer RED-INJECT " + ATTACK))
    store.close()


@pytest.mark.parametrize("extra", [{}, {"NO_COLOR": "1"}], ids=["markdown", "plain"])
def test_a_hostile_reply_is_shown_as_text(endpoint, tmp_path, extra):
    endpoint.queue(Reply(pieces=PIECES))
    received = on_a_terminal("ask", "hi", env=environment(endpoint, tmp_path, **extra), cols=120, check=False)
    screen = assert_harmless(received)
    shown = "\n".join(screen.display)
    assert "^[]2;PWNED-TWO" in shown and "^G^H^H^H^?" in shown and "the end." in shown


def test_a_hostile_reply_into_a_pipe_is_passed_unchanged(run, endpoint):
    endpoint.queue(Reply(pieces=PIECES))
    assert run("ask", "hi").stdout == ATTACK + "\n"  # a pipe asked for the model's exact text


def test_a_hostile_error_message_is_shown_as_text(endpoint, tmp_path):
    endpoint.queue(Reply(status=400, error=error_body("Bad RED-INJECT " + ATTACK, "invalid_request_error")))
    received = on_a_terminal("ask", "hi", env=environment(endpoint, tmp_path), cols=120, check=False)
    assert "chatcli: error:" in received
    assert_harmless(received)


def test_hostile_model_names_in_doctor(endpoint, tmp_path):
    endpoint.models = ["RED-INJECT" + PIECES[1], "ok-model", "x\x1b]2;PWNED-TWO\x07"]
    received = on_a_terminal("doctor", env=environment(endpoint, tmp_path), cols=120, check=False)
    assert "is not among the endpoint's models" in received
    assert_harmless(received)


@pytest.mark.parametrize("args", [["sessions", "list"], ["sessions", "show", "evil"],
                                  ["sessions", "search", "Answer"],
                                  ["sessions", "export", "evil", "--format", "md"],
                                  ["sessions", "export", "evil", "--format", "json"],
                                  ["sessions", "list", "--json"]],
                         ids=lambda args: " ".join(args[1:]))
def test_a_stored_attack_is_not_replayed_by_any_view(endpoint, tmp_path, args):
    stored_attack(tmp_path)
    received = on_a_terminal(*args, env=environment(endpoint, tmp_path), cols=120, check=False)
    assert_harmless(received, visible_text="RED-INJECT")


def drive(child, keys: str, until: str = PROMPT) -> None:
    child.send(keys)
    expect(child, until)


def test_the_interactive_session_shows_every_hostile_text_as_text(endpoint, tmp_path):
    stored_attack(tmp_path)
    endpoint.models = ["RED-INJECT\x1b]2;PWNED-TWO\x07", "test-model", "test-\x9b2J"]
    endpoint.queue(Reply(pieces=PIECES),
                   Reply(status=400, error=error_body("Bad RED-INJECT " + ATTACK, "invalid_request_error")))
    log = io.StringIO()
    child = spawn(endpoint, tmp_path, "-c", cols=120, timeout=30)
    child.logfile_read = log
    expect(child, PROMPT)  # "resumed 1: Title ..." was shown before the prompt
    drive(child, "tell me\r", r"tokens: ")
    expect(child, PROMPT)
    for command in ("/history", "/sessions", "/system", "/resume evil"):
        drive(child, command + "\r")
    drive(child, "/model \t", r"test-model")
    child.send("\x15")  # Ctrl-U: clear the line
    drive(child, "and now?\r", r"/retry sends it again")
    expect(child, PROMPT)
    drive(child, "/copy\r", "OSC 52")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    received = log.getvalue()
    # Our own OSC 52 (/copy) is the only one. It carries the reply without its control
    # characters: pasted into a shell, an ESC [201~ would end a bracketed paste early.
    copied = "".join(ch for ch in ATTACK if ch in "\n\t" or not (ord(ch) < 32 or 127 <= ord(ch) < 160))
    ours = "\x1b]52;c;" + base64.b64encode(copied.encode()).decode() + "\x07"
    assert received.count(ours) == 1
    assert_harmless(received.replace(ours, ""))
    assert "^[]2;SPL" in received  # the split title sequence, shown as text


def test_plain_output_in_the_interactive_session_is_sanitised_too(endpoint, tmp_path):
    endpoint.queue(Reply(pieces=PIECES))
    log = io.StringIO()
    child = spawn(endpoint, tmp_path, "--no-markdown", cols=120, timeout=30)
    child.logfile_read = log
    expect(child, PROMPT)
    drive(child, "hi\r", r"tokens: ")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert_harmless(log.getvalue())
