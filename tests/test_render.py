"""What the user sees: the streamed Markdown renderer, plain output, usage and error lines."""

from __future__ import annotations

import io
import itertools
import re

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from chatcli.conversation import Usage
from chatcli.errors import NetworkError
from chatcli.mdblocks import BlockSplitter
from chatcli.render import Diagnostics, MarkdownSink, PlainSink, format_usage

DOC = """# Alpha heading

Bravo paragraph with **bold** text
that wraps over two source lines.

- charlie item
- delta item

  echo continuation here

```python
def foxtrot():

    return "golf"
```

| hotel | india |
|-------|-------|
| 1     | 2     |

中文段落：你好，世界。朱丽叶

Kilo closing words."""

MARKERS = ["Alpha", "Bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
           "朱丽叶", "Kilo"]


def chunks(text: str, size: int):
    return [text[i:i + size] for i in range(0, len(text), size)]


def render_offline(parts, width=80) -> str:
    """Stream into a non-terminal console: only what is committed to the scrollback is written."""
    out = io.StringIO()
    sink = MarkdownSink(Console(file=out, width=width, force_terminal=False, color_system=None))
    for part in parts:
        sink.text(part)
    sink.end()
    return out.getvalue()


@pytest.mark.parametrize("size", [1, 2, 5, 13, 10_000])
def test_each_block_is_printed_once_in_order_whatever_the_chunking(size):
    output = render_offline(chunks(DOC, size))
    for marker in MARKERS:
        assert output.count(marker) == 1, marker
    positions = [output.index(m) for m in MARKERS]
    assert positions == sorted(positions)
    assert output == render_offline([DOC])


def test_rendering_is_markdown_not_source():
    output = render_offline([DOC])
    assert "**bold**" not in output and "bold" in output
    assert "```" not in output
    assert "──" in output and "| hotel" not in output  # the table is drawn
    assert "# Alpha" not in output


def test_code_block_split_across_chunks_stays_intact():
    parts = ["Here:\n\n``", "`py", "thon\nprint('a", "')\nprint('b')\n`", "``\n\nAfter."]
    output = render_offline(parts)
    assert "print('a')" in output and "print('b')" in output
    assert "`" not in output
    assert output.index("print('b')") < output.index("After.")


def test_live_view_shows_the_open_block_then_leaves_each_line_once_in_the_scrollback():
    """Drive a real terminal emulator: what a person sees after a long streamed answer."""
    doc = "\n\n".join(f"Paragraph number {i} says something useful." for i in range(60))
    out = io.StringIO()
    console = Console(file=out, width=60, height=12, force_terminal=True, color_system="standard")
    ticks = itertools.count()
    sink = MarkdownSink(console, clock=lambda: next(ticks), refresh=0)  # redraw on every chunk
    for part in chunks(doc, 7):
        sink.text(part)
    sink.end()
    screen = pyte.HistoryScreen(60, 12, history=1000)
    pyte.Stream(screen).feed(out.getvalue().replace("\n", "\r\n"))  # the tty's onlcr
    history = ["".join(ch.data for ch in line.values()).rstrip() for line in screen.history.top]
    lines = [line for line in history + [row.rstrip() for row in screen.display] if line]
    expected = [f"Paragraph number {i} says something useful." for i in range(60)]
    assert lines == expected


def test_a_slow_redraw_is_not_repeated_twelve_times_a_second():
    """On a terminal where drawing the open block takes 0.1 s, the live view is redrawn at
    most about once a second (ten times its cost), not at its usual 12 a second, which would
    spend all the time drawing; the answer still ends whole."""
    now = [0.0]
    out = io.StringIO()
    console = Console(file=out, width=60, height=12, force_terminal=True, color_system="standard")
    sink = MarkdownSink(console, clock=lambda: now[0])
    draw = sink._draw_open
    drawn = []

    def slow_draw():
        drawn.append(now[0])
        draw()
        now[0] += 0.1  # what this redraw cost

    sink._draw_open = slow_draw
    text = "word " * 500  # one open paragraph, 5 s of stream: a chunk every 0.01 s
    for part in chunks(text, 5):
        now[0] += 0.01
        sink.text(part)
    sink.end()
    stream_seconds = now[0]
    assert len(drawn) * 0.1 <= 0.15 * stream_seconds  # drawing: a tenth of the time, not all of it
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(drawn))
    assert out.getvalue().count("word") >= 500


