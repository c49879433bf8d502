"""Files, directories, images and piped text turned into a message's parts.

What a file is, is decided by its content, not its name: PNG, JPEG, GIF and WebP
images (their size read from the header alone), text, or anything else, which is
refused. Nothing larger than could be sent is read whole: the size is looked at
first, and reads are bounded. Standard library only; the caller says what the
limits are (the context window) and gets the parts and a listing to show.
"""

from __future__ import annotations

import io
import os
import select
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from chatcli import errors
from chatcli.conversation import BYTES_PER_TOKEN, STDIN, ImageDetail, Part, image_tokens

# The API takes images of up to 20 MB each; a bigger one is refused before it is read.
MAX_IMAGE_BYTES = 20_000_000
# A directory is attached file by file, up to this many text files.
MAX_DIRECTORY_FILES = 100
HEAD_BYTES = 8192  # what is read to tell text from binary, and an image's kind
# A pipe (`-f <(command)`, a named pipe) is read without blocking: when no program writes to
# it, it is refused at once; when its writer stays silent this long, it is refused too.
PIPE_QUIET_SECONDS = 30.0

LANGUAGES = {
    "py": "python", "pyi": "python", "js": "javascript", "mjs": "javascript", "cjs": "javascript",
    "ts": "typescript", "tsx": "tsx", "jsx": "jsx", "rs": "rust", "go": "go", "c": "c", "h": "c",
    "cc": "cpp", "cpp": "cpp", "cxx": "cpp", "hpp": "cpp", "hh": "cpp", "java": "java", "kt": "kotlin",
    "kts": "kotlin", "swift": "swift", "m": "objectivec", "rb": "ruby", "php": "php", "pl": "perl",
    "lua": "lua", "r": "r", "jl": "julia", "scala": "scala", "cs": "csharp", "fs": "fsharp",
    "dart": "dart", "ex": "elixir", "exs": "elixir", "erl": "erlang", "hs": "haskell", "ml": "ocaml",
    "clj": "clojure", "sh": "bash", "bash": "bash", "zsh": "zsh", "fish": "fish", "ps1": "powershell",
    "bat": "batch", "sql": "sql", "html": "html", "htm": "html", "css": "css", "scss": "scss",
    "vue": "vue", "svelte": "svelte", "xml": "xml", "svg": "xml", "json": "json", "jsonl": "json",
    "yaml": "yaml", "yml": "yaml", "toml": "toml", "ini": "ini", "cfg": "ini", "md": "markdown",
    "rst": "rst", "tex": "latex", "csv": "csv", "diff": "diff", "patch": "diff", "proto": "protobuf",
    "tf": "hcl", "nix": "nix", "zig": "zig", "vim": "vim", "el": "elisp",
}
NAMED = {"dockerfile": "dockerfile", "makefile": "makefile", "cmakelists.txt": "cmake",
         "gemfile": "ruby", "rakefile": "ruby", "justfile": "just"}


def language_of(name: str) -> str:
    """The fence language for a file name ("" when it is not known)."""
    base = os.path.basename(name).lower()
    if base in NAMED:
        return NAMED[base]
    return LANGUAGES.get(base.rpartition(".")[2], "") if "." in base else ""


@dataclass
class Loaded:
    """What one reference attached: its parts, what to tell the user, and warnings."""

    parts: list[Part] = field(default_factory=list)
    listing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load(ref: str, *, context_window: int, detail: ImageDetail | None = None, stdin: str | None = None,
         images_only: bool = False) -> Loaded:
    """Attach `ref`: a file, a directory, an http(s) image URL, or "-" for `stdin`.

    Raises UsageError (exit 2) for what cannot be attached at all (missing, binary, a
    directory with too many files) and ContextTooLongError (exit 7, with both numbers)
    for what is too large for the context window."""
    if ref.startswith(("http://", "https://")):
        return Loaded([Part("image", ref, url=ref, detail=detail)])
    if ref == "-":
        if stdin is None:
            raise errors.UsageError("-f - attaches piped text, but nothing is piped in")
        return Loaded([_fitting(Part("text", STDIN, stdin), context_window)])
    path = Path(ref).expanduser()
    try:
        info = path.stat()
    except OSError as exc:
        raise errors.UsageError(f"cannot attach {ref}: {exc.strerror or exc}") from None
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) or stat.S_ISSOCK(info.st_mode):
        kind = "a socket" if stat.S_ISSOCK(info.st_mode) else "a device"
        raise errors.UsageError(f"cannot attach {ref}: it is {kind}, not a file",
                                hint="to attach what a program prints: -f <(command), or pipe it in")
    if stat.S_ISDIR(info.st_mode):
        if images_only:
            raise errors.UsageError(f"{ref} is a directory; /image takes one image file",
                                    hint="/file DIRECTORY attaches its text files")
        return _directory(path, ref, context_window)
    part, warning = _file(path, ref, info.st_size, context_window=context_window, detail=detail)
    if images_only and part.kind != "image":
        raise errors.UsageError(f"{ref} is not a PNG, JPEG, GIF or WebP image", hint="/file attaches text")
    return Loaded([part], [], [warning] if warning else [])


