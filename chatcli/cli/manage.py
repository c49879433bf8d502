"""`chatcli config ...` and `chatcli sessions ...`: look after the config file and saved conversations."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from chatcli import errors
from chatcli.cli.app import app, config_app, local_app, roles_app, sessions_app
from chatcli.cli.base import REDACT, Flags, build_settings, diagnostics, load_settings
from chatcli.cli.options import (
    ConfigOpt,
    ModelOpt,
    ProfileOpt,
    RoleOpt,
    complete_conversations,
    complete_roles,
)
from chatcli.config import Settings, data_dir, default_config_path, endpoint_of
from chatcli.render import counted, for_terminal, wants_color
from chatcli.store import ConversationInfo, SearchHit, Store, open_store
from chatcli.textsafe import json_safe, shown, url_secrets, visible

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Ref = Annotated[str, typer.Argument(metavar="ID|TITLE", autocompletion=complete_conversations,
                                    help="The conversation's number, or its title (the start will do).")]


@config_app.command("path")
def config_path(config: ConfigOpt = None) -> None:
    """Print where the config file is (whether or not it exists)."""
    print(config or default_config_path(os.environ))


@config_app.command("show")
def config_show(ctx: typer.Context, profile: ProfileOpt = None, role: RoleOpt = None,
                config: ConfigOpt = None) -> None:
    """Print the settings in effect, after the merge, each with where it came from (-r: with a
    role). Secrets are never shown."""
    from chatcli.config import describe

    flags = Flags(profile=profile, role=role, config=config).over(ctx.find_root().obj)
    print(describe(build_settings(flags), os.environ), end="")


ProviderOpt = Annotated[str | None, typer.Option(
    "--provider", metavar="NAME", help="Add a working profile for a provider instead: openai, deepseek, "
    "qwen, kimi, glm, doubao, siliconflow, openrouter, ollama, lmstudio, llamacpp, vllm.")]


@config_app.command("init")
def config_init(config: ConfigOpt = None, provider: ProviderOpt = None) -> None:
    """Write a commented config file with example profiles; never overwrites one. With
    --provider, add that provider's profile to the file (created if need be)."""
    from chatcli.config import add_provider, write_template

    path = config or default_config_path(os.environ)
    if provider is not None:
        diagnostics().note(add_provider(path, provider))
        return
    write_template(path)
    diagnostics().note(f"wrote {path}; edit it, then check with `chatcli config show`")


def _fitted(text: str) -> str:
    """Lines as they are into a pipe; on a terminal, each cut to its width (a long Chinese
    title would wrap to column 0 and break the columns)."""
    if not sys.stdout.isatty():
        return text
    import shutil

    from chatcli.export import cut_to

    width = shutil.get_terminal_size().columns
    return "".join(cut_to(line, width) + "\n" for line in text.splitlines())


def _cell(text: str) -> str:
    """Stored text on one line of a listing: whitespace collapsed, then every control and
    format character shown (data: an isolate or override cannot reorder the columns)."""
    return shown(" ".join(text.split()))


def _print_json(data: object) -> None:
    print(json_safe(json.dumps(data, indent=2, ensure_ascii=False)))


def _store(ctx: typer.Context, config: Path | None = None) -> Store:
    flags = Flags(config=config).over(ctx.find_root().obj)
    return open_store(data_dir(os.environ, build_settings(flags)))


def _find(store: Store, ref: str) -> ConversationInfo:
    info = store.find(ref)
    if info is None:
        raise errors.UsageError(f"no conversation {ref!r}", hint="`chatcli sessions list` shows them")
    return info


