"""The options `chatcli` and `chatcli ask` share, declared once.

Each option is declared here, once, and `with_flags` adds them all to a
command's signature, so `chatcli -t 0 ask` and `chatcli ask -t 0` are the same
option. What the command line says becomes `Flags`, where None means "not
given": options before the subcommand are the fallback for the ones after it,
merged with `is not None`, so 0 and "" are values like any other.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from chatcli.cli.base import Flags
from chatcli.textsafe import visible

__all__ = ["SHARED", "ConfigOpt", "Flags", "ModelOpt", "ProfileOpt", "RoleOpt", "with_flags"]


def _flag(*names: str, help: str) -> Any:
    return Annotated[bool | None, typer.Option(*names, help=help, show_default=False)]


# Tab completion (chatcli --install-completion) of values: read from the config file and
# the database, never from the network; any failure completes nothing rather than
# printing into the user's command line.

def complete_profiles(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        from chatcli.cli.base import load_config

        settings, _ = load_config(Flags(config=_given_config(ctx)))
        return [name for name in settings.profiles if name.startswith(incomplete)]
    except Exception:
        return []


def complete_roles(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Role names, each with its first line as the help zsh and fish show."""
    try:
        from chatcli.cli.base import load_config

        settings, _ = load_config(Flags(config=_given_config(ctx)))
        return [(name, visible(role.first_line)[:60]) for name, role in sorted(settings.roles.items())
                if name.startswith(incomplete)]
    except Exception:
        return []


