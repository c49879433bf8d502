"""The typer app: its group, `chatcli` itself and `chatcli ask` (manage.py adds the rest).

Every failure leaves through `_CliGroup.main` and base.guard as one line on
stderr and a documented exit code (README, "Exit codes"); no traceback reaches a
user.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from chatcli import __version__, errors
from chatcli.cli.base import (
    PipeClosed,
    build_settings,
    click_error_class,
    diagnostics,
    guard,
    read_stdin,
)
from chatcli.cli.chatting import answer, ask_words, interact
from chatcli.cli.options import ConfigOpt, Flags, ModelOpt, ProfileOpt, RoleOpt, with_flags

EPILOG = """\b
Examples:
  chatcli                                  an interactive session (/help inside)
  chatcli -c                               carry on with the last conversation
  cat notes.txt | chatcli -i               the notes first, then the session
  chatcli ask "Who won the world series in 2020?"
  cat notes.txt | chatcli ask "summarise this"
  chatcli ask -f main.py -f photo.png "what does this do?"
  chatcli ask -x "a jq filter for the names" > names.jq
  echo "translate to English: 你好" | chatcli
  chatcli ask --session work "and the next step?"
  chatcli ask --json "hi"
  chatcli ask -r translate "你好"           a role: [roles.NAME] in the config
  chatcli cmd "find files over 100 MB"     a shell command, run only if you press e
  chatcli sessions search "docker"
"""


CLICK_ERROR = click_error_class(typer)  # see base.click_error_class


class _CliGroup(TyperGroup):
    """Every failure leaves as one line on stderr and its exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _plain_arguments(self)
        kwargs["standalone_mode"] = False
        debug = "--debug" in (kwargs.get("args") or sys.argv[1:])
        sys.exit(guard(lambda: super(_CliGroup, self).main(*args, **kwargs), debug=debug))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise PipeClosed() from None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None \
                and not ctx.resilient_parsing:  # Tab completion: complete nothing, say nothing
            raise errors.UsageError(f"{name!r} is not a command", hint=_what_was_meant(
                name, args, list(self.list_commands(ctx))))
        return super().resolve_command(ctx, args)


def _plain_arguments(command: Any) -> None:
    """Arguments in --help as a person reads them: typer shows their Python type
    (`TEXT <list[str]>`) and a required one in braces (`{TEXT}...`); here they are
    `TEXT...` when required and `[ID|TITLE]...` when not, with no type. (Overrides two
    of typer's display methods on each argument; tests/test_cli.py checks the help.)"""
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument):
            argument: Any = param
            many = "..." if argument.nargs != 1 else ""
            name = argument.display_name_raw + many
            shown = name if argument.required else f"[{argument.display_name_raw}]{many}"
            argument.display_type_rich = lambda ctx: None
            argument._usage_display_name = lambda shown=shown: shown
            argument._rich_display_name = lambda name=name: name
    for sub in getattr(command, "commands", {}).values():
        _plain_arguments(sub)


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
roles_app = typer.Typer(help="List the roles (built in and configured), or show one.",
                        invoke_without_command=True)
app.add_typer(config_app, name="config")
app.add_typer(sessions_app, name="sessions")
local_app = typer.Typer(help="The local model: list the models on this machine, or serve one to other "
                        "programs.", no_args_is_help=True)
app.add_typer(roles_app, name="roles")
app.add_typer(local_app, name="local")
mcp_app = typer.Typer(help="MCP servers: list them and their tools, test one, import Claude Desktop's "
                      "mcpServers JSON.", no_args_is_help=True)
app.add_typer(mcp_app, name="mcp")


# --- chatcli and chatcli ask --------------------------------------------------------

def _version(value: bool) -> None:
    if value:
        print(f"chatcli {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
@with_flags
def root(
    ctx: typer.Context,
    flags: Flags,
    interactive: Annotated[bool, typer.Option(
        "--interactive", "-i", help="Send piped text as the first message, then stay in the "
        "interactive session.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """On a terminal, an interactive session (/help inside lists its commands).
    With piped input, answer it and exit, like `ask`."""
    ctx.obj = flags
    if ctx.invoked_subcommand is not None:
        return
    flags.check()
    diag = diagnostics()
    settings = build_settings(flags, diag)
    piped = read_stdin(diag, context_window=settings.context_window)
    if piped is not None and not interactive:
        if not piped.strip():
            raise errors.UsageError("nothing to answer: stdin was empty",
                                    hint='pipe some text in, or use chatcli ask "question"')
        answer(None, piped, flags, settings)
        return
    first = piped if piped and piped.strip() else None
    raise typer.Exit(interact(flags, settings, first=first))


@app.command()
@with_flags
def ask(
    ctx: typer.Context,
    flags: Flags,
    question: Annotated[list[str] | None, typer.Argument(metavar="QUESTION",
        help="The question; several words are joined with spaces.", show_default=False)] = None,
) -> None:
    """Answer one question and exit. Piped text and attached files (-f) are sent too,
    before the question."""
    ask_words(flags.over(ctx.obj), question or [])


@app.command("cmd", short_help="Suggest a shell command; it runs only if you press e.")
def cmd(
    ctx: typer.Context,
    request: Annotated[list[str] | None, typer.Argument(
        metavar="REQUEST", help="What the command should do; several words are joined.",
        show_default=False)] = None,
    model: ModelOpt = None,
    profile: ProfileOpt = None,
    role: RoleOpt = None,
    no_save: Annotated[bool | None, typer.Option("--no-save", help="Do not save this conversation.",
                                                 show_default=False)] = None,
    debug: Annotated[bool | None, typer.Option("--debug", help="Print request and response details to "
                                               "stderr.", show_default=False)] = None,
    one_line: Annotated[bool, typer.Option("--one-line", help="Refuse a command of several lines (the "
                                           "shell-init key binding uses it).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Ask for one shell command (the shell role: your OS and shell's names, nothing else
    about your machine), show it, and wait for one key: e runs it in your $SHELL, r revises,
    d describes it, c copies it, a (or Enter, Esc, Ctrl-C) aborts. Piped, or in CI, the
    command is printed and never run. The exit code is the command's when it ran."""
    from chatcli.cli.shellcmd import shell_command

    flags = Flags(model=model, profile=profile, role=role, no_save=no_save, debug=debug, config=config)
    raise typer.Exit(shell_command(flags.over(ctx.obj), request or [], one_line=one_line))


@app.command("shell-init", short_help="Print a key binding that turns a sentence into a command.")
def shell_init(shell: Annotated[str, typer.Argument(metavar="bash|zsh|fish", help="Your shell.")]) -> None:
    """Print lines for your shell's rc file: Ctrl-X Ctrl-G sends the text on the command line
    to `chatcli cmd` and puts the suggested command back on the line, to edit or to run with
    Enter. Nothing runs by itself. Add them with, for bash: chatcli shell-init bash >> ~/.bashrc"""
    import shutil

    from chatcli.cli.shellinit import SNIPPETS, snippet

    if shell not in SNIPPETS:
        raise errors.UsageError(f"no key binding for {shell!r}", hint="chatcli shell-init bash, zsh or fish")
    import os

    running = sys.argv[0]  # the script itself, by its full path, when run as `chatcli`
    exe = running if os.path.isabs(running) and os.path.basename(running) == "chatcli" else \
        shutil.which("chatcli") or "chatcli"
    sys.stdout.write(snippet(shell, exe))
