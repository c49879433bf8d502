"""The command line: parses flags, builds settings, client and output, maps errors to exit codes.

The composition root and the only module that imports typer; nothing imports
it. Every failure leaves through `_CliGroup.main` as one line on stderr and a
documented exit code (README, "Exit codes"); no traceback reaches a user.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from chatcli import __version__, errors
from chatcli.config import Settings, default_config_path, load_settings, resolve_api_key
from chatcli.conversation import Conversation, compose_user_message
from chatcli.render import Diagnostics, format_usage, wants_color

EPILOG = """\b
Examples:
  chatcli                                  an interactive session (/help inside)
  cat notes.txt | chatcli -i               the notes first, then the session
  chatcli ask "Who won the world series in 2020?"
  cat notes.txt | chatcli ask "summarise this"
  echo "translate to English: 你好" | chatcli
  chatcli ask --json "hi"
  chatcli -p deepseek ask "你好"
"""


def _diagnostics() -> Diagnostics:
    return Diagnostics(sys.stderr, color=wants_color(sys.stderr, os.environ))


class _CliGroup(TyperGroup):
    """Turns every failure into one line on stderr and its exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from typer._click.exceptions import ClickException  # typer's vendored click

        kwargs["standalone_mode"] = False
        diag = _diagnostics()
        debug = "--debug" in (kwargs.get("args") or sys.argv[1:])
        try:
            code = super().main(*args, **kwargs)
        except errors.ChatcliError as exc:
            diag.error(exc)
            code = exc.exit_code
        except ClickException as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if getattr(exc, "ctx", None) else ""
            diag.error(exc.format_message() + where)
            code = exc.exit_code
        except typer.Abort:
            code = errors.EXIT_INTERRUPTED
        except (KeyboardInterrupt, EOFError):
            diag.error("interrupted")
            code = errors.EXIT_INTERRUPTED
        except BrokenPipeError:
            _silence_stdout()
            code = errors.EXIT_OK
        except Exception as exc:
            if debug:
                traceback.print_exc()
            diag.error(f"internal error ({type(exc).__name__}: {exc}); please report it, "
                       "with the output of --debug")
            code = errors.EXIT_UNEXPECTED
        sys.exit(code if isinstance(code, int) else 0)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