def test_chinese_text_wraps_by_display_width():
    text = "你好世界" * 30  # 120 CJK characters, 240 columns
    output = render_offline([text], width=40)
    rows = [r for r in output.splitlines() if r.strip()]
    from rich.cells import cell_len

    assert all(cell_len(r.rstrip()) <= 40 for r in rows)
    assert "".join(r.strip() for r in rows) == text


def test_plain_sink_writes_text_unchanged_and_ends_the_line():
    out = io.StringIO()
    sink = PlainSink(out)
    for part in ["# Hi", "\n\n**x**"]:
        sink.text(part)
    sink.end()
    assert out.getvalue() == "# Hi\n\n**x**\n"


def test_usage_line():
    assert format_usage(Usage(56, 31)) == "tokens: 56 prompt + 31 completion = 87"
    assert format_usage(Usage(56, 31, estimated=True)) == (
        "tokens: ~56 prompt + ~31 completion = ~87 (estimated)")
    line = format_usage(Usage(1000, 1000), price_input=0.15, price_output=0.6, total=Usage(5000, 1000))
    # The reply's cost right after its tokens; the running total says what it totals.
    assert line == ("tokens: 1,000 prompt + 1,000 completion = 2,000 · $0.00075 · "
                    "this conversation: 6,000 tokens, $0.00135")


def test_diagnostics_are_one_line_and_coloured_only_when_asked():
    out = io.StringIO()
    Diagnostics(out, color=False).error(NetworkError("cannot reach x", hint="check y"))
    assert out.getvalue() == "chatcli: error: cannot reach x (check y)\n"
    coloured = io.StringIO()
    Diagnostics(coloured, color=True).warning("careful")
    assert coloured.getvalue().startswith("\x1b[33m") and "careful" in coloured.getvalue()


# --- the block splitter ---------------------------------------------------------


def split_all(parts):
    splitter = BlockSplitter()
    blocks = [b for p in parts for b in splitter.feed(p)]
    return blocks + splitter.close()


def test_splitter_blocks():
    assert split_all([DOC]) == [
        "# Alpha heading",
        "Bravo paragraph with **bold** text\nthat wraps over two source lines.",
        "- charlie item\n- delta item\n\n  echo continuation here",
        '```python\ndef foxtrot():\n\n    return "golf"\n```',
        "| hotel | india |\n|-------|-------|\n| 1     | 2     |",
        "中文段落：你好，世界。朱丽叶",
        "Kilo closing words.",
    ]


def test_a_fence_inside_a_list_does_not_end_the_list():
    doc = "1. Run:\n\n   ```sh\n   make\n\n   make test\n   ```\n\n2. Done\n\nAfter"
    assert split_all([doc]) == [doc.removesuffix("\n\nAfter"), "After"]


def test_an_unclosed_fence_is_closed_by_the_end_of_the_reply():
    assert split_all(["```py\nx = 1\n"]) == ["```py\nx = 1"]


markdownish = st.lists(
    st.sampled_from(["# h", "para", "- item", "  indented", "```", "~~~", "| a |", "", "", "1. one",
                     "text ``` inline", "中文"]),
    max_size=30,
).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(doc=markdownish, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_splitting_does_not_depend_on_chunking_and_loses_nothing(doc, cuts):
    points = sorted({c % (len(doc) + 1) for c in cuts})
    parts = [doc[a:b] for a, b in itertools.pairwise([0, *points, len(doc)])]
    blocks = split_all(parts)
    assert blocks == split_all([doc])
    # nothing is lost: the non-blank lines come out in order
    assert [line for b in blocks for line in b.split("\n") if line.strip()] == [
        line for line in doc.split("\n") if line.strip()]


def test_terminal_lines_carry_no_padding():
    """Padding to the full width makes the terminal's ^C echo wrap and breaks the live redraw."""
    out = io.StringIO()
    sink = MarkdownSink(Console(file=out, width=70, height=20, force_terminal=True, color_system=None))
    for part in chunks("Short line.\n\n- item one\n- item two\n\n中文一行。\n", 3):
        sink.text(part)
    sink.end()
    lines = out.getvalue().replace("\x1b[2K", "").split("\n")
    assert all(line == line.rstrip(" ") for line in lines)


# --- the live view of the open block ------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("The **Do", "The **Do**"),
    ("The **", "The"),
    ("The **Dodgers*", "The **Dodgers**"),
    ("The **Dodgers** w", "The **Dodgers** w"),
    ("use `pri", "use `pri`"),
    ("a `code *x` and *it", "a `code *x` and *it*"),
    ("Intro\n##", "Intro"),
    ("#", ""),
    ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
    ("~~gone", "~~gone~~"),
    ("* item **bo", "* item **bo**"),
])
def test_an_open_block_is_completed_so_it_renders_without_raw_markers(text, shown):
    from chatcli.mdblocks import live_markdown

    assert live_markdown(text) == shown


