"""The typer app, its error boundary, and what every command shares: flags, options, builders.

Every failure leaves through `_CliGroup.main` as one line on stderr and a
documented exit code (README, "Exit codes"); no traceback reaches a user.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from chatcli import errors
from chatcli.cli.options import Flags
from chatcli.config import Settings
from chatcli.render import Diagnostics, wants_color
from chatcli.textsafe import Redactor, visible

EPILOG = """\b
Examples:
  chatcli                                  an interactive session (/help inside)
  chatcli -c                               carry on with the last conversation
  cat notes.txt | chatcli -i               the notes first, then the session
  chatcli ask "Who won the world series in 2020?"
  cat notes.txt | chatcli ask "summarise this"
  echo "translate to English: 你好" | chatcli
  chatcli ask --session work "and the next step?"
  chatcli ask --json "hi"
  chatcli sessions search "docker"
"""


# The base of the usage errors of typer's vendored click ("no such option", a bad value),
# found through a public name: typer exports BadParameter, not its ancestors, and the
# module they live in is private. tests/test_cli.py fails loudly if this ever breaks.
CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


# Every secret this process learns (the key, configured header values) is removed from
# every diagnostic line, whatever the message that quotes it.
REDACT = Redactor()


def diagnostics() -> Diagnostics:
    return Diagnostics(sys.stderr, color=wants_color(sys.stderr, os.environ), redact=REDACT)


def resolve_key(settings: Settings) -> str:
    """The API key for `settings`, which from now on is never shown, with the header values."""
    from chatcli.config import resolve_api_key

    REDACT.add(*settings.headers.values())
    key = resolve_api_key(settings, os.environ)
    REDACT.add(key)
    return key


def terminate(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so a partial reply is saved, then leave quietly."""
    import signal

    # The shell forwards the terminal's SIGHUP as well: a second signal must not
    # interrupt the saving of the partial reply that the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise errors.Terminated(signum)


def _arm_signals() -> None:
    """From here on, signals become exceptions that the boundary below catches."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, terminate)
        signal.signal(signal.SIGHUP, terminate)


def guard(call: Callable[[], Any], *, debug: bool = False) -> int:
    """Run `call`; turn every failure into one line on stderr and return the exit code."""
    diag = diagnostics()
    _arm_signals()
    try:
        code = call()
    except errors.ChatcliError as exc:
        diag.error(exc)
        code = exc.exit_code
    except CLICK_ERROR as caught:
        click_error: Any = caught  # a ClickException: ctx, format_message(), exit_code
        ctx = getattr(click_error, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx else ""
        diag.error(click_error.format_message() + where)
        code = click_error.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = errors.EXIT_INTERRUPTED
    except errors.Terminated as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, EOFError):
        diag.error("interrupted")
        code = errors.EXIT_INTERRUPTED
    except (BrokenPipeError, _PipeClosed):
        _silence_stdout()
        code = errors.EXIT_PIPE_CLOSED
    except Exception as exc:
        if debug:
            sys.stderr.write(REDACT(visible("".join(traceback.format_exception(exc)))))
        diag.error(f"internal error ({type(exc).__name__}: {exc}); please report it, "
                   "with the output of --debug")
        code = errors.EXIT_UNEXPECTED
    return code if isinstance(code, int) else errors.EXIT_OK


class _PipeClosed(Exception):
    """stdout's reader left; typer would turn the BrokenPipeError into exit 1 (a bug)."""


class _CliGroup(TyperGroup):
    """Every failure leaves as one line on stderr and its exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        debug = "--debug" in (kwargs.get("args") or sys.argv[1:])
        sys.exit(guard(lambda: super(_CliGroup, self).main(*args, **kwargs), debug=debug))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed() from None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None \
                and not ctx.resilient_parsing:  # Tab completion: complete nothing, say nothing
            raise errors.UsageError(f"{name!r} is not a command", hint=_what_was_meant(
                name, args, list(self.list_commands(ctx))))
        return super().resolve_command(ctx, args)


def _what_was_meant(name: str, args: list[str], commands: list[str]) -> str:
    """A hint for a word that is not a command: the command it nearly is, or asking it."""
    import difflib
    import shlex

    if name.lower() in ("version", "v"):
        return "chatcli --version prints the version"
    close = difflib.get_close_matches(name.lower(), commands, n=1, cutoff=0.75)
    if close and " " not in name:
        return f"did you mean `chatcli {close[0]}`?"
    return f"to ask it: chatcli ask {shlex.quote(' '.join(args))}"


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


app = typer.Typer(
    cls=_CliGroup,
    help="Chat with any OpenAI-compatible chat-completions endpoint from the terminal.",
    epilog=EPILOG,
    no_args_is_help=False,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Show or create the configuration file.", no_args_is_help=True)
sessions_app = typer.Typer(help="List, search, export and remove saved conversations.",
                           no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(sessions_app, name="sessions")


# Text takes at most about this many bytes per token (UTF-8 CJK: 3 bytes and one
# token; English: about 4 bytes a token). Piped input is read only up to what
# could possibly fit, so a 10 MB log is refused without holding 10 MB.
BYTES_PER_TOKEN = 8
MAX_STDIN_BYTES = 256_000_000  # whatever the context window claims


def _read_at_most(source: Any, size: int) -> bytes:
    """Up to `size` bytes, read in pieces: memory grows with what arrives, not with `size`."""
    data = bytearray()
    while len(data) < size and (piece := source.read(min(1 << 20, size - len(data)))):
        data += piece
    return bytes(data)


def read_stdin(diag: Diagnostics, *, context_window: int) -> str | None:
    """Piped input as text, or None when stdin is a terminal (or absent).

    Bytes that are not UTF-8 are replaced with U+FFFD and reported, never fatal.
    Input far larger than the context window is refused after reading only a
    bounded amount.
    """
    stream = sys.stdin
    if stream is None or stream.closed or stream.isatty():
        return None
    source = stream.buffer if hasattr(stream, "buffer") else None
    limit = min(2 * context_window * BYTES_PER_TOKEN, MAX_STDIN_BYTES)
    data = stream.read(limit + 1).encode() if source is None else _read_at_most(source, limit + 1)
    if len(data) > limit:
        raise errors.ContextTooLongError(
            f"stdin holds more than {limit / 1e6:.1f} MB, far more than fits the context window "
            f"of {context_window:,} tokens; nothing was sent",
            hint="pipe in a part of it (head, tail, grep), or raise context_window")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        diag.warning(f"stdin is not valid UTF-8: {bad} invalid byte sequence(s) replaced with �")
    return text.removeprefix("\ufeff")


def load_config(flags: Flags) -> tuple[Settings, dict[str, Any]]:
    """The merged settings, and the file's data they came from (read once)."""
    from chatcli.config import default_config_path, merge, read_config

    path = flags.config or default_config_path(os.environ)
    data = read_config(path, must_exist=flags.config is not None)
    return merge(data, os.environ, flags.settings_flags(), path=path), data


def build_settings(flags: Flags, diag: Diagnostics | None = None) -> Settings:
    """The merged settings; warns when the config file holds a key others can read."""
    from chatcli.config import readable_secret

    settings, data = load_config(flags)
    path = settings.config_path
    if diag is not None and path is not None and (problem := readable_secret(path, data)):
        diag.warning(problem)
    return settings
