"""Attachments in, code out: files, directories, images and piped text as a message's parts,
stored once and sent again on resume; and the code of a reply, out to pipes and files."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from chatcli.attachments import image_kind, image_size, load
from chatcli.conversation import STDIN, Message, Part, image_tokens, user_message
from chatcli.errors import ContextTooLongError, RequestError, UsageError
from tests.fake_server import Reply

# --- images, as their bytes begin -------------------------------------------------


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = b"".join(b"\x00" + b"\x10\x20\x30" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))


def jpeg(width: int, height: int) -> bytes:
    """A JPEG whose frame header comes after 60 KB of EXIF, past the first read."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", 60002) + b"E" * 60000
    frame = (b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
             + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return b"\xff\xd8" + app0 + app1 + frame + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00\x3b"


def webp(width: int, height: int, chunk: bytes = b"VP8X") -> bytes:
    if chunk == b"VP8X":
        body = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif chunk == b"VP8L":
        body = b"\x2f" + ((width - 1) | (height - 1) << 14).to_bytes(4, "little") + b"\x00"
    else:
        body = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    data = chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(data)) + b"WEBP" + data


IMAGES = {"png": png, "jpeg": jpeg, "gif": gif, "webp": webp}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_each_image_format_is_known_by_its_content_and_sized_from_its_header(kind, tmp_path):
    path = tmp_path / "picture.dat"  # the name says nothing
    path.write_bytes(IMAGES[kind](640, 480))
    with path.open("rb") as handle:
        head = handle.read(8192)
        assert image_kind(head) == kind
        assert image_size(kind, head, handle) == (640, 480)


@pytest.mark.parametrize("chunk", [b"VP8X", b"VP8L", b"VP8 "])
def test_each_webp_flavour_is_sized(chunk, tmp_path):
    data = webp(300, 200, chunk)
    path = tmp_path / "w.webp"
    path.write_bytes(data)
    with path.open("rb") as handle:
        assert image_size("webp", data[:8192], handle) == (300, 200)


@pytest.mark.parametrize(("size", "detail", "tokens"), [
    ((640, 480), "low", 85),
    ((512, 512), "high", 85 + 170),
    ((1024, 1024), None, 85 + 170 * 4),  # scaled to 768 x 768: four tiles
    ((4096, 2048), "auto", 85 + 170 * 6),  # to 2048 x 1024, then 1536 x 768: six tiles
    ((None, None), None, 85 + 170 * 8),  # unknown (a URL): the most an image can cost
])
def test_images_cost_tokens_by_the_tile_rule(size, detail, tokens):
    assert image_tokens(*size, detail) == tokens


# --- the request's shape ---------------------------------------------------------------


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_a_text_file_goes_before_the_question_under_its_path_fenced_in_its_language(run, endpoint, here):
    (here / "tool.py").write_text("print('hi')\n")
    result = run("ask", "-f", "tool.py", "what does this do?")
    assert result.code == 0 and result.stdout == "Hello! How can I help?\n"
    assert endpoint.chat_requests[0]["messages"] == [{"role": "user", "content": (
        "### tool.py\n\n```python\nprint('hi')\n```\n\nwhat does this do?")}]


def test_a_file_holding_fences_gets_a_longer_fence(run, endpoint, here):
    (here / "README.md").write_text("Run:\n\n```sh\nmake\n```\n")
    run("ask", "-f", "README.md", "summarise")
    assert endpoint.parts[0][0]["text"].startswith("### README.md\n\n````markdown\nRun:")
    assert endpoint.parts[0][0]["text"].endswith("```\n````\n\nsummarise")


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_an_image_is_sent_as_an_image_url_part_with_a_data_url(kind, run, endpoint, here):
    data = IMAGES[kind](64, 48)
    (here / f"shot.{kind}").write_bytes(data)
    result = run("ask", "-f", f"shot.{kind}", "--image-detail", "low", "what is in it?")
    assert result.code == 0, result.stderr
    import base64

    url = f"data:image/{kind};base64,{base64.b64encode(data).decode()}"
    assert endpoint.parts[0] == [
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        {"type": "text", "text": "what is in it?"}]


