"""Saving a conversation as it happens: the Journal that chat.py writes through.

The question is written before the request is sent, the reply while it streams
(at a bounded rate) and once more with how it ended. A failure to save is told
once and the conversation goes on in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from chatcli.conversation import Message, title_from
from chatcli.errors import StorageError
from chatcli.store import STREAMING, Store


class Recorder:
    """Saves one conversation as it happens; chat.py calls it through its Journal protocol.

    The question is written before the request is sent; the reply is written
    at most every `interval` seconds while it streams (the first time one
    interval after its first words, so a short reply costs one write), and
    finally with how it ended. A failure to save is reported
    once through `on_failure` and the conversation goes on in memory.
    """

    def __init__(
        self,
        store: Store,
        conversation_id: int | None,
        *,
        meta: Callable[[], dict[str, str | None]],
        name: str | None = None,
        on_failure: Callable[[StorageError], None] = lambda error: None,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self._meta = meta
        self._name = name
        self._on_failure = on_failure
        self._interval = interval
        self._clock = clock
        self._reply_id: int | None = None
        self._question_id: int | None = None  # what the reply being received answers
        self._written = 0  # parts of the reply already saved
        self._thought = 0  # and parts of its thinking
        self._seq = 0
        self._started: float | None = None  # when the current reply's first words came
        self._last_write = 0.0
        self.failure: StorageError | None = None  # the first write that failed; none after it

    @property
    def broken(self) -> bool:
        return self.failure is not None

    def _safely(self, write: Callable[[], int | None]) -> int | None:
        if self.failure is not None:
            return None
        try:
            return write()
        except StorageError as exc:
            self.failure = exc
            self._on_failure(exc)
            return None

    def _ensure(self, first: Message) -> int:
        if self.conversation_id is None:
            title = self._name or title_from(first)  # a name given is its title
            self.conversation_id = self.store.create(name=self._name, title=title, **self._meta())
        return self.conversation_id

    def user(self, message: Message) -> Message:
        saved = self._safely(lambda: self.store.add(self._ensure(message), message,
                                                    model=self._meta().get("model")))
        return _with_id(message, saved)

    def answering(self, question: Message) -> None:
        """The reply about to arrive answers `question` (saved next to it, whoever else writes)."""
        self._question_id = question.id

    def continuing(self, reply: Message) -> None:
        """The next reply continues `reply` (/continue): its text and thinking are already saved,
        as the first of the parts and thinking that reply_progress will be given."""
        if reply.id is None or self.failure is not None:
            return
        reply_id = reply.id
        self._safely(lambda: self.store.reopen(reply_id))
        self._reply_id = reply_id
        self._written, self._thought, self._seq = 1, (1 if reply.reasoning else 0), 0

    def reply_progress(self, parts: list[str], thinking: list[str]) -> None:
        """Save what arrived since the last write (at most every `interval` seconds): the
        answer's new text as a chunk, the thinking's added to its column."""
        now = self._clock()
        if self._started is None:
            self._started = self._last_write = now
        if now - self._last_write < self._interval:
            return
        self._last_write = now
        new, self._written = "".join(parts[self._written:]), len(parts)
        thought, self._thought = "".join(thinking[self._thought:]), len(thinking)
        reply_id = self._reply_id
        if reply_id is None:
            partial = Message("assistant", new, finish_reason=STREAMING, reasoning=thought)
            self._reply_id = self._safely(lambda: self.store.add(
                self._ensure(partial), partial, model=self._meta().get("model"),
                reply_to=self._question_id))
            return
        if new:
            self._seq += 1
            seq = self._seq
            self._safely(lambda: self.store.append(reply_id, seq, new))
        if thought:
            self._safely(lambda: self.store.append_reasoning(reply_id, thought))

    def reply_done(self, message: Message) -> Message:
        reply_id, self._reply_id = self._reply_id, None
        self._started = None
        self._written = self._seq = self._thought = 0
        if reply_id is None:
            return _with_id(message, self._safely(lambda: self.store.add(
                self._ensure(message), message, model=self._meta().get("model"),
                reply_to=self._question_id)))
        self._safely(lambda: self.store.update(reply_id, message))
        return _with_id(message, reply_id)


def _with_id(message: Message, message_id: int | None) -> Message:
    return message if message_id is None else replace(message, id=message_id)
