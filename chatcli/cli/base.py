"""The command line's plumbing that needs no typer: flags, settings, diagnostics, stdin,
and the error boundary.

`chatcli ask QUESTION` and the interactive session start without importing typer
at all (__main__ takes them straight here); every other command comes through the
typer app in app.py, which uses the same pieces.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

from chatcli import errors
from chatcli.attachments import decode, read_at_most
from chatcli.config import Settings, parse_params
from chatcli.conversation import BYTES_PER_TOKEN, ImageDetail
from chatcli.render import Diagnostics, wants_color
from chatcli.schema import KEYS_BY_NAME, Effort, ReasoningMode
from chatcli.textsafe import Redactor, url_secrets, visible


@dataclass
class Flags:
    """What the command line says; None means "not given" so the merge can skip it."""

    model: str | None = None
    system_prompt: str | None = None
    profile: str | None = None
    role: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    config: Path | None = None
    debug: bool | None = None
    usage: bool | None = None
    no_stream: bool | None = None
    json: bool | None = None
    session: str | None = None
    resume_latest: bool | None = None
    no_save: bool | None = None
    no_markdown: bool | None = None
    reasoning: ReasoningMode | None = None
    reasoning_effort: Effort | None = None
    params: list[str] | None = None  # --param KEY=JSON, as typed
    files: list[str] | None = None  # -f PATH, as typed: files, directories, image URLs, - for stdin
    image_detail: ImageDetail | None = None
    code: bool | None = None  # -x: print only the reply's code
    local_model: str | None = None  # --local-model: a local model's name or .gguf path, used now
    tools: list[str] | None = None  # -T NAME: tools offered besides the configured ones
    all_tools: bool | None = None  # --tools
    no_tools: bool | None = None  # --no-tools
    mcp: list[str] | None = None  # --mcp SERVER[:GLOB]: an MCP server offered besides the configured ones
    yes: bool | None = None  # --yes: tool calls run without asking

    def over(self, base: Flags | None) -> Flags:
        """These flags, falling back to `base` (the options given before the subcommand)."""
        if base is None:
            return self
        return Flags(**{f.name: getattr(base, f.name) if getattr(self, f.name) is None
                        else getattr(self, f.name) for f in fields(self)})

    def settings_flags(self) -> dict[str, Any]:
        return {"model": self.model, "system_prompt": self.system_prompt,
                "profile": self.profile, "role": self.role, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "reasoning": self.reasoning,
                "reasoning_effort": self.reasoning_effort, "image_detail": self.image_detail,
                "params": parse_params(self.params) if self.params else None,
                "local_model": self.local_model}

    def check(self) -> Flags:
        """Values the option parser lets through but that mean nothing."""
        if self.model is not None and not self.model.strip():
            raise errors.UsageError("--model needs a model name", hint="chatcli ask -m gpt-4o-mini ...")
        if self.temperature is not None and not math.isfinite(self.temperature):
            raise errors.UsageError(f"--temperature must be a number from 0 to 2, not {self.temperature}")
        for flag, name in (("--reasoning", "reasoning"), ("--reasoning-effort", "reasoning_effort"),
                           ("--image-detail", "image_detail")):
            value, key = getattr(self, name), KEYS_BY_NAME[name]  # the config's own check
            if value is not None and not key.check(value):
                raise errors.UsageError(f"{flag} takes {key.kind}, not {value!r}")
        if self.params:
            parse_params(self.params)
        if self.code and self.json:
            raise errors.UsageError("--code and --json cannot be used together",
                                    hint="--code prints the reply's code, --json the whole response")
        if any(not ref.strip() for ref in self.files or ()):
            raise errors.UsageError("--file needs a path", hint="chatcli ask -f notes.txt \"summarise\"")
        if self.role is not None and not self.role.strip():
            raise errors.UsageError("--role needs a role name", hint="chatcli roles lists them")
        if self.no_tools and (self.tools or self.all_tools or self.mcp):
            raise errors.UsageError("--no-tools cannot be used with -T, --tools or --mcp")
        if self.session is not None and not self.session.strip():
            raise errors.UsageError("--session needs a name or a number",
                                    hint="chatcli sessions list shows them")
        return self


# The on/off switches of `chatcli ask` that __main__ reads itself (simple_ask); options.SHARED
# declares them for typer, and tests/test_options.py checks that the two agree.
ASK_SWITCHES = {"--no-save": "no_save", "--usage": "usage", "--no-stream": "no_stream", "--json": "json",
                "--no-markdown": "no_markdown", "--debug": "debug", "--continue": "resume_latest",
                "-c": "resume_latest", "--code": "code", "-x": "code"}


def simple_ask(args: Sequence[str]) -> tuple[Flags, list[str]] | None:
    """`ask` followed by words and on/off switches only (the commonest one-shot command
    line): its flags and the question's words, read without typer, which costs a tenth
    of a second to import and build. Anything else (a value, -h, --, no words) is None:
    typer reads it, with its help and its errors."""
    if not args or args[0] != "ask":
        return None
    given: dict[str, Any] = {}
    words: list[str] = []
    for arg in args[1:]:
        if arg in ASK_SWITCHES:
            given[ASK_SWITCHES[arg]] = True
        elif arg.startswith("-"):
            return None
        else:
            words.append(arg)
    return (Flags(**given), words) if words else None


# Every secret this process learns (the key, configured header values) is removed from
# every diagnostic line, whatever the message that quotes it.
REDACT = Redactor()


def diagnostics() -> Diagnostics:
    return Diagnostics(sys.stderr, color=wants_color(sys.stderr, os.environ), redact=REDACT)


def resolve_key(settings: Settings) -> str:
    """The API key for `settings`, which from now on is never shown, with the header values."""
    from chatcli.config import resolve_api_key

    REDACT.add(*settings.headers.values(), *url_secrets(settings.base_url))
    key = resolve_api_key(settings, os.environ, waiting=diagnostics().note)
    REDACT.add(key)
    return key


def key_for(settings: Settings) -> str | None:
    """resolve_key, for every endpoint but the local model (None), which makes its own."""
    from chatcli.schema import LOCAL

    return None if settings.base_url == LOCAL else resolve_key(settings)


def terminate(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so a partial reply is saved, then leave quietly."""
    import signal

    # The shell forwards the terminal's SIGHUP as well: a second signal must not
    # interrupt the saving of the partial reply that the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if errors.HOLD.active:  # a piece of the reply is half shown: it ends first, then this is raised
        errors.HOLD.pending = signum
        return
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
    except errors.Terminated as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, EOFError):
        diag.error("interrupted")
        code = errors.EXIT_INTERRUPTED
    except (BrokenPipeError, PipeClosed):
        _silence_stdout()
        code = errors.EXIT_PIPE_CLOSED
    except Exception as exc:
        said = _typer_outcome(exc, diag)
        if said is not None:
            return said
        if debug:
            sys.stderr.write(REDACT(visible("".join(traceback.format_exception(exc)))))
        diag.error(f"internal error ({type(exc).__name__}: {exc}); please report it, "
                   "with the output of --debug")
        code = errors.EXIT_UNEXPECTED
    return code if isinstance(code, int) else errors.EXIT_OK


