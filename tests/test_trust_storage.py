"""Storage under pressure: huge replies, many writers, full disks, broken data directories."""

from __future__ import annotations

import io
import os
import resource
import signal
import sqlite3
import subprocess
from pathlib import Path

import pexpect
import pytest

from chatcli.conversation import ASSISTANT, USER, Message
from chatcli.events import TextDelta
from chatcli.migrations import MIGRATIONS
from chatcli.recorder import Recorder
from chatcli.store import STREAMING, Store
from tests.fake_server import Reply
from tests.terminal import BIN, PROMPT, expect, spawn
from tests.test_repl import CTRL_D, ENTER, Harness
from tests.test_store import Clock


def test_saving_a_streaming_reply_costs_the_new_text_not_the_whole_reply(tmp_path):
    store = Store(tmp_path / "chatcli.db")
    statements: list[str] = []
    clock = Clock()
    recorder = Recorder(store, None, meta=lambda: {}, clock=clock, interval=0.5)
    recorder.answering(recorder.user(Message(USER, "write a lot")))
    store._db.set_trace_callback(statements.append)
    parts: list[str] = []
    for n in range(400):  # 4 MB arriving in 10 kB pieces, a write every half second
        parts.append(f"{n:04d}" + "x" * 9996)
        clock.now += 0.5
        recorder.event(TextDelta(parts[-1]))
    written = sum(len(s) for s in statements)
    assert written < 2 * len("".join(parts))  # the old way wrote every prefix again: 800 MB
    assert store.search("0123xxx") == []  # not indexed while it streams...
    assert store.load(1)[1].content == "".join(parts)  # ...but a crash now keeps all of it
    recorder.reply_done(Message(ASSISTANT, "".join(parts), finish_reason="stop"))
    assert [h.role for h in store.search("0123xxx")] == ["assistant"]  # indexed once, at the end
    assert store.load(1)[1] == Message(ASSISTANT, "".join(parts), finish_reason="stop")
    assert store.integrity() == "ok"


def test_a_reply_cut_by_a_crash_in_an_old_database_is_kept_through_the_migration(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:3]:
        migration(db)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 't', 1, 1)")
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at) "
               "VALUES (1, 'user', 'the question', 1, 1)")
    db.execute("INSERT INTO messages (conversation_id, role, content, finish_reason, created_at, "
               f"updated_at) VALUES (1, 'assistant', 'half an answer', '{STREAMING}', 1, 1)")
    db.close()
    store = Store(path)
    saved = store.load(1)
    assert [(m.content, m.finish_reason) for m in saved] == [("the question", None),
                                                             ("half an answer", "interrupted")]
    assert [h.message_id for h in store.search("half an answer")] == [2]
    store.remove([2])
    assert store.search("half an answer") == [] and store.integrity() == "ok"


def test_two_sessions_opening_one_new_name_share_one_conversation(server, tmp_path):
    first, second = Harness(server, tmp_path), Harness(server, tmp_path)
    for harness in (first, second):
        harness.session.store = Store(tmp_path / "chatcli.db")
        harness.session.open("proj")  # neither has sent anything yet
        harness.session._journal = harness.session._recorder(None, "proj")
    first.run("from the first" + ENTER + CTRL_D)
    second.run("from the second" + ENTER + CTRL_D)
    assert first.err.getvalue() == second.err.getvalue() == ""
    store = Store(tmp_path / "chatcli.db")
    assert len(store.conversations()) == 1
    assert [m.content for m in store.load(store.find("proj").id) if m.role == USER] == [
        "from the first", "from the second"]


def test_new_with_a_name_in_use_is_refused(server, tmp_path):
    harness = Harness(server, tmp_path)
    harness.session.store = Store(tmp_path / "chatcli.db")
    harness.session.store.create(name="work")
    harness.run("/new work" + ENTER + "still here" + ENTER + CTRL_D)
    assert "conversation 1 is already called 'work' (/resume work opens it" in harness.err.getvalue()
    assert "a new conversation" not in harness.out.getvalue()
    assert harness.err.getvalue().count("saved") == 0  # and saving goes on without a failure


