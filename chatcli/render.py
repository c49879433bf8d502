"""Everything the user sees: the streamed reply, usage lines, notes and errors.

The only module that imports rich, and only for Markdown on a terminal: plain
output (pipes, NO_COLOR) is written directly and never pays for importing
rich. The Markdown renderer costs linear time: a finished block is rendered
and printed once, into the scrollback; only the open block is live.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TextIO

from chatcli.conversation import Usage, Window, estimate_tokens
from chatcli.errors import ChatcliError
from chatcli.events import Event, ReasoningDelta, ReplyCut, TextDelta, ToolCallDelta
from chatcli.schema import ReasoningMode
from chatcli.textsafe import shown, visible, visible_code

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

    from chatcli.cmdview import View

_RESET = "\033[0m"
_STYLES = {"error": "\033[31m", "warning": "\033[33m", "note": "\033[2m", "usage": "\033[2m"}
CODE_THEME = "ansi_dark"  # the terminal's own colours: readable on its background, light or dark
_RICH_STYLES = {"error": "red", "warning": "yellow", "note": "dim", "usage": "dim"}
# The live view of a reply being drawn, if any. A diagnostic line written to the same
# terminal meanwhile (--debug, a retry notice) is printed above it, not into it.
_LIVE: list[Live] = []


def wants_color(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Styled output only for a terminal, and never when NO_COLOR is set."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in env and env.get("TERM") != "dumb"


Drawing = Literal["markdown", "plain", "none"]


def drawing(file: TextIO, env: Mapping[str, str], *, markdown: bool, quiet: bool = False) -> Drawing:
    """How a reply is drawn on `file`, decided here and nowhere else: not at all (quiet:
    --json, --code, a command's hidden request), as Markdown (a terminal that takes styles,
    with markdown on), or as plain text (a pipe, NO_COLOR, --no-markdown)."""
    if quiet:
        return "none"
    return "markdown" if markdown and wants_color(file, env) else "plain"


def reply_sink(how: Drawing, file: TextIO, *, reasoning: ReasoningMode = "collapse",
               console: Console | None = None, thinking: TextIO | None = None, raw: bool | None = None,
               waiting: TextIO | None = None, model: str = "") -> Any:
    """The listener that draws a reply as `drawing` chose; behind a waiting line on `waiting`
    (a terminal's stderr) until the reply begins."""
    sink: Any
    if how == "none":
        sink = NullSink()
    elif how == "markdown":
        sink = MarkdownSink(console, file=None if console else file, reasoning=reasoning)
    else:  # the thinking, when asked for, goes to `thinking`: stdout carries the answer alone
        sink = PlainSink(file, raw=raw, thinking=thinking if reasoning == "show" else None)
    if waiting is not None and is_terminal(waiting):
        sink = Waiting(sink, waiting, model)
    return sink


class NullSink:
    """A listener that draws nothing."""

    def event(self, event: Any) -> None:
        pass

    def end(self) -> None:
        pass


class Diagnostics:
    """One-line messages on stderr: errors, warnings, notes, the usage line."""

    def __init__(self, file: TextIO, *, color: bool,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.file = file
        self.color = color
        self.redact = redact

    def _line(self, kind: str, text: str, prefix: str) -> None:
        # Server messages, stored titles and file names are data, on one line (a newline in a
        # file name cannot forge a line of its own); no secret is ever shown.
        line = f"{prefix}{shown(self.redact(text))}"
        if _WAITING and is_terminal(self.file):  # the waiting line goes; it comes back next second
            _WAITING[-1].clear()
        if _LIVE and is_terminal(self.file):  # a reply is being drawn: print above it
            _LIVE[-1].console.print(line, style=_RICH_STYLES[kind] if self.color else None, markup=False,
                                    highlight=False, emoji=False, crop=False)
            return
        if is_terminal(self.file):  # the terminal would cut words in two at its edge
            line = _word_wrapped(line)
        if self.color:
            line = f"{_STYLES[kind]}{line}{_RESET}"
        try:
            self.file.write(line + "\n")
            self.file.flush()
        except (BrokenPipeError, ValueError):
            pass  # stderr is gone; nothing else can be told

    def error(self, error: ChatcliError | str) -> None:
        text = error.line() if isinstance(error, ChatcliError) else error
        self._line("error", text, "chatcli: error: ")

    def warning(self, text: str) -> None:
        self._line("warning", text, "chatcli: warning: ")

    def note(self, text: str) -> None:
        self._line("note", text, "chatcli: ")

    def usage(self, text: str) -> None:
        self._line("usage", text, "")

    def debug(self, text: str) -> None:
        self._line("note", text, "debug: ")


def format_usage(
    usage: Usage,
    *,
    price_input: float | None = None,
    price_output: float | None = None,
    currency: str = "$",
    total: Usage | None = None,
    total_label: str = "this conversation",
) -> str:
    """The line after a reply: its prompt, completion and total tokens and its cost, then
    the running total of the conversation (`total_label` says since when)."""
    parts = [f"tokens: {usage_text(usage)}"]
    cost = cost_text(usage, price_input, price_output, currency)
    if cost:
        parts.append(cost)
    if total is not None:
        whole = cost_text(total, price_input, price_output, currency)
        parts.append(f"{total_label}: {'~' if total.estimated else ''}{total.total_tokens:,} tokens"
                     + (f", {whole}" if whole else ""))
    return " · ".join(parts)


def answer_note(seconds: float | None, thought: bool) -> str:
    """`answer after 12.6 s`, for a reply that thought first (otherwise it says little)."""
    return f"answer after {seconds:.1f} s" if thought and seconds is not None else ""


def cost_text(usage: Usage, price_input: float | None, price_output: float | None, currency: str) -> str:
    cost = usage.cost(price_input, price_output)
    if cost is None:
        return ""
    if not cost:
        return f"{currency}0"
    return ("~" if usage.estimated else "") + f"{currency}{cost:.6f}".rstrip("0").rstrip(".")


def usage_text(usage: Usage) -> str:
    """`56 prompt + 31 completion = 87`, each figure marked ~ and the whole (estimated)
    when the server reported none."""
    mark = "~" if usage.estimated else ""
    thinking = f" ({usage.reasoning_tokens:,} reasoning)" if usage.reasoning_tokens else ""
    return (f"{mark}{usage.prompt_tokens:,} prompt + {mark}{usage.completion_tokens:,} completion"
            f"{thinking} = {mark}{usage.total_tokens:,}" + (" (estimated)" if usage.estimated else ""))


def counted(count: int, noun: str) -> str:
    """`1 message`, `2 messages`: a count and its noun, as a person writes them."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def dropped_note(window: Window) -> str:
    """`8 older messages left out to fit max_messages = 20 (/history)`: what trimming did,
    and which limit made it."""
    why = " and ".join(f"max_messages = {window.max_messages}" if limit == "max_messages" else
                       f"the context ({window.budget:,} tokens for the request)"
                       for limit in window.limited_by)
    return f"{counted(len(window.dropped), 'older message')} left out to fit {why or 'the limits'} (/history)"


def is_terminal(file: TextIO) -> bool:
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def for_terminal(text: str, file: TextIO) -> str:
    """Text that came from a server or the database, as it may be written to `file`:
    control characters shown visibly on a terminal, unchanged into a pipe or file."""
    return visible(text) if is_terminal(file) else text


_WAITING: list[Waiting] = []  # the waiting line on the screen, if one is


def _word_wrapped(line: str) -> str:
    """A diagnostic as a terminal shows it: broken between words (CJK between characters)
    to the terminal's width, the lines after the first indented. Into a pipe or a log a
    diagnostic stays one line."""
    import shutil

    width = shutil.get_terminal_size((80, 24)).columns - 2
    if len(line) <= width // 2 or width < 20:
        return line
    from rich.cells import cell_len

    if cell_len(line) <= width + 2:
        return line
    breaks = divide_line(line, width)
    pieces = [line[start:end].rstrip() for start, end in zip([0, *breaks], [*breaks, len(line)], strict=True)]
    return "\n  ".join(pieces)


class Waiting:
    """A sink's stand-in until the reply begins: on a terminal, one line saying what is being
    waited for and for how long (`waiting for gpt-4o… 3 s`), drawn from a thread of its own
    from `after` seconds on, rewritten each second, and cleared before the first piece of the
    reply (or the end) reaches `sink`. Nothing is written when no reply is slow to come."""

    def __init__(self, sink: Any, file: TextIO, model: str, *, after: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, what: str | None = None) -> None:
        self.sink = sink
        self._file = file
        self._what = what or f"waiting for {shown(model)}"
        self._after = after
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._drawn = False
        self._thread = threading.Thread(target=self._draw, name="waiting", daemon=True)
        _WAITING.append(self)
        self._thread.start()

    def _draw(self) -> None:
        wait = self._after
        while not self._done.wait(wait):
            with self._lock:
                if self._done.is_set():
                    return
                try:
                    self._file.write(f"\r\x1b[K{self._what}… {self._clock() - self._started:.0f} s")
                    self._file.flush()
                except (OSError, ValueError):
                    return  # the terminal is gone
                self._drawn = True
            wait = 1.0

    def clear(self) -> None:
        """The line taken away, for a diagnostic to be written where it was."""
        with self._lock:
            if self._drawn:
                self._drawn = False
                with contextlib.suppress(OSError, ValueError):
                    self._file.write("\r\x1b[K")
                    self._file.flush()

    def stop(self) -> None:
        """The reply begins (or ended): the line is cleared, and nothing more is drawn."""
        if self._done.is_set():
            return
        self._done.set()
        self.clear()
        if self in _WAITING:
            _WAITING.remove(self)

    def event(self, event: Any) -> None:
        if isinstance(event, TextDelta | ReasoningDelta | ToolCallDelta | ReplyCut):
            self.stop()  # the reply begins (response headers alone are not an answer)
        self.sink.event(event)

    def end(self) -> None:
        self.stop()
        self.sink.end()

    def __getattr__(self, name: str) -> Any:  # resume_after, whole: the sink's own
        if name == "sink":
            raise AttributeError(name)
        return getattr(self.sink, name)


class PlainSink:
    """Writes the reply as it arrives: unchanged into a pipe, with control
    characters shown visibly on a terminal (NO_COLOR, --no-markdown). The thinking
    goes to `thinking` if given (stderr, for `ask --reasoning show`), else nowhere:
    stdout carries the answer only."""

    def __init__(self, file: TextIO, *, raw: bool | None = None, thinking: TextIO | None = None) -> None:
        self.file = file
        self.raw = not is_terminal(file) if raw is None else raw
        self.thinking = thinking
        self._last = "\n"
        self._thought_last = "\n"

    def event(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self._end_thinking()
            self.text(event.text)
        elif isinstance(event, ReasoningDelta) and self.thinking is not None:
            self.thinking.write(visible(event.text) if is_terminal(self.thinking) else event.text)
            self.thinking.flush()
            self._thought_last = event.text[-1:] or self._thought_last

    def _end_thinking(self) -> None:
        if self.thinking is not None and self._thought_last != "\n":
            self.thinking.write("\n")
            self.thinking.flush()
            self._thought_last = "\n"

    def text(self, delta: str) -> None:
        self.file.write(delta if self.raw else visible(delta))
        self.file.flush()
        self._last = delta[-1:] or self._last

    def end(self) -> None:
        self._end_thinking()
        if self._last != "\n":
            self.file.write("\n")
            self._last = "\n"
        self.file.flush()


MAX_RENDERED_BLOCK = 256_000  # characters of one finished block rendered as Markdown


class MarkdownSink:
    """Renders the reply as Markdown while it streams, each finished block once."""

    _on_screen: str | None  # the open block, when the live view shows all of it
    _call_name: str  # the tool call being written, while it streams, and how much of it
    _call_chars: int

    def __init__(
        self,
        console: Console | None = None,
        *,
        file: TextIO | None = None,
        refresh: float = 1 / 12,
        clock: Callable[[], float] = time.monotonic,
        reasoning: ReasoningMode = "collapse",
    ) -> None:
        from rich.console import Console

        _wrap_cjk_too()
        self.console = console or Console(file=file, highlight=False)
        self._live: Live | None = None
        self._refresh = refresh
        self._clock = clock
        self._last_draw = float("-inf")
        self.reasoning_mode = reasoning
        self._drawn_width = 0  # the console's width when the live view was drawn
        self._fresh()

    def event(self, event: Event) -> None:
        if isinstance(event, ReplyCut):
            self._cut = True  # end() closes what the reply left open
        elif isinstance(event, ReasoningDelta):
            self.reasoning(event.text)
        elif isinstance(event, ToolCallDelta):
            self._calling(event)
        elif isinstance(event, TextDelta):
            if self._thought.running:
                self._fold_thinking()
            self.text(event.text)

    def _calling(self, piece: ToolCallDelta) -> None:
        """While the model writes a tool call (a long file for write_file takes a while): one
        live line saying which and how much, drawn where the answer's open block is; it goes
        at the end of the reply, when the call itself is shown for approval."""
        if self._thought.running:
            self._fold_thinking()
        self._call_name = piece.name if piece.name and not self._call_name else self._call_name
        self._call_chars += len(piece.arguments)
        now = self._clock()
        if now - self._last_draw < self._interval:
            return
        self._last_draw = now
        from rich.text import Text

        with _uninterrupted():
            self._show_live(Text(f"calling {shown(self._call_name or 'a tool')}… "
                                 f"{self._call_chars:,} characters", style="dim"))
        self._paced(now)

    def reasoning(self, delta: str) -> None:
        """The thinking, while it lasts: its last lines, dim, in the live view (or only how
        long it has been, with reasoning = "hide")."""
        self._thought.add(visible(delta))
        now = self._clock()
        if now - self._last_draw < self._interval:
            return
        self._last_draw = now
        from rich.text import Text

        height = max(min(self.console.height - 2, 8), 2)
        if self.reasoning_mode == "hide":
            view: Any = Text(f"thinking… {self._thought.seconds():.0f} s", style="dim")
        else:  # the header stays; below it, the thinking's last lines
            from rich.console import Group

            view = Group(Text(f"thinking… {self._thought.seconds():.0f} s", style="dim"),
                         _Tail(Text(self._thought.tail, style="dim italic"), height - 1))
        with _uninterrupted():
            self._show_live(view)
        self._paced(now)

    def _fold_thinking(self) -> None:
        """The answer begins (or the reply ended): the thinking becomes one line, after its
        whole text with reasoning = "show"."""
        from rich.text import Text

        with _uninterrupted():
            if self._live is not None:
                self._live.update("", refresh=True)
            if self.reasoning_mode == "show" and self._thought.text:
                self.console.print(Text(self._thought.text.strip("\n"), style="dim italic"), crop=False)
            self.console.print(Text(self._thought.summary(), style="dim"), crop=False)
        self._thought.stop()

    def text(self, delta: str) -> None:
        blocks = self._splitter.feed(visible(delta))
        now = self._clock()
        if not blocks and now - self._last_draw < self._interval:
            return  # most chunks: nothing to draw, so nothing to protect from Ctrl-C
        self._last_draw = now
        with _uninterrupted():
            self._keep_if_resized()
            if blocks and self._live is not None:
                self._live.update("", refresh=True)  # the old view must not reappear below
            for block in blocks:
                self._print_block(block)
            started = self._clock()
            self._draw_open()
        self._paced(started)

    def _paced(self, started: float) -> None:
        """After a redraw of the live view that began at `started`: the next waits at least ten
        times as long as this one took (a slow terminal, a long open block), and never more
        than a second, so redrawing takes a tenth of the time at most and the view still
        moves. Finished blocks are printed when they finish, whatever this says."""
        took = self._clock() - started
        self._interval = min(max(self._refresh, 10 * took), 1.0)

    def resume_after(self, text: str) -> None:
        """The reply goes on from `text` (/continue): its last, unfinished block is taken up
        again, so new text completes that paragraph, or stays inside that code block, instead
        of starting a block of its own. Nothing of `text` is printed again: only what follows
        it (in a code block, under the block's language)."""
        shown = visible(text)
        self._splitter.feed(shown)
        self._printed = 1
        self._shown_before = self._splitter.open_tail(len(shown) + 1)[0]

    def whole(self, text: str) -> None:
        """Print a whole document (a saved conversation), block by block, nothing live."""
        for block in [*self._splitter.feed(visible(text)), *self._splitter.close()]:
            self._print_block(block)

    def end(self) -> None:
        if self._thought.running:
            self._fold_thinking()
        with _uninterrupted():
            self._keep_if_resized()
            fence, cut = self._splitter.open_fence, self._cut
            blocks = self._splitter.close()
            if cut and blocks:  # a reply cut short: its last block is finished as the live view was
                blocks[-1] = _closed(blocks[-1], fence)
            if self._live is not None:
                if self._call_chars or self._call_name:
                    self._live.update("", refresh=True)  # the call is shown next, whole
                self._live.stop()
                _LIVE.remove(self._live)
                self._live = None
            for block in blocks:
                self._print_block(block)
        self._fresh()

    def _fresh(self) -> None:
        """The state of one reply: at the start, and again for the next reply of a tool loop,
        drawn below what this one printed."""
        from chatcli.mdblocks import BlockSplitter

        self._splitter = BlockSplitter()
        self._interval = self._refresh  # between redraws of the live view: see _paced
        self._thought = _Thought(self._clock)
        self._cut = False
        self._shown_before = ""  # the open block as it was on the screen before /continue
        self._on_screen = None
        self._printed = 0
        self._call_name = ""
        self._call_chars = 0

    def _new_part(self, block: str) -> str:
        """What of the block /continue took up is new: the text after what was shown before,
        under its code fence when it is a code block."""
        before = self._shown_before
        if not block.startswith(before):
            return block
        rest = block[len(before):]
        opening = before.split("\n", 1)[0]
        return f"{opening}\n{rest.lstrip(chr(10))}" if opening.lstrip().startswith(("```", "~~~")) else rest

    def _print_block(self, block: str) -> None:
        from chatcli.mdblocks import hard_breaks

        if self._shown_before:  # the block /continue took up: only its new text
            block, self._shown_before = self._new_part(block), ""
            if not block.strip():
                return
        elif self._printed:
            self.console.print()
        if len(block) > MAX_RENDERED_BLOCK:
            # Rendering holds about 100 bytes a character: a block no real reply has
            # (a runaway paragraph) is shown as the text it is, in bounded memory.
            self.console.file.write(block + "\n")
        else:  # not cropped: code lines longer than the screen are wrapped by the terminal
            self.console.print(_Trimmed(chat_markdown(hard_breaks(block)), block), crop=False)
        self._printed += 1

    def _draw_open(self) -> None:
        """Redraw the live view of the open block: its end only (what the screen can show),
        so a redraw costs the same however long the block grows, and completed
        (live_markdown) so that it is seen rendered, never as raw markers."""
        from chatcli.mdblocks import hard_breaks, live_markdown

        height = max(self.console.height - 2, 3)
        source, cut = self._splitter.open_tail(height * max(self.console.width, 20))
        text = source
        if self._shown_before and not cut:
            text = self._new_part(text)
        if fence := self._splitter.open_fence:
            if cut:
                text = self._splitter.open_fence_line + "\n" + text
            text += "\n" + fence  # close the fence so it renders as code
        else:
            text = hard_breaks(live_markdown(text, cut_start=cut))
        if not text.strip():
            if self._live is not None:
                self._live.update("", refresh=True)
            return
        from rich.console import Group
        from rich.text import Text

        tail = _Tail(chat_markdown(text, live=True), height - 1)
        # the blank line that will come before the block, so that it does not jump when it ends
        self._show_live(Group(Text(""), tail) if self._printed and not self._shown_before else tail)
        self._on_screen = None if cut or tail.cropped else source

    def _keep_if_resized(self) -> None:
        """The window's width changed under the live view: the terminal has reflowed it, and
        how far up it now reaches differs from one terminal to the next (tmux pushes its top
        rows into the scrollback, where nothing can erase them). Erasing it would leave a stale
        copy above the reply, so when it shows the whole open block, it stays, as a finished
        block does, and the block goes on below it with only what follows (as after
        /continue). A view that shows only the block's end (or the thinking) is erased, as
        far as the reflowed rows can be counted."""
        if self._live is None or self.console.width == self._drawn_width:
            return
        if self._on_screen:
            self._live.update("", refresh=False)
            self._live._live_render.keep()  # type: ignore[attr-defined]  # _reflowing_render's
            self._shown_before, self._on_screen = self._on_screen, None

    def _show_live(self, view: Any) -> None:
        from rich.live import Live

        if self._live is None:
            self._live = Live(view, console=self.console, auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live._live_render = _reflowing_render(view)
            self._live.start()
            _LIVE.append(self._live)
        self._live.update(view, refresh=True)
        self._drawn_width = self.console.width


class _Thought:
    """The thinking of one reply, as the terminal shows it: when it began and ended, its
    size, its whole text (for reasoning = "show") and a bounded tail for the live view,
    so that a 5,000-line chain of thought costs the same to draw as a short one."""

    TAIL = 4_000  # characters

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.started: float | None = None
        self.ended: float | None = None
        self.parts: list[str] = []
        self.tail = ""
        self.chars = 0

    @property
    def running(self) -> bool:
        return self.started is not None and self.ended is None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str) -> None:
        if self.started is None:
            self.started = self._clock()
        self.parts.append(text)
        self.chars += len(text)
        self.tail = (self.tail + text)[-self.TAIL:]

    def seconds(self) -> float:
        return ((self.ended or self._clock()) - (self.started or 0.0)) if self.started else 0.0

    def stop(self) -> None:
        self.ended = self._clock()

    def summary(self) -> str:
        tokens = estimate_tokens(self.text) if self.chars < 200_000 else self.chars // 4
        return f"thought for {self.seconds():.1f} s · ~{tokens:,} tokens"


# Line breaking for text with Chinese, Japanese or Korean in it. Rich breaks lines between
# words, and a run of CJK characters, which has no spaces, is one word to it: the run goes
# to the next line whole and leaves the line before it short (`echo:` alone on a line, a
# paragraph 16 columns short of the edge). In CJK text a line may break between any two
# characters, except before closing punctuation (，。」) and after opening punctuation (「（).
_CJK = ("\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
        "\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff60\uffe0-\uffe6"
        "\U00020000-\U0003fffd")
_NO_LINE_START = ("、。，．：；？！）］｝〕〉》」』】〙〗〟’”｠»ー…‥・"
                  "ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮ%,.:;?!)]}")
_NO_LINE_END = "（［｛〔〈《「『【〘〖〝‘“｟«([{"


@functools.cache
def _line_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(any CJK character, one piece a line may end after). Compiled when first wrapped, not
    at import: the two take about 5 ms, which `ask` into a pipe never needs."""
    breakable = re.compile(
        rf"\s*(?:[{re.escape(_NO_LINE_END)}]*[{_CJK}]|[{re.escape(_NO_LINE_END)}]*[^\s{_CJK}]+|\S)"
        rf"[{re.escape(_NO_LINE_START)}]*\s*")
    return re.compile(f"[{_CJK}]"), breakable


def divide_line(text: str, width: int, fold: bool = True) -> list[int]:
    """Where to break `text` so that each line fits in `width` cells (what Rich's wrapping
    asks), breaking between words and, in CJK text, between characters; a piece longer than
    a line is cut by cells (`fold`) or left to overflow."""
    from rich._wrap import divide_line as by_words
    from rich.cells import cell_len

    has_cjk, breakable = _line_patterns()
    if not has_cjk.search(text):
        return by_words(text, width, fold)
    breaks: list[int] = []
    used = 0  # cells on the current line
    for match in breakable.finditer(text):
        start, piece = match.start(), match.group()
        size = cell_len(piece.rstrip())
        if used + size <= width:
            used += cell_len(piece)
            continue
        if used and start:
            breaks.append(start)
            used = 0
        if size <= width or not fold:
            used = cell_len(piece)
            continue
        for char_at, char in enumerate(piece, start):  # a piece wider than a line: cut it by cells
            cells = cell_len(char)
            if used + cells > width and used:
                breaks.append(char_at)
                used = 0
            used += cells
    return breaks


def _wrap_cjk_too() -> None:
    """Rich's text wrapping, breaking CJK text between characters (see divide_line)."""
    import rich.text

    rich.text.divide_line = divide_line  # type: ignore[attr-defined]


def chat_markdown(text: str, *, live: bool = False) -> Any:
    """Rich's Markdown of `text`, but code blocks are their exact lines: no padding, no
    background to fill, no line broken by us. Copied from the screen, a block is the
    code (a long line is wrapped by the terminal, which joins it again when copied).
    Inside a list or a quote, where Rich would crop a long line, it is wrapped instead.
    The `live` view is cropped to the screen, so its tabs are spaces, whose width is known."""
    return _chat_markdown_class(live)(text, code_theme=CODE_THEME)


@functools.cache
def _chat_markdown_class(live: bool) -> Any:
    from rich.markdown import CodeBlock, Markdown
    from rich.segment import Segment
    from rich.style import Style
    from rich.syntax import Syntax

    class ExactCode(CodeBlock):
        def __rich_console__(self, console: Console, options: Any) -> Any:
            code = visible_code(str(self.text).rstrip("\n"))  # what may be pasted: every format sign
            if options.max_width < console.width:  # nested: Rich crops the lines of lists and quotes
                yield Syntax(code, self.lexer_name, theme=self.theme, word_wrap=True)
                return
            # tab_size 0: tabs stay tabs (a Makefile's recipe lines need them)
            syntax = Syntax(code, self.lexer_name, theme=self.theme, tab_size=4 if live else 0)
            lines = syntax.highlight(code).split("\n", allow_blank=True)
            for line in lines:
                for segment in line.render(console):
                    yield Segment(segment.text, _foreground(segment.style))
                yield Segment.line()

    def _foreground(style: Any) -> Any:
        """The token's colour and weight, not the theme's background (no box to fill)."""
        if style is None:
            return None
        return Style(color=style.color, bold=style.bold, dim=style.dim, italic=style.italic,
                     underline=style.underline)

    class ChatMarkdown(Markdown):
        elements: ClassVar = {**Markdown.elements, "fence": ExactCode, "code_block": ExactCode}

    return ChatMarkdown


def _closed(block: str, fence: str | None) -> str:
    """The last block of a reply cut short, with what it left open closed: its code fence,
    or its emphasis and code spans (the scrollback keeps no raw `**` or lone backtick)."""
    from chatcli.mdblocks import live_markdown

    if fence:
        return block.rstrip("\n") + "\n" + fence
    return live_markdown(block)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C until a drawing is complete, then raise it.

    A KeyboardInterrupt in the middle of a live redraw leaves half a frame on
    the screen; the reply stops a few milliseconds later instead, cleanly.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


class _Trimmed:
    """A renderable without the blank lines Rich puts around some blocks; `source` as plain
    text when Rich shows nothing of it (an empty list item: a reply of "42." or "1.")."""

    def __init__(self, inner: Any, source: str = "") -> None:
        self.inner = inner
        self.source = source

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        from rich.segment import Segment
        from rich.text import Text

        lines = list(Segment.split_lines(console.render(self.inner, options)))  # uncropped
        if self.source.strip() and all(_is_blank(line) for line in lines):
            lines = list(Segment.split_lines(console.render(Text(self.source.strip()), options)))
        blank = [_is_blank(line) for line in lines]
        first = blank.index(False) if False in blank else len(lines)
        last = len(lines) - blank[::-1].index(False) if False in blank else first
        for line in lines[first:last]:
            yield from _rstrip(line)
            yield Segment.line()


class _Tail:
    """The last `height` lines of a renderable: the live view of a long open block."""

    def __init__(self, inner: Any, height: int) -> None:
        self.inner = inner
        self.height = height
        self.cropped = False  # whether its last rendering left lines out

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        from rich.segment import Segment

        lines = console.render_lines(self.inner, options, pad=False)
        self.cropped = len(lines) > self.height
        lines = lines[-self.height:]
        for number, line in enumerate(lines):
            yield from _rstrip(line)
            if number < len(lines) - 1:
                yield Segment.line()


def rows_after_reflow(widths: Sequence[int], width: int) -> int:
    """How many screen rows lines of these widths (in cells) take once a terminal `width`
    columns wide has reflowed them: a line wider than the screen wraps onto more rows."""
    return sum(max(1, -(-w // max(width, 1))) for w in widths)


def _reflowing_render(view: Any) -> Any:
    """Rich's live region, erased by the rows it takes now rather than the lines it was drawn
    as. Narrowing the window makes a terminal that reflows (tmux, VTE, iTerm2, kitty, Windows
    Terminal...) wrap the region's long lines onto more rows; moving up only as many lines as
    were drawn then leaves the top of the old region on the screen, a stale copy above the
    reply. Its lines are never padded (_rstrip), so widening joins nothing and the count
    stays."""
    from rich.control import Control
    from rich.live_render import LiveRender
    from rich.segment import ControlType, Segment

    class Reflowing(LiveRender):
        _widths: tuple[int, ...] = ()  # of each line drawn last, in cells
        _console: Console | None = None
        _kept = False

        def keep(self) -> None:
            """What is drawn stays on the screen; the next drawing starts on the line below."""
            self._kept = True

        def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
            self._console = console
            segments = [s for s in super().__rich_console__(console, options) if isinstance(s, Segment)]
            widths = [Segment.get_line_length(line) for line in Segment.split_lines(segments)]
            height = self.last_render_height  # empty lines at the end are not split out
            self._widths = (*widths, *[0] * (height - len(widths)))
            yield from segments

        def _up(self, rows: int, *, here: bool) -> Control:
            # Each row erased on the way up, as Rich does (tmux's reflow brings back rows that
            # were cleared with "erase below" instead).
            erase = ((ControlType.ERASE_IN_LINE, 2),) if here else ()
            return Control(ControlType.CARRIAGE_RETURN, *erase,
                           *((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2)) * rows)

        def _rows(self) -> int:
            if self._console is None:
                return self.last_render_height
            return rows_after_reflow(self._widths, self._console.width)

        def position_cursor(self) -> Control:  # the cursor is on the region's last row
            if self._kept:
                self._kept, self._shape, self._widths = False, None, ()
                below = Control()
                below.segment = Segment("\r\n", None, [(ControlType.CARRIAGE_RETURN,)])
                return below
            return self._up(self._rows() - 1, here=True) if self._shape is not None else Control()

        def restore_cursor(self) -> Control:  # the cursor is below the region (Live.stop)
            return self._up(self._rows(), here=False) if self._shape is not None else Control()

    return Reflowing(view, vertical_overflow="ellipsis")


def _rstrip(line: list[Any]) -> list[Any]:
    """A rendered line without its padding: trailing spaces that show no background.

    Lines padded to the full width leave the cursor in the last column, where
    the terminal's own echo of ^C wraps to a new line and throws off the live
    redraw; they also rewrap badly when the window is narrowed.
    """
    from rich.segment import Segment

    segments = list(line)
    while segments:
        last = segments[-1]
        if last.control or (last.style and last.style.bgcolor):
            break
        text = last.text.rstrip(" ")
        if text:
            segments[-1] = Segment(text, last.style)
            break
        segments.pop()
    return segments


def _is_blank(line: list[Any]) -> bool:
    """Blank and unstyled: padding, not the background of a code block."""
    return all(not s.text.strip() and not (s.style and s.style.bgcolor) for s in line)


def make_console(file: TextIO, *, color: bool) -> Console:
    """The Console the REPL draws with (Rich is imported only here and in the sinks)."""
    from rich.console import Console

    _wrap_cjk_too()
    return Console(file=file, highlight=False, no_color=not color, emoji=False)


def print_lines(console: Console, lines: tuple[str, ...] | list[str], *, style: str = "") -> None:
    for line in lines:
        console.print(shown(line), style=style or None, markup=False, highlight=False)


def print_table(console: Console, headers: tuple[str, ...], rows: Sequence[tuple[str, ...]],
                *, widest: Mapping[int, int] | None = None) -> None:
    """Rows under their headers; `widest`: a column's most columns (its cells wrap there,
    between words), so one long cell cannot squeeze the others."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for number, header in enumerate(headers):
        table.add_column(header, max_width=(widest or {}).get(number))
    for row in rows:
        table.add_row(*(Text(shown(cell)) for cell in row))  # cells are data, never markup
    console.print(table)


def print_command(console: Console, command: str, shape: View, shell: str) -> None:
    """A suggested shell command as cmdview laid it out: highlighted in the terminal's own
    colours, every row exactly as it runs (no wrapping, cropping or folding by Rich), the
    non-ASCII characters in reverse video."""
    from rich.syntax import Syntax
    from rich.text import Text

    from chatcli.cmdview import GUTTER_CONTINUED, GUTTER_LINE

    lexers = {"fish": "fish", "zsh": "zsh", "pwsh": "powershell", "powershell": "powershell"}
    syntax = Syntax("", lexers.get(shell, "bash"), theme=CODE_THEME, background_color="default")
    lines = syntax.highlight(command).split("\n", allow_blank=True)
    if shape.heading:
        console.print(shape.heading, style="dim", markup=False, highlight=False)
    width = shape.gutter - 3
    for row in shape.rows:
        out = Text()
        if shape.gutter:
            number, mark = (row.line, GUTTER_LINE) if row.first else ("", GUTTER_CONTINUED)
            out.append(f"{number:>{width}} {mark} ", style="dim")
        body = lines[row.line - 1][row.start:row.start + len(row.text)]
        for index, char in enumerate(row.text):
            if ord(char) > 0x7E:
                body.stylize("reverse", index, index + 1)
        out.append_text(body)
        if row.blank and row.first:
            out.append(" (blank line)", style="dim italic")
        console.print(out, crop=False, no_wrap=True, overflow="ignore", soft_wrap=False)
    for note in shape.notes:
        console.print(note, style="yellow", markup=False, highlight=False)


def osc52(text: str, env: Mapping[str, str]) -> str:
    """The escape sequence that asks the terminal to put `text` on the clipboard.

    It travels through SSH and tmux (which forwards it by default); GNU screen
    needs it wrapped in a passthrough sequence.
    """
    import base64

    sequence = f"\033]52;c;{base64.b64encode(text.encode()).decode()}\a"
    if env.get("STY") and not env.get("TMUX"):
        sequence = f"\033P{sequence}\033\\"
    return sequence
