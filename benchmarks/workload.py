"""What the benchmarks ask for: Markdown answers of a given length, a server that gives them,
a plain openai script to compare against, and databases of many conversations."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEXT = ("the stream renders each block once so long answers stay fast while the terminal "
        "keeps every line exactly where it was printed and nothing flickers")
WORDS = TEXT.split()


def markdown_answer(words: int) -> str:
    """A Markdown answer of about `words` words: headings, paragraphs, lists, code blocks."""
    out: list[str] = []
    count = section = 0
    while count < words:
        section += 1
        out.append(f"## Section {section}\n")
        for paragraph in range(2):
            text = " ".join(WORDS[(section + paragraph + i) % len(WORDS)] for i in range(60))
            out.append(f"{text.capitalize()}.\n")
            count += 60
        out.append("\n".join(f"- item {n}: **{WORDS[n % len(WORDS)]}** and `code_{n}`"
                             for n in range(6)) + "\n")
        count += 30
        out.append("```python\n" + "\n".join(f"def step_{section}_{n}(x):\n    return x * {n}"
                                              for n in range(4)) + "\n```\n")
        count += 24
    return "\n".join(out)


def paragraph(chars: int) -> str:
    """One Markdown paragraph of `chars` characters, with bold and code, and no newline."""
    unit = "Some **bold** words and `code` here. "
    return (unit * (chars // len(unit) + 1))[:chars]


def tiny_events(count: int) -> bytes:
    """A stream of `count` events of one character each (and the usage), as one body."""
    event = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
    end = (b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
           b'"usage":{"prompt_tokens":5,"completion_tokens":%d}}\n\ndata: [DONE]\n\n' % count)
    return event * count + end


FAST_TOKENS_A_SECOND = 5000  # as Groq and Cerebras stream


def paced(text: str, per_second: int, mark: Path) -> Iterator[bytes]:
    """`text` as a stream of four-character tokens at `per_second`, kept to the clock (what is
    due goes out together, as a fast server's bytes arrive); then the usage, and the
    time.monotonic() of the last byte written into `mark`."""
    import time

    pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
    start = time.monotonic()
    sent = 0
    while sent < len(pieces):
        due = min(len(pieces), int((time.monotonic() - start) * per_second) + 1)
        if due <= sent:
            time.sleep((sent - due + 1) / per_second)
            continue
        yield b"".join(b'data: %s\n\n' % json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]})
                       .encode() for piece in pieces[sent:due])
        sent = due
    yield (b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
           b'"usage":{"prompt_tokens":5,"completion_tokens":%d}}\n\ndata: [DONE]\n\n' % len(pieces))
    mark.write_text(repr(time.monotonic()))


def serve(port_file: str) -> None:
    """Run the test server with replies picked by the question (in a process of its own)."""
    import threading

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tests.fake_server import FakeServer, Reply

    answers = {"md2000": markdown_answer(2000), "md8000": markdown_answer(8000)}
    # One paragraph without a line break, as a hostile (or runaway) server sends it.
    paragraphs = {"para1m": paragraph(1_000_000), "para4m": paragraph(4_000_000)}

    # Many tiny events (a fast server, one character each): time linear, memory flat.
    tiny = {"tiny250k": 250_000, "tiny1m": 1_000_000}
    streams: dict[str, bytes] = {}
    fast = {"fast2000": answers["md2000"], "fast8000": answers["md8000"]}
    mark = Path(port_file).with_name("last-byte")

    def respond(body: dict[str, Any]) -> Reply:
        first: dict[str, Any] = next((m for m in body["messages"] if m["role"] == "user"), {})
        if first.get("content") in ("tools3", "out1m", "out4m"):  # benchmarks/rounds.py
            rounds = sum(1 for m in body["messages"] if m["role"] == "tool")
            if rounds < (3 if first["content"] == "tools3" else 1):
                name = body["tools"][0]["function"]["name"]  # lookup (rounds.py), or read_file (ask -T)
                call = {"id": f"call_{rounds}", "name": name,
                        "arguments": json.dumps({"path": "pyproject.toml", "n": rounds})}
                return Reply(text="", tool_calls=[call], finish_reason="tool_calls")
            return Reply(text="Paris.", chunk_chars=4)
        question = body["messages"][-1]["content"]
        if question in tiny:
            data = streams.setdefault(question, tiny_events(tiny[question]))
            return Reply(body=lambda: (data[i:i + 65536] for i in range(0, len(data), 65536)))
        if question in fast:
            return Reply(body=lambda: paced(fast[question], FAST_TOKENS_A_SECOND, mark))
        if question in paragraphs:
            return Reply(text=paragraphs[question], chunk_chars=64)
        if question == "think2000":  # 2,000 words of thinking, then the 2,000-word answer
            thought = " ".join(WORDS[i % len(WORDS)] for i in range(2000))
            return Reply(text=answers["md2000"], reasoning=thought, chunk_chars=4)
        return Reply(text=answers.get(question, "Paris."), chunk_chars=4)

    with FakeServer() as server:
        server.responder = respond
        Path(port_file).write_text(server.base_url)
        threading.Event().wait()


SDK_SCRIPT = """
import os, sys
from openai import OpenAI
client = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"])
stream = client.chat.completions.create(
    model=os.environ["CHATCLI_MODEL"], messages=[{"role": "user", "content": sys.argv[1]}],
    stream=True, stream_options={"include_usage": True})
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        sys.stdout.write(chunk.choices[0].delta.content)
        sys.stdout.flush()
sys.stdout.write("\\n")
"""


# The floor of the REPL's start: prompt_toolkit's prompt alone, with a bottom toolbar that
# ends in the text the benchmark waits for (chatcli's ends in it too).
BARE_PROMPT = """
from prompt_toolkit import PromptSession
try:
    PromptSession().prompt("> ", bottom_toolbar=" | /help")
except EOFError:
    pass
"""


def seed(data_dir: Path, *, big: int, conversations: int) -> None:
    """A database with one conversation of `big` messages, an empty one, and many small ones."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    import sqlite3

    from chatcli.store import Store

    store = Store(data_dir / "chatcli.db")
    store.create(name="empty", model="test-model")
    big_id = store.create(name="big", model="test-model", title="a long conversation")
    many = store.create(name="many-0", model="test-model")
    store.close()
    db = sqlite3.connect(data_dir / "chatcli.db")
    text = "a message of ordinary length, with a few words in it " * 3
    db.executemany(
        "INSERT INTO messages (conversation_id, role, content, tokens, tokens_estimated, "
        "created_at, updated_at) VALUES (?, ?, ?, 40, 1, ?, ?)",
        [(big_id, "user" if n % 2 == 0 else "assistant", f"{n}: {text}", n, n) for n in range(big)])
    db.executemany(
        "INSERT INTO conversations (name, title, created_at, updated_at, model) VALUES (?, ?, ?, ?, ?)",
        [(f"many-{n}", f"conversation {n}", n, n, "test-model") for n in range(1, conversations)])
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at) "
               "VALUES (?, 'user', 'hello', 0, 0)", (many,))
    db.commit()
    db.close()


if __name__ == "__main__":
    if sys.argv[1] == "--seed":
        seed(Path(sys.argv[2]), big=int(sys.argv[3]), conversations=int(sys.argv[4]))
    else:
        serve(sys.argv[1])