def test_ten_parallel_asks_to_a_new_session_keep_every_question_next_to_its_answer(endpoint, tmp_path):
    # Each process sends what it has seen: another's unanswered question comes first, joined
    # to its own (never two user messages in a row); its own question is the last part.
    endpoint.responder = lambda body: Reply(
        text="answer to " + body["messages"][-1]["content"].split("\n\n")[-1], chunk_chars=3, delay=0.002)
    env = os.environ.copy()
    runs = [subprocess.Popen([str(BIN), "ask", "--session", "NEW", f"question {n}"], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for n in range(10)]
    for process in runs:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0 and err == b"", err
    store = Store(tmp_path / "data" / "chatcli.db")
    assert len(store.conversations()) == 1
    saved = store.load(store.find("NEW").id)
    assert len(saved) == 20
    for question, answer in zip(saved[::2], saved[1::2], strict=True):
        assert (question.role, answer.role) == (USER, ASSISTANT)
        assert answer.content == "answer to " + question.content


def limit_file_size(size: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def test_a_full_disk_in_the_middle_of_a_reply_under_session_is_exit_8(endpoint, tmp_path):
    env = os.environ.copy()
    subprocess.run([str(BIN), "ask", "--session", "full", "a first question"], env=env, check=True,
                   capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    reply = "words that fill the disk " * 40_000  # a megabyte
    endpoint.queue(Reply(text=reply, chunk_chars=2000, delay=0.002))
    done = subprocess.run([str(BIN), "ask", "--session", "full", "a long answer please"], env=env,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                          preexec_fn=limit_file_size(400_000))
    assert done.returncode == 8, done.stderr
    assert done.stdout.decode() == reply + "\n"  # the answer itself is not lost on the screen
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "full" in lines[0] and "the reply was not saved" in lines[0]
    saved = Store(tmp_path / "data" / "chatcli.db").load(1)
    assert [m.content for m in saved if m.role == USER] == ["a first question", "a long answer please"]


def test_without_session_a_full_disk_is_a_warning_and_the_answer_exit_0(endpoint, tmp_path):
    endpoint.queue(Reply(text="x" * 1_000_000, chunk_chars=2000, delay=0.002))
    done = subprocess.run([str(BIN), "ask", "a long answer please"], env=os.environ.copy(),
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                          preexec_fn=limit_file_size(300_000))
    assert done.returncode == 0
    assert b"not saving for now" in done.stderr and b"the reply was not saved" in done.stderr
    assert len(done.stdout) == 1_000_001


def spawn_repl(endpoint, tmp_path, *args: str, data_dir: Path,
               **extra: str) -> tuple[pexpect.spawn, io.StringIO]:
    log = Said()
    child = spawn(endpoint, tmp_path, *args, cols=120, timeout=30, CHATCLI_DATA_DIR=str(data_dir), **extra)
    child.logfile_read = log
    return child, log


class Said(io.StringIO):
    """What the terminal received, a diagnostic broken between words at its edge read as the
    one line it is."""

    def getvalue(self) -> str:
        return super().getvalue().replace("\r\n  ", " ")


@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_the_session_starts_unsaved_when_the_data_directory_cannot_be_used(endpoint, tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    child, log = spawn_repl(endpoint, tmp_path, data_dir=blocker if where == "a file" else blocker / "sub")
    expect(child, PROMPT)
    child.send("still works?\r")
    expect(child, "tokens:")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    shown = log.getvalue()
    assert shown.count("chatcli: warning:") == 1 and "will not be saved" in shown
    assert "Traceback" not in shown and "internal error" not in shown


def test_no_save_writes_nothing_typed_but_still_offers_earlier_lines(endpoint, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "input_history").write_text("\n# 2026-01-01 00:00:00\n+an earlier question\n")
    before = (data / "input_history").read_bytes()
    child, _ = spawn_repl(endpoint, tmp_path, "--no-save", data_dir=data)
    expect(child, PROMPT)
    child.send("a private question\r")
    expect(child, "tokens:")
    expect(child, PROMPT)
    child.send("\x1b[A\x1b[A\r")  # Up twice: the earlier line from the file
    expect(child, "tokens:")
    expect(child, PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert (data / "input_history").read_bytes() == before
    assert [p.name for p in data.iterdir()] == ["input_history"]  # no database either
    assert [r["messages"][-1]["content"] for r in endpoint.chat_requests] == [
        "a private question", "an earlier question"]


def test_a_history_file_that_cannot_be_written_costs_no_typed_line(server, tmp_path):
    harness = Harness(server, tmp_path)
    harness.history.mkdir()  # a directory where the file should be
    harness.run("first line" + ENTER + "second line" + ENTER + CTRL_D)
    assert harness.questions == ["first line", "second line"]
    err = harness.err.getvalue()
    assert "cannot be written" in err and err.count("cannot be written") == 1


def test_a_failing_line_editor_is_one_line_and_the_session_goes_on(server, tmp_path, monkeypatch):
    from chatcli.repl import Repl

    calls = {"n": 0}
    original = Repl._read

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 1:
            real = self.prompt.prompt
            self.prompt.prompt = lambda: (_ for _ in ()).throw(RuntimeError("toolbar exploded"))
            try:
                return original(self)
            finally:
                self.prompt.prompt = real
        return original(self)

    monkeypatch.setattr(Repl, "_read", flaky)
    harness = Harness(server, tmp_path)
    harness.run("after the failure" + ENTER + CTRL_D)
    assert "chatcli: error: the line editor failed (RuntimeError: toolbar exploded)" in harness.err.getvalue()
    assert harness.questions == ["after the failure"]


def test_a_completer_that_fails_offers_nothing_and_breaks_nothing(repl_session):
    from prompt_toolkit.document import Document

    from chatcli.keybindings import SlashCompleter

    def broken():
        raise RuntimeError("models exploded")

    repl_session.models = broken
    assert list(SlashCompleter(repl_session).get_completions(Document("/model x"), None)) == []


@pytest.fixture
def repl_session(server, tmp_path):
    return Harness(server, tmp_path).session


# --- saving never quietly stops (issue 19) -------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB filesystem of its own (a tmpfs), to fill and to free."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); test_store.py's fault "
                    "tests cover the same recorder")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:  # no space left on the device: full
            pass
    return filler


def ask(child, question: str) -> None:
    child.send(question + "\r")
    expect(child, "tokens:")
    expect(child, PROMPT)


def test_a_full_disk_stops_saving_only_until_it_is_freed(endpoint, tmp_path, small_disk):
    endpoint.queue(Reply(text="the first answer"), Reply(text="the second answer"),
                   Reply(text="the third answer"))
    child, log = spawn_repl(endpoint, tmp_path, "--session", "work", data_dir=small_disk / "data")
    expect(child, PROMPT)
    ask(child, "first question")
    filler = fill(small_disk)
    ask(child, "second question")
    assert "not saving for now" in log.getvalue()
    assert "NOT SAVING | " in log.getvalue()  # the bottom bar says so while it lasts
    filler.unlink()
    ask(child, "third question")
    assert "saving again: 2 messages that could not be saved before are saved now" in log.getvalue()
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, log.getvalue()
    saved = Store(small_disk / "data" / "chatcli.db").load(1)
    assert [m.content for m in saved] == ["first question", "the first answer", "second question",
                                          "the second answer", "third question", "the third answer"]


def test_what_is_still_unsaved_on_leaving_is_said_written_aside_and_exit_8(endpoint, tmp_path, small_disk):
    endpoint.queue(Reply(text="the first answer"), Reply(text="an answer never saved"))
    child, log = spawn_repl(endpoint, tmp_path, "--session", "work", data_dir=small_disk / "data",
                            TMPDIR=str(tmp_path))
    expect(child, PROMPT)
    ask(child, "first question")
    fill(small_disk)
    ask(child, "a question never saved")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 8
    said = log.getvalue()
    assert "1 question and 1 reply of this conversation could not be saved" in said
    aside = list(tmp_path.glob("unsaved-*.md"))
    assert len(aside) == 1 and "an answer never saved" in aside[0].read_text()
    assert oct(aside[0].stat().st_mode & 0o777) == "0o600"