def _file(path: Path, name: str, size: int, *, context_window: int,
          detail: ImageDetail | None) -> tuple[Part, str | None]:
    try:
        with _opened(path, name, context_window) as handle:
            head = handle.read(HEAD_BYTES)
            kind = image_kind(head)
            if kind is not None:
                return _image(handle, name, size, kind, head, context_window, detail), None
            if is_binary(head):
                raise errors.UsageError(f"{name} is a binary file, not text nor a PNG, JPEG, GIF or WebP "
                                        "image; it cannot be sent")
            limit = context_window * BYTES_PER_TOKEN
            if size > limit:
                raise _too_big(name, f"{_size(size)}", context_window)
            # A pipe (`-f <(command)`) has no size until it is read: read no more than fits.
            data = head + read_at_most(handle, limit + 1 - len(head))
            if len(data) > limit:
                raise _too_big(name, f"more than {_size(limit)}", context_window)
    except OSError as exc:
        raise errors.UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    text, bad = decode(data)
    warning = f"{name} is not valid UTF-8: {bad} invalid byte sequence(s) replaced with �" if bad else None
    return _fitting(Part("text", name, text, language=language_of(name)), context_window), warning


def _opened(path: Path, name: str, context_window: int) -> BinaryIO:
    """The file, open for reading; a pipe read whole first (bounded in bytes and in silence)."""
    if not stat.S_ISFIFO(path.stat().st_mode):
        return path.open("rb")
    return io.BytesIO(_pipe_bytes(path, name, context_window * BYTES_PER_TOKEN + 1))


def _pipe_bytes(path: Path, name: str, limit: int) -> bytes:
    """Up to `limit` bytes of a pipe, never waiting on one nobody writes to. Ctrl-C stops it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data = bytearray()
        quiet_since = time.monotonic()
        while len(data) < limit:
            try:
                piece = os.read(fd, min(1 << 20, limit - len(data)))
            except BlockingIOError:  # a writer is there, with nothing written yet
                left = quiet_since + PIPE_QUIET_SECONDS - time.monotonic()
                if left <= 0:
                    raise errors.UsageError(
                        f"cannot attach {name}: the program writing to it sent nothing for "
                        f"{PIPE_QUIET_SECONDS:g} s") from None
                select.select([fd], [], [], min(left, 1.0))
                continue
            if not piece:  # its writer is done, or there never was one
                break
            data += piece
            quiet_since = time.monotonic()
    finally:
        os.close(fd)
    if not data:
        raise errors.UsageError(f"cannot attach {name}: it is a pipe and nothing was written to it "
                                "(no program is writing to it)")
    return bytes(data)


def _too_big(name: str, size: str, context_window: int) -> errors.ContextTooLongError:
    return errors.ContextTooLongError(
        f"{name} is {size}, more than the context window of {context_window:,} tokens can hold "
        f"(about {_size(context_window * BYTES_PER_TOKEN)} of text at most); nothing was sent",
        hint="attach a part of it, or raise context_window if the model takes more")


def decode(data: bytes) -> tuple[str, int]:
    """Text from bytes: UTF-8 (a byte-order mark dropped), with what is not replaced by
    U+FFFD; and how many sequences were replaced."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
        return text, text.count("\ufffd")


def _fitting(part: Part, context_window: int) -> Part:
    tokens = part.tokens
    if tokens > context_window:
        raise errors.ContextTooLongError(
            f"{part.name} is about {tokens:,} tokens (estimated), more than the context window of "
            f"{context_window:,}; nothing was sent",
            hint="attach a part of it, or raise context_window if the model takes more")
    return part


def _image(handle: BinaryIO, name: str, size: int, kind: str, head: bytes, context_window: int,
           detail: ImageDetail | None) -> Part:
    if size > MAX_IMAGE_BYTES:
        raise errors.ContextTooLongError(
            f"{name} is {_size(size)}, more than the {_size(MAX_IMAGE_BYTES)} an image may be; "
            "nothing was sent", hint="send a smaller or more compressed copy")
    width, height = image_size(kind, head, handle)
    tokens = image_tokens(width, height, detail)
    if tokens > context_window:
        raise errors.ContextTooLongError(
            f"{name} costs about {tokens:,} tokens, more than the context window of {context_window:,}; "
            "nothing was sent", hint="--image-detail low costs 85 tokens an image")
    handle.seek(0)
    data = read_at_most(handle, MAX_IMAGE_BYTES + 1)
    return Part("image", name, data=data, media_type=f"image/{kind}", width=width, height=height,
                detail=detail)


