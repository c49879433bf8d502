"""SQLite persistence of conversations: migrations, WAL, saving as it happens.

One database file in the data directory, created 0600 in a 0700 directory.
Every write is a short `BEGIN IMMEDIATE` transaction, so two chatcli
processes can write at once (the busy timeout makes the second one wait
instead of failing), and a process killed at any moment leaves every
committed turn intact. No API key or header is ever written here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatcli.conversation import Message, Part, ToolCall, ToolResult
from chatcli.errors import StorageError, UsageError
from chatcli.migrations import MIGRATIONS

DB_NAME = "chatcli.db"
STREAMING = "streaming"  # finish_reason of a reply being received; after a crash it stays
BUSY_SECONDS = 30


def _patiently(step: Callable[[], object]) -> None:
    """Run `step`, waiting while another process holds the database.

    The busy timeout covers ordinary writes, but SQLite reports some lock
    conflicts at once (switching a new file to WAL, recovering a WAL left by
    a killed process): those are retried here for up to BUSY_SECONDS.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    delay = 0.01
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            waiting = "locked" in str(exc) or "busy" in str(exc)
            if not waiting or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@dataclass(frozen=True)
class ConversationInfo:
    id: int
    name: str | None
    title: str
    created_at: float
    updated_at: float
    profile: str | None
    model: str | None
    system_prompt: str | None
    message_count: int = 0
    answered: bool = True  # False: no reply ever arrived (every request failed)
    role: str | None = None
    parent_id: int | None = None  # the conversation this one was forked from
    forked_at: int | None = None  # how many of its messages it began with

    @property
    def label(self) -> str:
        """What a listing calls it, and what can be typed back to open it: its title,
        after the name it was opened with when that differs (conversations named by
        --session before titles could be typed back)."""
        title = self.title or "(untitled)"
        return f"[{self.name}] {title}" if self.name and self.name != self.title else title


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    title: str
    message_id: int
    role: str
    snippet: str


# A reply came (whole, cut short, or arriving now): the conversation was answered.
_REPLIED = ("EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.role = 'assistant' "
            "AND (m.content != '' OR m.finish_reason = ?))")
_INFO = f"""SELECT c.id, c.name, c.title, c.created_at, c.updated_at, c.profile, c.model,
                   c.system_prompt, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id),
                   {_REPLIED}, c.role, c.parent_id, c.forked_at
            FROM conversations c"""


