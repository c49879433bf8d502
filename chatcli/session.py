"""The state of an interactive session and the operations on it.

Settings that commands change (/model, /profile, /temperature), the
conversation, usage totals and the cached model list. Turns go through
chat.py; nothing here touches the screen or the keyboard, so the slash
commands and the REPL can be tested without a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chatcli import errors
from chatcli.chat import ChatClient, Sink, TurnResult, run_turn, send, window_for
from chatcli.config import Settings
from chatcli.conversation import ASSISTANT, USER, Conversation, Message, Usage, Window, turns

ClientFactory = Callable[[Settings], Any]
SettingsLoader = Callable[[str | None], Settings]


class Session:
    """One conversation with one endpoint, as the REPL drives it."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: ClientFactory,
        load_profile: SettingsLoader | None = None,
        profiles: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.conversation = Conversation(system=settings.system_prompt)
        self.total = Usage(0, 0)
        self.last: TurnResult | None = None
        self.profiles = profiles or []
        self._client_factory = client_factory
        self._load_profile = load_profile
        self._client: ChatClient | None = None
        self._models: list[str] | None = None
        self._window: Window | None = None

    @property
    def client(self) -> Any:
        """The client, made on first use (resolving the key may run api_key_cmd)."""
        if self._client is None:
            self._client = self._client_factory(self.settings)
        return self._client

    # --- turns -----------------------------------------------------------------

    def ask(self, text: str, sink: Sink) -> TurnResult:
        return self._finish(run_turn(self.conversation, text, client=self.client,
                                     settings=self.settings, sink=sink))

    def retry(self, sink: Sink) -> TurnResult:
        """Send the last question again, dropping the reply it got (if any)."""
        messages = self.conversation.messages
        while messages and messages[-1].role == ASSISTANT:
            messages.pop()
        if not messages:
            raise errors.UsageError("nothing to retry yet")
        self._window = None
        return self._finish(send(self.conversation, client=self.client, settings=self.settings,
                                 sink=sink))

    def _finish(self, result: TurnResult) -> TurnResult:
        self.last = result
        self.total = self.total + result.usage
        self._window = None
        return result

    def turn_failed(self) -> None:
        """After an error or Ctrl-C: the conversation changed, the window is stale."""
        self._window = None

    # --- the conversation ------------------------------------------------------

    def undo(self) -> list[Message]:
        """Remove the last turn: the last question and what followed it."""
        groups = turns(self.conversation.messages)
        if not groups:
            return []
        start = groups[-1].start
        removed = self.conversation.messages[start:]
        del self.conversation.messages[start:]
        self._window = None
        return removed

    def clear(self) -> int:
        count = len(self.conversation.messages)
        self.conversation.messages.clear()
        self._window = None
        return count

    def set_system(self, text: str | None) -> None:
        self.conversation.system = text or None
        self._window = None

    def pin(self, number: int | None) -> Message:
        """Pin message `number` (1-based, as /history lists them), or the last one."""
        messages = self.conversation.messages
        if not messages:
            raise errors.UsageError("nothing to pin yet")
        index = len(messages) - 1 if number is None else number - 1
        if not 0 <= index < len(messages):
            raise errors.UsageError(f"no message {number}; /history lists 1 to {len(messages)}")
        pinned = replace(messages[index], pinned=not messages[index].pinned)
        messages[index] = pinned
        self._window = None
        return pinned

    def window(self) -> Window:
        """What the next request would send; cached until the conversation or settings change."""
        if self._window is None:
            self._window = window_for(self.conversation, self.settings)
        return self._window

    def last_reply(self) -> Message | None:
        for message in reversed(self.conversation.messages):
            if message.role == ASSISTANT:
                return message
        return None

    def last_question(self) -> Message | None:
        for message in reversed(self.conversation.messages):
            if message.role == USER:
                return message
        return None

    # --- settings --------------------------------------------------------------

    def update(self, **changes: Any) -> None:
        self.settings = replace(self.settings, **changes)
        self._window = None

    def switch_profile(self, name: str) -> None:
        if self._load_profile is None:
            raise errors.UsageError("profiles cannot be switched here")
        settings = self._load_profile(name)
        self.settings = settings
        if self.conversation.system is None:
            self.conversation.system = settings.system_prompt
        self._client = None
        self._models = None
        self._window = None

    def models(self) -> list[str]:
        """The endpoint's models, fetched once and cached."""
        if self._models is None:
            self._models = self.client.models()
        return self._models
