"""The built-in tools: files (read, list, search, write, edit), the shell, and the web.

All off until enabled (-T NAME, --tools, a role's `tools`, the config's [tools] enabled).
Paths are relative to the working directory and may not leave it (no `..` out of it, no
absolute path elsewhere, no symbolic link that points outside); what a tool reads or
prints is bounded; binary files are refused. Changes to files and commands always ask
first (box.py), showing a diff or the command whole.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from chatcli.tools import Context, Tool, ToolError
from chatcli.tools.process import run_shell

MAX_READ_BYTES = 256_000  # one read_file
MAX_LISTED = 1_000  # list_files entries
MAX_MATCHES = 200  # search_files lines
MAX_SEARCHED_BYTES = 2_000_000  # a file larger than this is not searched
MAX_FETCH_BYTES = 2_000_000
SKIPPED_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".tox"}


def inside(ctx: Context, given: Any, *, must_exist: bool = True) -> Path:
    """`given` as a path in the working directory, or a ToolError saying why not."""
    if not isinstance(given, str) or not given.strip():
        raise ToolError("a path is required")
    root = ctx.cwd.resolve()
    path = (root / Path(given).expanduser()).resolve()
    if path != root and root not in path.parents:
        raise ToolError(f"{given} is outside the working directory ({root}); only paths inside it "
                        "can be used")
    if must_exist and not path.exists():
        raise ToolError(f"{given} does not exist")
    return path


def _text_of(path: Path, limit: int) -> tuple[str, bool]:
    """A file's text (at most `limit` bytes) and whether there was more; binary is refused."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if b"\0" in data[:8192]:
        raise ToolError(f"{path.name} is a binary file; only text files can be read")
    more = len(data) > limit
    data = data[:limit]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 3:  # not just a character cut at the limit
            raise ToolError(f"{path.name} is not UTF-8 text") from None
        text = data[:exc.start].decode("utf-8")
    return text, more


def read_file(args: dict[str, Any], ctx: Context) -> str:
    path = inside(ctx, args.get("path"))
    if path.is_dir():
        raise ToolError(f"{args['path']} is a directory; list_files lists it")
    text, more = _text_of(path, MAX_READ_BYTES)
    start = args.get("start_line")
    if isinstance(start, int) and start > 1:
        lines = text.split("\n")
        text = "\n".join(lines[start - 1:])
    if more:
        text += f"\n[only the first {MAX_READ_BYTES // 1000} kB of the file was read]"
    return text


def list_files(args: dict[str, Any], ctx: Context) -> str:
    base = inside(ctx, args.get("path") or ".")
    if not base.is_dir():
        raise ToolError(f"{args.get('path')} is not a directory")
    pattern = args.get("pattern") if isinstance(args.get("pattern"), str) else None
    root = ctx.cwd.resolve()
    found: list[str] = []
    for folder, _, files in _walk(base):
        for name in sorted(files):
            path = Path(folder) / name
            if pattern is None or path.match(pattern):
                found.append(str(path.relative_to(root)))
                if len(found) >= MAX_LISTED:
                    return "\n".join(found) + f"\n[stopped at {MAX_LISTED} files]"
    return "\n".join(found) if found else "(no files)"


def search_files(args: dict[str, Any], ctx: Context) -> str:
    try:
        regex = re.compile(str(args.get("pattern", "")))
    except re.error as exc:
        raise ToolError(f"the pattern is not a valid regular expression: {exc}") from None
    if not regex.pattern:
        raise ToolError("a pattern is required")
    base = inside(ctx, args.get("path") or ".")
    glob = args.get("glob") if isinstance(args.get("glob"), str) else None
    root = ctx.cwd.resolve()
    matches: list[str] = []
    paths = [base] if base.is_file() else (Path(folder) / name for folder, dirs, files in _walk(base)
                                           for name in sorted(files))
    for path in paths:
        if glob and not path.match(glob):
            continue
        try:
            if path.stat().st_size > MAX_SEARCHED_BYTES:
                continue
            text, _ = _text_of(path, MAX_SEARCHED_BYTES)
        except (ToolError, OSError):
            continue  # binary or unreadable: not text to search
        for number, line in enumerate(text.split("\n"), 1):
            if regex.search(line):
                matches.append(f"{path.relative_to(root)}:{number}: {line[:300]}")
                if len(matches) >= MAX_MATCHES:
                    return "\n".join(matches) + f"\n[stopped at {MAX_MATCHES} matches]"
    return "\n".join(matches) if matches else "(no matches)"


