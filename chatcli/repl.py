"""The interactive session: read a line, dispatch it, render the result.

With keybindings.py, the only module that imports prompt_toolkit. The loop is
short on purpose:
`_read` gets a line (Ctrl-C clears it, Ctrl-D leaves), `_dispatch` runs a
slash command or a chat turn, and everything shown goes through render.py.
Errors during a turn are one line and the session goes on.
"""

from __future__ import annotations

import contextlib
import os
import termios
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from chatcli import commands, errors
from chatcli.approval import edit_text
from chatcli.chat import Sink, TurnResult, cannot_continue
from chatcli.export import excerpt
from chatcli.keybindings import PROMPT, SlashCompleter, bindings, continuation, toolbar
from chatcli.render import (
    Diagnostics,
    answer_note,
    dropped_note,
    format_usage,
    osc52,
    print_lines,
    print_table,
    reply_sink,
)
from chatcli.session import Session


class _KeptHistory(FileHistory):
    """The input history file. Earlier lines are read from it; a new line is added to it
    unless `keep` is off (--no-save: nothing typed is written anywhere). A file that
    cannot be written is reported once and the session goes on with the history in
    memory: a line typed is never lost to a full disk."""

    def __init__(self, path: Path, *, keep: bool, warn: Callable[[str], None]) -> None:
        super().__init__(str(path))
        self.keep = keep
        self._warn = warn

    def load_history_strings(self) -> Iterator[str]:
        try:
            yield from super().load_history_strings()
        except (OSError, ValueError) as exc:
            self._warn(f"the input history {os.fsdecode(self.filename)} cannot be read ({exc}); "
                       "starting without it")

    def store_string(self, string: str) -> None:
        if not self.keep:
            return
        try:
            super().store_string(string)
        except OSError as exc:
            self.keep = False
            self._warn(f"the input history {os.fsdecode(self.filename)} cannot be written "
                       f"({exc.strerror or exc}); lines typed now are kept only until you leave")


def _history(path: Path | None, *, keep: bool, warn: Callable[[str], None]) -> History:
    if path is None:
        return InMemoryHistory()
    try:
        if keep:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                path.touch(mode=0o600)  # what was typed may be private
    except OSError as exc:
        warn(f"the input history {path} cannot be kept ({exc.strerror or exc}); "
             "lines typed now are kept only until you leave")
        return InMemoryHistory()
    return _KeptHistory(path, keep=keep, warn=warn)


