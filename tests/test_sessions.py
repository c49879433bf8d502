"""Conversations that are never lost: saving, resuming, managing, crashing, secrets."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from chatcli.conversation import Message
from chatcli.store import Store
from tests.conftest import TEST_KEY
from tests.fake_server import Reply
from tests.terminal import BIN
from tests.test_repl import CTRL_D, ENTER, Harness, interrupt_a_long_reply


def contents(db: Path, conversation: int = 1) -> list[tuple[str, str, str | None]]:
    return [(m.role, m.content, m.finish_reason) for m in Store(db).load(conversation)]


def test_ask_saves_the_question_and_the_reply(run, endpoint, db):
    assert run("ask", "What is WAL?").code == 0
    assert contents(db) == [("user", "What is WAL?", None),
                            ("assistant", "Hello! How can I help?", "stop")]
    info = Store(db).info(1)
    assert (info.title, info.model) == ("What is WAL?", "test-model")


def test_ask_session_continues_a_named_conversation(run, endpoint, db):
    run("ask", "--session", "work", "first question")
    run("ask", "--session", "work", "second question")
    run("ask", "--session", "other", "unrelated")
    assert [m["content"] for m in endpoint.chat_requests[1]["messages"]] == [
        "first question", "Hello! How can I help?", "second question"]
    assert endpoint.chat_requests[2]["messages"] == [{"role": "user", "content": "unrelated"}]
    assert run("ask", "--session", "1", "by number").code == 0
    assert len(endpoint.chat_requests[3]["messages"]) == 5


def test_pipes_hold_a_conversation_too(run, endpoint):
    run("ask", "--session", "logs", "summarise", input="error at line 3\n")
    run("ask", "--session", "logs", "and the cause?")
    sent = endpoint.chat_requests[1]["messages"]
    assert sent[0]["content"].startswith("### stdin\n\n```\nerror at line 3")
    assert sent[-1]["content"] == "and the cause?"


def test_continue_picks_the_most_recent(run, endpoint):
    run("ask", "--session", "a", "in a")
    run("ask", "--session", "b", "in b")
    run("ask", "-c", "continuing")
    assert endpoint.chat_requests[2]["messages"][0]["content"] == "in b"
    run("-c", "ask", "again")
    assert len(endpoint.chat_requests[3]["messages"]) == 5


def test_unknown_number_is_an_error(run, endpoint):
    result = run("ask", "--session", "42", "hi")
    assert result.code == 2 and "no conversation 42" in result.stderr


def test_resume_rebuilds_the_window_with_the_same_trimming(run, endpoint, db, tmp_path):
    store = Store(db)
    cid = store.create(name="long")
    from chatcli.conversation import ASSISTANT, USER, Message

    for n in range(30):
        store.add(cid, Message(USER, f"q{n}"))
        store.add(cid, Message(ASSISTANT, f"a{n}"))
    run("ask", "--session", "long", "latest")
    sent = endpoint.chat_requests[0]["messages"]
    assert len(sent) <= 20 and sent[0]["content"].startswith("q") and sent[-1]["content"] == "latest"
    assert len(Store(db).load(cid)) == 62  # nothing is forgotten in the store


def test_no_save_and_save_false_write_nothing(run, endpoint, db, tmp_path):
    run("ask", "--no-save", "secret question")
    assert not db.exists() or Store(db).conversations() == []
    config = tmp_path / "c.toml"
    config.write_text("save = false\n")
    run("ask", "--config", str(config), "another")
    assert not db.exists() or Store(db).conversations() == []


def test_data_dir_from_the_config_file(run, endpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("CHATCLI_DATA_DIR")
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "elsewhere"}"\n')
    run("ask", "--config", str(config), "hi")
    assert (tmp_path / "elsewhere" / "chatcli.db").exists()


def test_sessions_list_show_search_export_rename_rm(run, endpoint, db):
    endpoint.queue(Reply(text="Use `docker compose up`."), Reply(text="北京是中国的首都。"))
    run("ask", "--session", "dock", "How do I start docker compose?")
    run("ask", "中国的首都是哪里？")
    listing = run("sessions", "list")
    assert listing.code == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["ID", "LAST", "USED", "MSGS", "MODEL", "TITLE"]
    assert lines[1].startswith("2 ") and lines[1].endswith("中国的首都是哪里？")
    assert lines[2].endswith("  dock")  # opened by --session dock: that is its name and title
    data = json.loads(run("sessions", "list", "--json").stdout)
    assert [(c["id"], c["messages"], c["model"]) for c in data] == [(2, 2, "test-model"),
                                                                    (1, 2, "test-model")]
    shown = run("sessions", "show", "dock").stdout
    assert shown.startswith("# dock")
    assert "**You**" in shown and "Use `docker compose up`." in shown
    found = run("sessions", "search", "首都")
    assert found.code == 0 and "[首都]" in found.stdout
    assert run("sessions", "search", "nothing like this").code == 1
    exported = json.loads(run("sessions", "export", "1", "--format", "json").stdout)
    assert exported["messages"] == [
        {"role": "user", "content": "How do I start docker compose?"},
        {"role": "assistant", "content": "Use `docker compose up`."}]
    assert run("sessions", "export", "1", "--format", "md").stdout == shown
    assert run("sessions", "export", "1", "--format", "pdf").code == 2
    renamed = run("sessions", "rename", "1", "Docker", " notes")
    assert renamed.code == 0
    assert "conversation 1 is now called 'Docker notes' (`chatcli --session 'Docker notes'` opens it)" \
        in renamed.stderr
    assert (Store(db).info(1).title, Store(db).info(1).name) == ("Docker notes", "Docker notes")
    refused = run("sessions", "rm", "1")
    assert refused.code == 2 and "--yes" in refused.stderr and Store(db).info(1) is not None
    assert run("sessions", "rm", "1", "--yes").code == 0
    assert Store(db).info(1) is None and len(Store(db).conversations()) == 1


def test_export_json_round_trips_into_a_request(run, endpoint, db):
    """The exported messages are exactly what a resumed conversation sends."""
    run("ask", "-s", "Be brief.", "--session", "rt", "one")
    run("ask", "-s", "Be brief.", "--session", "rt", "two")
    exported = json.loads(run("sessions", "export", "rt", "--format", "json").stdout)
    run("ask", "-s", "Be brief.", "--session", "rt", "three")
    assert endpoint.chat_requests[-1]["messages"][:-1] == exported["messages"]


def test_repl_sessions_commands(server, tmp_path, db):
    harness = Harness(server, tmp_path)
    harness.session.store = Store(db)
    harness.session.new()
    harness.run("first topic" + ENTER + "/rename My topic" + ENTER + "/new" + ENTER + "second topic"
                + ENTER + "/sessions" + ENTER + "/resume 1" + ENTER + "more on the first" + ENTER
                + CTRL_D)
    out = harness.out.getvalue()
    assert "My topic" in out and "second topic" in out
    assert "resumed 1: My topic (2 messages)" in out
    assert [m["content"] for m in harness.sent[-1]] == [
        "first topic", "Hello! How can I help?", "more on the first"]
    assert len(Store(db).load(1)) == 4 and len(Store(db).load(2)) == 2


def test_repl_edits_reach_the_store(server, tmp_path, db):
    harness = Harness(server, tmp_path)
    harness.session.store = Store(db)
    harness.session.new()
    server.queue(Reply(text="first reply"), Reply(text="second"), Reply(text="regenerated"))
    harness.run("one" + ENTER + "two" + ENTER + "/undo" + ENTER + "/retry" + ENTER + "/pin 1" + ENTER
                + "/clear" + ENTER + CTRL_D)
    assert contents(db) == [("user", "one", None), ("assistant", "regenerated", "stop")]
    assert Store(db).load(1)[0].pinned
    assert "the previous one is saved: /resume 1" in harness.out.getvalue()


def test_an_interrupted_reply_is_saved_with_its_status(server, tmp_path, db):
    harness = Harness(server, tmp_path)
    harness.session.store = Store(db)
    harness.session.new()
    interrupt_a_long_reply(harness)
    saved = contents(db)
    assert saved[1][2] == "interrupted" and 0 < len(saved[1][1]) < 10000
    assert saved[-1] == ("assistant", "next one", "stop")


def chatcli(*args, env, **kw):
    return subprocess.Popen([str(BIN), *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_kill_9_mid_stream_leaves_a_sound_database_with_every_turn(endpoint, db):
    env = os.environ.copy()
    first = chatcli("ask", "--session", "crash", "an earlier question", env=env)
    first.communicate(timeout=60)
    endpoint.queue(Reply(text="streaming words " * 2000, chunk_chars=8, delay=0.002))
    victim = chatcli("ask", "--session", "crash", "a question whose answer is cut", env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until part of the reply is on disk
        rows = sqlite3.connect(db).execute(
            "SELECT length(content) FROM messages WHERE role = 'assistant' AND finish_reason = "
            "'streaming'").fetchall()
        if rows and rows[0][0] > 100:
            break
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    store = Store(db)
    assert store.integrity() == "ok"
    saved = contents(db)
    assert saved[:3] == [("user", "an earlier question", None),
                         ("assistant", "Hello! How can I help?", "stop"),
                         ("user", "a question whose answer is cut", None)]
    assert saved[3][2] == "interrupted" and saved[3][1].startswith("streaming words")
    # and the conversation carries on from there
    again = chatcli("ask", "--session", "crash", "where were we?", env=env)
    again.communicate(timeout=60)
    assert again.returncode == 0
    assert [m["role"] for m in endpoint.chat_requests[-1]["messages"]] == [
        "user", "assistant", "user", "assistant", "user"]


def test_a_planted_secret_never_reaches_any_file_we_write(endpoint, tmp_path, monkeypatch):
    secret = "sk-planted-" + os.urandom(8).hex()
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    config = tmp_path / "c.toml"
    config.write_text(f'[headers]\n"X-Api-Key" = "{secret}"\n')
    env = {**os.environ, "CHATCLI_CONFIG": str(config)}
    for args in (["ask", "--session", "s", "hello"], ["ask", "--debug", "again"], ["ask", "--json", "x"]):
        done = subprocess.run([str(BIN), *args], env=env, capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0
        assert secret.encode() not in done.stdout + done.stderr
    assert endpoint.requests[0].headers["authorization"] == f"Bearer {secret}"  # it was used
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert any(p.name == "chatcli.db" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    assert TEST_KEY not in (tmp_path / "data" / "chatcli.db").read_bytes().decode("latin-1")


def test_two_chatcli_processes_save_to_one_database_at_once(endpoint, db):
    endpoint.default = Reply(text="interleaved streaming text " * 150, chunk_chars=6, delay=0.001)
    env = os.environ.copy()
    runs = [chatcli("ask", "--session", name, f"question from {name}", env=env) for name in ("a", "b")]
    for process in runs:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        assert b"locked" not in err
    store = Store(db)
    for name in ("a", "b"):
        saved = store.load(store.find(name).id)
        assert [(m.role, m.finish_reason) for m in saved] == [("user", None), ("assistant", "stop")]
        assert saved[1].content == "interleaved streaming text " * 150


def test_rm_asks_on_a_terminal(run, endpoint, db):
    import pexpect

    run("ask", "keep me?")
    child = pexpect.spawn(str(BIN), ["sessions", "rm", "1"], env=os.environ.copy(), encoding="utf-8",
                          timeout=20)
    child.expect(r"Remove 1 conversation: 1 \(keep me\?, 2 messages\)\? \[y/N\]")
    child.sendline("n")
    child.expect(pexpect.EOF)
    assert Store(db).info(1) is not None
    child = pexpect.spawn(str(BIN), ["sessions", "rm", "1"], env=os.environ.copy(), encoding="utf-8",
                          timeout=20)
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect(pexpect.EOF)
    assert Store(db).info(1) is None


def test_a_conversation_goes_on_with_the_model_that_answered_it_last(run, endpoint, db, monkeypatch):
    monkeypatch.delenv("CHATCLI_MODEL")  # the default model, as a user has it
    assert run("ask", "-m", "deepseek-chat", "first question").code == 0
    assert Store(db).info(1).model == "deepseek-chat"
    assert run("ask", "-c", "go on").code == 0  # no -m: the conversation's model, not the default
    assert endpoint.chat_requests[-1]["model"] == "deepseek-chat"
    assert run("ask", "-c", "-m", "test-model", "and now?").code == 0  # -m says otherwise
    assert endpoint.chat_requests[-1]["model"] == "test-model"
    assert Store(db).info(1).model == "test-model"  # what sessions list shows: the one in use
    assert run("ask", "--session", "1", "again").code == 0
    assert endpoint.chat_requests[-1]["model"] == "test-model"
    listed = run("sessions", "list").stdout
    assert "test-model" in listed and "deepseek-chat" not in listed


def test_long_chinese_titles_are_cut_to_the_terminal_not_wrapped(endpoint, tmp_path):
    import pexpect
    import pyte

    from tests.terminal import spawn

    data = tmp_path / "data"
    store = Store(data / "chatcli.db")
    title = "关于在生产环境中部署大型语言模型服务时遇到的性能问题以及如何逐步排查和解决它们的详细讨论"
    for n in range(3):
        conversation = store.create(title=f"{title} {n}", model="test-model")
        store.add(conversation, Message("user", f"问题 {n}"))
        store.add(conversation, Message("assistant", f"回答 {n} 性能"), model="test-model")
    store.close()
    for args in (["sessions", "list"], ["sessions", "search", "性能"]):
        child = spawn(endpoint, tmp_path, *args)
        screen = pyte.Screen(100, 40)
        stream = pyte.Stream(screen)
        child.expect(pexpect.EOF)
        stream.feed(child.before)
        lines = [line.rstrip() for line in screen.display if line.strip()]
        assert len(lines) >= 3, lines
        assert all(line[:1].isdigit() or line.startswith("ID") for line in lines), lines  # none wrapped
        assert any("…" in line for line in lines)  # the title cut, with a mark