class Store:
    """The conversation database. Open with `Store(path)`; every method commits."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            # One connection, used by one thread at a time (the lock): the REPL's Tab
            # completion lists conversations from prompt_toolkit's completion thread.
            self._db = _connect(path)
            _patiently(lambda: self._setup())
        except (OSError, sqlite3.Error) as exc:
            raise _storage_error(path, exc) from None

    def reconnect(self) -> None:
        """After a failed write: a fresh connection if this one no longer works (closed, or
        broken by an I/O error); nothing if it still does."""
        with self._lock:
            try:
                self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                return
            except sqlite3.Error:
                pass
            with suppress(sqlite3.Error):
                self._db.close()
            try:
                self._db = _connect(self.path)
                _patiently(lambda: self._setup())
            except (OSError, sqlite3.Error) as exc:
                raise _storage_error(self.path, exc) from None

    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_SECONDS * 1000}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        """Bring the schema up to date, one version per transaction.

        The version is read again inside each write transaction: two chatcli
        processes starting on a new database must not both run a step.
        """
        while self._db.execute("PRAGMA user_version").fetchone()[0] != len(MIGRATIONS):
            with self._write() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > len(MIGRATIONS):
                    raise StorageError(
                        f"{self.path} was written by a newer chatcli (schema {version})",
                        hint="upgrade chatcli, or set CHATCLI_DATA_DIR to another directory")
                if version == len(MIGRATIONS):
                    return
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short transaction that takes the write lock at once, so the busy timeout applies."""
        with self._lock:
            try:
                _patiently(lambda: self._db.execute("BEGIN IMMEDIATE"))
            except sqlite3.Error as exc:
                raise _storage_error(self.path, exc) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(self.path, exc) from None
                raise

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from None

    # --- conversations ---------------------------------------------------------

    def create(self, *, name: str | None = None, title: str = "", profile: str | None = None,
               model: str | None = None, system_prompt: str | None = None, role: str | None = None) -> int:
        """A new conversation; with a name, the one of that name, created if none has it yet.

        Finding and creating are one transaction: two processes opening the same new
        name at once share one conversation instead of one of them failing."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "INSERT INTO conversations (name, title, created_at, updated_at, profile, model, "
                "system_prompt, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, title, now, now, profile, model, system_prompt, role))
            if name is None:
                return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
            return int(db.execute("SELECT id FROM conversations WHERE name = ?", (name,)).fetchone()[0])

    def update_conversation(self, conversation_id: int, **fields: object) -> None:
        """Change a conversation's details. A new title or name is not a use of it: it does
        not move the conversation to the top of the list (nor make it the one -c resumes)."""
        allowed = {"name", "title", "profile", "model", "system_prompt", "role"}
        assert set(fields) <= allowed, fields
        assignments = ", ".join(f"{k} = ?" for k in fields)
        values: list[object] = list(fields.values())
        if not set(fields) <= {"name", "title"}:
            assignments += ", updated_at = ?"
            values.append(self._clock())
        with self._write() as db:
            try:
                db.execute(f"UPDATE conversations SET {assignments} WHERE id = ?", (*values, conversation_id))
            except sqlite3.IntegrityError:
                raise StorageError(f"another conversation is already named {fields.get('name')!r}") from None

    def info(self, conversation_id: int) -> ConversationInfo | None:
        rows = self._infos(" WHERE c.id = ?", (conversation_id,))
        return rows[0] if rows else None

    def find(self, ref: str, *, prefix: bool = True) -> ConversationInfo | None:
        """A conversation as the user types it back: its name, its number, or its title
        (whole, or with `prefix` the start of it), letters in either case. Several with
        that title: a UsageError that names their numbers."""
        start = " WHERE substr(lower(c.title), 1, length(?)) = lower(?)"
        for where, param in ((" WHERE c.name = ?", ref),
                             (" WHERE c.id = ?", int(ref) if is_number(ref) else None),
                             (" WHERE lower(c.title) = lower(?)", ref),
                             (start, ref if prefix else None)):
            if param is None or not ref.strip():
                continue
            found = self._infos(where + " ORDER BY c.updated_at DESC, c.id DESC LIMIT 6",
                                (param, param) if where.count("?") == 2 else (param,))
            if len(found) > 1:
                numbers = ", ".join(str(info.id) for info in found[:5]) + (", …" if len(found) > 5 else "")
                how_many = len(found) if len(found) <= 5 else "several"
                what = "have titles that start with" if where == start else "are called"
                raise UsageError(f"{how_many} conversations {what} {ref!r}: {numbers}",
                                 hint="use the number (sessions list shows them)")
            if found:
                return found[0]
        return None

    def latest(self) -> ConversationInfo | None:
        rows = self._infos(" ORDER BY c.updated_at DESC, c.id DESC LIMIT 1")
        return rows[0] if rows else None

    def conversations(self, limit: int | None = 50, *, unanswered: bool = True) -> list[ConversationInfo]:
        """Newest first; without `unanswered`, only conversations that got a reply."""
        where = "" if unanswered else " WHERE " + _REPLIED
        return self._infos(where + " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
                           (*(() if unanswered else (STREAMING,)), -1 if limit is None else limit))

    def unanswered(self) -> list[ConversationInfo]:
        """Conversations whose every request failed: a question, and never a reply."""
        return self._infos(" WHERE NOT " + _REPLIED + " ORDER BY c.updated_at DESC, c.id DESC", (STREAMING,))

    def _infos(self, where: str, params: Sequence[object] = ()) -> list[ConversationInfo]:
        rows = self._read(_INFO + where, (STREAMING, *params))
        return [ConversationInfo(id=row[0], name=row[1], title=row[2], created_at=row[3], updated_at=row[4],
                                 profile=row[5], model=row[6], system_prompt=row[7], message_count=row[8],
                                 answered=bool(row[9]), role=row[10], parent_id=row[11], forked_at=row[12])
                for row in rows]

    def rename(self, conversation_id: int, text: str) -> None:
        """Call a conversation `text`: its title, and its name, so that `--session TEXT`
        and `/resume TEXT` open it."""
        text = self.check_name(text, conversation_id)
        self.update_conversation(conversation_id, title=text, name=text)

    def check_name(self, text: str, conversation_id: int | None = None) -> str:
        """`text` as a name (spaces collapsed), or a UsageError: no text, a number
        (numbers are the conversations' IDs), or another conversation's name."""
        text = " ".join(text.split())
        if not text:
            raise UsageError("a name needs some text")
        if is_number(text):
            raise UsageError(f"{text!r} is a number, and numbers are the conversations' IDs",
                             hint="choose a name with a letter in it")
        other = self._infos(" WHERE c.name = ? AND c.id IS NOT ?", (text, conversation_id))
        if other:
            raise UsageError(f"conversation {other[0].id} is already called {text!r}",
                             hint=f"/resume {text} opens it; choose another name")
        return text

    def fork(self, conversation_id: int, upto: int | None = None) -> int:
        """A new conversation holding the first `upto` messages of this one (all of them with
        None), in the order `load` gives, linked to it. The original is not touched; messages
        are copied (a reply still arriving as it was cut off), attachments shared."""
        now = self._clock()
        with self._write() as db:
            source = db.execute("SELECT title, profile, model, system_prompt, role FROM conversations "
                                "WHERE id = ?", (conversation_id,)).fetchone()
            if source is None:
                raise UsageError(f"no conversation {conversation_id}")
            rows = db.execute(
                "SELECT id, role, content, tokens, tokens_estimated, model, finish_reason, pinned, "
                "created_at, reply_to, reasoning, outcome FROM messages WHERE conversation_id = ? "
                "ORDER BY coalesce(reply_to, id), id", (conversation_id,)).fetchall()
            rows = rows if upto is None else rows[:upto]
            cursor = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, profile, model, system_prompt, "
                "role, parent_id, forked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_fork_title(source[0], conversation_id), now, now, *source[1:], conversation_id, len(rows)))
            fork_id = int(cursor.lastrowid or 0)
            copied: dict[int, int] = {}
            for old, role, content, tokens, estimated, model, finish, pinned, created, reply_to, reasoning, \
                    outcome in rows:
                if finish == STREAMING:  # cut off by a crash: its text so far, as load() gives it
                    content += "".join(text for (text,) in db.execute(
                        "SELECT text FROM message_chunks WHERE message_id = ? ORDER BY seq", (old,)))
                    finish = "interrupted"
                new = db.execute(
                    "INSERT INTO messages (conversation_id, role, content, tokens, tokens_estimated, model, "
                    "finish_reason, pinned, created_at, updated_at, reply_to, reasoning, outcome) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (fork_id, role, content, tokens, estimated, model, finish, pinned, created, now,
                     copied.get(reply_to) if reply_to is not None else None, reasoning, outcome)).lastrowid
                copied[old] = int(new or 0)
                db.execute("INSERT INTO message_parts (message_id, seq, digest, name, language, url, detail) "
                           "SELECT ?, seq, digest, name, language, url, detail FROM message_parts "
                           "WHERE message_id = ?", (new, old))
                db.execute(f"INSERT INTO tool_calls (message_id, {_CALL_COLUMNS}) SELECT ?, {_CALL_COLUMNS} "
                           "FROM tool_calls WHERE message_id = ?", (new, old))
            return fork_id

    def delete(self, conversation_id: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            _drop_unused_attachments(db)

    # --- messages --------------------------------------------------------------

    def load(self, conversation_id: int) -> list[Message]:
        """The messages in order: each reply right after the question it answers."""
        rows = self._read(
            "SELECT id, role, content, tokens, tokens_estimated, pinned, finish_reason, reasoning, outcome "
            "FROM messages "
            "WHERE conversation_id = ? ORDER BY coalesce(reply_to, id), id", (conversation_id,))
        parts = self._parts(conversation_id)
        calls = self._calls(conversation_id)
        messages = []
        for row in rows:
            if row[6] == STREAMING:  # the process ended while this reply was arriving
                chunks = self._read("SELECT text FROM message_chunks WHERE message_id = ? ORDER BY seq",
                                    (row[0],))
                row = (row[0], row[1], row[2] + "".join(text for (text,) in chunks), *row[3:])
            messages.append(_message(row, tuple(parts.get(row[0], ())), tuple(calls.get(row[0], ()))))
        return messages

    def _calls(self, conversation_id: int) -> dict[int, list[ToolCall]]:
        """The tool calls of a conversation's replies, by message, in order, with their results."""
        rows = self._read(
            f"SELECT message_id, {_CALL_COLUMNS} FROM tool_calls WHERE message_id IN "
            "(SELECT id FROM messages WHERE conversation_id = ?) ORDER BY message_id, seq",
            (conversation_id,))
        found: dict[int, list[ToolCall]] = {}
        for message_id, _, call_id, name, arguments, status, result, output, seconds in rows:
            outcome = (ToolResult(result or "", status=status, output=output, seconds=seconds)
                       if status else None)
            found.setdefault(message_id, []).append(ToolCall(call_id, name, arguments, outcome))
        return found

    def save_calls(self, message_id: int, calls: Sequence[ToolCall], only: int | None = None) -> None:
        """A reply's calls (or only call `only`), with their results where they have them."""
        with self._write() as db:
            _write_calls(db, message_id, calls, only)

    def _parts(self, conversation_id: int) -> dict[int, list[Part]]:
        """The attachments of a conversation's messages, by message, in order."""
        rows = self._read(
            "SELECT p.message_id, p.name, p.language, p.url, p.detail, a.kind, a.media_type, a.text, "
            "a.data, a.width, a.height, a.digest FROM message_parts p "
            "LEFT JOIN attachments a ON a.digest = p.digest "
            "WHERE p.message_id IN (SELECT id FROM messages WHERE conversation_id = ?) "
            "ORDER BY p.message_id, p.seq", (conversation_id,))
        found: dict[int, list[Part]] = {}
        for message_id, name, language, url, detail, kind, media, text, data, width, height, digest in rows:
            part = (Part("image", name, url=url, detail=detail) if url else
                    Part(kind, name, text, language=language, data=bytes(data or b""), media_type=media,
                         width=width, height=height, detail=detail, digest=digest))
            found.setdefault(message_id, []).append(part)
        return found

    def add(self, conversation_id: int, message: Message, *, model: str | None = None,
            reply_to: int | None = None) -> int:
        now = self._clock()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO messages (conversation_id, role, content, tokens, tokens_estimated, "
                "model, finish_reason, pinned, created_at, updated_at, reply_to, reasoning) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, message.role, message.content, message.tokens,
                 int(message.estimated), model, message.finish_reason, int(message.pinned), now, now,
                 reply_to, message.reasoning))
            message_id = int(cursor.lastrowid or 0)
            for seq, part in enumerate(message.parts):
                if not part.url:  # kept once, however many messages carry it
                    db.execute("INSERT INTO attachments (digest, kind, media_type, text, data, width, "
                               "height) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                               (part.digest, part.kind, part.media_type, part.text,
                                part.data if part.kind == "image" else None, part.width, part.height))
                db.execute("INSERT INTO message_parts (message_id, seq, digest, name, language, url, detail) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (message_id, seq, part.digest or None, part.name,
                                                            part.language, part.url, part.detail))
            _write_calls(db, message_id, message.tool_calls)
            # The conversation's model is the one that answered last (what resuming goes on with).
            db.execute("UPDATE conversations SET updated_at = ?, model = CASE WHEN ? = 'assistant' AND ? "
                       "IS NOT NULL THEN ? ELSE model END WHERE id = ?",
                       (now, message.role, model, model, conversation_id))
            return message_id

    def append(self, message_id: int, seq: int, text: str) -> None:
        """More text of a reply that is still arriving: costs what `text` costs, however long
        the reply already is. `update` with the whole text ends it."""
        with self._write() as db:
            db.execute("INSERT INTO message_chunks (message_id, seq, text) VALUES (?, ?, ?)",
                       (message_id, seq, text))

    def append_reasoning(self, message_id: int, text: str) -> None:
        """More of the thinking of a reply that is still arriving (written at most twice a
        second, so copying the column each time stays cheap)."""
        with self._write() as db:
            db.execute("UPDATE messages SET reasoning = reasoning || ? WHERE id = ?", (text, message_id))

    def update(self, message_id: int, message: Message) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE messages SET content = ?, tokens = ?, tokens_estimated = ?, finish_reason = ?, "
                "pinned = ?, updated_at = ?, reasoning = ? WHERE id = ?",
                (message.content, message.tokens, int(message.estimated), message.finish_reason,
                 int(message.pinned), self._clock(), message.reasoning, message_id))
            db.execute("DELETE FROM message_chunks WHERE message_id = ?", (message_id,))
            _write_calls(db, message_id, message.tool_calls)

    def reopen(self, message_id: int) -> None:
        """A reply about to be continued (/continue): receiving again, its new text saved as it
        arrives (`append`), until `update` ends it. A crash meanwhile keeps both parts."""
        with self._write() as db:
            db.execute("UPDATE messages SET finish_reason = ? WHERE id = ?", (STREAMING, message_id))
            db.execute("DELETE FROM message_chunks WHERE message_id = ?", (message_id,))

    def set_outcome(self, message_id: int, outcome: str) -> None:
        """What became of the command a reply suggested (chatcli cmd)."""
        with self._write() as db:
            db.execute("UPDATE messages SET outcome = ? WHERE id = ?", (outcome, message_id))

    def remove(self, message_ids: Sequence[int]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in message_ids])
            _drop_unused_attachments(db)

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing `text`, in what was said or in an attached text file (the
        file's name before the snippet), newest first, the matching part marked by [ ]."""
        text = text.strip()
        hits = [*self._found(text, limit, _IN_MESSAGES), *self._found(text, limit, _IN_ATTACHMENTS),
                *self._found(text, limit, _IN_TOOLS)]
        return sorted(hits, key=lambda hit: hit.message_id, reverse=True)[:limit]

    def _found(self, text: str, limit: int, where: _Where) -> list[SearchHit]:
        conversation = " JOIN conversations c ON c.id = m.conversation_id"
        head = f"SELECT m.conversation_id, c.title, m.id, m.role, {where.label}"
        if len(text) >= 3:
            phrase = '"' + text.replace('"', '""') + '"'
            rows = self._read(
                f"{head}, snippet({where.index}, 0, '[', ']', '…', 64) FROM {where.index} {where.joins}"
                f"{conversation} WHERE {where.index} MATCH ? ORDER BY m.id DESC LIMIT ?", (phrase, limit))
            if rows:
                return [SearchHit(c, t, i, r, label + s) for c, t, i, r, label, s in rows]
        # Short words (most Chinese words are two characters) are below the trigram
        # index's reach: scan instead.
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._read(
            f"{head}, {where.column} FROM {where.scan}{conversation} WHERE {where.column} LIKE ? "
            "ESCAPE '\\' ORDER BY m.id DESC LIMIT ?", (pattern, limit))
        return [SearchHit(c, t, i, r, label + _snippet(found, text)) for c, t, i, r, label, found in rows]

    def integrity(self) -> str:
        return str(self._read("PRAGMA integrity_check")[0][0])


@dataclass(frozen=True)
class _Where:
    """Where search looks: a full-text index and how its rows lead to a message `m`, the
    tables a scan reads instead, the text column, and what names a hit."""

    index: str
    joins: str
    scan: str
    column: str
    label: str


_IN_MESSAGES = _Where("messages_fts", "JOIN messages m ON m.id = messages_fts.rowid", "messages m",
                      "m.content", "''")
_ATTACHED = "JOIN message_parts p ON p.digest = a.digest JOIN messages m ON m.id = p.message_id"
_IN_ATTACHMENTS = _Where("attachments_fts", f"JOIN attachments a ON a.id = attachments_fts.rowid {_ATTACHED}",
                         f"attachments a {_ATTACHED}", "a.text", "p.name || ': '")


_CALLED = "JOIN messages m ON m.id = t.message_id"
_IN_TOOLS = _Where("tool_calls_fts", f"JOIN tool_calls t ON t.id = tool_calls_fts.rowid {_CALLED}",
                   f"tool_calls t {_CALLED}", "t.result", "t.name || ': '")


def is_number(ref: str) -> bool:
    """A conversation number as typed: ASCII digits that fit SQLite's integers."""
    return ref.isascii() and ref.isdigit() and int(ref) < 2**63


_CALL_COLUMNS = "seq, call_id, name, arguments, status, result, output, seconds"


def _write_calls(db: sqlite3.Connection, message_id: int, calls: Sequence[ToolCall],
                 only: int | None = None) -> None:
    for seq, call in enumerate(calls):
        if only is not None and seq != only:
            continue
        result = call.result
        db.execute(
            f"INSERT INTO tool_calls (message_id, {_CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (message_id, seq) DO UPDATE SET call_id = excluded.call_id, name = excluded.name, "
            "arguments = excluded.arguments, status = coalesce(excluded.status, status), "
            "result = coalesce(excluded.result, result), output = CASE WHEN excluded.status IS NULL "
            "THEN output ELSE excluded.output END, seconds = coalesce(excluded.seconds, seconds)",
            (message_id, seq, call.id, call.name, call.arguments, result.status if result else None,
             result.content if result else None, result.output if result else "",
             result.seconds if result else None))


def _message(row: tuple[Any, ...], parts: tuple[Part, ...], calls: tuple[ToolCall, ...] = ()) -> Message:
    message_id, role, content, tokens, estimated, pinned, finish, reasoning, outcome = row
    if finish == STREAMING:
        finish = "interrupted"  # the process ended while this reply was arriving
    if calls:
        tokens = None  # estimated with the calls' results, which came after the reply's count
    return Message(role, content, tokens=-1 if tokens is None else tokens, pinned=bool(pinned),
                   finish_reason=finish, estimated=bool(estimated), id=message_id, reasoning=reasoning,
                   parts=parts, outcome=outcome, tool_calls=calls)


def _drop_unused_attachments(db: sqlite3.Connection) -> None:
    """Attachments no message carries any more (their messages were removed)."""
    db.execute("DELETE FROM attachments WHERE NOT EXISTS "
               "(SELECT 1 FROM message_parts p WHERE p.digest = attachments.digest)")


def _snippet(content: str, text: str, width: int = 30) -> str:
    at = content.lower().find(text.lower())
    if at < 0:
        return content[: 2 * width]
    start, end = max(at - width, 0), at + len(text)
    head = ("…" if start else "") + content[start:at]
    tail = content[end:end + width] + ("…" if end + width < len(content) else "")
    return " ".join(f"{head}[{content[at:end]}]{tail}".split())


def _storage_error(path: Path, exc: BaseException) -> StorageError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return StorageError(f"cannot use the conversation database {path}: {reason}",
                        hint="check the disk and the permissions, or set CHATCLI_DATA_DIR; "
                             "--no-save runs without saving")


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)


def open_store(data_dir: Path) -> Store:
    return Store(data_dir / DB_NAME)


def _fork_title(title: str, parent: int) -> str:
    """A fork's title says it is one, and of which conversation: two alike are told apart."""
    return f"{title} (fork of {parent})" if title else f"fork of {parent}"
