"""Settings and the one merge that makes them.

Order, later wins: built-in defaults < the top level of the config file < the
selected profile < the role < environment < flags. Reading the file and running
`api_key_cmd` are the only I/O here, each in a small function of its own;
`merge` itself is pure and takes the environment as a mapping.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

from chatcli.conversation import ImageDetail
from chatcli.errors import ConfigError, UsageError
from chatcli.roles import Role, all_roles
from chatcli.schema import (
    BUILTIN_PROFILES,
    DEFAULTS,
    INSTALL_HINT,
    KEYS,
    KEYS_BY_NAME,
    LOCAL,
    ROLE_KEYS_BY_NAME,
    TOOLS_KEYS_BY_NAME,
    TOP_LEVEL_ONLY,
    ContinueStyle,
    Effort,
    Key,
    ReasoningMode,
    TokenLimitParam,
    ToolFallback,
    model_name,
    owned_param,
)
from chatcli.textsafe import url_shown

KEY_FIELDS = ("api_key", "api_key_env", "api_key_cmd")
ENV_SETTINGS = {"OPENAI_BASE_URL": "base_url", "CHATCLI_MODEL": "model"}
NO_KEY_NEEDED = "no-key-needed"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


# An environment variable, a command, the value in the file, or no key at all.
KeyKind = Literal["env", "cmd", "value", "none"]


@dataclass(frozen=True)
class KeySource:
    """Where the API key comes from. Holds the key only for `api_key` in the file."""

    kind: KeyKind
    detail: str = ""  # variable name or command
    origin: str = ""  # which layer named it
    value: str | None = field(default=None, repr=False)
    home: str = ""  # the endpoint this key was configured for: it is sent nowhere else
    passed_over: str = ""  # for "none": keys that exist but belong to another endpoint

    def describe(self, env: Mapping[str, str]) -> str:
        """How `config show` and `doctor` name the source, never the key."""
        if self.kind == "env":
            state = "set" if env.get(self.detail) else "NOT SET"
            return f"environment variable {self.detail} ({state}; from {self.origin})"
        if self.kind == "cmd":
            return f"command `{self.detail}` (from {self.origin})"
        if self.kind == "value":
            return f"api_key in {self.origin} (hidden)"
        return "none"


@dataclass(frozen=True)
class Settings:
    """Everything a request needs to know, after the merge. Frozen; replace() to change."""

    base_url: str
    model: str
    key_source: KeySource
    temperature: float | None = DEFAULTS["temperature"]
    max_tokens: int | None = DEFAULTS["max_tokens"]
    context_window: int = DEFAULTS["context_window"]
    max_messages: int = DEFAULTS["max_messages"]
    max_tokens_param: TokenLimitParam = DEFAULTS["max_tokens_param"]
    reasoning_effort: Effort | None = DEFAULTS["reasoning_effort"]
    system_prompt: str | None = DEFAULTS["system_prompt"]
    price_input: float | None = DEFAULTS["price_input"]
    price_output: float | None = DEFAULTS["price_output"]
    currency: str = DEFAULTS["currency"]
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULTS["timeout"]
    reply_timeout: float = DEFAULTS["reply_timeout"]
    connect_timeout: float = DEFAULTS["connect_timeout"]
    max_retries: int = DEFAULTS["max_retries"]
    ca_bundle: str | None = DEFAULTS["ca_bundle"]
    save: bool = DEFAULTS["save"]
    data_dir: str | None = DEFAULTS["data_dir"]
    vi_mode: bool = DEFAULTS["vi_mode"]
    markdown: bool = DEFAULTS["markdown"]
    local_model: str = DEFAULTS["local_model"]
    local_context: int = DEFAULTS["local_context"]
    local_threads: int = DEFAULTS["local_threads"]
    local_options: Mapping[str, Any] = field(default_factory=dict)
    reasoning: ReasoningMode = DEFAULTS["reasoning"]
    image_detail: ImageDetail | None = DEFAULTS["image_detail"]
    continue_style: ContinueStyle = DEFAULTS["continue_style"]
    max_tool_rounds: int = DEFAULTS["max_tool_rounds"]
    tool_output_tokens: int = DEFAULTS["tool_output_tokens"]
    tool_fallback: ToolFallback = DEFAULTS["tool_fallback"]
    tools: tuple[str, ...] = ()  # the tools offered: [tools] enabled, a role's, -T
    approve_tools: tuple[str, ...] = ()  # read-only tools that run without asking
    custom_tools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [tools.NAME]
    mcp_servers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [mcp.servers.NAME]
    mcp: tuple[str, ...] | None = None  # a role's servers (["git", "time:get_*"]); None: each enabled one
    profile: str | None = None
    profiles: tuple[str, ...] = ()  # every profile the file defines, for /profile and Tab
    role: str | None = None
    template: str | None = None  # the role's one-shot message, with {input}
    roles: Mapping[str, Role] = field(default_factory=dict)  # built-in and configured, for /role
    # What the role in use replaced, each as (value, origin), to be put back when it goes:
    # keys, and "params.FIELD" for the fields of params (absent ones as ABSENT); an origin
    # of "" where there was none.
    role_base: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    config_path: Path | None = None
    origins: Mapping[str, str] = field(default_factory=dict)  # key -> the layer its value came from


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and how: all the client is given. A profile's endpoint, the local
    model's in-process server (its own URL and key), or any other provider of one is a
    value of this kind; the key is never shown by repr."""

    base_url: str
    api_key: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = DEFAULTS["timeout"]
    reply_timeout: float = DEFAULTS["reply_timeout"]
    connect_timeout: float = DEFAULTS["connect_timeout"]
    max_retries: int = DEFAULTS["max_retries"]
    ca_bundle: str | None = None
    max_tokens_param: TokenLimitParam = DEFAULTS["max_tokens_param"]