def test_closers_whose_openers_were_left_out_are_dropped():
    from chatcli.mdblocks import live_markdown

    assert live_markdown("ers** tail and **more", cut_start=True) == "ers tail and **more**"


def live_frames(text: str, size: int, width: int = 60, height: int = 12) -> str:
    """Everything a terminal receives while `text` streams in `size`-character chunks,
    with the live view redrawn after every chunk."""
    out = io.StringIO()
    console = Console(file=out, width=width, height=height, force_terminal=True, color_system="standard")
    ticks = itertools.count()
    sink = MarkdownSink(console, clock=lambda: next(ticks), refresh=0)
    for part in chunks(text, size):
        sink.text(part)
    sink.end()
    return out.getvalue()


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_no_frame_of_the_live_view_shows_raw_markers(size):
    text = ("The **Dodgers** won in *2020*, with `code` and ~~no~~ marks.\n"
            "## A heading\n\nSecond **paragraph** with `more code` and _words_.\n")
    received = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", live_frames(text, size))
    assert "**" not in received and "`" not in received and "~~" not in received
    assert "##" not in received and "_words_" not in received
    assert "Dodgers" in received and "paragraph" in received


def test_a_redraw_costs_the_same_however_long_the_open_block_grows(monkeypatch):
    from chatcli import render

    sizes: list[int] = []
    parse = render.chat_markdown

    def measured(text: str, **kwargs):
        sizes.append(len(text))
        return parse(text, **kwargs)

    monkeypatch.setattr(render, "chat_markdown", measured)
    paragraph = "Some **bold** words and `code` here. " * 6000  # 222 kB, one paragraph, no newline
    live_frames(paragraph, 200, width=80, height=24)
    *draws, final = sizes
    assert len(draws) > 500 and max(draws) <= 2 * 24 * 80 + 10
    assert final == len(paragraph)  # the finished block is rendered once, whole


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.text(alphabet="ab \n*`#", max_size=40), max_size=30),
       limit=st.integers(min_value=1, max_value=60))
def test_the_open_tail_is_the_end_of_the_open_block(parts, limit):
    splitter = BlockSplitter()
    for part in parts:
        splitter.feed(part)
    whole = splitter.open_text
    tail, cut = splitter.open_tail(limit)
    assert whole.endswith(tail)
    assert cut == (tail != whole)
    assert len(tail) <= 2 * limit and (not cut or len(tail) >= min(limit, len(whole)) or " " not in whole)


