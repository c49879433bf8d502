"""`chatcli mcp`: the configured MCP servers, their tools, a test of one, and the import of
the `mcpServers` JSON that Claude Desktop, Cursor and oterm keep."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from chatcli import errors
from chatcli.cli.app import mcp_app
from chatcli.cli.base import Flags, build_settings, diagnostics
from chatcli.cli.options import ConfigOpt
from chatcli.config import Settings
from chatcli.textsafe import visible

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The server's name ([mcp.servers.NAME]).")]


def _settings(ctx: typer.Context, config: Path | None) -> Settings:
    return build_settings(Flags(config=config).over(ctx.find_root().obj))


def _servers(settings: Settings) -> dict[str, Any]:
    from chatcli.tools.mcp import server_of

    return {name: server_of(name, table) for name, table in settings.mcp_servers.items()}


def _one(settings: Settings, name: str) -> Any:
    servers = _servers(settings)
    if name not in servers:
        known = ", ".join(servers) or "none configured"
        raise errors.UsageError(f"no MCP server named {name!r} (the servers are: {known})",
                                hint="add a [mcp.servers.NAME] table; docs/mcp.md")
    return servers[name]


def start(server: Any, settings: Settings) -> Any:
    """The server started (its tools listed), or a ToolServerError saying why not."""
    from chatcli.cli.tooling import connection
    from chatcli.tools import ToolError

    try:
        running = connection(server, settings)
        running.start()
    except ToolError as exc:
        raise errors.ToolServerError(f"MCP server {server.name}: {exc}",
                                     hint=_log_hint(server, settings)) from None
    except KeyboardInterrupt:
        raise errors.Interrupted("stopped") from None
    return running


def _log_hint(server: Any, settings: Settings) -> str | None:
    if server.url:
        return None
    from chatcli.config import data_dir
    from chatcli.tools.mcp import log_name

    log = data_dir(os.environ, settings) / "logs" / log_name(server.name)
    return f"its stderr is in {log}" if log.exists() else None


@mcp_app.command("list", short_help="List the MCP servers, how each stands and how many tools it has.")
def mcp_list(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """The configured MCP servers. Each enabled one is started to count its tools, then
    stopped; one that fails says why in its row (the others are still listed)."""
    from chatcli.export import columns
    from chatcli.tools.mcp import tools_of

    settings = _settings(ctx, config)
    rows: list[tuple[str, ...]] = [("SERVER", "STATE", "TOOLS", "APPROVAL", "WHERE")]
    for name, server in _servers(settings).items():
        state, count = "disabled (enabled = false)", "-"
        if server.enabled:
            try:
                running = start(server, settings)
            except errors.ToolServerError as exc:
                state = "FAILED: " + exc.message.removeprefix(f"MCP server {name}: ")
            else:
                count = str(len(tools_of(server, running.listed, ("*",), _never)[0]))
                state = f"ok, started in {running.seconds:.1f} s"
                running.close()
        rows.append((name, visible(state), count, server.approval(), visible(server.where())))
    if len(rows) == 1:
        diagnostics().note("no MCP server is configured (add a [mcp.servers.NAME] table, or "
                           "`chatcli mcp import FILE`)")
        return
    sys.stdout.write(columns(rows))


def _never(tool: str, arguments: dict[str, Any]) -> str:
    raise AssertionError("a listing calls no tool")


@mcp_app.command("tools", short_help="List the tools of one MCP server, or of every enabled one.")
def mcp_tools(ctx: typer.Context, name: Annotated[str | None, typer.Argument(
        metavar="[NAME]", help="One server (else every enabled one).")] = None,
        config: ConfigOpt = None) -> None:
    """The tools each server offers the model, by the names the model calls them, with
    whether a call asks first."""
    from chatcli.export import columns
    from chatcli.tools.mcp import short, tools_of

    settings = _settings(ctx, config)
    servers = [_one(settings, name)] if name else [s for s in _servers(settings).values() if s.enabled]
    if not servers:
        raise errors.UsageError("no MCP server is enabled", hint="chatcli mcp list")
    rows: list[tuple[str, ...]] = [("TOOL", "APPROVAL", "WHAT IT DOES")]
    for server in servers:
        running = start(server, settings)
        try:
            tools, notes = tools_of(server, running.listed, ("*",), _never)
        finally:
            running.close()
        for tool in tools:
            asks = "runs without asking" if server.trusts(tool.remote_name) else "asks"
            rows.append((tool.name, asks, visible(short(" ".join(tool.description.split()), 90))))
        for note in notes:
            diagnostics().warning(visible(f"MCP server {server.name}: {note}"))
    sys.stdout.write(columns(rows))


@mcp_app.command("test", short_help="Start one MCP server, list its tools, stop it, with timings.")
def mcp_test(ctx: typer.Context, name: NameArg, config: ConfigOpt = None) -> None:
    """Start the server, list its tools and stop it, saying how long each took. Exits 6 if it
    cannot be started (the first line of its stderr says why)."""
    settings = _settings(ctx, config)
    server = _one(settings, name)
    diag = diagnostics()
    diag.note(f"starting {visible(server.where())}")
    running = start(server, settings)
    from chatcli.tools.mcp import tools_of

    tools, notes = tools_of(server, running.listed, ("*",), _never)
    print(f"{name}: started and listed {len(running.listed)} tool{'' if len(running.listed) == 1 else 's'} "
          f"in {running.seconds:.2f} s")
    print(f"{name}: offered to the model: {', '.join(t.name for t in tools) or 'none'}")
    for note in notes:
        print(visible(f"{name}: {note}"))
    stopped = time.monotonic()
    running.close()
    print(f"{name}: stopped in {time.monotonic() - stopped:.2f} s")


# -- import --------------------------------------------------------------------------------

SECRET = re.compile(r"key|token|secret|password|passwd|credential|auth", re.IGNORECASE)


@mcp_app.command("import", short_help="Add the servers of a Claude Desktop / Cursor mcpServers JSON file.")
def mcp_import(ctx: typer.Context,
               file: Annotated[Path, typer.Argument(metavar="FILE", help="claude_desktop_config.json, "
                                                    ".cursor/mcp.json, or another file with mcpServers.")],
               keep_secrets: Annotated[bool, typer.Option("--keep-secrets", help="Copy the values of "
                   "variables and headers that look like keys into the config (by default they become "
                   "${VAR}, to be set in your environment).")] = False,
               config: ConfigOpt = None) -> None:
    """Write a [mcp.servers.NAME] table for each server of FILE's mcpServers; a server the
    config already has is left as it is. Values that look like keys are not copied unless
    --keep-secrets: they become ${VAR}, and you are told which variables to set."""
    from chatcli.config import append_to_config, default_config_path, read_config

    root = ctx.find_root().obj
    path = config or (root.config if root is not None else None) or default_config_path(os.environ)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise errors.UsageError(f"{file} is not JSON: {exc}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise errors.UsageError(f"{file} has no mcpServers object",
                                hint="the file Claude Desktop, Cursor and oterm keep their MCP servers in")
    existing = read_config(path).get("mcp", {}).get("servers", {}) if path.exists() else {}
    diag = diagnostics()
    text, added, variables = "", [], []
    for raw_name, entry in servers.items():
        name = table_name(raw_name)
        if name in existing:
            diag.note(f"{name}: already in {path}; left as it is")
            continue
        try:
            table, needed = converted(name, entry, keep_secrets=keep_secrets)
        except ValueError as exc:
            diag.warning(f"{raw_name}: {exc}; not imported")
            continue
        text += tables_text(name, table)
        added.append(name)
        variables += needed
    if not added:
        diag.note("nothing imported")
        return
    append_to_config(path, text)
    diag.note(f"added {', '.join(added)} to {path}; `chatcli mcp test NAME` tries one")
    if variables:
        diag.note("values that look like keys were not copied; set them in your environment: "
                  + ", ".join(dict.fromkeys(variables)))


def table_name(name: str) -> str:
    """A server's name as a table's (letters, digits, _ and -, starting with a letter)."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_") or "server"
    if not clean[0].isalpha():
        clean = "s-" + clean
    return clean[:31]


