"""MCP servers as providers of tools: what a [mcp.servers.NAME] table says, and the tools a
session offers from the servers it chose, started on first use.

A server is a program chatcli starts (stdio: `command`, `args`, `env`, `cwd`) or a URL
(streamable HTTP, or `transport = "sse"` for older servers). Its tools reach the model as
`SERVER__TOOL` and go through the same `ToolBox` as the built-in ones: approval, the
output budget, the round limit, storage. Nothing here imports the MCP SDK: mcp_client.py
does, and only when a server is started. Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chatcli.textsafe import shown
from chatcli.tools import Tool, ToolError

SEPARATOR = "__"  # between the server's name and the tool's: git__git_status
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,30}")  # a server's name: it starts every tool's name
TABLE_KEYS = {"command", "args", "env", "cwd", "url", "transport", "headers", "key_env", "key_command",
              "enabled", "tools", "approve", "timeout"}
TRANSPORTS = ("streamable-http", "sse")
DEFAULT_TIMEOUT = 60.0
MAX_DESCRIPTION = 1024  # characters of a tool's description the model reads
MAX_TOOLS = 128  # tools of one server offered (OpenAI's own limit for a whole request)
MAX_SCHEMA = 32_000  # characters of one tool's JSON schema; a larger one is not offered
MAX_LISTED = 10_000  # tools read from one server's listing before it is cut off
# What a stdio server gets of chatcli's environment (besides what its table names): enough
# to find programs, its files and the language, and the proxy it must go through. Never the
# API keys, never the rest.
INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "LC_ALL",
             "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
             "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy", "SSL_CERT_FILE",
             "SSL_CERT_DIR")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Approve = Literal["always", "never"]


@dataclass(frozen=True)
class Server:
    """One [mcp.servers.NAME] table, checked."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""
    url: str = ""
    transport: str = "streamable-http"
    headers: Mapping[str, str] = field(default_factory=dict)
    key_env: str = ""
    key_command: str = ""
    enabled: bool = True
    tools: tuple[str, ...] = ("*",)  # globs of the server's tool names that are offered
    # "always": every call asks (the default); "never": none asks (a server you trust, that
    # only reads); or globs of tools that run without asking.
    approve: Approve | tuple[str, ...] = "always"
    timeout: float = DEFAULT_TIMEOUT

    @property
    def remote(self) -> bool:
        return bool(self.url)

    def where(self) -> str:
        """The server as a listing names it: its URL, or its command line."""
        if self.url:
            from chatcli.textsafe import url_shown

            return url_shown(self.url)  # without a key in its query or userinfo
        return " ".join([self.command, *self.args])

    def offers(self, tool: str) -> bool:
        return matches(tool, self.tools)

    def approval(self) -> str:
        """Its approve, as a listing says it."""
        if self.approve == "always":
            return "asks each time"
        if self.approve == "never":
            return "runs without asking"
        return f"{', '.join(self.approve)} without asking; the rest ask"

    def trusts(self, tool: str) -> bool:
        """Whether calls to `tool` run without asking (the table's approve says so)."""
        if self.approve == "never":
            return True
        if self.approve == "always":
            return False
        return matches(tool, self.approve)


def matches(name: str, globs: Iterable[str]) -> bool:
    """Whether `name` matches one of the globs (`git_*`, `*`)."""
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, glob) for glob in globs)


def problem(name: str, table: Any) -> str | None:
    """What is wrong with a [mcp.servers.NAME] table, or None."""
    if not NAME.fullmatch(name):
        return "a server's name is letters, digits, _ and - (at most 31), starting with a letter"
    if not isinstance(table, dict):
        return "expected a table with command (a program to start) or url (a server to connect to)"
    unknown = sorted(set(table) - TABLE_KEYS)
    if unknown:
        return f"unknown key {unknown[0]!r} (a server takes {', '.join(sorted(TABLE_KEYS))})"
    if ("command" in table) == ("url" in table):
        return "expected either command (a program to start) or url (a server to connect to)"
    strings = ("command", "cwd", "url", "transport", "key_env", "key_command")
    for key in strings:
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            return f"{key}: expected a string"
    if "url" in table and not re.match(r"https?://", table["url"]):
        return "url: expected an http:// or https:// URL"
    if table.get("transport", "streamable-http") not in TRANSPORTS:
        return f"transport: expected {' or '.join(map(repr, TRANSPORTS))}"
    for key in ("args", "tools"):
        if key in table and not (isinstance(table[key], list)
                                 and all(isinstance(x, str) for x in table[key])):
            return f"{key}: expected a list of strings"
    for key in ("env", "headers"):
        if key in table and not (isinstance(table[key], dict)
                                 and all(isinstance(v, str) for v in table[key].values())):
            return f"{key}: expected a table of strings"
    remote_only = [key for key in ("headers", "key_env", "key_command", "transport") if key in table]
    if "command" in table and remote_only:
        return f"{remote_only[0]}: only for a server with a url"
    local_only = [key for key in ("args", "env", "cwd") if key in table]
    if "url" in table and local_only:
        return f"{local_only[0]}: only for a server started with command"
    if "key_env" in table and "key_command" in table:
        return "key_env and key_command: expected one of them"
    if "enabled" in table and not isinstance(table["enabled"], bool):
        return "enabled: expected true or false"
    approve = table.get("approve", "always")
    if not (approve in ("always", "never") or (isinstance(approve, list)
                                                and all(isinstance(x, str) for x in approve))):
        return 'approve: expected "always" (ask each call), "never" (ask none) or a list of tool names'
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 86_400:
        return "timeout: expected a number of seconds up to 86400"
    return None


