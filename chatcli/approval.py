"""Asking the user before a tool runs: the call shown whole and exact, then one key.

The shell layer's side of tools/box.py's approval callback. The call is drawn as it
will run: a command through cmdview's exact layout (every row as it runs, non-ASCII
marked), a change to a file as its diff, anything else as its JSON arguments; control,
bidi and zero-width characters are shown as signs (`^[`, `<U+202E>`) and named, never
interpreted. Keys typed before the menu is on the screen are thrown away; only a key
pressed after it answers. A call too tall for the screen cannot be approved from it:
e opens it in $EDITOR, where it can be read (and changed) whole.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chatcli import errors
from chatcli.conversation import ToolCall
from chatcli.textsafe import describe_hidden, hidden_characters, shown, visible_code
from chatcli.tools import Tool, ToolError
from chatcli.tools.box import Decision, parse_arguments

# Between the call appearing and the menu that answers for it: keys typed before (type-ahead,
# a key meant for the reply) are thrown away.
SETTLE_SECONDS = 0.3
NO_KEYS = ("n", "\r", "\n", "\x1b", "\x04", "q")
ANSWER_KEYS = ("y", "a", "e", "x", "v", "\x03", *NO_KEYS)
EFFECTS = {"read": "reads files", "write": "changes files", "run": "runs a program",
           "network": "fetches from the network", "mcp": "a tool of an MCP server"}


def effect_of(tool: Tool) -> str:
    """What a call does, as the menu says it: an MCP tool names its server, and what the
    server says of it (a hint, never trusted)."""
    if tool.effect != "mcp":
        return EFFECTS[tool.effect]
    said = "; the server says it only reads" if tool.hint_read_only else ""
    return f"{shown(tool.remote_name)} of the MCP server {tool.server}{said}"


def discard_typeahead(fd: int, settle: float, *outputs: Any) -> None:
    """Let what was just drawn reach the screen, wait `settle` seconds, then throw away every
    key typed until now: only a key pressed after the question is on screen answers it."""
    import contextlib
    import termios
    import time

    for out in outputs:
        out.flush()
        with contextlib.suppress(OSError, ValueError, termios.error):  # not a terminal: no wait
            termios.tcdrain(out.fileno())
    time.sleep(settle)
    termios.tcflush(fd, termios.TCIFLUSH)


def read_key(prompt: str, *, settle: float = 0.0, keyboard: Any = None, screen: Any = None) -> str:
    """One key from the terminal, without Enter: a letter in lower case, "\\r" for Enter,
    "\\x1b" for Esc (or any key that sends an escape sequence), "\\x03" for Ctrl-C. Keys typed
    before the prompt is drawn are thrown away (after `settle` seconds of the screen as it is).
    `keyboard` and `screen` are stdin and stderr unless given."""
    import select
    import termios
    import tty

    keyboard, screen = keyboard or sys.stdin, screen or sys.stderr
    fd = keyboard.fileno()
    key = b"\x03"  # Ctrl-C pressed before the terminal was in raw mode arrives as a signal
    saved = termios.tcgetattr(fd)
    try:
        discard_typeahead(fd, settle, sys.stdout, screen)
        screen.write(prompt)
        screen.flush()
        # Raw: Ctrl-C arrives as a key (it aborts like Esc). TCSANOW, not setraw's default
        # TCSAFLUSH: a key pressed once the prompt is drawn counts, however soon.
        tty.setraw(fd, termios.TCSANOW)
        key = os.read(fd, 1)
        if key == b"\x1b" or key[0] >= 0x80:  # the rest of an arrow key, or of a wide character
            while select.select([fd], [], [], 0.05)[0]:
                key += os.read(fd, 16)
    except KeyboardInterrupt:
        pass
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    screen.write("\n")
    screen.flush()
    if key.startswith(b"\x1b"):
        return "\x1b"
    return key.decode("utf-8", "replace").lower() if len(key) == 1 else ""


def edit_text(initial: str, env: Mapping[str, str], *, suffix: str = ".md") -> str:
    """Open $VISUAL or $EDITOR (or vi) on `initial`; return what was saved."""
    editor = env.get("VISUAL") or env.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=suffix, delete=False, encoding="utf-8") as handle:
        handle.write(initial)
        path = handle.name
    try:
        done = subprocess.run([*shlex.split(editor), path], check=False)
        if done.returncode != 0:
            raise errors.UsageError(f"the editor `{editor}` exited with {done.returncode}; nothing sent")
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"cannot run the editor `{editor}`: {exc.strerror}",
                                hint="set EDITOR") from None
    finally:
        os.unlink(path)




def confirm(question: str, *, keyboard: Any = None, screen: Any = None) -> bool:
    """A yes (y) or no (anything else) from one key pressed after the question is shown."""
    return read_key(question, settle=SETTLE_SECONDS, keyboard=keyboard, screen=screen) == "y"


class TerminalApproval:
    """The approval menu on a terminal: `console` draws (Rich), `keyboard` is read raw."""

    def __init__(self, console: Any, *, keyboard: Any = None, screen: Any = None,
                 env: Mapping[str, str] = os.environ, settle: float = SETTLE_SECONDS) -> None:
        self.console = console
        self.keyboard = keyboard or sys.stdin
        self.screen = screen or console.file
        self.env = env
        self.settle = settle

    def __call__(self, tool: Tool, call: ToolCall, arguments: dict[str, Any]) -> Decision:
        edited: dict[str, Any] | None = None
        paged = False  # the call was read whole in the pager: it may be approved, though tall
        while True:
            args = edited if edited is not None else arguments
            if not paged:
                lines = self._draw(tool, call, args)
            tall = not paged and lines > max(self.console.height - 3, 3)
            if tall:
                self.console.print(f"the call takes {lines} lines, more than the screen shows: it cannot "
                                   "be approved from here; v shows it whole in a pager, then asks",
                                   style="yellow", markup=False, highlight=False)
            menu = ("[v]iew whole  [n]o  [e]dit  e[x]plain (Enter, Esc: no) " if tall else
                    f"run it? [y]es  [n]o  [e]dit  [a]lways {tool.name} this session  e[x]plain "
                    "(Enter, Esc: no) ")
            key = read_key(menu, settle=self.settle, keyboard=self.keyboard, screen=self.screen)
            while (key in ("y", "a") and tall) or key not in ANSWER_KEYS:
                self.console.print("the call is not shown whole, so it cannot be approved here" if tall and
                                   key in ("y", "a") else f"{key!r} is not an answer", style="yellow",
                                   markup=False, highlight=False)
                key = read_key(menu, settle=self.settle, keyboard=self.keyboard, screen=self.screen)
            if key == "\x03":
                raise KeyboardInterrupt
            if key == "v":
                paged = tall and self._page(tool, args)
            elif key in ("y", "a"):
                return Decision("yes" if key == "y" else "always", edited)
            elif key == "e":
                edited, paged = self._edit(tool, args) or edited, False
            elif key == "x":
                self._explain(tool)
            elif key in NO_KEYS:
                return Decision("no")

    def _draw(self, tool: Tool, call: ToolCall, args: dict[str, Any]) -> int:
        """The call as it will run; how many lines it took."""
        console = self.console
        console.print(f"▶ the model calls {shown(tool.name)} ({effect_of(tool)}):", style="bold",
                      markup=False, highlight=False)
        body = _body(tool, args, self._context())
        text = visible_code(body)
        for line in text.split("\n"):
            style = ("green" if line.startswith("+") else "red" if line.startswith("-") else None) \
                if tool.preview else None
            console.print("  " + line, style=style, markup=False, highlight=False, crop=False,
                          soft_wrap=True)
        found = hidden_characters(body)
        if found:
            console.print(f"  it holds invisible or direction-changing characters, shown as signs: "
                          f"{describe_hidden(found)}", style="yellow", markup=False, highlight=False)
        if text != body and not found:
            console.print("  control characters in it are shown as ^X signs", style="yellow", markup=False,
                          highlight=False)
        width = max(int(console.width) - 2, 20)
        return 1 + sum(max(1, -(-_width(line) // width)) for line in text.split("\n")) + bool(found)

    def _page(self, tool: Tool, args: dict[str, Any]) -> bool:
        """The call whole in $PAGER (less by default), signs for hidden characters as on the
        screen; True once the pager has shown it and exited."""
        text = f"{tool.name} ({effect_of(tool)}):\n" + visible_code(_body(tool, args, self._context()))
        pager = shlex.split(self.env.get("PAGER") or "less") or ["less"]
        try:
            done = subprocess.run(pager, input=text.encode("utf-8"), check=False)
        except OSError as exc:
            self.console.print(f"cannot run the pager `{pager[0]}`: {exc.strerror}; set PAGER",
                               style="red", markup=False, highlight=False)
            return False
        return done.returncode == 0

    def _context(self) -> Any:
        from chatcli.tools import Context

        return Context(cwd=Path.cwd())

    def _edit(self, tool: Tool, args: dict[str, Any]) -> dict[str, Any] | None:
        """The arguments after $EDITOR (a command as its text, else JSON); None if unchanged
        or not usable (said why)."""
        subject = tool.subject or ""
        plain = bool(subject) and set(args) <= {subject} and isinstance(args.get(subject), str)
        initial = str(args[subject]) if plain else json.dumps(args, indent=2, ensure_ascii=False)
        try:
            text = edit_text(initial, self.env, suffix=".sh" if plain else ".json")
        except errors.UsageError as exc:
            self.console.print(exc.line(), style="red", markup=False, highlight=False)
            return None
        if plain:
            text = text.rstrip("\n")
            return {subject: text} if text != initial and text.strip() else None
        try:
            new = parse_arguments(text)
        except ToolError as exc:
            self.console.print(f"not changed: {exc}", style="red", markup=False, highlight=False)
            return None
        return new if new != args else None

    def _explain(self, tool: Tool) -> None:
        # a tool's description may come from a server (MCP): data, like the call
        self.console.print(shown(f"{tool.name}: {tool.description}"), markup=False, highlight=False)
        self.console.print("y runs it once; a runs this tool without asking for the rest of the session; "
                           "n tells the model it was refused; e changes the arguments first (what runs "
                           "is shown again)", style="dim", markup=False, highlight=False)


def _body(tool: Tool, args: dict[str, Any], ctx: Any) -> str:
    """What the approval shows of a call."""
    subject = tool.subject
    if subject is not None and isinstance(args.get(subject), str):
        rest = {k: v for k, v in args.items() if k != subject}
        return str(args[subject]) + (f"\n(with {json.dumps(rest, ensure_ascii=False)})" if rest else "")
    if tool.preview is not None:
        try:
            return tool.preview(args, ctx)
        except ToolError as exc:
            return f"(this call will fail: {exc})\n" + json.dumps(args, indent=2, ensure_ascii=False)
    return json.dumps(args, indent=2, ensure_ascii=False) if args else "(no arguments)"


def _width(line: str) -> int:
    from chatcli.cmdview import char_width

    return sum(char_width(char) for char in line)