def test_text_and_images_together_are_parts_in_the_order_given(run, endpoint, here):
    (here / "notes.txt").write_text("buy milk\n")
    (here / "a.png").write_bytes(png(2, 2))
    run("ask", "-f", "notes.txt", "-f", "a.png", "compare")
    kinds = [part["type"] for part in endpoint.parts[0]]
    assert kinds == ["text", "image_url", "text"]
    assert endpoint.parts[0][0]["text"] == "### notes.txt\n\n```\nbuy milk\n```"
    assert "detail" not in endpoint.parts[0][1]["image_url"]  # unset: the server's default


def test_an_image_url_is_passed_on_and_never_fetched(run, endpoint):
    url = "https://example.com/cat.jpg"
    result = run("ask", "-f", url, "whose cat?")
    assert result.code == 0
    assert endpoint.parts[0][0] == {"type": "image_url", "image_url": {"url": url}}
    # the one chat request; besides it, a server on this machine is only asked its context size
    assert [r.method for r in endpoint.requests].count("POST") == 1
    assert {r.path for r in endpoint.requests if r.method == "GET"} <= {"/v1/models", "/props"}


def test_piped_text_is_a_part_and_dash_places_it(run, endpoint, here):
    (here / "b.txt").write_text("second\n")
    run("ask", "-f", "b.txt", "-f", "-", "compare", input="first\n")
    body = endpoint.parts[0][0]["text"]
    assert body == "### b.txt\n\n```\nsecond\n```\n\n### stdin\n\n```\nfirst\n```\n\ncompare"


def test_attachments_alone_are_a_question(run, endpoint, here):
    (here / "q.txt").write_text("what is 2+2?\n")
    assert run("ask", "-f", "q.txt").code == 0
    assert endpoint.parts[0][0]["text"] == "### q.txt\n\n```\nwhat is 2+2?\n```"


# --- directories ------------------------------------------------------------------------