def _walk(base: Path) -> Any:
    """os.walk in name order, without version-control and cache directories."""
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        yield folder, dirs, files


def run_command(args: dict[str, Any], ctx: Context) -> str:
    command = args.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ToolError("a command is required")
    return run_shell(command, ctx)


def _new_text(args: dict[str, Any], ctx: Context) -> tuple[Path, str, str]:
    """The file a change is to, its text now ('' for a new file) and its text after."""
    path = inside(ctx, args.get("path"), must_exist=False)
    old = _text_of(path, MAX_READ_BYTES)[0] if path.is_file() else ""
    if "content" in args:
        new = args["content"]
        if not isinstance(new, str):
            raise ToolError("content must be text")
        return path, old, new
    find, put = args.get("old_text"), args.get("new_text")
    if not isinstance(find, str) or not isinstance(put, str) or not find:
        raise ToolError("old_text and new_text are required")
    if not path.is_file():
        raise ToolError(f"{args.get('path')} does not exist")
    count = old.count(find)
    if count != 1:
        raise ToolError(f"old_text is found {count} times in {args.get('path')}; it must be found "
                        "exactly once (give more of the text around it)")
    return path, old, old.replace(find, put)


def change_preview(args: dict[str, Any], ctx: Context) -> str:
    """The change as a unified diff (a new file: all of it added)."""
    import difflib  # here: an answer that offers write_file and never calls it needs none

    path, old, new = _new_text(args, ctx)
    name = str(path.relative_to(ctx.cwd.resolve()))
    diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                fromfile=f"a/{name}" if old else "/dev/null", tofile=f"b/{name}")
    text = "".join(line if line.endswith("\n") else line + "\n" for line in diff)
    return text or "(no change)"


def write_change(args: dict[str, Any], ctx: Context) -> str:
    path, old, new = _new_text(args, ctx)
    if path.is_symlink():
        raise ToolError(f"{args.get('path')} is a symbolic link; it is not written through")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")
    lines = new.count("\n") + (0 if new.endswith("\n") or not new else 1)
    return f"{'wrote' if not old else 'changed'} {args.get('path')} ({lines} lines)"


def fetch_url(args: dict[str, Any], ctx: Context) -> str:
    from chatcli.tools.web import fetch

    return fetch(args.get("url"), MAX_FETCH_BYTES, timeout=min(ctx.timeout, 60.0))


def _schema(required: list[str], **properties: tuple[str, str]) -> dict[str, Any]:
    return {"type": "object", "required": required,
            "properties": {name: {"type": kind, "description": text} for name, (kind, text) in
                           properties.items()}}


PATH = ("string", "a path relative to the working directory")
BUILTIN: tuple[Tool, ...] = (
    Tool("read_file", "Read a text file in the working directory (up to 256 kB).",
         _schema(["path"], path=PATH, start_line=("integer", "the first line to read (1 is the first)")),
         read_file, "read"),
    Tool("list_files", "List the files under a directory of the working directory, recursively "
         "(version-control and cache directories left out).",
         _schema([], path=("string", "a directory relative to the working directory (default .)"),
                 pattern=("string", "a glob the file names must match, such as *.py")),
         list_files, "read"),
    Tool("search_files", "Search the text files under a directory for lines matching a regular "
         "expression; returns path:line: text.",
         _schema(["pattern"], pattern=("string", "a Python regular expression"),
                 path=("string", "a file or directory (default .)"),
                 glob=("string", "only files matching this glob, such as *.md")),
         search_files, "read"),
    Tool("run_command", "Run a shell command in the working directory and return its output "
         "(stdout and stderr) and exit code. The user approves each command.",
         _schema(["command"], command=("string", "the command, as for sh -c")),
         run_command, "run", subject="command"),
    Tool("write_file", "Create a file, or replace a file's whole content. The user approves a diff.",
         _schema(["path", "content"], path=PATH, content=("string", "the whole new content")),
         write_change, "write", preview=change_preview),
    Tool("edit_file", "Replace one exact passage of a text file with another. The user approves a diff.",
         _schema(["path", "old_text", "new_text"], path=PATH,
                 old_text=("string", "the passage as it is now (found exactly once)"),
                 new_text=("string", "what replaces it")),
         write_change, "write", preview=change_preview),
    Tool("fetch_url", "Fetch an http or https URL and return its text (HTML reduced to text, up to 2 MB).",
         _schema(["url"], url=("string", "an http:// or https:// URL")),
         fetch_url, "network", subject="url"),
)
BUILTIN_BY_NAME = {tool.name: tool for tool in BUILTIN}