app = typer.Typer(
    cls=_CliGroup,
    help="Chat with any OpenAI-compatible chat-completions endpoint from the terminal.",
    epilog=EPILOG,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Show or create the configuration file.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@dataclass
class Flags:
    """What the command line says; None means "not given" so the merge can skip it."""

    model: str | None = None
    system_prompt: str | None = None
    profile: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    config: Path | None = None
    debug: bool = False
    usage: bool = False
    no_stream: bool = False
    json: bool = False

    def over(self, base: Flags | None) -> Flags:
        """These flags, falling back to `base` (the options given before the subcommand)."""
        if base is None:
            return self
        merged = {f.name: getattr(self, f.name) or getattr(base, f.name) for f in fields(self)}
        return Flags(**merged)

    def settings_flags(self) -> dict[str, Any]:
        return {"model": self.model, "system_prompt": self.system_prompt,
                "profile": self.profile, "temperature": self.temperature,
                "max_tokens": self.max_tokens}


ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model to ask for.")]
SystemOpt = Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", "-p", help="Profile from the config file ([profiles.NAME]).")]
TempOpt = Annotated[float | None, typer.Option(
    "--temperature", "-t", min=0.0, max=2.0, help="Sampling temperature, 0 to 2.")]
MaxTokOpt = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Longest reply in tokens.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Config file to use (default: CHATCLI_CONFIG or the user config dir).")]
DebugOpt = Annotated[bool, typer.Option(
    "--debug", help="Print request and response details to stderr (the key is redacted).")]
UsageOpt = Annotated[bool, typer.Option("--usage", help="Print the token usage line on stderr.")]
NoStreamOpt = Annotated[bool, typer.Option("--no-stream", help="Wait for the whole reply.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the complete response object as JSON (implies --no-stream).")]


def _version(value: bool) -> None:
    if value:
        print(f"chatcli {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    model: ModelOpt = None,
    system: SystemOpt = None,
    profile: ProfileOpt = None,
    temperature: TempOpt = None,
    max_tokens: MaxTokOpt = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
    usage: UsageOpt = False,
    no_stream: NoStreamOpt = False,
    json_out: JsonOpt = False,
    interactive: Annotated[bool, typer.Option(
        "--interactive", "-i", help="Send piped text as the first message, then stay in the "
        "interactive session.")] = False,
    no_markdown: Annotated[bool, typer.Option(
        "--no-markdown", help="Print replies as plain text, not rendered Markdown.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """On a terminal, an interactive session (/help inside lists its commands).
    With piped input, answer it and exit, like `ask`."""
    flags = Flags(model, system, profile, temperature, max_tokens, config, debug, usage,
                  no_stream, json_out)
    ctx.obj = flags
    if ctx.invoked_subcommand is not None:
        return
    piped = read_stdin(_diagnostics())
    if piped is not None and not interactive:
        if not piped.strip():
            raise errors.UsageError("nothing to answer: stdin was empty",
                                    hint='pipe some text in, or use chatcli ask "question"')
        answer(None, piped, flags)
        return
    interact(flags, first=piped if piped and piped.strip() else None, plain=no_markdown)


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[list[str] | None, typer.Argument(
        help="The question; several words are joined with spaces.", show_default=False)] = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    profile: ProfileOpt = None,
    temperature: TempOpt = None,
    max_tokens: MaxTokOpt = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
    usage: UsageOpt = False,
    no_stream: NoStreamOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Answer one question and exit. Piped text is sent too: first, between <stdin> tags,
    then the question."""
    flags = Flags(model, system, profile, temperature, max_tokens, config, debug, usage,
                  no_stream, json_out).over(ctx.obj)
    text = " ".join(question or [])
    diag = _diagnostics()
    piped = read_stdin(diag)
    if not text.strip() and not (piped and piped.strip()):
        raise errors.UsageError("nothing to ask: give a question or pipe text in",
                                hint='chatcli ask "your question"')
    answer(text, piped, flags)


def read_stdin(diag: Diagnostics) -> str | None:
    """Piped input as text, or None when stdin is a terminal (or absent).

    Bytes that are not UTF-8 are replaced with U+FFFD and reported, never fatal.
    """
    stream = sys.stdin
    if stream is None or stream.closed or stream.isatty():
        return None
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        diag.warning(f"stdin is not valid UTF-8: {bad} invalid byte sequence(s) replaced with �")
    return text.removeprefix("\ufeff")


def build_settings(flags: Flags) -> Settings:
    return load_settings(flags.settings_flags(), config_path=flags.config)


def answer(question: str | None, piped: str | None, flags: Flags) -> None:
    """Send one message and print the reply: the body of `ask` and of piped `chatcli`."""
    from chatcli.chat import run_turn
    from chatcli.client import OpenAIClient
    from chatcli.render import MarkdownSink, PlainSink

    diag = _diagnostics()
    settings = build_settings(flags)
    text = compose_user_message(question, piped)
    client = OpenAIClient(settings, resolve_api_key(settings, os.environ),
                          debug=diag.debug if flags.debug else None)
    if flags.debug:
        diag.debug(f"profile {settings.profile or '(none)'}, model {settings.model}, "
                   f"endpoint {settings.base_url}, key from {settings.key_source.describe(os.environ)}")
    if flags.json:
        sink: Any = _NullSink()
    elif wants_color(sys.stdout, os.environ):
        sink = MarkdownSink(file=sys.stdout)
    else:
        sink = PlainSink(sys.stdout)
    conversation = Conversation(system=settings.system_prompt)
    result = run_turn(conversation, text, client=client, settings=settings, sink=sink,
                      stream=not (flags.no_stream or flags.json))
    if flags.json:
        sys.stdout.write(json.dumps(result.response, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if result.notice:
        diag.warning(result.notice)
    if flags.usage:
        diag.usage(format_usage(result.usage, price_input=settings.price_input,
                                price_output=settings.price_output, currency=settings.currency))


class _NullSink:
    def text(self, delta: str) -> None:
        pass

    def end(self) -> None:
        pass


def interact(flags: Flags, *, first: str | None, plain: bool) -> None:
    """The interactive session: prompt_toolkit in, Rich out."""
    from chatcli import client, repl
    from chatcli.config import data_dir, read_config
    from chatcli.render import make_console
    from chatcli.session import Session

    env = os.environ
    if not sys.stdout.isatty():
        raise errors.UsageError("the interactive session needs a terminal on stdout",
                                hint='use chatcli ask "question" in scripts')
    client.warm_up()
    settings = build_settings(flags)
    if settings.key_source.kind in ("none", "env", "value"):
        resolve_api_key(settings, env)  # a first run without a key learns how to set one up now
    diag = _diagnostics()

    def make_client(s: Settings) -> client.OpenAIClient:
        return client.OpenAIClient(s, resolve_api_key(s, env), debug=diag.debug if flags.debug else None)

    def load_profile(name: str | None) -> Settings:
        return build_settings(Flags(profile=name, config=flags.config))

    profiles = sorted(read_config(settings.config_path).get("profiles", {})) if settings.config_path else []
    session = Session(settings, client_factory=make_client, load_profile=load_profile, profiles=profiles)
    color = wants_color(sys.stdout, env)
    diag.usage(f"chatcli {__version__} · {settings.model} at {settings.base_url} · "
               "/help for commands, Ctrl-D to leave")
    loop = repl.Repl(
        session,
        console=make_console(sys.stdout, color=color),
        diag=diag,
        markdown=color and settings.markdown and not plain,
        history_path=data_dir(env) / "input_history",
        vi_mode=settings.vi_mode,
        input=repl.terminal_input() if first is not None or not sys.stdin.isatty() else None,
    )
    raise typer.Exit(loop.run(first_message=first))


@config_app.command("path")
def config_path(config: ConfigOpt = None) -> None:
    """Print where the config file is (whether or not it exists)."""
    print(config or default_config_path(os.environ))


@config_app.command("show")
def config_show(ctx: typer.Context, profile: ProfileOpt = None, config: ConfigOpt = None) -> None:
    """Print the settings in effect, after the merge. Secrets are never shown."""
    from chatcli.config import describe

    base = ctx.find_root().obj
    flags = Flags(profile=profile, config=config).over(base)
    print(describe(build_settings(flags), os.environ), end="")


@config_app.command("init")
def config_init(config: ConfigOpt = None) -> None:
    """Write a commented config file with example profiles; never overwrites one."""
    from chatcli.config import write_template

    path = config or default_config_path(os.environ)
    write_template(path)
    _diagnostics().note(f"wrote {path}; edit it, then check with `chatcli config show`")


def run() -> None:
    """Run the command line (the console script enters through chatcli.__main__)."""
    app()