def test_a_block_no_real_reply_has_is_shown_as_its_text_in_bounded_memory():
    from chatcli.render import MAX_RENDERED_BLOCK

    paragraph = "Some **bold** words. " * (MAX_RENDERED_BLOCK // 20)
    output = render_offline(chunks(paragraph + "\n\nAfter **that**.", 4096))
    assert output.startswith(paragraph.rstrip()) and output.endswith("After that.\n")


# --- single newlines ------------------------------------------------------------------


def test_a_single_newline_in_a_reply_is_a_line_break_on_screen():
    output = render_offline(chunks("Roses are red\nViolets are blue\n\n- one\n- two\n  more", 3))
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    assert lines[:2] == ["Roses are red", "Violets are blue"]
    assert lines[2:] == ["• one", "• two", "more"]


@pytest.mark.parametrize("block", [
    "```python\nx = 1\ny = 2\n```",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "1. Run:\n\n   ```sh\n   make\n   make test\n   ```",
    "# Title",
])
def test_code_tables_and_fences_inside_lists_are_left_as_they_are(block):
    from chatcli.mdblocks import hard_breaks

    assert hard_breaks(block) == block


def test_a_reply_that_markdown_reads_as_an_empty_list_item_is_still_shown():
    """Rich draws nothing for "42." (an ordered list item with no text): the reply is shown as it is."""
    for reply in ("42.", "1.", "-"):
        out = io.StringIO()
        sink = MarkdownSink(Console(file=out, width=60, force_terminal=True))
        sink.text(reply)
        sink.end()
        assert reply in out.getvalue()


@pytest.mark.parametrize(("parts", "shown", "raw"), [
    (["First paragraph.\n\n", "Some **加粗的", "文字 and more"], "Some 加粗的文字 and more", "**"),
    (["Run `ls -la", " /tmp"], "Run ls -la /tmp", "`"),
    (["Code:\n\n```python\n", "x = 1\ny = ", "2\n"], "x = 1", "```"),
])
def test_a_reply_cut_short_leaves_no_raw_markers_in_the_scrollback(parts, shown, raw):
    from chatcli.events import ReplyCut, TextDelta

    out = io.StringIO()
    sink = MarkdownSink(Console(file=out, width=80, force_terminal=False, color_system=None))
    for part in parts:
        sink.event(TextDelta(part))
    sink.event(ReplyCut("interrupted"))
    sink.end()
    text = out.getvalue()
    assert shown in text and raw not in text


def test_a_reply_that_ended_is_printed_as_it_came():
    """Only a cut reply is closed: a finished one keeps an unpaired marker as it was sent."""
    assert "2 ** 3" in render_offline(["Python's power operator: 2 ** 3"])


CHINESE = ("echo: 这是一段很长的中文文本，用来测试换行是否正确。我们希望每一行都尽量填满，"
           "而不是在单词边界处断开留下很多空白。「引号里的话」也一样，标点不应该出现在行首。")


@pytest.mark.parametrize("width", [30, 40, 57, 80])
def test_chinese_text_fills_its_lines_and_no_line_starts_with_closing_punctuation(width):
    from rich.cells import cell_len

    lines = [line.rstrip() for line in render_offline([CHINESE], width=width).splitlines() if line.strip()]
    assert "".join(lines).replace(" ", "") == CHINESE.replace(" ", "")  # nothing lost or added
    assert all(cell_len(line) <= width for line in lines)
    # full, but for a character kept with the punctuation that may not start a line
    assert all(cell_len(line) >= width - 4 for line in lines[:-1])
    assert not any(line[0] in "，。、」）！？" for line in lines)
    assert lines[0] != "echo:"


def test_english_text_still_breaks_between_words():
    text = "The quick brown fox jumps over the lazy dog and keeps on running far away. " * 3
    lines = [line.rstrip() for line in render_offline([text], width=30).splitlines() if line.strip()]
    words = set(text.split())
    assert all(set(line.split()) <= words for line in lines)  # no word cut in two


def reflowed(screen: pyte.Screen, width: int) -> pyte.Screen:
    """The screen after the window narrows to `width` in a terminal that reflows (VTE, kitty,
    iTerm2): every row rewrapped, the cursor still after the text it followed."""
    rows = [row.rstrip() for row in screen.display[:screen.cursor.y + 1]]
    wrapped = [row[i:i + width] for row in rows for i in range(0, max(len(row), 1), width)]
    narrow = pyte.Screen(width, 200)
    pyte.Stream(narrow).feed("\r\n".join(wrapped))
    return narrow


@pytest.mark.parametrize("change_at", [40, 100])  # in the first paragraph, in the second
def test_narrowing_the_window_during_a_reply_leaves_no_stale_copy_of_it(change_at):
    words = [f"w{i:03d}" for i in range(260)]
    reply = " ".join(words[:120]) + "\n\n" + " ".join(words[120:])
    out = io.StringIO()
    console = Console(file=out, width=100, height=40, force_terminal=True, color_system=None)
    sink = MarkdownSink(console, clock=itertools.count().__next__, refresh=0)
    pieces = chunks(reply, 9)
    cut = sum(len(p) for p in pieces[:change_at])
    for piece in pieces[:change_at]:
        sink.text(piece)
    wide = pyte.Screen(100, 200)
    pyte.Stream(wide).feed(out.getvalue().replace("\n", "\r\n"))
    drawn = out.tell()
    console.width = 60  # the window narrows; the terminal reflows what it shows
    for piece in pieces[change_at:]:
        sink.text(piece)
    sink.end()
    screen = reflowed(wide, 60)
    pyte.Stream(screen).feed(out.getvalue()[drawn:].replace("\n", "\r\n"))
    seen = re.sub(r"\s", "", "".join(screen.display))  # words cut by a wrap are joined again
    assert 0 < cut < len(reply)
    assert seen == "".join(words), "every word once, in order"
    # nothing drawn before the change is erased: rows that scrolled out of reach (tmux) stay
    assert "\x1b[1A" not in out.getvalue()[drawn:].split("\r\n", 1)[0]