def converted(name: str, entry: Any, *, keep_secrets: bool) -> tuple[dict[str, Any], list[str]]:
    """One mcpServers entry as a [mcp.servers.NAME] table, and the variables it needs set."""
    from chatcli.tools.mcp import problem

    if not isinstance(entry, dict):
        raise ValueError("expected an object with command or url")
    table: dict[str, Any] = {}
    needed: list[str] = []
    if entry.get("url"):
        table["url"] = str(entry["url"])
        if str(entry.get("type") or entry.get("transport") or "").lower() == "sse":
            table["transport"] = "sse"
        if headers := _strings(entry.get("headers")):
            prefix = f"MCP_{name}_"
            table["headers"] = _hidden(headers, keep_secrets, needed, schemes=True,
                                       variable_for=lambda header: re.sub(r"[^A-Z0-9]+", "_",
                                                                          (prefix + header).upper()))
    elif entry.get("command"):
        table["command"] = str(entry["command"])
        if entry.get("args"):
            table["args"] = [str(arg) for arg in entry["args"]]
        if env := _strings(entry.get("env")):
            table["env"] = _hidden(env, keep_secrets, needed, schemes=False, variable_for=str)
        if entry.get("cwd"):
            table["cwd"] = str(entry["cwd"])
    else:
        raise ValueError("it has neither command nor url")
    if entry.get("disabled") is True:
        table["enabled"] = False
    why = problem(name, table)
    if why:
        raise ValueError(why)
    return table, needed


def _hidden(values: Mapping[str, str], keep: bool, needed: list[str], *, schemes: bool,
            variable_for: Any) -> dict[str, str]:
    """`values` with each one named like a key (unless `keep`) replaced by ${VAR}, keeping a
    header's scheme when `schemes` (`Bearer ${VAR}`); the variables are added to `needed`."""
    out = {}
    for name, value in values.items():
        if keep or not SECRET.search(name) or value.startswith("${"):
            out[name] = value
            continue
        variable = variable_for(name)
        schemed = schemes and value.lower().startswith(("bearer ", "basic "))
        scheme = value.split(" ", 1)[0] + " " if schemed else ""
        out[name] = f"{scheme}${{{variable}}}"
        needed.append(variable)
    return out


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def tables_text(name: str, table: Mapping[str, Any]) -> str:
    from chatcli.schema import toml_value

    lines = "".join(f"{key} = {toml_value(value)}\n" for key, value in table.items())
    return f"\n[mcp.servers.{name}]\n{lines}"
