"""Saving a conversation as it happens: the Journal that chat.py writes through.

The question is written before the request is sent, the reply while it streams
(at a bounded rate) and once more with how it ended. A write that fails (a full
disk, a lock held too long, a database gone) never ends saving: the conversation
goes on in memory, marked unsaved, and the next write first tries again (with a
fresh connection if the old one broke) and writes, in order, every message that
was missed, the partial reply of the failed turn included. The session is told
when saving stops and when it works again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from chatcli.conversation import ASSISTANT, USER, Message, TextBuffer, ToolCall, title_from
from chatcli.errors import StorageError
from chatcli.events import Event, ReasoningDelta, TextDelta
from chatcli.store import STREAMING, Store

# While saving fails, a reply's progress is tried again no more often than this (a lock
# held by another process makes each try wait for it); questions and ends always try.
RETRY_SECONDS = 5.0


class Recorder:
    """Saves one conversation as it happens; chat.py calls it through its Journal protocol.

    The question is written before the request is sent; the reply is written
    at most every `interval` seconds while it streams (the first time one
    interval after its first words, so a short reply costs one write), and
    finally with how it ended. `messages` gives the conversation's messages as
    they stand, so that those a failed write missed are written later; a failure
    is reported through `on_failure` (once until saving works again), a recovery
    through `on_recovery`.
    """

    def __init__(
        self,
        store: Store,
        conversation_id: int | None,
        *,
        meta: Callable[[], dict[str, str | None]],
        messages: Callable[[], list[Message]] = list,
        name: str | None = None,
        on_failure: Callable[[StorageError], None] = lambda error: None,
        on_recovery: Callable[[int], None] = lambda count: None,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self._meta = meta
        self._messages = messages
        self._name = name
        self._on_failure = on_failure
        self._on_recovery = on_recovery
        self._interval = interval
        self._clock = clock
        self._reply_id: int | None = None
        self._question: Message | None = None  # what the reply being received answers
        self._text = TextBuffer()  # the reply's new text and thinking, not yet saved
        self._thinking = TextBuffer()
        self._seq = 0
        self._started: float | None = None  # when the current reply's first words came
        self._last_write = 0.0
        self._results: dict[tuple[int, int], tuple[ToolCall, ...]] = {}  # results not written yet
        self.failure: StorageError | None = None  # the write failing now; None while saving works
        self._failed_at = 0.0

    @property
    def broken(self) -> bool:
        """Saving fails now: what is said meanwhile is kept in memory until a write works."""
        return self.failure is not None

    def _safely(self, write: Callable[[], int | None] | Callable[[], None]) -> int | None:
        """Run `write`; after a failure, first try again what was missed. None if it failed."""
        caught_up = 0
        try:
            if self.failure is not None:
                self.store.reconnect()
                caught_up = self._catch_up() + self._write_results()
            result = write()
        except StorageError as exc:
            if self.failure is None:
                self._on_failure(exc)
            self.failure, self._failed_at = exc, self._clock()
            return None
        if self.failure is not None:
            self.failure = None
            self._on_recovery(caught_up)
        return result

    def _catch_up(self) -> int:
        """Write the messages a failed write missed, in order; how many there were."""
        messages = self._messages()
        written = 0
        question_id: int | None = None
        for index, message in enumerate(messages):
            if message.id is None:
                saved = self._add(message, reply_to=question_id if message.role == ASSISTANT else None)
                if message.outcome:
                    self.store.set_outcome(saved, message.outcome)
                if message is self._question:
                    self._question = replace(message, id=saved)
                message = messages[index] = replace(message, id=saved)
                written += 1
            if message.role == USER:
                question_id = message.id
        return written

    def _add(self, message: Message, *, reply_to: int | None = None) -> int:
        if self.conversation_id is None:
            title = self._name or title_from(message)  # a name given is its title
            self.conversation_id = self.store.create(name=self._name, title=title, **self._meta())
        return self.store.add(self.conversation_id, message, model=self._meta().get("model"),
                              reply_to=reply_to)

    def unsaved(self) -> list[Message]:
        """The messages of the conversation not saved yet (all written once saving works)."""
        return [message for message in self._messages() if message.id is None]

    def retry(self) -> bool:
        """One more try at what is unsaved (before leaving); True when nothing is left unsaved."""
        if self.failure is not None:
            self._safely(lambda: None)
        return self.failure is None and not self.unsaved()

    def user(self, message: Message) -> Message:
        return _with_id(message, self._safely(lambda: self._add(message)))

    def answering(self, question: Message) -> None:
        """The reply about to arrive answers `question` (saved next to it, whoever else writes)."""
        self._question = question

    def continuing(self, reply: Message) -> None:
        """The next reply continues `reply` (/continue): its text and thinking are already saved;
        what the next events bring is added to them."""
        if reply.id is None:
            return  # never saved: its whole text is added when it ends
        reply_id = self._reply_id = reply.id  # if reopening fails, its end still updates it
        self._seq = 0

        def reopen() -> int:
            self.store.reopen(reply_id)
            return reply_id

        self._safely(reopen)

    def event(self, event: Event) -> None:
        """More of the reply (its text and thinking; its tool calls are saved with its end):
        saved at most every `interval` seconds (while saving fails, tried again at most every
        RETRY_SECONDS)."""
        if isinstance(event, TextDelta):
            self._text.add(event.text)
        elif isinstance(event, ReasoningDelta):
            self._thinking.add(event.text)
        else:
            return
        now = self._clock()
        if self._started is None:
            self._started = self._last_write = now
        if now - self._last_write < self._interval:
            return
        if self.failure is not None and now - self._failed_at < RETRY_SECONDS:
            return
        self._last_write = now
        self._safely(self._write_progress)

    def _write_progress(self) -> int:
        """Write what came since the last write; each part is forgotten once it is written."""
        if self._reply_id is None:
            question = self._question.id if self._question is not None else None
            partial = Message(ASSISTANT, self._text.text(), finish_reason=STREAMING,
                              reasoning=self._thinking.text())
            self._reply_id = self._add(partial, reply_to=question)
            self._text, self._thinking = TextBuffer(), TextBuffer()
            return self._reply_id
        if self._text:
            self.store.append(self._reply_id, self._seq + 1, self._text.text())
            self._seq, self._text = self._seq + 1, TextBuffer()
        if self._thinking:
            self.store.append_reasoning(self._reply_id, self._thinking.text())
            self._thinking = TextBuffer()
        return self._reply_id

    def reply_done(self, message: Message) -> Message:
        self._started = None
        self._text, self._thinking = TextBuffer(), TextBuffer()

        def write() -> int:
            if self._reply_id is None:
                question = self._question.id if self._question is not None else None
                return self._add(message, reply_to=question)
            self.store.update(self._reply_id, message)
            return self._reply_id

        saved = self._safely(write)
        self._reply_id, self._seq = None, 0
        return _with_id(message, saved)


    def tool_result(self, message: Message, index: int) -> None:
        """Call `index` of `message` has its result: saved now (a result whose write fails is
        written when saving works again)."""
        if message.id is None:
            return  # the reply itself is unsaved: written whole, results included, on catching up
        message_id, calls = message.id, message.tool_calls
        self._results[(message_id, index)] = calls

        def write() -> None:
            self.store.save_calls(message_id, calls, only=index)
            self._results.pop((message_id, index), None)

        self._safely(write)

    def _write_results(self) -> int:
        """The results a failed write missed."""
        for (message_id, index), calls in list(self._results.items()):
            self.store.save_calls(message_id, calls, only=index)
            del self._results[(message_id, index)]
        return 0


def _with_id(message: Message, message_id: int | None) -> Message:
    return message if message_id is None else replace(message, id=message_id)
