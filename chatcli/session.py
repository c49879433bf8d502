"""The state of an interactive session and the operations on it.

Settings that commands change (/model, /profile, /temperature), the
conversation, usage totals and the cached model list. Turns go through
chat.py; nothing here touches the screen or the keyboard, so the slash
commands and the REPL can be tested without a terminal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chatcli import attachments, errors
from chatcli.chat import (
    ChatClient,
    Journal,
    NoJournal,
    Sink,
    TurnResult,
    continue_reply,
    send,
    window_for,
)
from chatcli.config import Settings, with_role
from chatcli.conversation import (
    ASSISTANT,
    USER,
    Conversation,
    Message,
    Part,
    ToolCall,
    Usage,
    Window,
    turns,
    user_message,
)
from chatcli.schema import LOCAL

if TYPE_CHECKING:  # a session without a store or tools never imports them (`ask --no-save`)
    from chatcli.store import ConversationInfo, Store
    from chatcli.tools import Tool
    from chatcli.tools.box import ToolBox
    from chatcli.tools.mcp import McpTools

ClientFactory = Callable[[Settings], Any]
PROBE_TOKENS = 1024  # a request this large could overflow a small local server's context
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
        store: Store | None = None,
        warn: Callable[[str], None] = lambda text: None,
        env: Mapping[str, str] | None = None,
        tools: ToolBox | None = None,
        catalog: Mapping[str, Tool] | None = None,
        tools_factory: Callable[[], tuple[ToolBox | None, Mapping[str, Tool]]] | None = None,
    ) -> None:
        self.settings = settings
        self.conversation = Conversation(system=settings.system_prompt)
        self.total = Usage(0, 0)  # what this conversation's replies cost, since total_label
        self.total_label = "this conversation"
        self.last: TurnResult | None = None
        self.pending: list[Part] = []  # attached (/file, /image, -f) to the next message
        self.profiles = profiles or []
        self.store = store
        self._warn = warn
        self.save_failure: errors.StorageError | None = None  # the first write that failed, if any
        self._client_factory = client_factory
        self._load_profile = load_profile
        self._client: ChatClient | None = None
        self._sized = False  # whether the client was asked for its context size (_size_context)
        self._models: list[str] | None = None
        self._window: Window | None = None
        self._journal: Journal = self._recorder(None)
        self._env = os.environ if env is None else env
        self.tools = tools  # what the model may call (None: nothing, and /tools cannot add any)
        self.catalog = dict(catalog or {})  # every tool there is, for /tools
        self._tools_factory = tools_factory  # builds them when first asked for (start-up stays fast)

    def ensure_tools(self) -> ToolBox | None:
        """The session's tools, built now if they were left for later."""
        if self.tools is None and self._tools_factory is not None:
            tools, catalog = self._tools_factory()
            self.tools, self.catalog, self._tools_factory = tools, dict(catalog), None
        return self.tools

    @property
    def client(self) -> Any:
        """The client, made on first use (resolving the key may run api_key_cmd)."""
        if self._client is None:
            self._client = self._client_factory(self.settings)
            self._sized = False
        return self._client

    def _size_context(self) -> None:
        """Before a request of PROBE_TOKENS or more: a server on this machine (llama.cpp, vLLM)
        may state its model's context size, which is then used, unless context_window is
        configured. Asked once per client, and never for a short request, which costs nothing."""
        if self._sized or self.settings.origins.get("context_window", "default") != "default":
            return
        if sum(m.tokens for m in self.conversation.messages) < PROBE_TOKENS:
            return
        self._sized = True
        stated = getattr(self.client, "context_limit", lambda model: None)(self.settings.model)
        self._learn_context(stated, tell=False)

    # --- turns -----------------------------------------------------------------

    def ask(self, text: str, sink: Sink, *, stream: bool = True) -> TurnResult:
        """Send `text` with what is attached; the attachments go with this message (kept in
        the conversation with it, whatever happens to the reply)."""
        message = user_message(text, self.pending)
        self.pending = []
        # Saved before anything that can fail (making the client loads a local model, runs
        # api_key_cmd): a question that got no reply is kept, marked so.
        self.conversation.messages.append(self._journal.user(message))
        self._size_context()
        with self._learning():
            return self._finish(send(self.conversation, client=self.client, settings=self.settings,
                                     sink=sink, stream=stream, journal=self._journal, tools=self.tools))

    def attach(self, ref: str, *, stdin: str | None = None, images_only: bool = False) -> attachments.Loaded:
        """Attach a file, a directory's text files, an image or an image URL to the next
        message; refused (with nothing attached) when it cannot be sent."""
        loaded = attachments.load(ref, context_window=self.settings.context_window,
                                  detail=self.settings.image_detail, stdin=stdin, images_only=images_only)
        known = {(part.name, part.digest or part.url) for part in self.pending}  # the same file again
        added = [part for part in loaded.parts if (part.name, part.digest or part.url) not in known]
        attachments.check_total([*self.pending, *added], self.settings.context_window)
        self.pending.extend(added)
        loaded.parts = added
        return loaded

    def detach(self, number: int | None = None) -> list[Part]:
        """Drop attachment `number` (1-based, as /attachments lists them), or all of them."""
        if number is None:
            dropped, self.pending = self.pending, []
            return dropped
        if not 1 <= number <= len(self.pending):
            where = f"/attachments lists 1 to {len(self.pending)}" if self.pending else "nothing is attached"
            raise errors.UsageError(f"no attachment {number}; {where}")
        return [self.pending.pop(number - 1)]

    @contextmanager
    def _learning(self) -> Iterator[None]:
        """A context size the server states is used for the rest of the session."""
        try:
            yield
        except errors.ContextTooLongError as exc:
            self._learn_context(exc.limit, tell=False)  # the error itself says the limit
            raise

    def _learn_context(self, limit: int | None, *, tell: bool = True) -> None:
        if limit and limit != self.settings.context_window:
            self.settings = replace(self.settings, context_window=limit)
            self._window = None
            if tell:
                self._warn(f"the server says the model's context is {limit:,} tokens: chatcli uses "
                           f"that for the rest of this session (context_window = {limit} in the config "
                           "keeps it)")

    def retry(self, sink: Sink) -> TurnResult:
        """Send the last question again, dropping the reply it got (if any)."""
        messages = self.conversation.messages
        dropped = []
        while messages and messages[-1].role == ASSISTANT:
            dropped.append(messages.pop())
        if not messages:
            raise errors.UsageError("nothing to retry yet")
        self._forget(dropped)
        self._window = None
        self._size_context()
        with self._learning():
            return self._finish(send(self.conversation, client=self.client, settings=self.settings,
                                     sink=sink, journal=self._journal, tools=self.tools))

    def _finish(self, result: TurnResult) -> TurnResult:
        self._learn_context(result.context_window)
        self.last = result
        self.total = self.total + result.usage
        self._window = None
        return result

    def toggle_tool(self, name: str, on: bool | None = None) -> bool:
        """Offer tool `name` from now on, or stop offering it (`on` None: the other way round);
        whether it is offered now."""
        if self.ensure_tools() is None or name not in self.catalog:
            known = ", ".join(self.catalog) or "none"
            raise errors.UsageError(f"no tool named {name!r} (the tools are: {known})")
        assert self.tools is not None
        offered = name in self.tools.tools
        if on is None:
            on = not offered
        if on:
            self.tools.tools[name] = self.catalog[name]
        else:
            self.tools.tools.pop(name, None)
        return on

    def start_tools(self) -> None:
        """Start the MCP servers the next request offers tools from, if they are not running
        (before the reply's waiting line is drawn, so what they say has the screen)."""
        if self.tools is not None:
            self.tools.available()

    def stop_tools(self) -> None:
        """Stop the MCP servers this session started (chatcli is leaving)."""
        if self.tools is not None and self.tools.mcp is not None:
            self.tools.mcp.close()

    def close(self) -> None:
        """chatcli is leaving: the MCP servers this session started stop, and the store is
        closed (every write was committed as it was made; closing folds SQLite's log back
        into the database), so nothing is left for the interpreter's teardown to do."""
        try:
            self.stop_tools()
        finally:
            if self.store is not None:
                self.store.close()

    def mcp(self) -> McpTools:
        """The session's MCP servers, or a UsageError when none are configured."""
        box = self.ensure_tools()
        if box is None or box.mcp is None:
            raise errors.UsageError("no MCP server is configured",
                                    hint="add a [mcp.servers.NAME] table to the config (docs/mcp.md), or "
                                         "`chatcli mcp import FILE`")
        return box.mcp

    def toggle_server(self, name: str) -> bool:
        """Turn MCP server `name` on or off from the next request on; whether it is on."""
        servers = self.mcp()
        if name not in servers.servers:
            raise errors.UsageError(f"no MCP server named {name!r} (the servers are: "
                                    f"{', '.join(servers.servers)})")
        return servers.toggle(name)

    def _offer(self, names: tuple[str, ...]) -> None:
        """Offer exactly the tools `names` (those that exist), from the next turn on."""
        if self.ensure_tools() is not None:
            assert self.tools is not None
            self.tools.tools.clear()
            self.tools.tools.update({name: self.catalog[name] for name in names if name in self.catalog})

    def tool_calls(self) -> list[tuple[Message, ToolCall]]:
        """Every tool call of the conversation, in order, with the reply that made it."""
        return [(message, call) for message in self.conversation.messages for call in message.tool_calls]

    def turn_failed(self) -> None:
        """After an error or Ctrl-C: the conversation changed, the window is stale."""
        self._window = None

    # --- the conversation ------------------------------------------------------

    def continue_last(self, sink: Sink) -> TurnResult:
        """Finish the last reply where it was cut off (/continue)."""
        self._size_context()
        with self._learning():
            return self._finish(continue_reply(self.conversation, client=self.client, settings=self.settings,
                                               sink=sink, journal=self._journal,
                                               style=self.settings.continue_style))

    def fork(self, upto: int | None = None) -> tuple[int, int]:
        """Copy this conversation's first `upto` messages (all of them: None) into a new one and
        carry on there; the original stays as it is. Returns (original id, fork id)."""
        store = self.stored()
        original = self.conversation_id
        if original is None:
            raise errors.UsageError("nothing saved yet to fork; send a message first")
        if self.not_saving or self.unsaved():
            raise errors.UsageError("this conversation is not all saved (saving fails), so it cannot be "
                                    "forked yet", hint="free the disk: the next message saves the rest")
        count = len(self.conversation.messages)
        if upto is not None and not 0 <= upto <= count:
            raise errors.UsageError(f"no message {upto}; /history lists 1 to {count}")
        fork = store.fork(original, upto)
        info = store.info(fork)
        assert info is not None
        system = self.conversation.system
        self.resume(info)
        self.conversation.system = system
        self.total_label = "this conversation"
        return original, fork

    def last_question(self) -> int:
        """The index of the last question (for /edit-last), or a UsageError."""
        for index in range(len(self.conversation.messages) - 1, -1, -1):
            if self.conversation.messages[index].role == USER:
                return index
        raise errors.UsageError("no question to edit yet")

    def undo(self) -> list[Message]:
        """Remove the last turn: the last question and what followed it."""
        groups = turns(self.conversation.messages)
        if not groups:
            return []
        start = groups[-1].start
        removed = self.conversation.messages[start:]
        del self.conversation.messages[start:]
        self._forget(removed)
        self._window = None
        return removed

    def _forget(self, messages: list[Message]) -> None:
        ids = [m.id for m in messages if m.id is not None]
        if self.store is not None and ids:
            self.store.remove(ids)

    def set_system(self, text: str | None) -> None:
        self.conversation.system = text or None
        self._save_conversation(system_prompt=self.conversation.system)
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
        if self.store is not None and pinned.id is not None:
            self.store.update(pinned.id, pinned)
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

    # --- settings --------------------------------------------------------------

    def update(self, **changes: Any) -> None:
        self.settings = replace(self.settings, **changes)
        if "model" in changes:
            self._save_conversation(model=changes["model"])
            if self.settings.base_url == LOCAL:  # another local model is another server to load
                self._client = None
        self._window = None

    def switch_profile(self, name: str) -> None:
        if self._load_profile is None:
            raise errors.UsageError("profiles cannot be switched here")
        settings = self._load_profile(name)
        role = self.settings.role
        self.settings = replace(settings, roles=self.settings.roles, role=None, template=None, role_base={})
        if role is not None:  # the role stays, over the new profile
            self.set_role(role, resumed=True)
        if self.conversation.system is None:
            self.conversation.system = settings.system_prompt
        self._save_conversation(profile=self.settings.profile, model=self.settings.model)
        self._client = None
        self._models = None
        self._window = None

    def set_role(self, name: str | None, *, resumed: bool = False) -> list[str]:
        """Use role `name` from the next turn on (None: no role): its system prompt and request
        settings replace what the previous role set, which goes back to what it was. A value
        given by a flag or the environment stays (they come after roles in the merge).
        Returns what changed, for the user to read. A conversation `resumed` with its role
        keeps its own system prompt, and nothing is written."""
        roles = self.settings.roles
        if name is not None and name not in roles:
            raise errors.UsageError(f"no role {name!r}", hint=f"roles: {', '.join(sorted(roles))}")
        before = self.settings
        if "system_prompt" not in before.role_base:
            # what a role replaces is the conversation's own system prompt, which /system may
            # have changed, rather than the one the settings started with
            before = replace(before, system_prompt=self.conversation.system)
        restored = dict(before.role_base)
        self.settings = with_role(before, name, self._env, skip=("system_prompt",) if resumed else ())
        self._window = None
        if self.settings.tools != before.tools:
            self._offer(self.settings.tools)  # a role chooses its tools; leaving it, they go back
        if self.settings.mcp != before.mcp and self.ensure_tools() is not None:
            from chatcli.tools.mcp import selection

            assert self.tools is not None
            if self.tools.mcp is not None:  # and its MCP servers
                self.tools.mcp.choose(None if self.settings.mcp is None else selection(self.settings.mcp))
        if resumed:
            return []
        self._save_conversation(role=name)
        if self.settings.system_prompt != self.conversation.system:
            self.conversation.system = self.settings.system_prompt or None
            self._save_conversation(system_prompt=self.conversation.system)
        set_now = self.settings.role_base
        if name is None:
            said = [f"{key} back to {_shown(getattr(self.settings, key))}" for key in restored
                    if key not in {"system_prompt", "params"} and not key.startswith("params.")]
            said += ["params back to " + _shown(self.settings.params)] if "params" in restored else []
            return said + (["system prompt restored"] if "system_prompt" in restored else [])
        said = [f"{key} {_shown(getattr(self.settings, key))}" for key in set_now
                if key != "system_prompt" and not key.startswith("params.")]
        return said + (["system prompt set"] if "system_prompt" in set_now else [])

    def record_outcome(self, outcome: str) -> None:
        """What became of the command the last reply suggested (chatcli cmd), saved with it."""
        messages = self.conversation.messages
        if messages and messages[-1].role == ASSISTANT:
            messages[-1] = replace(messages[-1], outcome=outcome)
            if self.store is not None and messages[-1].id is not None and not self.not_saving:
                try:
                    self.store.set_outcome(messages[-1].id, outcome)
                except errors.StorageError as exc:
                    self._saving_failed(exc)

    def models(self) -> list[str]:
        """The endpoint's models, fetched once and cached."""
        if self._models is None:
            self._models = self.client.models()
        return self._models

    # --- saved conversations ---------------------------------------------------

    @property
    def conversation_id(self) -> int | None:
        return getattr(self._journal, "conversation_id", None)

    def _recorder(self, conversation_id: int | None, name: str | None = None) -> Journal:
        if self.store is None:
            return NoJournal()
        from chatcli.recorder import Recorder

        return Recorder(self.store, conversation_id, meta=self._meta, name=name,
                        messages=lambda: self.conversation.messages,
                        on_failure=self._saving_failed, on_recovery=self._saving_recovered)

    def _saving_failed(self, error: errors.StorageError) -> None:
        self.save_failure = self.save_failure or error
        self._warn(f"{error.message}; not saving for now: the conversation is kept in memory and saved "
                   "as soon as a write works again")

    def _saving_recovered(self, count: int) -> None:
        caught_up = f": {count} message{'' if count == 1 else 's'} that could not be saved before " \
                    f"{'is' if count == 1 else 'are'} saved now" if count else ""
        self._warn(f"saving again{caught_up}")

    @property
    def not_saving(self) -> bool:
        """Saving fails now (the bottom bar says so)."""
        from chatcli.recorder import Recorder

        return isinstance(self._journal, Recorder) and self._journal.broken

    def unsaved(self) -> list[Message]:
        """What this conversation holds that is not saved (after one more try, when saving
        failed): empty when everything is saved, or when nothing is being saved on purpose."""
        from chatcli.recorder import Recorder

        if not isinstance(self._journal, Recorder):
            return []
        self._journal.retry()
        return self._journal.unsaved()

    def _meta(self) -> dict[str, str | None]:
        return {"profile": self.settings.profile, "model": self.settings.model,
                "system_prompt": self.conversation.system, "role": self.settings.role}

    def _save_conversation(self, **fields: Any) -> None:
        if self.store is not None and self.conversation_id is not None:
            self.store.update_conversation(self.conversation_id, **fields)

    def stored(self) -> Store:
        if self.store is None:
            raise errors.UsageError("conversations are not being saved in this session (--no-save)")
        return self.store

    def new(self, *, name: str | None = None, system: str | None = None) -> int | None:
        """Start a fresh conversation; the previous one stays saved. Returns the previous id.

        A name already in use is refused: one name, one conversation."""
        if name is not None and self.store is not None:
            name = self.store.check_name(name)
        return self._fresh(name=name, system=system)

    def _fresh(self, *, name: str | None, system: str | None) -> int | None:
        previous = self.conversation_id
        self.conversation = Conversation(system=system)
        self._journal = self._recorder(None, name)
        self.total, self.total_label = Usage(0, 0), "this conversation"
        self.last = None
        self._window = None
        return previous

    def clear(self) -> int | None:
        """Forget the turns but keep the system prompt: a new conversation, the old one kept."""
        return self.new(system=self.conversation.system)

    def resume(self, info: ConversationInfo) -> None:
        messages = self.stored().load(info.id)
        self.conversation = Conversation(system=info.system_prompt, messages=messages)
        self._journal = self._recorder(info.id)
        chosen = self.settings.origins.get("model", "").startswith(("flag", "environment"))
        if info.model and info.model != self.settings.model and not chosen \
                and info.profile == self.settings.profile:
            # the model it was using, on the same endpoint; -m or CHATCLI_MODEL say otherwise
            self.settings = replace(self.settings, model=info.model,
                                    origins={**self.settings.origins, "model": f"conversation {info.id}"})
            self._client = None
        if info.role and info.role in self.settings.roles and self.settings.role is None:
            self.set_role(info.role, resumed=True)
        elif self.settings.role and info.role != self.settings.role:
            self._save_conversation(role=self.settings.role)  # -r given: the conversation's role now
        self.total, self.total_label = Usage(0, 0), "since resumed"
        self.last = None
        self._window = None

    def open(self, ref: str) -> ConversationInfo | None:
        """Resume the conversation named or numbered `ref`, or start one named `ref`."""
        info = self.stored().find(ref, prefix=False)  # the start of a title is a new name
        if info is None:
            if ref.isascii() and ref.isdigit():
                raise errors.UsageError(f"no conversation {ref}",
                                        hint="`chatcli sessions list` shows them")
            # Created with its first message; if another window creates it first, both share it.
            self._fresh(name=ref, system=self.conversation.system)
            return None
        self.resume(info)
        return info

    def resume_latest(self) -> ConversationInfo | None:
        info = self.stored().latest()
        if info is not None:
            self.resume(info)
        return info

    def rename(self, text: str) -> None:
        if self.conversation_id is None:
            raise errors.UsageError("nothing saved yet to rename; send a message first")
        self.stored().rename(self.conversation_id, text)

    def info(self) -> ConversationInfo | None:
        if self.store is None or self.conversation_id is None:
            return None
        return self.store.info(self.conversation_id)


def _shown(value: Any) -> str:
    return "the server default" if value is None else str(value)