def click_error_class(typer: Any) -> type[Exception]:
    """The base of the usage errors of typer's vendored click ("no such option", a bad
    value), found through a public name: typer exports BadParameter, not its ancestors,
    and the module they live in is private. tests/test_cli.py fails loudly if this breaks."""
    found: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return found


def _typer_outcome(exc: Exception, diag: Diagnostics) -> int | None:
    """The exit code of typer's own exceptions, said as the boundary says everything; None
    for any other exception. typer is looked for, not imported: without it, none of its
    exceptions can have been raised."""
    typer = sys.modules.get("typer")
    if typer is None:
        return None
    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, typer.Abort):
        return errors.EXIT_INTERRUPTED
    if isinstance(exc, click_error_class(typer)):
        click_error: Any = exc  # a ClickException: ctx, format_message(), exit_code
        ctx = getattr(click_error, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx else ""
        diag.error(click_error.format_message() + where)
        return int(click_error.exit_code)
    return None


class PipeClosed(Exception):
    """stdout's reader left; typer would turn the BrokenPipeError into exit 1 (a bug)."""


# Set by a command that has closed everything it opened (answer(): its session's MCP servers
# and its store), so that nothing is left for the interpreter's teardown to do.
_all_closed = False


def all_closed() -> None:
    """Say that what this command opened is closed: `finish` may end the process at once."""
    global _all_closed
    _all_closed = True


def finish(code: int | str | None) -> NoReturn:
    """End the program (chatcli.__main__ only: never a process that merely imports chatcli)
    with `code`. After a command that closed what it opened (all_closed), at once, once
    stdout and stderr are written: the interpreter's teardown (freeing openai's and pydantic's
    thousand modules' objects) takes 0.1-0.2 s after the answer is out, and the shell or a
    pipe's reader waits for it. Otherwise as usual, atexit handlers and all; so too under a
    profiler or a tracer (cProfile, coverage), which write what they found at exit."""
    if not _all_closed or not isinstance(code, int) or sys.getprofile() or sys.gettrace():
        sys.exit(code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left before the end: as the boundary says it
        _silence_stdout()
        code = code or errors.EXIT_PIPE_CLOSED
    except (OSError, ValueError):  # stdout closed or gone: nothing more can be written to it
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# Piped input is read only up to what could possibly fit (BYTES_PER_TOKEN), so a 10 MB
# log is refused without holding 10 MB.
MAX_STDIN_BYTES = 256_000_000  # whatever the context window claims


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
    data = stream.read(limit + 1).encode() if source is None else read_at_most(source, limit + 1)
    if len(data) > limit:
        raise errors.ContextTooLongError(
            f"stdin holds more than {_size(limit)}, far more than fits the context window "
            f"of {context_window:,} tokens; nothing was sent",
            hint="pipe in a part of it (head, tail, grep), or raise context_window")
    text, bad = decode(data)
    if bad:
        diag.warning(f"stdin is not valid UTF-8: {bad} invalid byte sequence(s) replaced with �")
    return text


def _size(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 1_000_000 else f"{count:,} bytes"


def load_config(flags: Flags) -> tuple[Settings, dict[str, Any]]:
    """The merged settings, and the file's data they came from (read once)."""
    from chatcli.config import default_config_path, merge, read_config

    path = flags.config or default_config_path(os.environ)
    data = read_config(path, must_exist=flags.config is not None)
    return merge(data, os.environ, flags.settings_flags(), path=path), data


def load_settings(flags: Flags) -> tuple[Settings, dict[str, Any]]:
    """load_config, and on a first run (nothing configured, the local extra installed) the
    local model as the endpoint."""
    from chatcli.config import localised, nothing_configured
    from chatcli.local import available

    settings, data = load_config(flags)
    if nothing_configured(settings) and available():
        settings = localised(settings, origin="automatic (no key, endpoint or profile configured)")
    return settings, data


def build_settings(flags: Flags, diag: Diagnostics | None = None) -> Settings:
    """The merged settings; warns when the config file holds a key others can read."""
    from chatcli.config import readable_secret

    settings, data = load_settings(flags)
    REDACT.add(*url_secrets(settings.base_url))
    path = settings.config_path
    if diag is not None and path is not None and (problem := readable_secret(path, data)):
        diag.warning(problem)
    return settings


def offers_tools(settings: Settings, flags: Flags) -> bool:
    """Whether this command line offers any tool (the config's, the role's, -T, --tools, an
    MCP server that is on). Here, not in tooling.py: a command that offers none imports
    nothing of tools/."""
    return not flags.no_tools and bool(settings.tools or flags.tools or flags.all_tools
                                       or mcp_chosen(settings, flags))


def mcp_chosen(settings: Settings, flags: Flags) -> dict[str, tuple[str, ...]]:
    """The MCP servers offered (server -> globs of its tools): the role's `mcp`, else each
    enabled server; and those --mcp names, their globs added. Nothing with --no-tools."""
    if flags.no_tools or not (settings.mcp_servers or flags.mcp):
        return {}
    enabled: dict[str, tuple[str, ...]] = {name: ("*",) for name, table in settings.mcp_servers.items()
                                           if table.get("enabled", True)}
    if settings.mcp is None and not flags.mcp:
        return enabled  # tools/mcp.py is imported only when there are globs to read
    from chatcli.tools.mcp import selection

    chosen = selection(settings.mcp) if settings.mcp is not None else enabled
    for server, globs in selection(flags.mcp or ()).items():
        chosen[server] = (*chosen.get(server, ()), *globs)
    return chosen