def server_of(name: str, table: Mapping[str, Any]) -> Server:
    """The server a checked table describes."""
    given = table.get("approve", "always")
    approve: Approve | tuple[str, ...] = "never" if given == "never" else "always" if given == "always" \
        else tuple(given)
    return Server(name, command=table.get("command", ""), args=tuple(table.get("args", ())),
                  env=dict(table.get("env", {})), cwd=table.get("cwd", ""), url=table.get("url", ""),
                  transport=table.get("transport", "streamable-http"), headers=dict(table.get("headers", {})),
                  key_env=table.get("key_env", ""), key_command=table.get("key_command", ""),
                  enabled=table.get("enabled", True), tools=tuple(table.get("tools", ("*",))),
                  approve=approve,
                  timeout=float(table.get("timeout", DEFAULT_TIMEOUT)))


def substitute(text: str, env: Mapping[str, str], *, what: str, forbidden: Iterable[str] = ()) -> str:
    """`text` with each ${VAR} replaced by the variable's value; a variable that is not set,
    or one holding an API key chatcli sends to its endpoint, is a ToolError naming it."""
    refused = set(forbidden)

    def value(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable in refused:
            raise ToolError(f"{what} names ${{{variable}}}, an API key chatcli sends to its endpoint; "
                            "an MCP server gets its own keys, never chatcli's")
        if variable not in env:
            raise ToolError(f"{what} names ${{{variable}}}, which is not set")
        return env[variable]

    return VARIABLE.sub(value, text)


def environment(server: Server, env: Mapping[str, str], forbidden: Iterable[str] = ()) -> dict[str, str]:
    """What a stdio server's process gets: the few variables of INHERITED, then its table's
    env with ${VAR} filled in from chatcli's environment."""
    refused = set(forbidden)
    base = {name: env[name] for name in INHERITED if name in env and name not in refused}
    return {**base, **{name: substitute(value, env, what=f"[mcp.servers.{server.name}] env {name}",
                                        forbidden=refused)
                       for name, value in server.env.items()}}


def tool_name(server: str, tool: str) -> str:
    """The name the model calls a server's tool by: SERVER__TOOL, in the characters and the
    64 the API allows (a longer or stranger name gets a short hash to stay unique)."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", tool)
    name = f"{server}{SEPARATOR}{clean}"
    if clean != tool or len(name) > 64:
        import hashlib

        digest = hashlib.sha256(tool.encode("utf-8", "surrogatepass")).hexdigest()[:6]
        name = f"{name[:64 - 7]}-{digest}" if len(name) > 64 else f"{name}-{digest}"
    return name


def selection(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """A role's `mcp = ["git", "time:get_*"]`: server -> globs of its tools ("*": all)."""
    chosen: dict[str, tuple[str, ...]] = {}
    for item in names:
        server, _, glob = item.partition(":")
        chosen[server] = (*chosen.get(server, ()), glob or "*")
    return chosen


def short(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Listed:
    """A tool as a server listed it (the SDK's types are mcp_client.py's business)."""

    name: str
    description: str
    schema: dict[str, Any]
    read_only: bool = False  # the server's hint: shown, never trusted


def tools_of(server: Server, listed: Sequence[Listed], globs: Sequence[str],
             call: Callable[[str, dict[str, Any]], str]) -> tuple[list[Tool], list[str]]:
    """The tools offered from a server's listing (those its table's `tools` and the role's
    globs allow, at most MAX_TOOLS, schemas within MAX_SCHEMA), and notes on what was left
    out. `call(tool, arguments)` runs one on the server."""
    notes: list[str] = []
    allowed = [item for item in listed if server.offers(item.name)
               and matches(item.name, globs)]
    large = [item.name for item in allowed if len(json.dumps(item.schema)) > MAX_SCHEMA]
    if large:
        notes.append(f"{len(large)} tool{'s' if len(large) > 1 else ''} with a schema over "
                     f"{MAX_SCHEMA:,} characters not offered: {', '.join(large[:5])}")
    allowed = [item for item in allowed if item.name not in large]
    if len(allowed) > MAX_TOOLS:
        notes.append(f"{len(allowed):,} tools listed; the first {MAX_TOOLS} are offered (choose with "
                     f"tools = [...] in [mcp.servers.{server.name}])")
        allowed = allowed[:MAX_TOOLS]
    tools: list[Tool] = []
    seen: set[str] = set()
    for item in allowed:
        name = tool_name(server.name, item.name)
        if name in seen:
            continue
        seen.add(name)
        schema = dict(item.schema) if isinstance(item.schema, dict) else {}
        schema.setdefault("type", "object")
        if schema.get("type") == "object":
            schema.setdefault("properties", {})

        def run(arguments: dict[str, Any], _ctx: Any, tool: str = item.name) -> str:
            return call(tool, arguments)

        description = short(item.description or f"The {item.name} tool of the MCP server {server.name}.")
        tools.append(Tool(name, description, schema, run, "mcp", server=server.name, remote_name=item.name,
                          hint_read_only=item.read_only))
    return tools, notes


# -- what a result says ----------------------------------------------------------------------


def describe_content(part: Mapping[str, Any]) -> str:
    """One part of a tool's result as the model reads it: text as text; anything else
    named with its type and size (an image, audio, a file), never dropped silently."""
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    if kind in ("image", "audio"):
        size = len(str(part.get("data", ""))) * 3 // 4
        return f"[{kind}: {part.get('mimeType') or part.get('mime_type') or 'unknown type'}, {_size(size)}]"
    if kind == "resource_link":
        named = f" ({part['name']})" if part.get("name") else ""
        return f"[a link to the resource {part.get('uri')}{named}]"
    if kind == "resource":
        resource = part.get("resource") or {}
        uri = resource.get("uri", "")
        if "text" in resource:
            return f"[the resource {uri}]\n{resource['text']}"
        size = len(str(resource.get("blob", ""))) * 3 // 4
        mime = resource.get("mimeType") or resource.get("mime_type") or "binary"
        return f"[the resource {uri}: {mime}, {_size(size)}, not passed on as text]"
    return f"[{kind or 'unknown'} content, not passed on]"


def _size(count: int) -> str:
    return f"{count:,} bytes" if count < 10_000 else f"{count / 1024:,.0f} KB"


def result_text(content: Sequence[Mapping[str, Any]], structured: Any = None) -> str:
    """A tool's result as text: its parts in order; the structured result when there are no
    parts; "(no output)" when there is neither."""
    texts = [describe_content(part) for part in content]
    if not texts and structured is not None:
        return json.dumps(structured, ensure_ascii=False, indent=2)
    return "\n".join(texts) if texts else "(no output)"


def log_name(server: str) -> str:
    return f"mcp-{server}.log"


class Connection(Protocol):
    """A running server, as mcp_client.Connection is one."""

    listed: list[Listed]
    seconds: float
    failure: str

    @property
    def alive(self) -> bool: ...

    def start(self) -> list[Listed]: ...

    def begin(self) -> None: ...

    def finish(self) -> list[Listed]: ...

    def call(self, tool: str, arguments: dict[str, Any]) -> str: ...

    def close(self) -> None: ...


Say = Callable[[str, str], None]  # a line for the screen, and its style ("dim", "yellow")


class McpTools:
    """The MCP servers a session or a command offers tools from. A server starts on the first
    request that offers its tools (`tools()`), and keeps running until chatcli stops; one
    that cannot start, or dies, is said in one line and its tools are not offered (until
    /mcp NAME turns it on again)."""

    def __init__(self, servers: Mapping[str, Server], chosen: Mapping[str, Sequence[str]] | None,
                 connect: Callable[[Server], Connection], say: Say) -> None:
        self.servers = dict(servers)
        self._connect = connect
        # What a server says (its stderr, its errors) is data: no escape sequence or bidi
        # character of it reaches the screen.
        self._say: Say = lambda text, style: say(shown(text), style)
        self.running: dict[str, Connection] = {}
        self.failed: dict[str, str] = {}  # server -> why it is not running
        self._offered: dict[tuple[str, tuple[str, ...]], dict[str, Tool]] = {}
        self.on: dict[str, tuple[str, ...]] = {}
        self.choose(chosen)

    def choose(self, chosen: Mapping[str, Sequence[str]] | None) -> None:
        """Offer the servers `chosen` (server -> tool globs); None: each enabled server."""
        if chosen is None:
            self.on = {name: ("*",) for name, server in self.servers.items() if server.enabled}
        else:
            self.on = {name: tuple(globs) for name, globs in chosen.items() if name in self.servers}

    def unknown(self, chosen: Mapping[str, Sequence[str]]) -> list[str]:
        return [name for name in chosen if name not in self.servers]

    def toggle(self, name: str) -> bool:
        """Turn a server on (tried again if it failed) or off (stopped); whether it is on."""
        if name in self.on:
            del self.on[name]
            if name in self.running:
                self.running.pop(name).close()
            return False
        self.on[name] = ("*",)
        self.failed.pop(name, None)
        return True

    def tools(self) -> dict[str, Tool]:
        """The tools offered now (starting the servers that are on and not yet started)."""
        offered: dict[str, Tool] = {}
        self._start([name for name in self.on if name not in self.running and name not in self.failed])
        for name, globs in self.on.items():
            connection = self.running.get(name)
            if connection is None:
                continue
            if not connection.alive:
                self.running.pop(name).close()
                self.failed[name] = connection.failure or "it stopped"
                self._say(f"MCP server {name}: {self.failed[name]}; its tools are not offered "
                          f"(/mcp {name} starts it again)", "yellow")
                continue
            key = (name, globs)
            if key not in self._offered:
                tools = tools_of(self.servers[name], connection.listed, globs, connection.call)[0]
                self._offered[key] = {tool.name: tool for tool in tools}
            offered.update(self._offered[key])
        return offered

    def _start(self, names: Sequence[str]) -> None:
        """Start these servers, all at once, and say how each did."""
        starting: dict[str, Connection] = {}
        for name in names:
            server = self.servers[name]
            self._say(f"starting MCP server {name} ({short(server.where(), 80)})…", "dim")
            try:
                starting[name] = self._connect(server)
                starting[name].begin()
            except ToolError as exc:
                starting.pop(name, None)
                self._failed(name, str(exc))
        for name, connection in starting.items():
            if name in self.failed:  # Ctrl-C stopped the start of every server still starting
                connection.close()
                continue
            try:
                connection.finish()
            except ToolError as exc:
                self._failed(name, str(exc))
                continue
            except KeyboardInterrupt:
                for other in [n for n in starting if n not in self.running and n not in self.failed]:
                    self.failed[other] = "its start was stopped (Ctrl-C)"
                    self._say(f"MCP server {other}: start stopped; its tools are not offered "
                              f"(/mcp {other} tries again)", "yellow")
                connection.close()
                continue
            self._started(name, connection)

    def _failed(self, name: str, why: str) -> None:
        self.failed[name] = why
        self._say(f"MCP server {name}: {why}; its tools are not offered", "yellow")

    def _started(self, name: str, connection: Connection) -> None:
        server = self.servers[name]
        self.running[name] = connection
        self._offered = {key: tools for key, tools in self._offered.items() if key[0] != name}
        tools, notes = tools_of(server, connection.listed, self.on.get(name, ("*",)), connection.call)
        self._say(f"MCP server {name}: {len(tools)} tool{'' if len(tools) == 1 else 's'}, started in "
                  f"{connection.seconds:.1f} s", "dim")
        for note in notes:
            self._say(f"MCP server {name}: {note}", "yellow")

    def trusted(self, tool: Tool) -> bool:
        server = self.servers.get(tool.server)
        return server is not None and server.trusts(tool.remote_name)

    def state(self, name: str) -> str:
        """How a server stands: off, not started, running (N tools), or why it failed."""
        if name in self.failed:
            return f"failed: {self.failed[name]}"
        if name not in self.on:
            return "off"
        if name in self.running:
            count = len(tools_of(self.servers[name], self.running[name].listed, self.on[name], _no_call)[0])
            return f"running, {count} tool{'' if count == 1 else 's'}"
        return "on, starts with the next question"

    def close(self) -> None:
        for connection in list(self.running.values()):
            connection.close()
        self.running.clear()


def _no_call(tool: str, arguments: dict[str, Any]) -> str:
    raise ToolError("not connected")
