"""Tools as this command line asks for them: which are offered, who approves, what shows.

The composition of tools/ for `ask` and the session: the tools named by the config's
[tools] enabled (or the role's `tools`), -T and --tools, less all of them with
--no-tools; the approval menu when there is a terminal to ask on (approval.py), --yes,
or a refusal; and the lines that say what runs, for how long, and how it ended.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from chatcli import errors
from chatcli.cli.base import Flags, mcp_chosen, offers_tools
from chatcli.config import Settings
from chatcli.conversation import ToolCall, ToolResult
from chatcli.render import Diagnostics
from chatcli.textsafe import shown
from chatcli.tools import Context, Tool, ToolError
from chatcli.tools.box import ToolBox, choose, refuse_all


def catalog(settings: Settings) -> dict[str, Tool]:
    """Every tool there is: the built-in ones, then the user's [tools.NAME] (which may not
    take a built-in name)."""
    from chatcli.tools.builtin import BUILTIN_BY_NAME
    from chatcli.tools.command import command_tool

    tools: dict[str, Tool] = dict(BUILTIN_BY_NAME)
    for name, table in settings.custom_tools.items():
        if name in tools:
            raise errors.ConfigError(f"{settings.config_path}: [tools.{name}] has the name of a "
                                     "built-in tool",
                                     hint="give your tool another name")
        tools[name] = command_tool(name, table)
    return tools


def mcp_tools(settings: Settings, flags: Flags, say: Any) -> Any:
    """The MCP servers of this command (tools/mcp.py's McpTools), none started yet; None
    when there are none or --no-tools. A role or --mcp naming a server that does not exist is
    a UsageError."""
    if flags.no_tools or not (settings.mcp_servers or flags.mcp):
        return None
    from chatcli.tools.mcp import McpTools, server_of

    chosen = mcp_chosen(settings, flags)
    unknown = [name for name in chosen if name not in settings.mcp_servers]
    if unknown:
        known = ", ".join(settings.mcp_servers) or "none configured"
        raise errors.UsageError(f"no MCP server named {unknown[0]} (the servers are: {known})",
                                hint="add a [mcp.servers.NAME] table; `chatcli mcp list` lists them")
    servers = {name: server_of(name, table) for name, table in settings.mcp_servers.items()}
    return McpTools(servers, chosen, lambda server: connection(server, settings), say)


def connection(server: Any, settings: Settings) -> Any:
    """A server's connection (not started): its environment or its headers worked out, its
    stderr going to a log file. A ToolError says what is missing (a variable not set)."""
    import importlib.util

    from chatcli.config import data_dir
    from chatcli.tools.mcp import environment, log_name, substitute
    from chatcli.tools.mcp_client import Connection, runtime

    if importlib.util.find_spec("mcp") is None:
        raise ToolError("the MCP SDK is not installed: pip install 'chatcli[mcp]' "
                        "(or pipx inject chatcli mcp)")
    refused = api_key_variables(settings)
    env = environment(server, os.environ, refused) if not server.url else {}
    headers = {name: substitute(value, os.environ, what=f"[mcp.servers.{server.name}] headers {name}",
                                forbidden=refused) for name, value in server.headers.items()}
    key = _server_key(server, refused)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    log = data_dir(os.environ, settings) / "logs" / log_name(server.name)
    return Connection(server, env=env, headers=headers, log=log, runtime=runtime())


def _server_key(server: Any, refused: set[str]) -> str:
    """A remote server's key: from the variable key_env names, or what key_command prints."""
    if server.key_env:
        if server.key_env in refused:
            raise ToolError(f"key_env names {server.key_env}, an API key chatcli sends to its endpoint; "
                            "an MCP server gets its own key")
        key = os.environ.get(server.key_env, "").strip()
        if not key:
            raise ToolError(f"key_env names {server.key_env}, which is not set")
        return key
    if server.key_command:
        from chatcli.config import KeySource, _run_key_command

        try:
            return _run_key_command(KeySource("cmd", server.key_command,
                                              f"[mcp.servers.{server.name}] key_command")).strip()
        except errors.ChatcliError as exc:
            raise ToolError(exc.message) from None
    return ""


def api_key_variables(settings: Settings) -> set[str]:
    """The environment variables holding keys chatcli sends to its endpoints: the key in use,
    OPENAI_API_KEY and the providers' variables. No tool's program or MCP server gets them."""
    from chatcli.schema import PROVIDERS

    keys = {"OPENAI_API_KEY", *(p["api_key_env"] for p in PROVIDERS.values() if "api_key_env" in p)}
    if settings.key_source.kind == "env":
        keys.add(settings.key_source.detail)
    return keys


def chosen(settings: Settings, flags: Flags, tools: dict[str, Tool]) -> list[Tool]:
    """The tools offered now, or a UsageError naming one that does not exist."""
    if flags.no_tools:
        return []
    names = list(tools) if flags.all_tools else [*settings.tools, *(flags.tools or ())]
    try:
        picked = choose(names, tools)
    except ToolError as exc:
        raise errors.UsageError(str(exc), hint="chatcli tools lists them; [tools.NAME] in the config "
                                "adds your own") from None
    for name in settings.approve_tools:
        if name in tools and not tools[name].read_only:
            raise errors.ConfigError(f"{settings.config_path}: [tools] approve names {name}, which "
                                     f"{_effects(tools[name])}: only tools that read may run without asking",
                                     hint="remove it from approve (it is asked about each time)")
    return picked


def _effects(tool: Tool) -> str:
    from chatcli.approval import EFFECTS

    return EFFECTS[tool.effect]


def without_keys(env: Any, settings: Settings) -> dict[str, str]:
    """The environment the tools' programs get: yours, less the API keys chatcli knows of (the
    key in use, OPENAI_API_KEY and the providers' variables), so a command the model asks for
    cannot read one and send it to another endpoint."""
    keys = api_key_variables(settings)
    return {name: value for name, value in env.items() if name not in keys}


def can_ask(env: Any = os.environ) -> bool:
    """A person can answer on stderr (where `ask` asks): the same test as `chatcli cmd`'s."""
    from chatcli.cli.shellcmd import interactive

    return interactive(env, screen=sys.stderr)


def toolbox(settings: Settings, flags: Flags, diag: Diagnostics, *, console: Any = None,
            keyboard: Any = None, interactive: bool = False) -> tuple[ToolBox | None, dict[str, Tool]]:
    """The tools for this command, and every tool there is (for /tools). A one-shot command
    that offers none builds nothing (start-up stays as it was)."""
    if not interactive and not offers_tools(settings, flags):
        return None, {}
    tools = catalog(settings)
    picked = chosen(settings, flags, tools)
    if flags.yes and (picked or mcp_chosen(settings, flags)):
        diag.warning("--yes: every tool call runs without asking")
    approve: Any = refuse_all
    ask: Any = None
    if interactive or can_ask():  # the session runs on a terminal only: there is someone to ask
        from functools import partial

        from chatcli.approval import TerminalApproval, confirm

        if console is None:
            from chatcli.render import make_console, wants_color

            console = make_console(sys.stderr, color=wants_color(sys.stderr, os.environ))
        approve = TerminalApproval(console, keyboard=keyboard)
        ask = partial(confirm, keyboard=keyboard, screen=console.file)
    # No one to ask (a pipe, a script): the lines go through the diagnostics, without Rich.
    terminal = (console.file if console.is_terminal else None) if console is not None else \
        (sys.stderr if sys.stderr.isatty() else None)
    progress = Progress(console.print if console is not None else _plain(diag), terminal)
    box = ToolBox(picked, approve=approve, pre_approved=settings.approve_tools, yes=bool(flags.yes),
                  budget_tokens=settings.tool_output_tokens,
                  context=Context(cwd=Path.cwd(), env=without_keys(os.environ, settings)),
                  progress=progress, fallback=settings.tool_fallback, confirm=ask,
                  mcp=mcp_tools(settings, flags, progress.line))
    return box, tools


def _plain(diag: Diagnostics) -> Any:
    def write(text: str, style: str | None = None, **_: Any) -> None:
        diag.usage(text)

    return write


class Progress:
    """What the screen says of a call: a line when it starts, a live `running NAME… N s` while
    it runs (on a terminal, after a second), and how it ended."""

    def __init__(self, print_line: Any, terminal: Any = None) -> None:
        self._print = print_line  # a Rich console's print, or the diagnostics' plain lines
        self._terminal = terminal  # where the live `running NAME… N s` goes, if anywhere
        self._ticker: Any = None
        self._started: str | None = None  # the call whose first line is on the screen

    def __call__(self, tool: Tool, call: ToolCall, result: ToolResult | None) -> None:
        from chatcli.render import NullSink, Waiting

        if result is None or self._started != call.id:
            self.line(f"▸ {tool.name} {_brief(call.arguments)}", "dim")
            self._started = call.id
        if result is None:
            if self._terminal is not None:
                self._ticker = Waiting(NullSink(), self._terminal, tool.name,
                                       what=f"running {shown(tool.name)}")
            return
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.line(f"  {describe(result)}", "dim" if result.status == "ok" else "yellow")

    def line(self, text: str, style: str) -> None:
        self._print(text, style=style, markup=False, highlight=False, crop=False, soft_wrap=True)


def describe(result: ToolResult) -> str:
    """How a call ended, in one line: `done in 0.2 s · 12 lines`, `refused`, `error: ...`."""
    lines = result.whole.count("\n") + 1 if result.whole else 0
    took = f" in {result.seconds:.1f} s" if result.seconds is not None else ""
    if result.status == "ok":
        cut = " (cut for the model; /tool-output shows it whole)" if result.output else ""
        return f"done{took} · {lines} line{'' if lines == 1 else 's'}{cut}"
    if result.status == "error":
        return shown(result.content)[:200]
    if result.status == "interrupted":
        return f"stopped{took}; its output so far is kept"
    return shown(result.content)[:200]


def _brief(arguments: str, width: int = 100) -> str:
    import contextlib
    import json

    with contextlib.suppress(ValueError):
        arguments = json.dumps(json.loads(arguments), ensure_ascii=False)
    text = " ".join(shown(arguments).split())
    return text if len(text) <= width else text[: width - 1] + "…"
