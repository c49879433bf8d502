"""The conversation database: migrations, permissions, search, saving as it happens, two writers."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest

from chatcli.conversation import ASSISTANT, USER, Message
from chatcli.errors import StorageError
from chatcli.events import TextDelta
from chatcli.recorder import Recorder
from chatcli.store import MIGRATIONS, STREAMING, Store


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "data" / "chatcli.db")


def test_a_new_database_is_private_in_wal_mode_at_the_latest_schema(tmp_path):
    path = tmp_path / "data" / "chatcli.db"
    store = Store(path)
    store.add(store.create(), Message(USER, "private words"))
    for name in ("chatcli.db", "chatcli.db-wal", "chatcli.db-shm"):
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_migrates_from_every_earlier_schema_keeping_the_data(tmp_path, version):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:version]:
        migration(db)
    db.execute(f"PRAGMA user_version = {version}")
    db.execute("INSERT INTO conversations (id, title, created_at, updated_at, model) "
               "VALUES (1, 'old one', 1, 2, 'm')")
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at) "
               "VALUES (1, 'user', '关于数据库迁移的问题', 1, 1)")
    db.close()
    store = Store(path)
    assert store.info(1).title == "old one"
    assert [m.content for m in store.load(1)] == ["关于数据库迁移的问题"]
    assert [h.message_id for h in store.search("数据库迁移")] == [1]  # indexed on the way up
    assert store.integrity() == "ok"


def test_a_database_from_a_newer_chatcli_is_refused_clearly(tmp_path):
    path = tmp_path / "new.db"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StorageError, match="written by a newer chatcli"):
        Store(path)


def test_an_unwritable_place_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot use the conversation database"):
        Store(blocker / "chatcli.db")


def test_messages_round_trip(store):
    cid = store.create(title="t", profile="p", model="m", system_prompt="s")
    first = store.add(cid, Message(USER, "question"))
    store.add(cid, Message(ASSISTANT, "answer", tokens=12, finish_reason="stop"))
    loaded = store.load(cid)
    assert loaded == [Message(USER, "question"), Message(ASSISTANT, "answer", tokens=12,
                                                         finish_reason="stop")]
    assert loaded[0].id == first and loaded[0].estimated and not loaded[1].estimated
    store.update(first, Message(USER, "question", pinned=True))
    assert store.load(cid)[0].pinned
    store.remove([first])
    assert [m.content for m in store.load(cid)] == ["answer"]
    info = store.info(cid)
    assert (info.profile, info.model, info.system_prompt, info.message_count) == ("p", "m", "s", 1)


def test_a_reply_cut_by_a_crash_loads_as_interrupted(store):
    cid = store.create()
    store.add(cid, Message(ASSISTANT, "half", finish_reason=STREAMING))
    assert store.load(cid)[0].finish_reason == "interrupted"


def test_find_by_name_or_number_and_latest(store):
    a = store.create(name="work")
    b = store.create()
    assert store.find("work").id == a
    assert store.find(str(b)).id == b
    assert store.find("nope") is None
    assert store.latest().id == b
    store.add(a, Message(USER, "later"))
    assert store.latest().id == a
    assert [c.id for c in store.conversations()] == [a, b]


def test_names_are_unique(store):
    store.create(name="x")
    other = store.create()
    with pytest.raises(StorageError, match="already named"):
        store.update_conversation(other, name="x")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("docker compose", "how do I use [docker compose] with volumes?"),
        ("天气", "今天[天气]很好，我们去公园吧"),  # two characters: below the trigram index
        ("去公园", "今天天气很好，我们[去公园]吧"),
        ("VOLUMES", "how do I use docker compose with [volumes]?"),
    ],
)
def test_full_text_search_with_snippets(store, query, expected):
    cid = store.create(title="mixed")
    store.add(cid, Message(USER, "how do I use docker compose with volumes?"))
    store.add(cid, Message(ASSISTANT, "今天天气很好，我们去公园吧"))
    hits = store.search(query)
    assert [h.snippet for h in hits] == [expected]
    assert hits[0].title == "mixed"


def test_search_sees_updated_and_not_deleted_text(store):
    cid = store.create()
    mid = store.add(cid, Message(ASSISTANT, "", finish_reason=STREAMING))
    store.update(mid, Message(ASSISTANT, "streamed words arrive"))
    assert len(store.search("streamed words")) == 1
    store.delete(cid)
    assert store.search("streamed words") == []


def test_search_treats_query_characters_literally(store):
    cid = store.create()
    store.add(cid, Message(USER, 'say "hi" and 100% of_it'))
    assert len(store.search('"hi"')) == 1
    assert len(store.search("0%")) == 1
    assert store.search("x_") == []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_recorder_saves_the_question_first_and_the_reply_at_a_bounded_rate(store):
    clock = Clock()
    recorder = Recorder(store, None, meta=lambda: {"model": "m", "profile": None, "system_prompt": None},
                        interval=0.5, clock=clock)
    question = recorder.user(Message(USER, "What is WAL?\nMore detail"))
    cid = recorder.conversation_id
    assert question.id is not None and store.info(cid).title == "What is WAL?"
    parts: list[str] = []
    writes = []
    for n in range(100):
        parts.append(f"w{n} ")
        clock.now = n * 0.05  # five seconds of streaming, a chunk every 50 ms
        recorder.event(TextDelta(parts[-1]))
        writes.append(store.load(cid)[-1].content)
    assert len(set(writes)) <= 12  # about two writes a second, not one per chunk
    assert store.load(cid)[-1].finish_reason == "interrupted"  # still arriving: a crash now keeps it
    reply = recorder.reply_done(Message(ASSISTANT, "".join(parts), tokens=40, finish_reason="stop"))
    saved = store.load(cid)
    assert [m.id for m in saved] == [question.id, reply.id]
    assert saved[-1] == Message(ASSISTANT, "".join(parts), tokens=40, finish_reason="stop")


class Faulty:
    """Makes the store's writes fail while `failing` is set, as a full disk would."""

    def __init__(self, store, monkeypatch) -> None:
        self.failing = False
        for name in ("add", "append", "append_reasoning", "update", "create", "set_outcome"):
            real = getattr(store, name)
            monkeypatch.setattr(store, name, self._wrap(real))

    def _wrap(self, real):
        def write(*args, **kwargs):
            if self.failing:
                raise StorageError("cannot use the conversation database: database or disk is full")
            return real(*args, **kwargs)
        return write


