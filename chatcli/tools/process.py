"""Running a shell command for a tool: its output captured (bounded), a timeout, and Ctrl-C.

The command runs in a session of its own, so the terminal's Ctrl-C reaches chatcli, which
stops the command's whole process group and keeps what it printed so far (Stopped);
stdin is closed (a command waiting for input would wait for ever). Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from chatcli.tools import Context, Stopped, ToolError

MAX_OUTPUT_BYTES = 8_000_000  # kept of one command's output; the rest is counted, not held


def run_shell(command: str, ctx: Context, *, stdin: bytes | None = None) -> str:
    """Run `command` with the user's shell in `ctx.cwd`; its output and exit code as text.
    `stdin`, when given, is written to it (then closed)."""
    shell = ctx.env.get("SHELL") or os.environ.get("SHELL") or "/bin/sh"
    try:
        process = subprocess.Popen([shell, "-c", command], cwd=ctx.cwd, env=dict(ctx.env) or None,
                                   stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        raise ToolError(f"cannot run {shell}: {exc.strerror or exc}") from None
    chunks: list[bytes] = []
    held = [0, 0]  # bytes kept, bytes dropped

    def read() -> None:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            room = max(MAX_OUTPUT_BYTES - held[0], 0)
            if room:
                chunks.append(chunk[:room])
            held[0] += min(len(chunk), room)
            held[1] += len(chunk) - min(len(chunk), room)

    def write() -> None:
        assert process.stdin is not None
        with contextlib.suppress(OSError):  # a command that does not read its input
            process.stdin.write(stdin or b"")
            process.stdin.close()

    reader = threading.Thread(target=read, name="tool-output", daemon=True)
    reader.start()
    if stdin is not None:
        threading.Thread(target=write, name="tool-input", daemon=True).start()
    started = time.monotonic()
    try:
        while process.poll() is None:
            if time.monotonic() - started > ctx.timeout:
                _stop(process)
                reader.join(2)
                return _text(chunks, held) + f"\n[stopped: still running after {ctx.timeout:g} s]"
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.1)
    except KeyboardInterrupt:
        _stop(process)
        reader.join(2)
        seconds = time.monotonic() - started
        raise Stopped(_text(chunks, held) + f"\n[stopped by the user after {seconds:.1f} s]") from None
    reader.join(5)
    code = process.returncode
    return _text(chunks, held) + f"\n[exit code {code if code >= 0 else 128 - code}]"


def _text(chunks: list[bytes], held: list[int]) -> str:
    text = b"".join(chunks).decode("utf-8", "replace").rstrip("\n")
    return text + (f"\n[{held[1]:,} more bytes of output were not kept]" if held[1] else "")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The command's process group: asked to stop, then killed if it does not."""
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