def endpoint_of(settings: Settings, api_key: str, *, base_url: str | None = None) -> Endpoint:
    """The endpoint the settings name, with `api_key` (and another base_url, for a server
    chatcli started itself)."""
    return Endpoint(base_url or settings.base_url, api_key, headers=dict(settings.headers),
                    timeout=settings.timeout, reply_timeout=settings.reply_timeout,
                    connect_timeout=settings.connect_timeout, max_retries=settings.max_retries,
                    ca_bundle=settings.ca_bundle, max_tokens_param=settings.max_tokens_param)


def default_config_path(env: Mapping[str, str]) -> Path:
    """CHATCLI_CONFIG, or config.toml in the platform's user config directory."""
    if env.get("CHATCLI_CONFIG"):
        return Path(env["CHATCLI_CONFIG"]).expanduser()
    from platformdirs import user_config_path

    return user_config_path("chatcli", appauthor=False) / "config.toml"


def data_dir(env: Mapping[str, str], settings: Settings | None = None) -> Path:
    """Where chatcli keeps what it writes: CHATCLI_DATA_DIR, else `data_dir` in the
    config, else the platform's user data directory."""
    if env.get("CHATCLI_DATA_DIR"):
        return Path(env["CHATCLI_DATA_DIR"]).expanduser()
    if settings is not None and settings.data_dir:
        return Path(settings.data_dir).expanduser()
    from platformdirs import user_data_path

    return user_data_path("chatcli", appauthor=False)


MAX_CONFIG_BYTES = 1_000_000