def test_saving_that_fails_is_tried_again_and_writes_what_it_missed_in_order(store, monkeypatch):
    faulty = Faulty(store, monkeypatch)
    failures, recoveries = [], []
    conversation: list[Message] = []
    clock = Clock()
    recorder = Recorder(store, None, meta=lambda: {}, messages=lambda: conversation, clock=clock,
                        on_failure=failures.append, on_recovery=recoveries.append, interval=0)

    def turn(question: str, reply: str) -> None:
        conversation.append(recorder.user(Message(USER, question)))
        recorder.answering(conversation[-1])
        for word in reply.split(" "):
            clock.now += 10
            recorder.event(TextDelta(word + " "))
        conversation.append(recorder.reply_done(Message(ASSISTANT, reply + " ", finish_reason="stop")))

    turn("first", "one")
    faulty.failing = True  # the disk fills up
    turn("second", "two and more")
    turn("third", "three")
    assert len(failures) == 1 and recorder.broken  # told once, not at every write
    assert [m.id for m in conversation[2:]] == [None] * 4
    faulty.failing = False  # and is freed
    turn("fourth", "four")
    assert recoveries == [4] and not recorder.broken and recorder.unsaved() == []
    saved = store.load(recorder.conversation_id)
    assert [m.content for m in saved] == ["first", "one ", "second", "two and more ", "third", "three ",
                                          "fourth", "four "]
    assert [m.id for m in saved] == [m.id for m in conversation]


def test_a_reply_whose_saving_failed_half_way_is_saved_whole_when_it_works_again(store, monkeypatch):
    faulty = Faulty(store, monkeypatch)
    clock = Clock()
    conversation: list[Message] = []
    recorder = Recorder(store, None, meta=lambda: {}, messages=lambda: conversation, clock=clock, interval=0)
    conversation.append(recorder.user(Message(USER, "q")))
    recorder.answering(conversation[-1])
    for n, piece in enumerate(["part one, ", "part two, ", "part three"]):
        faulty.failing = n == 1  # the second write fails: its text must not be lost
        clock.now += 10
        recorder.event(TextDelta(piece))
    clock.now += 10
    recorder.event(TextDelta(""))
    crashed = store.load(recorder.conversation_id)[-1]  # what a crash now would leave
    assert crashed.content == "part one, part two, part three"


def test_a_database_closed_under_the_recorder_is_opened_again(store):
    conversation: list[Message] = []
    failures: list[StorageError] = []
    recorder = Recorder(store, None, meta=lambda: {}, messages=lambda: conversation,
                        on_failure=failures.append)
    conversation.append(recorder.user(Message(USER, "first")))
    store.close()  # the connection goes away under it
    conversation.append(recorder.user(Message(USER, "second")))
    assert len(failures) == 1 and conversation[-1].id is None
    conversation.append(recorder.reply_done(Message(ASSISTANT, "reply")))
    assert [m.content for m in store.load(recorder.conversation_id)] == ["first", "second", "reply"]


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from chatcli.store import Store
    from chatcli.conversation import Message
    store = Store(Path(sys.argv[1]))
    cid = store.create(title=sys.argv[2])
    for n in range(300):
        store.add(cid, Message("user", f"{sys.argv[2]} {n}"))
""")


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.db"
    Store(path).close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name],
                                stderr=subprocess.PIPE) for name in ("left", "right")]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    store = Store(path)
    assert sorted(c.message_count for c in store.conversations()) == [300, 300]
    assert store.integrity() == "ok"