@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    json_out: JsonFlag = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, metavar="N",
                                       help="How many, newest first.")] = 50,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Also those that never got a reply.")] = False,
    config: ConfigOpt = None,
) -> None:
    """The saved conversations, newest first."""
    from chatcli.export import LISTING, columns, listing_row, summary, unanswered_note

    store = _store(ctx, config)
    conversations = store.conversations(limit=limit, unanswered=show_all)
    if json_out:
        _print_json([summary(c) for c in conversations])
    elif conversations:
        rows = [tuple(map(_cell, listing_row(c))) for c in conversations]
        sys.stdout.write(_fitted(columns([LISTING, *rows])))
    hidden = 0 if show_all else len(store.unanswered())
    if hidden:
        diagnostics().note(unanswered_note(hidden, listing="`chatcli sessions list --all`"))
    elif not conversations and not json_out:
        diagnostics().note("no saved conversations yet")


@sessions_app.command("show", short_help="Print a conversation.")
def sessions_show(
    ctx: typer.Context,
    ref: Ref,
    code: Annotated[bool, typer.Option("--code", "-x", help="Print only the code of the replies' code "
                                       "blocks, plain.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print a conversation: rendered on a terminal, as Markdown text into a pipe."""
    from chatcli.export import to_markdown

    store = _store(ctx, config)
    info = _find(store, ref)
    messages = store.load(info.id)
    if code:
        from chatcli.mdblocks import code_blocks

        blocks = [block.rstrip("\n") for message in messages if message.role == "assistant"
                  for block in code_blocks(message.content)]
        if not blocks:
            diagnostics().note(f"conversation {info.id} has no code block in its replies")
            raise typer.Exit(1)
        sys.stdout.write(for_terminal("\n\n".join(blocks) + "\n", sys.stdout))
        return
    text = to_markdown(info, messages)
    if wants_color(sys.stdout, os.environ):  # rendered, as replies are
        from chatcli.render import MarkdownSink

        MarkdownSink(file=sys.stdout).whole(text)
    else:
        sys.stdout.write(for_terminal(text, sys.stdout))


@sessions_app.command("search", short_help="Find messages that contain some words.")
def sessions_search(
    ctx: typer.Context,
    text: Annotated[list[str], typer.Argument(metavar="TEXT", help="Words to find (as one phrase).")],
    json_out: JsonFlag = False,
    config: ConfigOpt = None,
) -> None:
    """Find messages containing the text, with the matching part in [brackets]."""
    if not " ".join(text).strip():
        raise errors.UsageError("nothing to search for", hint='chatcli sessions search "some words"')
    hits = _store(ctx, config).search(" ".join(text))
    if json_out:
        _print_json([hit.__dict__ for hit in hits])
        return
    if not hits:
        diagnostics().note("nothing found")
        raise typer.Exit(1)
    from chatcli.export import cut_to

    def title(hit: SearchHit) -> str:  # on a terminal, short enough to leave room for the match
        text = _cell(hit.title or "(untitled)")
        return cut_to(text, 40) if sys.stdout.isatty() else text

    lines = [f"{hit.conversation_id}  {title(hit)}  {hit.role}: {_cell(hit.snippet)}" for hit in hits]
    sys.stdout.write(_fitted("".join(line + "\n" for line in lines)))


@sessions_app.command("export", short_help="Print a conversation as Markdown or JSON.")
def sessions_export(
    ctx: typer.Context,
    ref: Ref,
    format: Annotated[str, typer.Option("--format", "-f", help="md or json.")] = "md",
    reasoning: Annotated[bool, typer.Option("--reasoning", help="Include each reply's thinking.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print a conversation as Markdown, or as JSON in the API's message format."""
    from chatcli.export import to_json, to_markdown

    if format not in ("md", "json"):
        raise errors.UsageError(f"unknown format {format!r}", hint="--format md or --format json")
    store = _store(ctx, config)
    info = _find(store, ref)
    messages = store.load(info.id)
    if format == "json":
        _print_json(to_json(info, messages, reasoning=reasoning))
    else:
        sys.stdout.write(for_terminal(to_markdown(info, messages, reasoning=reasoning), sys.stdout))


@sessions_app.command("fork", short_help="Copy a conversation into a new one, to go on from there.")
def sessions_fork(
    ctx: typer.Context,
    ref: Ref,
    at: Annotated[int | None, typer.Option("--at", metavar="N", min=0,
                                           help="Copy only its first N messages.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Copy a conversation (or its first N messages, as `sessions show` counts them) into a new
    one linked to it; the original is not touched. Prints the new conversation's ID."""
    store = _store(ctx, config)
    info = _find(store, ref)
    if at is not None and at > info.message_count:
        raise errors.UsageError(f"conversation {info.id} has {counted(info.message_count, 'message')}",
                                hint=f"--at 0 to {info.message_count}")
    fork = store.fork(info.id, at)
    print(fork)
    diagnostics().note(f"forked {info.id} into {fork}; chatcli --session {fork} goes on from there")


@sessions_app.command("rename")
def sessions_rename(ctx: typer.Context, ref: Ref,
                    name: Annotated[list[str], typer.Argument(metavar="NAME", help="The new name.")],
                    config: ConfigOpt = None) -> None:
    """Give a conversation a name: its title, and what --session and /resume open it by."""
    store = _store(ctx, config)
    found = _find(store, ref)
    new = " ".join(" ".join(name).split())
    store.rename(found.id, new)
    diagnostics().note(f"conversation {found.id} is now called {new!r} "
                       f"(`chatcli --session {shlex.quote(new)}` opens it)")


@sessions_app.command("rm")
def sessions_rm(
    ctx: typer.Context,
    refs: Annotated[list[str] | None, typer.Argument(metavar="ID|TITLE", help="Conversations to remove.",
                                                     show_default=False)] = None,
    unanswered: Annotated[bool, typer.Option(
        "--unanswered", help="All conversations that never got a reply (failed questions).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Remove conversations for good (asks first, unless --yes)."""
    if not refs and not unanswered:
        raise errors.UsageError("which conversations?",
                                hint="chatcli sessions rm ID|TITLE ..., or --unanswered for failed questions")
    store = _store(ctx, config)
    found = {info.id: info for info in [_find(store, ref) for ref in refs or []]
             + (store.unanswered() if unanswered else [])}
    if not found:
        diagnostics().note("no conversation without a reply; nothing removed")
        return
    if not yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise errors.UsageError("not removing without asking; add --yes to remove from a script")
        listing = ", ".join(f"{i.id} ({_cell(i.label)}, {counted(i.message_count, 'message')})"
                            for i in list(found.values())[:20]) + (", …" if len(found) > 20 else "")
        if not typer.confirm(f"Remove {counted(len(found), 'conversation')}: {listing}?", default=False,
                             err=True):
            diagnostics().note("nothing removed")
            return
    for info in found.values():
        store.delete(info.id)
    diagnostics().note(f"removed {counted(len(found), 'conversation')}")


@app.command("tools", short_help="List the tools the model can be offered.")
def tools_list(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """The tools (built in, and yours from [tools.NAME]): whether the config offers each, what
    it can do, and whether it asks before it runs. -T NAME offers one for a command."""
    from chatcli.cli.tooling import catalog
    from chatcli.export import columns

    settings = build_settings(Flags(config=config).over(ctx.find_root().obj))
    rows: list[tuple[str, ...]] = [("TOOL", "OFFERED", "EFFECT", "APPROVAL", "WHAT IT DOES")]
    for name, tool in catalog(settings).items():
        approval = "runs without asking" if name in settings.approve_tools and tool.read_only else "asks"
        rows.append((name, "yes" if name in settings.tools else "-T", tool.effect, approval,
                     _cell(tool.description)))
    sys.stdout.write(columns(rows))


@roles_app.callback()
def roles_list(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """The roles, built in and from the config file, each with the first line of its system
    prompt. `chatcli roles show NAME` prints one whole."""
    if ctx.invoked_subcommand is not None:
        return
    from chatcli.export import columns

    roles = build_settings(Flags(config=config).over(ctx.find_root().obj)).roles
    from chatcli.export import excerpt

    rows = [(name, "built in" if role.origin == "built in" else "config",
             "".join(excerpt(role.first_line, lines=1, width=70))) for name, role in sorted(roles.items())]
    sys.stdout.write(columns([("ROLE", "FROM", "SYSTEM PROMPT"), *(tuple(map(_cell, row)) for row in rows)]))


@roles_app.command("show")
def roles_show(ctx: typer.Context,
               name: Annotated[str, typer.Argument(metavar="NAME", autocompletion=complete_roles,
                                                   help="The role's name.")],
               config: ConfigOpt = None) -> None:
    """Print a role: its system prompt, template, profile and settings."""
    from chatcli.schema import toml_value

    roles = build_settings(Flags(config=config).over(ctx.find_root().obj)).roles
    if name not in roles:
        raise errors.UsageError(f"no role {name!r}", hint=f"roles: {', '.join(sorted(roles))}")
    role = roles[name]
    lines = [f"[roles.{name}]  # {role.origin}"]
    for key, value in (("system", role.system), ("template", role.template), ("profile", role.profile),
                       *role.settings.items()):
        if value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    print(for_terminal("\n".join(lines), sys.stdout))


@app.command(short_help="Check the setup, from the config file to a streamed reply.")
def doctor(ctx: typer.Context, model: ModelOpt = None, profile: ProfileOpt = None,
           config: ConfigOpt = None) -> None:
    """Check the setup: config file, key source, endpoint, model, streaming, usage reports.
    Sends one tiny request. Exits non-zero if a check fails."""
    from chatcli.client import OpenAIClient
    from chatcli.doctor import exit_code, run_checks
    from chatcli.export import columns

    flags = Flags(model=model, profile=profile, config=config).over(ctx.find_root().obj)
    def make_client(settings: Settings, key: str) -> OpenAIClient:
        REDACT.add(key, *settings.headers.values(), *url_secrets(settings.base_url))
        return OpenAIClient(endpoint_of(settings, key))

    from chatcli.cli.mcpcmd import start

    checks = run_checks(lambda: load_settings(flags), make_client, os.environ, progress=diagnostics().note,
                        start_server=start)
    marks = {True: "ok", False: "FAIL", None: "note"}
    # What a check found may quote the server (model names, error messages): data.
    rows = [(c.name, marks[c.ok],
             visible(REDACT(c.found + (f" -> {c.fix}" if c.fix and c.ok is not True else ""))))
            for c in checks]
    if wants_color(sys.stdout, os.environ):
        from chatcli.render import make_console, print_table

        print_table(make_console(sys.stdout, color=True), ("check", "result", "found / fix"), rows)
    else:
        sys.stdout.write(columns([("CHECK", "RESULT", "FOUND / FIX"), *rows]))
    raise typer.Exit(exit_code(checks))


@local_app.command("models", short_help="List the local models found on this machine.")
def local_models() -> None:
    """The GGUF models found on this machine: the bundled one (chatcli[local]), Ollama's, LM
    Studio's, the Hugging Face cache's and llama.cpp's, with size, quantisation and place.
    Any of these names works as local_model, --local-model or /model on the local endpoint."""
    from chatcli.cli.local import list_models

    raise typer.Exit(list_models())


@local_app.command("serve", short_help="Serve the local model to other programs, until Ctrl-C.")
def local_serve(ctx: typer.Context,
                port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="N",
                                                  help="Port on 127.0.0.1 (0: a free one).")] = 0,
                key_env: Annotated[str | None, typer.Option(
                    "--key-env", metavar="VAR", help="Require the key in this environment variable "
                    "(default: a random one, kept in the state file).")] = None,
                local_model: Annotated[str | None, typer.Option(
                    "--local-model", metavar="NAME|PATH", help="The model (default: local_model).")] = None,
                config: ConfigOpt = None) -> None:
    """Serve the local model as an OpenAI-compatible endpoint on 127.0.0.1, with a key. While
    it runs, chatcli's own local questions use it instead of loading the model again."""
    from chatcli.cli.local import serve

    flags = Flags(local_model=local_model, config=config).over(ctx.find_root().obj)
    raise typer.Exit(serve(flags, port=port, key_env=key_env))
