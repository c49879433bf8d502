"""Tool calls in the store: saved as they happen, never half lost to a failed write, copied by
a fork, and sent back whole when the conversation is resumed."""

from __future__ import annotations

import json

from chatcli.chat import run_turn
from chatcli.conversation import Conversation, ToolResult
from chatcli.errors import StorageError
from chatcli.recorder import Recorder
from chatcli.store import Store
from tests.fake_server import Reply
from tests.test_chat import Collect, setup

CALLS = [{"id": "a", "name": "lookup", "arguments": json.dumps({"q": "一"})},
         {"id": "b", "name": "lookup", "arguments": json.dumps({"q": "二"})}]


class Host:
    """Tools that look at the store while they run, as a crash at that moment would leave it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: list[list] = []

    def offered(self):
        return [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]

    def run(self, call):
        saved = self.store.load(1)[-1].tool_calls
        self.seen.append([(c.id, c.result.content if c.result else None) for c in saved])
        return ToolResult(f"found {json.loads(call.arguments)['q']}")

    def stopped(self):
        return None

    def without(self, refusal):
        return False


def find_both(server, store: Store, host: Host | None = None, **recording) -> Conversation:
    """One turn that calls `lookup` twice, saved by a Recorder into `store`."""
    settings, client = setup(server)
    conversation = Conversation()
    recorder = Recorder(store, None, meta=lambda: {}, messages=lambda: conversation.messages, **recording)
    server.queue(Reply(text="", tool_calls=CALLS), Reply(text="both found"))
    run_turn(conversation, "find both", client=client, settings=settings, sink=Collect(), journal=recorder,
             tools=host or Host(store))
    return conversation


def test_calls_are_saved_before_they_run_and_each_result_as_it_comes(server, tmp_path):
    store = Store(tmp_path / "chatcli.db")
    host = Host(store)
    conversation = find_both(server, store, host)
    assert host.seen == [[("a", None), ("b", None)], [("a", "found 一"), ("b", None)]]
    loaded = store.load(1)
    assert [m.content for m in loaded] == ["find both", "", "both found"]
    assert [(c.id, c.name, c.result.content) for c in loaded[1].tool_calls] == [
        ("a", "lookup", "found 一"), ("b", "lookup", "found 二")]
    assert loaded == conversation.messages


def test_a_result_whose_write_failed_is_written_when_saving_works_again(server, tmp_path):
    settings, client = setup(server)
    store = Store(tmp_path / "chatcli.db")
    conversation = Conversation()
    failures: list[str] = []
    recorder = Recorder(store, None, meta=lambda: {}, messages=lambda: conversation.messages,
                        on_failure=lambda exc: failures.append(exc.message))
    real = store.save_calls
    broken = {"on": True}

    def flaky(*args, **kwargs):
        if broken["on"]:
            broken["on"] = False
            raise StorageError("disk full")
        return real(*args, **kwargs)

    store.save_calls = flaky  # type: ignore[method-assign]
    server.queue(Reply(text="", tool_calls=CALLS[:1]), Reply(text="found"))
    run_turn(conversation, "find", client=client, settings=settings, sink=Collect(), journal=recorder,
             tools=Host(store))
    assert failures == ["disk full"]
    assert [c.result.content for c in store.load(1)[1].tool_calls] == ["found 一"]  # caught up
    assert recorder.retry()


def test_a_fork_copies_calls_and_results(server, tmp_path):
    store = Store(tmp_path / "chatcli.db")
    find_both(server, store)
    fork = store.fork(1, upto=2)
    copied = store.load(fork)
    assert [c.result.content for c in copied[1].tool_calls] == ["found 一", "found 二"]
    store.delete(1)
    assert [c.result.content for c in store.load(fork)[1].tool_calls] == ["found 一", "found 二"]
    assert store.integrity() == "ok"
