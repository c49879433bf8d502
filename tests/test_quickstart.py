"""The README's Quick start, every line of it, as printed, against the fake server.

A newcomer copies these lines first: each must work on a fresh machine. The files they
name (notes.txt, main.py, screenshot.png) are made in the directory they run in; the key and
the server's address are the environment's, as the Quick start's `export` lines set them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY
from tests.fake_server import Reply
from tests.terminal import BIN

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(section: str) -> list[list[str]]:
    """The ```sh blocks of a README section, as lists of command lines (comments cut)."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = []
    for block in re.findall(r"```sh\n(.*?)```", body, re.S):
        lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines()]
        found.append([line for line in lines if line and not line.startswith("#")])
    return found


def png() -> bytes:
    """A 1x1 PNG."""
    def part(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    return (b"\x89PNG\r\n\x1a\n" + part(b"IHDR", bytes([0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]))
            + part(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + part(b"IEND", b""))


def answer(body: dict) -> Reply:
    question = json.dumps(body["messages"][-1]["content"], ensure_ascii=False)
    if "jq filter" in question:
        return Reply(text="Here it is:\n\n```jq\n.[] | .name\n```\n")
    if "find files" in question:
        return Reply(text="find . -type f -size +100M -mtime -7")
    return Reply(text="An answer.")


@pytest.fixture
def fresh(server, tmp_path):
    """A directory with the Quick start's files, and the environment its exports make."""
    (tmp_path / "notes.txt").write_text("Meeting notes: ship on Friday.\n")
    (tmp_path / "main.py").write_text("print(1 / 0)\n")
    (tmp_path / "screenshot.png").write_bytes(png())
    server.responder = answer
    server.any_model = True  # the local example names llama3.2
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATCLI_"))}
    env.update(PATH=f"{BIN.parent}:{env.get('PATH', '')}", OPENAI_API_KEY=TEST_KEY,
               OPENAI_BASE_URL=server.base_url, CHATCLI_DATA_DIR=str(tmp_path / "data"),
               CHATCLI_CONFIG=str(tmp_path / "config.toml"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return tmp_path, env


def run_line(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", line], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def test_every_line_of_the_quick_start_works_as_printed(fresh, server):
    cwd, env = fresh
    first = blocks("Quick start")[0]
    assert first[0].startswith("export OPENAI_API_KEY=")  # set by the fixture, as the line would
    commands = first[1:]
    assert len(commands) >= 8
    for line in commands:
        done = run_line(line, cwd, env)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        assert "error" not in done.stderr, f"{line}\n{done.stderr}"
        if ">" in line:
            target = cwd / line.rsplit(">", 1)[1].strip()
            assert target.read_text().strip(), line
        else:
            assert done.stdout.strip(), f"{line} printed nothing"
    sent = [json.dumps(r["messages"], ensure_ascii=False) for r in server.chat_requests]
    assert any("ship on Friday" in s for s in sent)  # the piped notes
    assert any("image_url" in s and "main.py" in s for s in sent)  # the file and the image
    assert any("You translate" in s and "你好" in s for s in sent)  # the built-in role
    assert (cwd / "names.jq").read_text() == ".[] | .name\n"


def test_the_local_server_lines_work_too(fresh, server):
    cwd, env = fresh
    export, *commands = blocks("Quick start")[1]
    assert export.startswith("export OPENAI_BASE_URL=http://127.0.0.1")
    env.pop("OPENAI_API_KEY")  # no key needed for localhost
    for line in commands:
        done = run_line(line, cwd, env)
        assert done.returncode == 0 and done.stdout.strip() == "An answer.", f"{line}\n{done.stderr}"
    assert server.chat_requests[-1]["model"] == "llama3.2"
    assert TEST_KEY not in server.requests[-1].headers.get("authorization", "")