def _project(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "main.py").write_text("import sub\n")
    (root / "sub" / "notes.md").write_text("# notes\n")
    (root / ".env").write_text("TOKEN=secret\n")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.txt").write_text("cached\n")
    (root / "logo.png").write_bytes(png(4, 4))
    (root / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    return root


def test_a_directory_brings_its_text_files_listed_on_stderr(run, endpoint, here):
    _project(here / "proj")
    result = run("ask", "-f", "proj", "review")
    assert result.code == 0
    assert "attaching 2 text files from proj" in result.stderr
    assert "2 binary or image files skipped" in result.stderr
    assert "proj/main.py" in result.stderr and "proj/sub/notes.md" in result.stderr
    sent = endpoint.parts[0][0]["text"]
    assert "### proj/main.py\n\n```python\nimport sub\n```" in sent
    assert "### proj/sub/notes.md\n\n```markdown\n# notes\n```" in sent
    assert "secret" not in sent and "cached" not in sent  # hidden files stay out


def test_inside_a_git_work_tree_what_git_ignores_stays_out(run, endpoint, here):
    root = _project(here / "repo")
    (root / ".gitignore").write_text("sub/\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    result = run("ask", "-f", "repo", "review")
    assert result.code == 0
    sent = endpoint.parts[0][0]["text"]
    assert "### repo/main.py" in sent and "notes.md" not in sent
    assert "### repo/.gitignore" in sent  # git lists it: it is part of the project


def test_a_directory_with_too_many_files_is_refused(run, endpoint, here):
    many = here / "many"
    many.mkdir()
    for n in range(101):
        (many / f"f{n}.txt").write_text("x\n")
    result = run("ask", "-f", "many", "hi")
    assert result.code == 2 and "more than 100 text files" in result.stderr
    assert endpoint.chat_requests == []


# --- refusals, before anything is sent -----------------------------------------------


def test_a_binary_file_is_refused_with_exit_2_and_one_line(run, endpoint, here, db):
    (here / "app.exe").write_bytes(b"MZ\x90\x00\x03" + bytes(range(256)))
    result = run("ask", "-f", "app.exe", "what is it?")
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "chatcli: error: app.exe is a binary file, not text nor a PNG, JPEG, GIF or WebP image; it cannot "
        "be sent"]
    assert endpoint.chat_requests == []
    assert not db.exists() or sqlite3.connect(db).execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_a_missing_file_is_a_one_line_error(run, endpoint):
    result = run("ask", "-f", "nowhere.txt", "hi")
    assert result.code == 2 and "cannot attach nowhere.txt: No such file or directory" in result.stderr
    assert endpoint.chat_requests == []


def test_a_file_far_larger_than_the_context_is_refused_without_being_read(run, endpoint, here, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("context_window = 4096\n")
    huge = here / "huge.log"
    with huge.open("wb") as handle:
        handle.write(b"a line of a log\n" * 512)
        handle.truncate(50 * 1024**3)  # 50 GB, sparse: reading it whole would never end
    result = run("ask", "--config", str(config), "-f", "huge.log", "why?")
    assert result.code == 7
    line = result.stderr.strip()
    assert "huge.log is 53687.1 MB" in line and "context window of 4,096 tokens" in line
    assert "nothing was sent" in line
    assert endpoint.chat_requests == []


def test_a_file_estimated_over_the_context_is_refused_with_both_numbers(run, endpoint, here, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("context_window = 1000\n")
    (here / "essay.txt").write_text("word " * 1500)
    result = run("ask", "--config", str(config), "-f", "essay.txt", "shorten")
    assert result.code == 7
    assert "essay.txt is about 1,5" in result.stderr and "context window of 1,000" in result.stderr
    assert endpoint.chat_requests == []


def test_an_image_over_the_size_limit_is_refused_before_it_is_read(run, endpoint, here):
    big = here / "big.png"
    with big.open("wb") as handle:
        handle.write(png(8, 8))
        handle.truncate(30_000_000)
    result = run("ask", "-f", "big.png", "hi")
    assert result.code == 7 and "big.png is 30.0 MB, more than the 20.0 MB an image may be" in result.stderr
    assert endpoint.chat_requests == []


def test_a_model_that_reads_no_images_is_named_and_nothing_is_sent_without_the_image(run, endpoint, here):
    endpoint.refuses_images = "Invalid content type. image_url is only supported by certain models."
    (here / "a.png").write_bytes(png(2, 2))
    result = run("ask", "-f", "a.png", "describe")
    assert result.code == 7
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the model 'test-model' does not take images" in lines[0]
    assert "/model" in lines[0]
    assert len(endpoint.chat_requests) == 1  # the text alone was not sent instead


def test_a_text_only_request_rejected_in_other_words_is_not_called_an_image_refusal():
    from chatcli.client.failures import images_refused
    from chatcli.events import ChatRequest

    error = RequestError("the server rejected the request (400): image_url is only supported by some models")
    text_only = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    assert images_refused(error, text_only) is error
    with_image = ChatRequest(model="m", messages=[user_message("x", [Part("image", "u", url="https://e/x.png")])
                                                  .to_api()])
    assert "does not take images" in images_refused(error, with_image).message
    other = RequestError("the server rejected the request (400): temperature must be at most 1")
    assert images_refused(other, with_image) is other


# --- stored, resumed, exported, found ----------------------------------------------


def test_resumed_conversations_send_their_attachments_again_stored_once(run, endpoint, here, db):
    (here / "spec.md").write_text("The API takes JSON.\n")
    (here / "a.png").write_bytes(png(3, 3))
    assert run("ask", "--session", "spec", "-f", "spec.md", "-f", "a.png", "summarise").code == 0
    assert run("ask", "--session", "spec", "-f", "spec.md", "again, shorter").code == 0
    assert run("ask", "--session", "spec", "and the format?").code == 0
    first, again, last = endpoint.chat_requests
    assert last["messages"][0] == first["messages"][0]  # the file and the image, sent again
    assert last["messages"][2] == again["messages"][-1]
    rows = sqlite3.connect(db).execute("SELECT kind, count(*) FROM attachments GROUP BY kind").fetchall()
    assert sorted(rows) == [("image", 1), ("text", 1)]  # spec.md, attached twice, is kept once


def test_trimming_counts_what_is_attached(run, endpoint, here, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("context_window = 3000\nmax_tokens = 500\n")
    (here / "big.txt").write_text("alpha beta gamma delta " * 350)  # about 1,400 tokens
    run("ask", "--config", str(config), "--session", "t", "-f", "big.txt", "one")
    run("ask", "--config", str(config), "--session", "t", "-f", "big.txt", "two")
    run("ask", "--config", str(config), "--session", "t", "three")
    sent = endpoint.chat_requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]  # the first turn left out
    assert sent[0]["content"].endswith("two")


def test_deleting_a_conversation_deletes_attachments_no_other_one_uses(run, endpoint, here, db):
    (here / "shared.txt").write_text("shared\n")
    (here / "own.txt").write_text("own\n")
    run("ask", "--session", "a", "-f", "shared.txt", "-f", "own.txt", "q")
    run("ask", "--session", "b", "-f", "shared.txt", "q")
    assert run("sessions", "rm", "a", "--yes").code == 0
    texts = sqlite3.connect(db).execute("SELECT text FROM attachments").fetchall()
    assert texts == [("shared\n",)]


def test_export_names_attachments_and_json_keeps_the_parts(run, endpoint, here):
    (here / "notes.txt").write_text("remember the milk\n")
    (here / "cat.gif").write_bytes(gif(2, 3))
    run("ask", "--session", "shop", "-f", "notes.txt", "-f", "cat.gif", "what to buy?")
    markdown = run("sessions", "export", "shop").stdout
    assert "### notes.txt\n\n```\nremember the milk\n```" in markdown
    assert "*[image: cat.gif (GIF, 2x3)]*" in markdown and "base64" not in markdown
    data = json.loads(run("sessions", "export", "shop", "--format", "json").stdout)
    parts = data["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert parts[1]["image_url"]["url"].startswith("data:image/gif;base64,")
    shown = run("sessions", "show", "shop").stdout
    assert "remember the milk" in shown and "[image: cat.gif (GIF, 2x3)]" in shown


def test_search_finds_words_inside_attached_files(run, endpoint, here):
    (here / "server.log").write_text("all fine\nthe flux capacitor overheated\n")
    run("ask", "--session", "logs", "-f", "server.log", "what failed?")
    found = run("sessions", "search", "capacitor")
    assert found.code == 0
    assert "server.log: " in found.stdout and "[capacitor]" in found.stdout
    assert run("sessions", "search", "过热").code == 1  # and nothing that is not there


def test_a_question_with_only_attachments_is_titled_by_them(run, endpoint, here):
    (here / "plan.md").write_text("step one\n")
    run("ask", "-f", "plan.md")
    run("ask", "what is 2+2?", input="some piped notes\n")
    listed = run("sessions", "list").stdout
    assert "plan.md" in listed and "what is 2+2?" in listed


# --- code out -------------------------------------------------------------------------

TWO_BLOCKS = "Here:\n\n```jq\n.items[] | .name\n```\n\nor, shorter:\n\n```\n.[].name\n```\n\nDone."


def test_ask_code_prints_only_the_code_into_a_pipe(run, endpoint):
    endpoint.queue(Reply(text=TWO_BLOCKS))
    result = run("ask", "-x", "a jq filter for the names")
    assert result.code == 0
    assert result.stdout == ".items[] | .name\n\n.[].name\n"


def test_ask_code_without_a_code_block_prints_the_reply_and_warns(run, endpoint):
    endpoint.queue(Reply(text="There is no filter for that."))
    result = run("ask", "--code", "impossible")
    assert result.stdout == "There is no filter for that.\n"
    assert "no code block" in result.stderr


def test_code_and_json_do_not_go_together(run, endpoint):
    result = run("ask", "-x", "--json", "hi")
    assert result.code == 2 and "--code and --json" in result.stderr


def test_the_session_refuses_code_rather_than_ignore_it():
    from chatcli.cli.base import Flags
    from chatcli.cli.chatting import interact

    with pytest.raises(UsageError, match="--code prints one answer's code"):
        interact(Flags(code=True))


def test_piped_into_bare_chatcli_code_works_too(run, endpoint):
    endpoint.queue(Reply(text=TWO_BLOCKS))
    assert run("-x", input="a jq filter for names\n").stdout == ".items[] | .name\n\n.[].name\n"


def test_sessions_show_code_prints_the_replies_code(run, endpoint):
    endpoint.queue(Reply(text=TWO_BLOCKS), Reply(text="```sh\nls -la\n```"))
    run("ask", "--session", "jq", "filter?")
    run("ask", "--session", "jq", "and list files?")
    assert run("sessions", "show", "jq", "--code").stdout == ".items[] | .name\n\n.[].name\n\nls -la\n"


# --- the pure parts ------------------------------------------------------------------


def test_a_message_with_attachments_costs_their_tokens():
    part = Part("text", "a.txt", "word " * 100)
    assert Message("user", "hi", parts=(part,)).tokens == Message("user", "hi").tokens + part.tokens
    image = Part("image", "a.png", data=b"x", media_type="image/png", width=512, height=512)
    assert Message("user", "", parts=(image,)).tokens > 255


def test_two_user_messages_in_a_row_with_images_are_joined_as_parts():
    """A window never holds two questions in a row (one without a reply stays behind), but
    should two meet, an image among them, they are one message of parts."""
    from chatcli.conversation import Window

    image = Part("image", "u", url="https://example.com/a.png")
    window = Window(messages=(Message("user", "first"), user_message("second", [image])), dropped=(),
                    tokens=0, budget=10_000)
    sent = window.to_api()
    assert sent == [{"role": "user", "content": [
        {"type": "text", "text": "first"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "second"}]}]


def test_loading_refuses_a_directory_as_an_image_and_text_as_an_image(tmp_path):
    (tmp_path / "t.txt").write_text("text\n")
    with pytest.raises(UsageError, match="is a directory"):
        load(str(tmp_path), context_window=8000, images_only=True)
    with pytest.raises(UsageError, match="not a PNG, JPEG, GIF or WebP image"):
        load(str(tmp_path / "t.txt"), context_window=8000, images_only=True)
    with pytest.raises(UsageError, match="nothing is piped in"):
        load("-", context_window=8000)
    assert load("-", context_window=8000, stdin="x").parts == [Part("text", STDIN, "x")]


def test_text_that_is_not_utf8_is_kept_with_replacements_and_a_warning(tmp_path):
    (tmp_path / "latin.txt").write_bytes("café crème\n".encode("latin-1"))
    loaded = load(str(tmp_path / "latin.txt"), context_window=8000)
    assert loaded.parts[0].text == "caf\ufffd cr\ufffdme\n"
    assert "not valid UTF-8: 2 invalid byte sequence(s)" in loaded.warnings[0]


def test_several_files_that_fit_alone_but_not_together_are_refused(tmp_path):
    from chatcli.attachments import check_total

    parts = [Part("text", f"{n}.txt", "word " * 500) for n in range(3)]
    with pytest.raises(ContextTooLongError, match="the 3 attachments are about"):
        check_total(parts, 1000)


def test_file_names_with_control_characters_reach_the_terminal_as_visible_text(run, endpoint, here):
    (here / "dir").mkdir()
    (here / "dir" / "evil\x1b]52;c;aGk=\x07.txt").write_text("x\n")  # would write the clipboard
    listed = run("ask", "-f", "dir", "hi")
    assert listed.code == 0 and "evil" in listed.stderr and "\x1b" not in listed.stderr
    missing = run("ask", "-f", "missing\x1b[2J.txt", "hi")
    assert missing.code == 2 and "\x1b" not in missing.stderr


# --- the session: /file, /image, /attachments, /detach, /save ---------------------------


@pytest.fixture
def session_at(server, here):
    from tests.test_repl import Harness

    return Harness(server, here)


def test_file_attaches_to_the_next_message_only(session_at, here):
    from chatcli.keybindings import toolbar

    (here / "notes.txt").write_text("line one\nline two\n")
    session_at.run("/file notes.txt\r" + "/attachments\r" + "\x04")
    err_and_out = session_at.out.getvalue()
    assert "attached notes.txt (2 lines)" in err_and_out and "sent with your next message" in err_and_out
    assert "attached: notes.txt" in toolbar(session_at.session)
    session_at.run("summarise\r" + "and again?\r" + "\x04")
    first, second = session_at.server.parts
    assert first == [{"type": "text", "text": "### notes.txt\n\n```\nline one\nline two\n```\n\nsummarise"}]
    assert second == [{"type": "text", "text": "and again?"}]
    assert "attached" not in toolbar(session_at.session)


def test_detach_drops_one_or_all(session_at, here):
    for name in ("a.txt", "b.txt", "c.txt"):
        (here / name).write_text(name + "\n")
    session_at.run("/file a.txt\r/file b.txt\r/file c.txt\r/detach 2\r/detach 9\r\x04")
    assert [p.name for p in session_at.session.pending] == ["a.txt", "c.txt"]
    assert "dropped b.txt" in session_at.out.getvalue()
    assert "no attachment 9; /attachments lists 1 to 2" in session_at.err.getvalue()
    session_at.run("/detach\rhello\r\x04")
    assert session_at.server.parts == [[{"type": "text", "text": "hello"}]]


def test_image_takes_images_only_and_a_refusal_keeps_the_session(session_at, here):
    (here / "t.txt").write_text("text\n")
    (here / "p.webp").write_bytes(webp(10, 10))
    session_at.run("/image t.txt\r/image p.webp\rwhat is it?\r\x04")
    assert "t.txt is not a PNG, JPEG, GIF or WebP image" in session_at.err.getvalue()
    assert [p["type"] for p in session_at.server.parts[0]] == ["image_url", "text"]


def test_a_failed_reply_keeps_the_attachments_with_the_question_for_retry(session_at, here):
    (here / "a.png").write_bytes(png(2, 2))
    session_at.server.refuses_images = "this model does not support image input"
    session_at.run("/image a.png\rdescribe\r\x04")
    assert "does not take images" in session_at.err.getvalue()
    session_at.server.refuses_images = None
    session_at.run("/retry\r/history\r\x04")
    assert [p["type"] for p in session_at.server.parts[-1]] == ["image_url", "text"]
    assert "[a.png] describe" in session_at.out.getvalue()


def test_save_writes_a_code_block_and_asks_before_overwriting(session_at, here):
    session_at.server.queue(Reply(text=TWO_BLOCKS))
    session_at.run("jq?\r/save filter.jq\r/save 2 filter.jq\r\x04")
    assert "the last reply has 2 code blocks: which one?" in session_at.err.getvalue()
    assert (here / "filter.jq").read_text() == ".[].name\n"
    session_at.run("/save 1 filter.jq\r\x04", answers=(False,))
    assert "filter.jq exists; overwrite it? [y/N]" in session_at.err.getvalue()
    assert (here / "filter.jq").read_text() == ".[].name\n"  # kept: the answer was no
    session_at.run("/save 1 filter.jq\r\x04", answers=(True,))
    assert (here / "filter.jq").read_text() == ".items[] | .name\n"
    assert "saved 1 line to filter.jq" in session_at.err.getvalue()


def test_tab_completes_paths_after_file_image_and_save(session_at, here):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from chatcli.keybindings import SlashCompleter

    (here / "notes.txt").write_text("x\n")
    (here / "nothing\x1b[2J.txt").write_text("x\n")
    completer = SlashCompleter(session_at.session)

    def offered(text):
        event = CompleteEvent(completion_requested=True)
        return [c.text for c in completer.get_completions(Document(text), event)]

    assert offered("/file no") == ["tes.txt"]  # the one with an escape sequence is not offered
    assert offered("/image no") == ["tes.txt"]
    assert offered("/save 2 no") == ["tes.txt"]


def test_a_pipe_given_as_a_file_is_read_no_further_than_fits(run, endpoint, here, tmp_path):
    import threading

    config = tmp_path / "c.toml"
    config.write_text("context_window = 1000\n")
    fifo = here / "fifo"
    os.mkfifo(fifo)
    written = []

    def endless_writer():
        try:
            with fifo.open("wb") as pipe:
                for _ in range(10_000):  # 10 MB, far more than 8 KB: the reader stops early
                    pipe.write(b"x" * 1024)
                    written.append(1)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=endless_writer, daemon=True)
    writer.start()
    result = run("ask", "--config", str(config), "-f", "fifo", "what?")
    writer.join(10)
    assert result.code == 7 and "fifo is more than 8.0 KB" in result.stderr
    assert len(written) < 10_000 and endpoint.chat_requests == []


def test_short_words_are_found_in_attachments_too(run, endpoint, here):
    (here / "日志.txt").write_text("服务器过热了\n")
    run("ask", "-f", "日志.txt", "为什么?")
    found = run("sessions", "search", "过热")
    assert found.code == 0 and "日志.txt: 服务器[过热]了" in found.stdout


def test_debug_shows_an_image_as_its_start_and_size_not_its_base64(run, endpoint, here):
    (here / "a.png").write_bytes(png(40, 40))
    result = run("ask", "--debug", "-f", "a.png", "hi")
    assert result.code == 0
    body = next(line for line in result.stderr.splitlines() if "→ body" in line)
    assert "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg" not in body and " characters)" in body


def test_the_bar_counts_what_is_attached_in_how_full_the_context_is(server, here):
    from chatcli.keybindings import toolbar
    from tests.test_repl import Harness

    harness = Harness(server, here, context_window=8000, max_tokens=1000)
    (here / "long.txt").write_text("word " * 3000)  # about 3,000 tokens of 7,000
    assert "context 0%" in toolbar(harness.session)
    harness.run("/file long.txt\r\x04")
    assert "context 4" in toolbar(harness.session)


def test_two_files_with_the_same_content_are_both_sent_and_one_file_twice_is_sent_once(session_at, here):
    (here / "pkg" / "a").mkdir(parents=True)
    (here / "pkg" / "b").mkdir()
    (here / "pkg" / "a" / "__init__.py").write_text("\n")
    (here / "pkg" / "b" / "__init__.py").write_text("\n")
    session_at.run("/file pkg\r/file pkg/a/__init__.py\r/save 2\r\x04")
    assert [p.name for p in session_at.session.pending] == ["pkg/a/__init__.py", "pkg/b/__init__.py"]
    assert "pkg/a/__init__.py is already attached" in session_at.out.getvalue()
    assert "/save 2 needs a file name" in session_at.err.getvalue()