def complete_conversations(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """The newest conversations' numbers, each with its title as the help zsh and fish show."""
    try:
        from chatcli.cli.base import load_config
        from chatcli.config import data_dir
        from chatcli.store import DB_NAME, Store

        settings, _ = load_config(Flags(config=_given_config(ctx)))
        path = data_dir(os.environ, settings) / DB_NAME
        if not path.exists():
            return []
        store = Store(path)
        try:
            return [(str(c.id), " ".join(visible(c.label).split())) for c in store.conversations(limit=100)
                    if str(c.id).startswith(incomplete)]
        finally:
            store.close()
    except Exception:
        return []


def _given_config(ctx: typer.Context) -> Path | None:
    """--config as typed on this command line, before or after the subcommand."""
    level: Any = ctx
    while level is not None:
        if level.params.get("config"):
            return Path(level.params["config"])
        level = level.parent
    return None


# (the parameter's name, the Flags field it fills, its declaration)
SHARED: tuple[tuple[str, str, Any], ...] = (
    ("model", "model", Annotated[str | None, typer.Option(
        "--model", "-m", metavar="NAME", help="Model to ask for.")]),
    ("system", "system_prompt", Annotated[str | None, typer.Option(
        "--system", "-s", metavar="TEXT", help='System prompt ("" for none).')]),
    ("profile", "profile", Annotated[str | None, typer.Option(
        "--profile", "-p", metavar="NAME", help='Profile from the config file ([profiles.NAME]; '
        '"" for none).', autocompletion=complete_profiles)]),
    ("role", "role", Annotated[str | None, typer.Option(
        "--role", "-r", metavar="NAME", help="A role: its system prompt and settings ([roles.NAME], or "
        "built in: shell, code, describe, translate; `chatcli roles` lists them).",
        autocompletion=complete_roles)]),
    ("local_model", "local_model", Annotated[str | None, typer.Option(
        "--local-model", metavar="NAME|PATH", help="Answer with this local model (a name `chatcli local "
        "models` lists, or a .gguf file), offline.")]),
    ("temperature", "temperature", Annotated[float | None, typer.Option(
        "--temperature", "-t", metavar="X", min=0.0, max=2.0, help="Sampling temperature, 0 to 2.")]),
    ("max_tokens", "max_tokens", Annotated[int | None, typer.Option(
        "--max-tokens", metavar="N", min=1, max=100_000_000, help="Longest reply in tokens.")]),
    ("config", "config", Annotated[Path | None, typer.Option(
        "--config", metavar="FILE",
        help="Config file to use (default: CHATCLI_CONFIG or the user config dir).")]),
    ("debug", "debug", _flag(
        "--debug", help="Print request and response details to stderr (the key is redacted).")),
    ("usage", "usage", _flag("--usage", help="Print the token usage line on stderr.")),
    ("no_stream", "no_stream", _flag("--no-stream", help="Wait for the whole reply.")),
    ("json_out", "json", _flag(
        "--json", help="Print the complete response object as JSON (implies --no-stream).")),
    ("no_markdown", "no_markdown", _flag(
        "--no-markdown", help="Print replies as plain text, not rendered Markdown.")),
    ("reasoning_effort", "reasoning_effort", Annotated[str | None, typer.Option(
        "--reasoning-effort", metavar="minimal|low|medium|high",
        help="How hard a reasoning model thinks (sent as reasoning_effort).")]),
    ("params", "params", Annotated[list[str] | None, typer.Option(
        "--param", metavar="KEY=JSON", help="An extra request field, added to the config's params "
        "(repeatable): --param top_p=0.9 --param seed=42.")]),
    ("reasoning", "reasoning", Annotated[str | None, typer.Option(
        "--reasoning", metavar="show|collapse|hide", help="A reasoning model's thinking: kept on the "
        "screen, folded to one line (the default), or only that line; `ask --reasoning show` into a "
        "pipe writes it to stderr.")]),
    ("files", "files", Annotated[list[str] | None, typer.Option(
        "--file", "-f", metavar="PATH", help="Attach a file (text, or a PNG, JPEG, GIF or WebP image), a "
        "directory's text files, an http(s) image URL, or - for piped text (repeatable).")]),
    ("image_detail", "image_detail", Annotated[str | None, typer.Option(
        "--image-detail", metavar="low|high|auto", help="How closely the model looks at attached "
        "images (low: 85 tokens an image).")]),
    ("code", "code", _flag("--code", "-x", help="Print only the code of the reply's code blocks "
                                                "(for pipes and files).")),
    ("session", "session", Annotated[str | None, typer.Option(
        "--session", metavar="NAME|ID", help="Continue the saved conversation with this name, title or "
        "number; a new name starts one.",
        autocompletion=complete_conversations)]),
    ("resume", "resume_latest", _flag("--continue", "-c", help="Continue the most recent conversation.")),
    ("no_save", "no_save", _flag("--no-save", help="Do not save this conversation, nor what you type.")),
    ("tool", "tools", Annotated[list[str] | None, typer.Option(
        "--tool", "-T", metavar="NAME", help="Offer the model this tool (repeatable): read_file, list_files, "
        "search_files, run_command, write_file, edit_file, fetch_url, or one of your [tools.NAME].")]),
    ("all_tools", "all_tools", _flag("--tools", help="Offer every tool (built in and your own).")),
    ("no_tools", "no_tools", _flag("--no-tools", help="Offer no tools, whatever the config enables "
                                                      "(MCP servers' neither).")),
    ("mcp", "mcp", Annotated[list[str] | None, typer.Option(
        "--mcp", metavar="SERVER[:TOOL]", help="Offer this MCP server's tools (repeatable; a [mcp.servers."
        "NAME] of the config, even one not enabled); SERVER:GLOB offers some of them.")]),
    ("yes", "yes", _flag("--yes", "-y", help="Run every tool call without asking (said once on stderr). "
                                             "Without it and without a terminal, calls that need a yes "
                                             "are refused.")),
)


def with_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command(ctx, flags, **its own parameters)` as a typer command that also takes every
    shared option; the options are gathered into `flags` (a Flags, not yet merged)."""
    own = list(inspect.signature(command, eval_str=True).parameters.values())
    context, rest = own[0], own[2:]  # (ctx, flags, *own options)
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=declared, default=None)
              for name, _, declared in SHARED]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {field: kwargs.pop(name) for name, field, _ in SHARED}
        return command(kwargs.pop(context.name), Flags(**given), **kwargs)

    parameters = [context.replace(kind=inspect.Parameter.KEYWORD_ONLY),
                  *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest), *shared]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer must see the signature above, not the command's own
    return wrapper


_DECLARED = {name: declared for name, _, declared in SHARED}
ModelOpt = _DECLARED["model"]
ProfileOpt = _DECLARED["profile"]
RoleOpt = _DECLARED["role"]
ConfigOpt = _DECLARED["config"]