def read_config(path: Path, *, must_exist: bool = False) -> dict[str, Any]:
    """Parse and validate the file. A missing file is an empty configuration, unless it
    was named (--config): then it is an error. Only a bounded amount is ever read, so a
    device or a pipe that never ends (/dev/zero) is refused, not read forever."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"the config file {path} does not exist",
                              hint=f"check the path, or create it with `chatcli config init --config "
                                   f"{path}`") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} holds more than {MAX_CONFIG_BYTES // 1_000_000} MB; it is not a "
                          "config file", hint="check the --config path")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the config file is not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> dict[str, Any]:
    """Validate TOML text against the schema; errors name file, line and key."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        reason = re.sub(r"\s*\(at line.*", "", str(exc))
        line = f":{where.group(1)}" if where else ""
        col = f" at column {where.group(2)}" if where else ""
        raise ConfigError(f"{path}{line}: invalid TOML: {reason}{col}") from None
    for key, value in data.items():
        if key == "profile":
            if not isinstance(value, str):
                _fail(path, text, (), key, "a string", value)
        elif key == "tools":
            _check_tools(path, text, value)
        elif key == "mcp":
            _check_mcp(path, text, (), value)
        elif key in ("profiles", "roles"):
            kind = f"[{key}.NAME]"
            if not isinstance(value, dict):
                _fail(path, text, (), key, f"a table of {kind} tables", value)
            for name, table in value.items():
                if not isinstance(table, dict):
                    _fail(path, text, (key,), name, f"a {kind} table", table)
                if key == "profiles" and "mcp" in table:  # a profile's own servers
                    _check_mcp(path, text, (key, name), table["mcp"])
                    table = {k: v for k, v in table.items() if k != "mcp"}
                _check_table(path, text, (key, name), table,
                             ROLE_KEYS_BY_NAME if key == "roles" else KEYS_BY_NAME)
        else:
            _check_table(path, text, (), {key: value})
    return data


def _check_tools(path: Path, text: str, value: Any) -> None:
    """The [tools] table: its own keys, and [tools.NAME] tables for the user's tools."""
    from chatcli.tools.command import problem

    if not isinstance(value, dict):
        _fail(path, text, (), "tools", "a [tools] table (enabled, approve, and [tools.NAME] tables)", value)
    for name, item in value.items():
        if name in TOOLS_KEYS_BY_NAME:
            _check_table(path, text, ("tools",), {name: item}, TOOLS_KEYS_BY_NAME)
        elif why := problem(name, item):
            raise ConfigError(f"{path}{_locate(text, ('tools',), name)}: tools.{name}: {why}")


def _check_mcp(path: Path, text: str, within: tuple[str, ...], value: Any) -> None:
    """An [mcp] table: its [mcp.servers.NAME] tables (tools/mcp.py says what they hold)."""
    from chatcli.tools.mcp import problem

    where = (*within, "mcp")
    if not isinstance(value, dict) or set(value) - {"servers"} or not isinstance(value.get("servers", {}),
                                                                                  dict):
        raise ConfigError(f"{path}{_locate(text, within, 'mcp')}: {'.'.join(where)}: expected "
                          "[mcp.servers.NAME] tables, one for each MCP server")
    for name, table in value.get("servers", {}).items():
        if why := problem(name, table):
            line = _locate(text, (*where, "servers"), name)
            raise ConfigError(f"{path}{line}: {'.'.join((*where, 'servers', name))}: {why}",
                              hint="docs/mcp.md describes a server's table")


def _check_table(path: Path, text: str, table: tuple[str, ...], data: dict[str, Any],
                 specs: Mapping[str, Key] = KEYS_BY_NAME) -> None:
    for key, value in data.items():
        spec = specs.get(key)
        if spec is None:
            import difflib

            names = list(specs) + ([] if table else list(TOP_LEVEL_ONLY))
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            line = _locate(text, table, key)
            raise ConfigError(f"{path}{line}: unknown key {_dotted(table, key)!r}{hint}")
        if not spec.check(value):
            _fail(path, text, table, key, spec.kind, value)


def _fail(path: Path, text: str, table: tuple[str, ...], key: str, kind: str, value: Any) -> NoReturn:
    line = _locate(text, table, key)
    raise ConfigError(f"{path}{line}: {_dotted(table, key)}: expected {kind}, got {_shown_value(key, value)}")


def _shown_value(key: str, value: Any) -> str:
    """A value in an error message, without the secret it may be or hold."""
    if KEYS_BY_NAME.get(key) and KEYS_BY_NAME[key].secret:
        return "(hidden)"
    return repr(url_shown(value) if key == "base_url" and isinstance(value, str) else value)


def _dotted(table: tuple[str, ...], key: str) -> str:
    return ".".join((*table, key))


def _locate(text: str, table: tuple[str, ...], key: str) -> str:
    """':N' for the line that sets `key` in `table`, or '' when it cannot be found."""
    current: tuple[str, ...] = ()
    header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
    assign = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if match := header.match(line):
            current = tuple(p.strip().strip("\"'") for p in match.group(1).split("."))
            if current == (*table, key):
                return f":{number}"
        elif current == table and assign.match(line):
            return f":{number}"
    return ""


def readable_secret(path: Path, data: Mapping[str, Any]) -> str | None:
    """A warning when the file holds an API key and others may read it, naming the fix."""
    tables = [data, *data.get("profiles", {}).values()]
    if not any("api_key" in table for table in tables):
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & 0o077 == 0:
        return None
    return (f"{path} holds an API key and can be read by other users "
            f"(mode {mode & 0o777:o}); fix it with: chmod 600 {path}")


def select_profile(data: Mapping[str, Any], env: Mapping[str, str], flag: str | None,
                   role: Role | None = None) -> str | None:
    """The profile name: the --profile flag, else CHATCLI_PROFILE, else the role's, else the
    file's `profile`; an empty name given on purpose (--profile "") means no profile."""
    if flag is not None:
        return flag or None
    return env.get("CHATCLI_PROFILE") or (role.profile if role else None) or data.get("profile") or None


def find_role(roles: Mapping[str, Role], name: str, path: Path | None) -> Role:
    """The role called `name`, or a ConfigError naming the roles there are."""
    if name not in roles:
        raise ConfigError(f"{path}: role {name!r} does not exist (roles: {', '.join(sorted(roles))})",
                          hint=f"add a [roles.{name}] table; `chatcli roles` lists them")
    return roles[name]


def merge(
    data: Mapping[str, Any],
    env: Mapping[str, str],
    flags: Mapping[str, Any],
    *,
    path: Path | None = None,
) -> Settings:
    """Merge defaults < file < profile < role < environment < flags into Settings. Pure.

    One exception to the order keeps keys safe: a profile's base_url is not
    overridden by OPENAI_BASE_URL, because a profile's endpoint and key travel
    together (see `_key_source`)."""
    roles = all_roles(data, str(path))
    role = find_role(roles, flags["role"], path) if flags.get("role") else None
    profile = select_profile(data, env, flags.get("profile"), role)
    profiles = {**BUILTIN_PROFILES, **{name: {**BUILTIN_PROFILES.get(name, {}), **table}
                                       for name, table in data.get("profiles", {}).items()}}
    if profile is not None and profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        raise ConfigError(
            f"{path}: profile {profile!r} does not exist (profiles: {known})",
            hint=f"add a [profiles.{profile}] table, or see `chatcli config init`",
        )
    top = {k: v for k, v in data.items() if k not in TOP_LEVEL_ONLY}
    table = profiles.get(profile, {}) if profile else {}
    layers: list[tuple[Mapping[str, Any], str]] = [
        ({k.name: k.default for k in KEYS if k.default is not None}, "default"),
        (top, f"{path}"),
        ({k: v for k, v in table.items() if k != "mcp"}, f"profile {profile}"),
        (_tools_layer(data.get("tools", {})), f"{path}"),
        # the role's place is here; with_role puts it there, under what the rest set
        *(({name: env[var]}, f"environment {var}") for var, name in ENV_SETTINGS.items()
          if env.get(var) and not (name == "base_url" and "base_url" in table)),
        ({k: v for k, v in flags.items() if v is not None and k != "profile"}, "flag"),
        # --local-model names a local model to use now: the endpoint is the local one
        ({"base_url": LOCAL} if flags.get("local_model") else {}, "flag"),
    ]
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for layer, origin in layers:
        for key, value in layer.items():
            if key == "params":  # tables add up: a profile's extra fields join the file's
                merged[key], origins[key] = {**merged.get(key, {}), **value}, origin
                origins.update({f"params.{field}": origin for field in value})
            elif key not in KEY_FIELDS and key != "role":
                merged[key], origins[key] = value, origin
    for key in ENV_SETTINGS.values():  # the file's values were checked as it was read
        spec, origin = KEYS_BY_NAME[key], origins.get(key, "")
        if origin.startswith(("environment", "flag")) and not spec.check(merged[key]):
            where = origin.removeprefix("environment ") if origin != "flag" else f"--{key}"
            raise ConfigError(f"{where}: expected {spec.kind}, got {_shown_value(key, merged[key])}")
    settings = Settings(
        **merged,
        custom_tools={name: item for name, item in data.get("tools", {}).items()
                      if name not in TOOLS_KEYS_BY_NAME},
        # a profile's servers join the file's; one of the same name replaces it
        mcp_servers={**data.get("mcp", {}).get("servers", {}), **table.get("mcp", {}).get("servers", {})},
        key_source=_key_source(top, table, env, path, profile, merged["base_url"]),
        profile=profile,
        profiles=tuple(sorted(profiles)),
        roles=roles,
        config_path=path,
        origins=origins,
    )
    settings = localised(settings) if settings.base_url == LOCAL else settings
    return with_role(settings, role.name, env) if role else settings


def _tools_layer(table: Mapping[str, Any]) -> dict[str, Any]:
    return {key: tuple(table[name]) for name, key in (("enabled", "tools"), ("approve", "approve_tools"))
            if name in table}


def _rank(origin: str) -> int:
    """Where a value's layer sits in the merge: default, file, profile, role, environment, flag."""
    if origin in ("", "default") or origin.startswith("automatic"):
        return 0
    for rank, prefix in ((2, "profile "), (3, "role "), (4, "environment "), (5, "flag")):
        if origin.startswith(prefix):
            return rank
    return 1  # the file's top level (its origin is its path), or a resumed conversation


def localised(settings: Settings, origin: str | None = None) -> Settings:
    """`settings` on the local model (base_url from `origin`, when given): its model is the
    one local_model names, and its context window local_context, unless a layer at or over
    the one that chose the local endpoint set them (`-p local -m NAME` picks a local model;
    a model the file's top level names for the usual endpoint does not)."""
    origins = dict(settings.origins)
    if origin is not None:
        origins["base_url"] = origin
    chosen = _rank(origins.get("base_url", "default"))
    values: dict[str, Any] = {"base_url": LOCAL}
    for key, value, source in (("model", model_name(settings.local_model), "local_model"),
                               ("context_window", settings.local_context, "local_context")):
        if origins.get(key, "default") == "default" or _rank(origins.get(key, "default")) < chosen:
            values[key] = value
            origins[key] = f"{source} ({origins.get(source, 'default')})"
    return replace(settings, **values, origins=origins)


def nothing_configured(settings: Settings) -> bool:
    """No endpoint, key, profile or model chosen anywhere: a first run, where the local model
    (when installed) answers rather than an error."""
    source, origins = settings.key_source, settings.origins
    return (source.kind == "none" and not source.passed_over and settings.profile is None
            and origins.get("base_url", "default") == "default"
            and origins.get("model", "default") == "default")


HELD_ORIGINS = ("flag", "environment")  # what comes after the role in the merge
ABSENT = object()  # a params field the role added, in role_base: it goes when the role goes


def with_role(settings: Settings, name: str | None, env: Mapping[str, str], *,
              skip: tuple[str, ...] = ()) -> Settings:
    """`settings` with role `name` (None: none) in the role's place in the merge, the one way
    a role is applied (the merge, /role, cmd's describe): what the role in use set goes back
    to what it replaced, then the new role's values go over the file's and the profile's
    and under the environment's and the flags', which stay. Its params join the table field
    by field, under fields a flag gave. Keys in `skip` are not taken from the role."""
    base = settings.role_base
    origins = {**settings.origins, **{key: origin for key, (_, origin) in base.items()}}
    for key in [key for key, origin in origins.items() if origin == ""]:  # there was none
        del origins[key]
    params = dict(settings.params)
    for key, (value, _) in base.items():
        if key.startswith("params."):
            field_name = key.removeprefix("params.")
            if value is ABSENT:
                params.pop(field_name, None)
            else:
                params[field_name] = value
    restored = {key: value for key, (value, _) in base.items() if not key.startswith("params")}
    settings = replace(settings, **{**restored, "params": params}, role=None, template=None,
                       role_base={}, origins=origins)
    if name is None:
        return settings
    role = settings.roles[name]
    origin = f"role {name}"
    values: dict[str, Any] = {}
    beneath: dict[str, tuple[Any, str]] = {}
    for key, value in role.layer(env, sys.platform).items():
        if key in skip or origins.get(key, "").startswith(HELD_ORIGINS):
            continue
        if key == "params":
            if not origins.get("params", "").startswith(HELD_ORIGINS):
                beneath["params"] = (ABSENT, origins.get("params", ""))  # its origin only
                origins["params"] = origin
            for field_name, field_value in value.items():
                field_key = f"params.{field_name}"
                if origins.get(field_key, "").startswith(HELD_ORIGINS):
                    continue
                beneath[field_key] = (params.get(field_name, ABSENT), origins.get(field_key, ""))
                params[field_name], origins[field_key] = field_value, origin
            continue
        beneath[key] = (getattr(settings, key), origins.get(key, ""))
        values[key], origins[key] = value, origin
    return replace(settings, **values, params=params, role=name, template=role.template,
                   role_base=beneath, origins=origins)


def _key_source(
    top: Mapping[str, Any],
    table: Mapping[str, Any],
    env: Mapping[str, str],
    path: Path | None,
    profile: str | None,
    endpoint: str,
) -> KeySource:
    """The key for `endpoint`: the first, in the order profile, OPENAI_API_KEY, file, that
    was configured for that endpoint. A key is only ever sent to the endpoint of the
    layer that supplied it (its own base_url, or the one it inherits): a profile's
    key never goes to OPENAI_BASE_URL, and OPENAI_API_KEY never goes to a profile's
    server, so a key exported in your shell for one provider never reaches another.
    """
    file_url = top.get("base_url", KEYS_BY_NAME["base_url"].default)
    candidates = [
        (_named_source(table, f"profile {profile} in {path}"), table.get("base_url", file_url)),
        (KeySource("env", "OPENAI_API_KEY", "environment") if env.get("OPENAI_API_KEY") else None,
         env.get("OPENAI_BASE_URL") or file_url),
        (_named_source(top, f"{path}"), file_url),
    ]
    passed_over = []
    for source, home in candidates:
        if source is None:
            continue
        if same_endpoint(home, endpoint):
            return replace(source, home=home)
        passed_over.append(f"{source.describe(env)} is for {url_shown(home)}")
    return KeySource("none", passed_over="; ".join(passed_over))


def _named_source(layer: Mapping[str, Any], origin: str) -> KeySource | None:
    if "api_key_cmd" in layer:
        return KeySource("cmd", layer["api_key_cmd"], origin)
    if "api_key_env" in layer:
        return KeySource("env", layer["api_key_env"], origin)
    if "api_key" in layer:
        return KeySource("value", "", origin, value=layer["api_key"])
    return None


def same_endpoint(one: str, other: str) -> bool:
    """The same scheme, host and port: where a key may go."""
    a, b = urlsplit(one), urlsplit(other)
    ports = {"http": 80, "https": 443}
    try:
        return ((a.scheme, (a.hostname or "").lower(), a.port or ports.get(a.scheme))
                == (b.scheme, (b.hostname or "").lower(), b.port or ports.get(b.scheme)))
    except ValueError:  # a port that is not a number
        return False


def is_local(base_url: str) -> bool:
    """True for a server on this machine (Ollama, llama.cpp), which needs no key."""
    return (urlsplit(base_url).hostname or "") in _LOCAL_HOSTS


def resolve_api_key(settings: Settings, env: Mapping[str, str],
                    waiting: Callable[[str], None] | None = None) -> str:
    """The key itself, read from where the settings say; run only when a request is near.
    `waiting` is told once when api_key_cmd has said nothing for a second."""
    source = settings.key_source
    key: str | None = None
    if source.kind == "value":
        key = source.value
    elif source.kind == "env":
        key = env.get(source.detail)
        if not key and not is_local(settings.base_url):
            raise ConfigError(
                f"the API key variable {source.detail} (named by {source.origin}) is not set",
                hint=f"export {source.detail}=... or change api_key_env",
            )
    elif source.kind == "cmd":
        key = _run_key_command(source, waiting=waiting)
    if key and key.strip():
        return _sendable(key.strip(), source, env)
    if is_local(settings.base_url):
        return NO_KEY_NEEDED
    if source.passed_over:
        where = settings.origins.get("base_url", "the config")
        raise ConfigError(
            f"no API key for {url_shown(settings.base_url)} (from {where}): {source.passed_over}, and keys "
            "are only sent to the endpoint they were configured with",
            hint="set api_key_env or api_key_cmd next to that base_url (in the same profile), "
                 "or unset OPENAI_BASE_URL",
        )
    raise ConfigError(
        "no API key: export OPENAI_API_KEY=... (or set api_key_env or api_key_cmd in "
        f"{settings.config_path}); or point OPENAI_BASE_URL at a server on this machine (no key "
        f"needed for localhost); or, to answer offline, {INSTALL_HINT}",
        hint="`chatcli config init` writes a commented example",
    )


def _sendable(key: str, source: KeySource, env: Mapping[str, str]) -> str:
    """The key, if HTTP can carry it in a header; else an error that names the problem
    and where the key comes from, and never shows the key."""
    if re.fullmatch(r"[\x21-\x7e]+", key):
        return key
    if any(ch.isspace() for ch in key):
        problem = "a space or a line break"
    elif not key.isascii():
        problem = "a character that is not ASCII"
    else:
        problem = "a control character"
    raise ConfigError(f"the API key from {source.describe(env)} contains {problem}, so it cannot be "
                      "sent in an HTTP header", hint="check the key where it is set; it is not shown here")


# What api_key_cmd may print before its first line, and how long it may be silent before the
# user is told it is being waited for (a passphrase prompt, a security key to touch).
KEY_COMMAND_MAX_BYTES = 65536
KEY_COMMAND_NOTE_SECONDS = 1.0


def _run_key_command(source: KeySource, timeout: float = 60,
                     waiting: Callable[[str], None] | None = None) -> str:
    """The first line the command prints. Once that line has come and the command has
    exited, its children are not waited for (`pass` may leave an agent running); one that
    goes on printing after its line is not waited for either (it is stopped by SIGPIPE)."""
    import selectors
    import signal
    import subprocess
    import tempfile
    import time

    started = time.monotonic()
    deadline = started + timeout
    told = waiting is None
    try:
        with tempfile.TemporaryFile() as errors_file:
            process = subprocess.Popen(source.detail, shell=True, stdout=subprocess.PIPE,
                                       stderr=errors_file)
            assert process.stdout is not None
            output = bytearray()
            with selectors.DefaultSelector() as selector:
                selector.register(process.stdout, selectors.EVENT_READ)
                while b"\n" not in output.lstrip() and len(output) < KEY_COMMAND_MAX_BYTES:
                    now = time.monotonic()
                    wait = deadline - now if told else min(deadline, started + KEY_COMMAND_NOTE_SECONDS) - now
                    if not selector.select(max(wait, 0)):
                        if told:
                            raise subprocess.TimeoutExpired(source.detail, timeout)
                        told = True
                        assert waiting is not None
                        waiting(f"waiting for api_key_cmd `{source.detail}` (up to {timeout:g} s)...")
                        continue
                    data = os.read(process.stdout.fileno(), 65536)
                    if not data:
                        break
                    output += data
            flooded = b"\n" not in output.lstrip() and len(output) >= KEY_COMMAND_MAX_BYTES
            process.stdout.close()
            if flooded:
                process.kill()
            try:  # a command that printed its line and keeps running is not waited for long
                code: int | None = process.wait(min(max(deadline - time.monotonic(), 0.1), 5))
            except subprocess.TimeoutExpired:
                code = None if output.strip() else process.wait(max(deadline - time.monotonic(), 0.1))
            errors_file.seek(0)
            reason = errors_file.read(4096).decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        if isinstance(exc, subprocess.TimeoutExpired):
            process.kill()
        raise ConfigError(f"api_key_cmd `{source.detail}` could not run: {exc}") from None
    if flooded:
        raise ConfigError(f"api_key_cmd `{source.detail}` printed too much: more than "
                          f"{KEY_COMMAND_MAX_BYTES // 1024} KB without a line holding the key",
                          hint=f"it should print the key alone; it is set by {source.origin}")
    lines = output.decode("utf-8", "replace").strip().splitlines()
    if code in (-signal.SIGPIPE, 128 + signal.SIGPIPE) and lines:
        code = 0  # it went on printing after its line, and was stopped when we stopped reading
    if code not in (0, None) or not lines:
        last = (reason.strip().splitlines() or ["it printed nothing"])[-1]
        raise ConfigError(
            f"api_key_cmd `{source.detail}` failed (exit {code}): {last}",
            hint=f"run it yourself to check; it is set by {source.origin}",
        )
    return lines[0]


_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie", re.IGNORECASE)


def visible_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as they may be shown: values of ones that look secret are hidden."""
    return {k: "(hidden)" if _SECRET_HEADER.search(k) else v for k, v in headers.items()}


def describe(settings: Settings, env: Mapping[str, str]) -> str:
    """The settings in effect as TOML, for `config show`. No secret is ever included."""
    from chatcli.schema import toml_value

    path = settings.config_path
    state = "exists" if path and path.exists() else "not found, using defaults"
    source = settings.key_source
    key = source.describe(env) if source.kind != "none" else f"none ({source.passed_over})" \
        if source.passed_over else "none"
    lines = [
        f"# config file: {path} ({state})",
        f"# profile: {settings.profile or '(none)'}",
        *([f"# role: {settings.role}" + (f" (template: {settings.template!r})" if settings.template else "")]
          if settings.role else []),
        f"# api key: {key}" + (f", sent only to {url_shown(source.home)}" if source.home else ""),
        "# each value is followed by where it came from: default, the file, a profile,",
        "# the environment or a flag",
    ]
    for spec in KEYS:
        if spec.name in KEY_FIELDS:
            continue
        value = getattr(settings, spec.name)
        if spec.name == "headers":
            value = visible_headers(value)
        elif spec.name == "base_url":
            value = url_shown(value)
        if value is None or value == {}:
            lines.append(f"# {spec.name} is not set")
        else:
            lines.append(f"{spec.name} = {toml_value(value)}  # {settings.origins.get(spec.name, 'default')}")
    return "\n".join(lines) + "\n"


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """`--param KEY=JSON` (and `/param`): each value as JSON (`seed=42`, `stop=["END"]`,
    `thinking={"type": "enabled"}`), or as a string when it is not JSON (`user=me`)."""
    import json

    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"a param is KEY=VALUE, not {item!r}", hint="--param top_p=0.9")
        if owned_param({key: None}):
            raise UsageError(f"{key!r} is set by chatcli itself and cannot be a param",
                             hint="it has an option of its own (chatcli ask --help)")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def add_provider(path: Path, name: str) -> str:
    """A `[profiles.NAME]` table for provider `name` (schema.PROVIDERS) in the config file:
    the file is created (0600) when there is none, else the table is added at its end and
    nothing else of it changes; the profile becomes the default when the file names none.
    Returns what was done, to tell the user."""
    from chatcli.schema import PROVIDERS, toml_value

    if name not in PROVIDERS:
        raise UsageError(f"no provider {name!r}", hint=f"providers: {', '.join(PROVIDERS)}")
    data = read_config(path) if path.exists() else {}
    if name in data.get("profiles", {}):
        raise ConfigError(f"{path} already has a [profiles.{name}] table; it was left as it is",
                          hint=f"edit it, or use it: chatcli -p {name}")
    table = f"\n[profiles.{name}]\n" + "".join(f"{key} = {toml_value(value)}\n"
                                             for key, value in PROVIDERS[name].items())
    default = "profile" not in data
    append_to_config(path, table, first=f'profile = "{name}"\n' if default else "")
    key = PROVIDERS[name].get("api_key_env")
    return (f"added [profiles.{name}] to {path}" + (", the default profile" if default else
                                                    f"; use it with -p {name}")
            + (f"; set {key} to your key" if key else "; a server on this machine needs no key"))


def append_to_config(path: Path, tables: str, *, first: str = "") -> None:
    """Add `tables` at the end of the config file (`first` before all of it), nothing else of
    it changed; the file is created (0600) when there is none. The new text is checked as a
    config before it is written, and it is written whole or not at all."""
    import tempfile

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        if before and not before.endswith("\n"):
            before += "\n"
        text = first + before + tables
        parse_config(text, path)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-")  # 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)  # the old file is never half written
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def write_template(path: Path) -> None:
    """Create the commented config file; an existing file is never touched."""
    from chatcli.schema import render_template

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600: the file may come to hold a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render_template())
    except FileExistsError:
        raise ConfigError(f"{path} already exists; it was left as it is",
                          hint="edit it, or move it away first") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