class Repl:
    """The loop, with its collaborators passed in (tests give a pipe and a StringIO console)."""

    def __init__(
        self,
        session: Session,
        *,
        console: Any,
        diag: Diagnostics,
        markdown: bool = True,
        history_path: Path | None = None,
        vi_mode: bool = False,
        keep_history: bool = True,
        input: Any = None,
        output: Any = None,
        env: Mapping[str, str] | None = None,
        on_first_draw: Callable[[], None] | None = None,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        self.session = session
        self.console = console
        self.diag = diag
        self.markdown = markdown
        self.env = os.environ if env is None else env
        self.prompt: PromptSession[str] = PromptSession(
            PROMPT,
            history=_history(history_path, keep=keep_history, warn=diag.warning),
            auto_suggest=AutoSuggestFromHistory(),
            completer=SlashCompleter(session),
            complete_in_thread=True,
            complete_while_typing=False,
            key_bindings=bindings(),
            enable_open_in_editor=True,
            vi_mode=vi_mode,
            prompt_continuation=continuation,
            bottom_toolbar=lambda: toolbar(session),
            input=input,
            output=output,
        )
        self._editor_failures = 0
        self._confirm = confirm or self._ask_yes_no
        if on_first_draw is not None:
            self._once_drawn(on_first_draw)

    def _once_drawn(self, action: Callable[[], None]) -> None:
        """Run `action` after the first prompt is on the screen (not before: it would slow it)."""

        def handler(app: Any) -> None:
            self.prompt.app.after_render -= handler
            action()

        self.prompt.app.after_render += handler

    def run(self, first_message: str | None = None) -> int:
        if first_message:
            # Piped text is sent without being typed: show what was sent before its answer,
            # marked as typed lines are (the prompt, then a dot before each new line).
            dot = continuation(len(PROMPT), 1, 0)
            print_lines(self.console, [f"{PROMPT if n == 0 else dot}{line}"
                                       for n, line in enumerate(excerpt(first_message, lines=3))],
                        style="dim")
            self._turn(lambda sink: self.session.ask(first_message, sink))
        while (line := self._read()) is not None:
            if line.strip() and not self._dispatch(line):
                break
        return errors.EXIT_OK

    def _read(self) -> str | None:
        """The next line; '' after Ctrl-C (the line is cleared), None at Ctrl-D.

        Any other failure of the line editor is told in one line and the session goes
        on; only if it fails again and again (the terminal is gone) does the session end."""
        typed = self._typed_ahead()
        try:
            line = self.prompt.prompt(pre_run=lambda: self._feed(typed)) if typed else self.prompt.prompt()
        except KeyboardInterrupt:
            return ""
        except EOFError:
            return None
        except Exception as exc:
            self._editor_failures += 1
            self.diag.error(f"the line editor failed ({type(exc).__name__}: {exc})")
            if self._editor_failures >= 3:
                return None
            return ""
        self._editor_failures = 0
        return line

    def _typed_ahead(self) -> str:
        """Keys typed while no prompt was there to read them (at start-up, while a command ran):
        the terminal was in its normal mode, which turns a typed Enter into a line feed, and
        the line editor would take that for "new line" and join two messages into one. They
        are read here, Enter given back its own key, for the prompt to take as typed."""
        try:
            fd = self.prompt.input.fileno()
            if not os.isatty(fd):
                return ""
            saved = termios.tcgetattr(fd)
        except (AttributeError, OSError, ValueError, termios.error, NotImplementedError):
            return ""
        import select

        quiet = list(saved)
        quiet[3] &= ~(termios.ECHO | termios.ICANON)  # a line not yet ended is readable too
        quiet[6] = list(saved[6])
        quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 0, 0
        data = b""
        try:
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
            while select.select([fd], [], [], 0)[0] and len(data) < 1 << 20:
                piece = os.read(fd, 65536)
                if not piece:
                    break
                data += piece
        except OSError:
            pass
        finally:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        return data.decode("utf-8", "replace").replace("\n", "\r")

    def _feed(self, typed: str) -> None:
        """Give the prompt keys as if they had been typed at it."""
        from prompt_toolkit.input.vt100_parser import Vt100Parser

        parser = Vt100Parser(self.prompt.app.key_processor.feed)
        parser.feed(typed)
        parser.flush()

    def _dispatch(self, line: str) -> bool:
        """Run one line; False when the session should end."""
        if not commands.is_command(line):
            text = line[1:] if line.startswith("//") else line
            self._turn(lambda sink: self.session.ask(text, sink))
            return True
        try:
            out = commands.dispatch(self.session, line)
            print_lines(self.console, out.lines, style="dim")
            if out.table:
                print_table(self.console, out.table.headers, out.table.rows, widest=out.table.widest)
            return self._act(out)
        except errors.ChatcliError as exc:
            self.diag.error(exc)
            return True
        except KeyboardInterrupt:  # Ctrl-C ends the command, never the session
            self.diag.note(f"{line.split()[0]} cancelled")
            return True

    def _act(self, out: commands.Output) -> bool:
        """Carry out what a command asked for beyond printing; False to leave."""
        if out.action is None:
            return True
        return self._actions[out.action](out)

    @property
    def _actions(self) -> dict[commands.Action, Callable[[commands.Output], bool]]:
        return {"exit": lambda out: False, "retry": self._retry, "edit": self._send_edited,
                "copy": self._copy, "save": self._save, "continue": self._continue,
                "edit_last": self._edit_last}

    def _continue(self, out: commands.Output) -> bool:
        if refusal := cannot_continue(self.session.conversation):
            self.diag.error(refusal)  # said before anything is announced
            return True
        last = self.session.conversation.messages[-1:]
        self.diag.note("continuing the last reply")
        self._turn(self.session.continue_last, after=last[0].content if last else "")
        return True

    def _edit_last(self, out: commands.Output) -> bool:
        """The last question, edited, sent in its place: in a fork of the conversation up to
        before it, so the conversation as it was stays whole."""
        text = edit_text(out.payload, self.env)
        if not text.strip():
            self.diag.note("the editor returned nothing; nothing sent")
            return True
        index = self.session.last_question()
        parts = self.session.conversation.messages[index].parts
        original, fork = self.session.fork(index)
        self.session.pending = [*parts, *self.session.pending]
        self.diag.note(f"sent in place of the last question, in conversation {fork}; as it was, the "
                       f"conversation stays as {original} (/resume {original})")
        self._turn(lambda sink: self.session.ask(text, sink))
        return True

    def _retry(self, out: commands.Output) -> bool:
        self._turn(self.session.retry)
        return True

    def _send_edited(self, out: commands.Output) -> bool:
        text = edit_text(out.payload, self.env)
        if text.strip():
            self._turn(lambda sink: self.session.ask(text, sink))
        else:
            self.diag.note("the editor returned nothing; nothing sent")
        return True

    def _copy(self, out: commands.Output) -> bool:
        self.console.file.write(osc52(out.payload, self.env))
        self.console.file.flush()
        self.diag.note(f"copied {len(out.payload)} characters with OSC 52 (a terminal that does "
                       "not allow clipboard writes ignores it)")
        return True

    def _save(self, out: commands.Output) -> bool:
        """Write a code block to a file; a file that exists is overwritten only when the user
        says so. A symbolic link (even one that points nowhere) is never written through: the
        question names it, and yes replaces the link itself with the file."""
        path = Path(out.target).expanduser()
        if path.is_dir():
            raise errors.UsageError(f"{out.target} is a directory", hint="give a file name")
        if path.is_symlink():
            question = (f"{out.target} is a symbolic link (to {os.readlink(path)}); replace the link with "
                        "the file? [y/N] ")
        else:
            question = f"{out.target} exists; overwrite it? [y/N] " if path.exists() else ""
        if question and not self._confirm(question):
            self.diag.note("not saved")
            return True
        try:
            write_new(path, out.payload.rstrip("\n") + "\n", replace=bool(question))
        except OSError as exc:
            raise errors.UsageError(f"cannot write {out.target}: {exc.strerror or exc}") from None
        lines = out.payload.rstrip("\n").count("\n") + 1
        self.diag.note(f"saved {lines} line{'' if lines == 1 else 's'} to {out.target}")
        return True

    def _ask_yes_no(self, question: str) -> bool:
        """A yes or no from the keyboard; anything but y (Enter, Ctrl-C, Ctrl-D) is no. Keys
        typed before the question is asked are thrown away: they cannot answer it."""
        asking: PromptSession[str] = PromptSession(input=self.prompt.input, output=self.prompt.output)
        discard_typeahead(self.prompt.input)
        try:
            return asking.prompt(question).strip().lower() in ("y", "yes")
        except (KeyboardInterrupt, EOFError):
            return False

    def _turn(self, run: Callable[[Sink], TurnResult], *, after: str = "") -> None:
        """One request, its reply drawn as it arrives; `after`: the text it continues."""
        settings = self.session.settings
        self.session.start_tools()  # an MCP server not yet running says so before the waiting line
        # self.markdown was decided by render.drawing when the session began
        sink: Sink = reply_sink("markdown" if self.markdown else "plain", self.console.file,
                                reasoning=settings.reasoning, console=self.console,
                                thinking=self.console.file, raw=False, model=settings.model,
                                waiting=self.console.file if self.console.is_terminal else None)
        if after and self.markdown:
            sink.resume_after(after)  # type: ignore[attr-defined]
        try:
            with typeahead_mode(self.prompt.input):
                result = run(sink)
        except errors.ToolInterrupted:
            self.session.turn_failed()
            self.diag.note("stopped; nothing more runs, and what ran is kept with its output (/tool-output "
                           "shows it): the model reads it with your next message")
        except errors.Interrupted:
            self.session.turn_failed()
            self.diag.note("interrupted; the partial reply is kept (/retry asks again)"
                           if self._replied() else f"interrupted before any reply; {NO_REPLY_NOTE}")
        except errors.ChatcliError as exc:
            self.session.turn_failed()
            self.diag.error(exc)
            if not isinstance(exc, errors.UsageError) and not self._replied():
                self.diag.note(NO_REPLY_NOTE)
            elif not isinstance(exc, errors.UsageError):
                self.diag.note("the partial reply is kept (/continue finishes it, /retry asks again)")
        else:
            self._after(result)

    def _replied(self) -> bool:
        """Whether the last turn got any reply (a partial one counts)."""
        messages = self.session.conversation.messages
        return bool(messages) and messages[-1].role != "user"

    def _after(self, result: TurnResult) -> None:
        s = self.session.settings
        if result.notice:
            self.diag.warning(result.notice)
        line = format_usage(result.usage, price_input=s.price_input, price_output=s.price_output,
                            currency=s.currency, total=self.session.total,
                            total_label=self.session.total_label)
        if note := answer_note(result.answer_after, bool(result.reply.reasoning)):
            line += f" · {note}"
        self.console.print(line, style="dim", markup=False, highlight=False)
        if result.window.dropped:
            self.console.print(dropped_note(result.window), style="dim", markup=False, highlight=False)

# What a question that got no reply becomes, said where it fails.
NO_REPLY_NOTE = ("your question is kept, marked no reply; it is not sent with your next question "
                 "(/retry sends it again)")


@contextmanager
def typeahead_mode(keyboard: Any) -> Iterator[None]:
    """While a reply streams: keys typed ahead are not echoed into it, and Enter stays Enter.

    In the terminal's normal mode a typed Enter arrives as Ctrl-J (ICRNL),
    which the prompt reads as "new line", and every key is echoed into the
    reply being drawn. Ctrl-C still interrupts (ISIG stays on).
    """
    try:
        fd = keyboard.fileno()
        saved = termios.tcgetattr(fd)
    except (AttributeError, OSError, ValueError, termios.error, NotImplementedError):
        yield
        return
    quiet = list(saved)
    quiet[0] &= ~termios.ICRNL
    quiet[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def write_new(path: Path, text: str, *, replace: bool) -> None:
    """Write `text` to `path` without following a symbolic link: a new file is created only if
    nothing is there (not even a link made a moment ago); with `replace`, a link there is
    removed first and a file there is truncated."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
    if replace and path.is_symlink():
        path.unlink()
    flags |= os.O_TRUNC if replace and path.exists() else os.O_EXCL
    with os.fdopen(os.open(path, flags, 0o644), "w", encoding="utf-8") as handle:
        handle.write(text)


def discard_typeahead(keyboard: Any) -> None:
    """Throw away the keys typed so far: those prompt_toolkit has read ahead, and those the
    terminal holds."""
    from prompt_toolkit.input.typeahead import clear_typeahead

    clear_typeahead(keyboard)
    # Not a terminal (a test's pipe): nothing typed ahead to lose.
    with contextlib.suppress(AttributeError, OSError, ValueError, termios.error, NotImplementedError):
        termios.tcflush(keyboard.fileno(), termios.TCIFLUSH)


def terminal_input() -> Any:
    """Keyboard input from the terminal itself, for when stdin was a pipe (`chatcli -i`)."""
    from prompt_toolkit.input import create_input

    try:
        tty = open("/dev/tty", encoding="utf-8")  # noqa: SIM115 (lives as long as the session)
    except OSError:
        raise errors.UsageError("no terminal to read the keyboard from",
                                hint="-i needs a terminal; use `chatcli ask` in scripts") from None
    return create_input(tty)