def read_at_most(source: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, read in pieces: memory grows with what arrives, not with `size`."""
    data = bytearray()
    while len(data) < size and (piece := source.read(min(1 << 20, size - len(data)))):
        data += piece
    return bytes(data)


def _size(count: int) -> str:
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


# --- what a file is --------------------------------------------------------------

def image_kind(head: bytes) -> str | None:
    """png, jpeg, gif or webp, from the first bytes; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def is_binary(head: bytes) -> bool:
    """A NUL byte, or mostly bytes that are not UTF-8 text: not something to read as text."""
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - 1  # the last character may be cut in the middle
    return bad > max(len(text) // 20, 4)


def image_size(kind: str, head: bytes, handle: BinaryIO) -> tuple[int | None, int | None]:
    """Width and height from an image's header (a JPEG's frame header may lie further in:
    read segment by segment); (None, None) when the header does not say."""
    try:
        if kind == "png" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return int(width), int(height)
        if kind == "gif":
            width, height = struct.unpack("<HH", head[6:10])
            return int(width), int(height)
        if kind == "webp":
            return _webp_size(head)
        if kind == "jpeg":
            return _jpeg_size(handle)
    except (struct.error, OSError):
        pass
    return None, None


def _webp_size(head: bytes) -> tuple[int | None, int | None]:
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None, None


_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(handle: BinaryIO) -> tuple[int | None, int | None]:
    handle.seek(2)
    for _ in range(1000):  # a header has a few dozen segments; a broken file ends the loop
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            break
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
            continue  # markers without a length
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            break
        length = struct.unpack(">H", length_bytes)[0]
        if marker[1] in _JPEG_FRAMES:
            frame = handle.read(5)
            height, width = struct.unpack(">HH", frame[1:5])
            return int(width), int(height)
        handle.seek(length - 2, os.SEEK_CUR)
    return None, None


# --- directories -----------------------------------------------------------------

def _directory(path: Path, ref: str, context_window: int) -> Loaded:
    """A directory's text files, listed by git inside a work tree (what it ignores is
    left out), otherwise by a walk that skips hidden files and directories. Binary
    files and images are skipped and counted; sizes are checked before reading."""
    chosen: list[tuple[Path, str, int]] = []
    skipped = 0
    limit = context_window * BYTES_PER_TOKEN
    total = 0
    for file, shown in _files(path, ref):
        try:
            info = file.stat()
            if not stat.S_ISREG(info.st_mode):
                continue
            with file.open("rb") as handle:
                head = handle.read(HEAD_BYTES)
        except OSError:
            skipped += 1
            continue
        if image_kind(head) is not None or is_binary(head):
            skipped += 1
            continue
        chosen.append((file, shown, info.st_size))
        total += info.st_size
        if len(chosen) > MAX_DIRECTORY_FILES:
            raise errors.UsageError(f"{ref} holds more than {MAX_DIRECTORY_FILES} text files; "
                                    "attach a smaller directory, or the files themselves")
        if total > limit:
            raise errors.ContextTooLongError(
                f"the text files in {ref} are more than {_size(total - 1)}, more than the context window of "
                f"{context_window:,} tokens can hold (about {_size(limit)}); nothing was sent",
                hint="attach a smaller directory, or the files themselves")
    if not chosen:
        raise errors.UsageError(f"{ref} holds no text files to attach")
    loaded = Loaded(listing=[f"attaching {len(chosen)} text file{'' if len(chosen) == 1 else 's'} "
                             f"from {ref} ({_size(total)})"
                             + (f"; {skipped} binary or image file{'' if skipped == 1 else 's'} skipped"
                                if skipped else "") + ":"])
    for file, shown, size in chosen:
        part, warning = _file(file, shown, size, context_window=context_window, detail=None)
        loaded.parts.append(part)
        loaded.listing.append(f"  {shown} ({_size(size)})")
        if warning:
            loaded.warnings.append(warning)
    check_total(loaded.parts, context_window)
    return loaded


def _files(path: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """Each file under `path`, with its name as shown (`ref` joined to its relative path)."""
    listed = _git_files(path)
    relatives = listed if listed is not None else _walk(path)
    for relative in relatives:
        yield path / relative, os.path.join(ref, relative)


def _git_files(path: Path) -> list[str] | None:
    """The files git tracks or would track under `path` (ignored ones left out); None
    outside a work tree or without git."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(path), "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    names = [os.fsdecode(name) for name in done.stdout.split(b"\0") if name]
    return sorted(dict.fromkeys(names))


def _walk(path: Path) -> Iterator[str]:
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.relpath(os.path.join(root, name), path)


def check_total(parts: list[Part], context_window: int) -> None:
    """Refuse what is attached to one message when, together, it cannot fit."""
    tokens = sum(part.tokens for part in parts)
    if len(parts) > 1 and tokens > context_window:
        raise errors.ContextTooLongError(
            f"the {len(parts)} attachments are about {tokens:,} tokens (estimated), more than the context "
            f"window of {context_window:,}; nothing was sent", hint="attach fewer files")
