"""The database schema, one migration per version: how chatcli.db came to be as it is.

Each step runs in its own transaction (store.py drives them) and never loses
data; a test builds every earlier version and migrates it. Only store.py
imports this module.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: executescript would commit the migration's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _schema_1(db: sqlite3.Connection) -> None:
    _script(db, """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            name TEXT UNIQUE,
            title TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            profile TEXT,
            model TEXT,
            system_prompt TEXT
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            tokens INTEGER,
            tokens_estimated INTEGER NOT NULL DEFAULT 1,
            model TEXT,
            finish_reason TEXT,
            pinned INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
    """)


def _schema_2(db: sqlite3.Connection) -> None:
    """Full-text search. The trigram tokenizer finds Chinese words inside a run of
    characters; SQLite before 3.34 lacks it, and falls back to word tokens."""
    try:
        db.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', "
                   "content_rowid='id', tokenize='trigram')")
    except sqlite3.OperationalError:
        db.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', "
                   "content_rowid='id')")
    _script(db, """
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
    """)


def _schema_3(db: sqlite3.Connection) -> None:
    _script(db, """
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
        CREATE INDEX conversations_by_update ON conversations(updated_at);
    """)


def _schema_4(db: sqlite3.Connection) -> None:
    """Saving a reply as it streams costs O(new text); a reply is answered next to its question.

    A reply being received keeps its text in message_chunks, one row per write,
    and is indexed for search only once it has ended (so a long reply is not
    indexed again at every write). reply_to links a reply to its question, so two
    processes writing one conversation keep each answer after its own question.
    Replies left 'streaming' by a crash were indexed by the old triggers; they are
    marked interrupted first, which keeps the index consistent.
    """
    _script(db, """
        CREATE TABLE message_chunks (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (message_id, seq)
        ) WITHOUT ROWID;
        ALTER TABLE messages ADD COLUMN reply_to INTEGER;
        UPDATE messages SET finish_reason = 'interrupted' WHERE finish_reason = 'streaming';
        DROP TRIGGER messages_ai;
        DROP TRIGGER messages_ad;
        DROP TRIGGER messages_au;
        CREATE TRIGGER messages_ai AFTER INSERT ON messages
        WHEN new.finish_reason IS NOT 'streaming' BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages
        WHEN old.finish_reason IS NOT 'streaming' BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_au AFTER UPDATE OF content, finish_reason ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                SELECT 'delete', old.id, old.content WHERE old.finish_reason IS NOT 'streaming';
            INSERT INTO messages_fts(rowid, content)
                SELECT new.id, new.content WHERE new.finish_reason IS NOT 'streaming';
        END;
    """)


def _schema_5(db: sqlite3.Connection) -> None:
    """A reply's reasoning (the model's thinking), kept with it and never sent again. It is
    not indexed for search: search finds what was said, not what was thought."""
    db.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''")


def _schema_6(db: sqlite3.Connection) -> None:
    """Attachments: a message's files, piped text and images, each kept once by the sha256 of
    its content however often it is sent (a text's `text`, an image's `data`), and the parts
    of each message in order (an image URL has no attachment row, only its url). Text
    attachments are indexed for search like messages."""
    _script(db, """
        CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            digest TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('text', 'image')),
            media_type TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL DEFAULT '',
            data BLOB,
            width INTEGER,
            height INTEGER
        );
        CREATE TABLE message_parts (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            digest TEXT REFERENCES attachments(digest),
            name TEXT NOT NULL,
            language TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            detail TEXT,
            PRIMARY KEY (message_id, seq)
        ) WITHOUT ROWID;
        CREATE INDEX message_parts_by_digest ON message_parts(digest);
    """)
    try:
        db.execute("CREATE VIRTUAL TABLE attachments_fts USING fts5(text, content='attachments', "
                   "content_rowid='id', tokenize='trigram')")
    except sqlite3.OperationalError:
        db.execute("CREATE VIRTUAL TABLE attachments_fts USING fts5(text, content='attachments', "
                   "content_rowid='id')")
    _script(db, """
        CREATE TRIGGER attachments_ai AFTER INSERT ON attachments WHEN new.kind = 'text' BEGIN
            INSERT INTO attachments_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER attachments_ad AFTER DELETE ON attachments WHEN old.kind = 'text' BEGIN
            INSERT INTO attachments_fts(attachments_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;
    """)


def _schema_7(db: sqlite3.Connection) -> None:
    """A conversation's role (-r, /role: resumed with it), and what became of a reply that
    suggested a command (`chatcli cmd`: run and its exit code, copied, or not run)."""
    db.execute("ALTER TABLE conversations ADD COLUMN role TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN outcome TEXT")


def _schema_8(db: sqlite3.Connection) -> None:
    """Forks: a conversation copied from another (/fork, /rewind, /edit-last, sessions fork)
    links to it and says how many of its messages it began with. Removing the parent keeps
    the fork (the link is cleared)."""
    db.execute("ALTER TABLE conversations ADD COLUMN parent_id INTEGER "
               "REFERENCES conversations(id) ON DELETE SET NULL")
    db.execute("ALTER TABLE conversations ADD COLUMN forked_at INTEGER")


def _schema_9(db: sqlite3.Connection) -> None:
    """Tool calls: each call an assistant's reply made, in order, with its result once it has
    one (status NULL until then): what the model read, and the whole output when that was
    cut. Results are indexed for search like attachments."""
    _script(db, """
        CREATE TABLE tool_calls (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            call_id TEXT NOT NULL,
            name TEXT NOT NULL,
            arguments TEXT NOT NULL,
            status TEXT,
            result TEXT,
            output TEXT NOT NULL DEFAULT '',
            seconds REAL,
            UNIQUE (message_id, seq)
        );
    """)
    try:
        db.execute("CREATE VIRTUAL TABLE tool_calls_fts USING fts5(result, content='tool_calls', "
                   "content_rowid='id', tokenize='trigram')")
    except sqlite3.OperationalError:
        db.execute("CREATE VIRTUAL TABLE tool_calls_fts USING fts5(result, content='tool_calls', "
                   "content_rowid='id')")
    _script(db, """
        CREATE TRIGGER tool_calls_ai AFTER INSERT ON tool_calls WHEN new.result IS NOT NULL BEGIN
            INSERT INTO tool_calls_fts(rowid, result) VALUES (new.id, new.result);
        END;
        CREATE TRIGGER tool_calls_ad AFTER DELETE ON tool_calls WHEN old.result IS NOT NULL BEGIN
            INSERT INTO tool_calls_fts(tool_calls_fts, rowid, result) VALUES ('delete', old.id, old.result);
        END;
        CREATE TRIGGER tool_calls_au AFTER UPDATE OF result ON tool_calls BEGIN
            INSERT INTO tool_calls_fts(tool_calls_fts, rowid, result)
                SELECT 'delete', old.id, old.result WHERE old.result IS NOT NULL;
            INSERT INTO tool_calls_fts(rowid, result) SELECT new.id, new.result WHERE new.result IS NOT NULL;
        END;
    """)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_schema_1, _schema_2, _schema_3,
                                                                _schema_4, _schema_5, _schema_6,
                                                                _schema_7, _schema_8, _schema_9)
