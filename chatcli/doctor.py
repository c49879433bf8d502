"""`chatcli doctor`: check the setup from the config file to a streamed reply.

Each check says what it found and, when it failed, how to fix it. The key is
never shown, only where it comes from. The checks stop at the first failure
that makes the rest meaningless (no config, no key, no connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatcli import errors
from chatcli.config import NO_KEY_NEEDED, Settings, data_dir, readable_secret, resolve_api_key
from chatcli.events import ChatRequest, RequestSent, StreamEnd, TextDelta, UsageReport
from chatcli.render import counted
from chatcli.schema import LOCAL
from chatcli.textsafe import url_shown

if TYPE_CHECKING:
    from chatcli.local.server import Served


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: worth knowing, not a failure
    found: str
    fix: str = ""
    exit_code: int = errors.EXIT_OK


def _failed(name: str, exc: errors.ChatcliError) -> Check:
    return Check(name, False, exc.message, exc.hint or "", exc.exit_code)


def run_checks(
    load: Callable[[], tuple[Settings, dict[str, Any]]],
    make_client: Callable[[Settings, str], Any],
    env: Mapping[str, str],
    progress: Callable[[str], None] = lambda text: None,
    start_server: Callable[[Any, Settings], Any] | None = None,
) -> list[Check]:
    """The checks in order; `load` reads and merges the config, `make_client` builds a client,
    `progress` hears about each step that waits for the network, `start_server` starts an MCP
    server (cli/mcpcmd.start) for its check."""
    checks: list[Check] = []
    try:
        settings, data = load()
    except errors.ChatcliError as exc:
        return [_failed("config file", exc)]
    checks.append(_config_check(settings, data))
    if settings.save:
        checks.append(_storage_check(data_dir(env, settings)))
    if start_server is not None:
        checks += _mcp_checks(settings, start_server, progress)
    if settings.base_url == LOCAL:
        local, served = _local_checks(settings, env, progress)
        checks += local
        if served is None:
            return checks
        where, key = f"the local model ({served.url})", served.key
        settings = replace(settings, base_url=served.url)
    else:
        try:
            key = resolve_api_key(settings, env, waiting=progress)
        except errors.ChatcliError as exc:
            return [*checks, _failed("API key", exc)]
        found = ("not needed (a server on this machine)" if key == NO_KEY_NEEDED
                 else settings.key_source.describe(env))
        checks.append(Check("API key", True, found))
        where = url_shown(settings.base_url)
    client = make_client(settings, key)
    progress(f"asking {where} for its models...")
    endpoint, models = _endpoint_check(client, settings)
    checks.append(endpoint)
    if endpoint.ok is False:
        return checks
    progress(f"streaming a short reply from {settings.model}...")
    streamed = _stream_checks(client, settings)
    if models is not None:
        checks.append(_model_check(settings, models, answered=streamed[0].ok is True))
    return checks + streamed


def _mcp_checks(settings: Settings, start: Callable[[Any, Settings], Any],
                progress: Callable[[str], None]) -> list[Check]:
    """Each configured MCP server: started, its tools listed, stopped (a disabled one named)."""
    from chatcli.tools.mcp import server_of

    checks = []
    for name, table in settings.mcp_servers.items():
        server = server_of(name, table)
        if not server.enabled:
            checks.append(Check(f"MCP server {name}", None, "disabled (enabled = false)"))
            continue
        progress(f"starting MCP server {name}...")
        try:
            running = start(server, settings)
        except errors.ChatcliError as exc:
            why = exc.message.removeprefix(f"MCP server {name}: ")
            checks.append(Check(f"MCP server {name}", False, why, exc.hint or f"chatcli mcp test {name}",
                                exc.exit_code))
            continue
        count = len(running.listed)
        tools = f"{count} tool{'' if count == 1 else 's'}"
        checks.append(Check(f"MCP server {name}", True, f"{tools}, started in {running.seconds:.1f} s"))
        running.close()
    return checks


def _local_checks(settings: Settings, env: Mapping[str, str],
                  progress: Callable[[str], None]) -> tuple[list[Check], Served | None]:
    """The local model: the runtime installed, the model found, its weights whole (the
    bundled ones' SHA-256, a file's GGUF header), and that it loads; what it serves, if it did."""
    from chatcli.local import INSTALL_HINT, available, server
    from chatcli.local.discovery import locate, model_ref, resolve

    if not available():
        return [Check("local model", False, "the local runtime (xllamacpp) is not installed", INSTALL_HINT,
                      errors.EXIT_LOCAL)], None
    ref = model_ref(settings.model, settings.local_model)
    try:
        found = resolve(ref, env)
        checks = [Check("local model", True, f"{found.name}: {found.where}, {found.size / 1e6:,.0f} MB, "
                        f"{found.quantisation or 'unknown quantisation'}")]
        path = locate(ref, env, progress)
    except errors.ChatcliError as exc:
        return [_failed("local model", exc)], None
    checks.append(Check("weights", True, "SHA-256 matches the published one" if found.path is None
                        else f"{path} is a GGUF model"))
    progress(f"loading {found.name}...")
    started = time.monotonic()
    try:
        threads = server.threads_for(settings.local_threads)
        served, loaded = server.serving_or_start(path, settings.model, context=settings.local_context,
                                                 threads=threads, options=settings.local_options, env=env)
        how = f"served by `chatcli local serve` at {served.url}"
        if loaded:
            how = (f"loaded in {time.monotonic() - started:.1f} s: context {served.context:,} tokens, "
                   f"{counted(threads, 'thread')}")
    except errors.ChatcliError as exc:
        return [*checks, _failed("loads", exc)], None
    return [*checks, Check("loads", True, how)], served


def _config_check(settings: Settings, data: dict[str, Any]) -> Check:
    path = settings.config_path or Path("config.toml")
    if problem := readable_secret(path, data):
        return Check("config file", False, problem, exit_code=errors.EXIT_USAGE)  # it names the fix
    if path.exists():
        profile = f", profile {settings.profile}" if settings.profile else ""
        return Check("config file", True, f"{path} is valid{profile}")
    return Check("config file", True, f"{path} not found: built-in defaults and the environment",
                 "`chatcli config init` writes a commented one")


def _storage_check(where: Path) -> Check:
    """The conversation database: there, readable, and whole (SQLite's quick_check), without
    creating it when it is not there yet."""
    from chatcli.store import DB_NAME, Store

    path = where / DB_NAME
    if not path.exists():
        return Check("conversations", True, f"none saved yet; the first goes to {path}")
    try:
        store = Store(path)
        try:
            damage = store.integrity()
            count = len(store.conversations(None))
        finally:
            store.close()
    except errors.ChatcliError as exc:
        return _failed("conversations", exc)
    if damage != "ok":
        return Check("conversations", False, f"{path} is damaged: {damage}",
                     "copy it aside, then `sqlite3 FILE .recover` or move it away (a new one is made)",
                     errors.EXIT_STORAGE)
    return Check("conversations", True, f"{counted(count, 'conversation')} in {path}")


def _endpoint_check(client: Any, settings: Settings) -> tuple[Check, list[str] | None]:
    name, where = "endpoint", url_shown(settings.base_url)
    try:
        models = client.models()
    except errors.RequestError as exc:
        # Some servers do not list models; chatting may still work.
        return Check(name, None, f"{where} answers but lists no models ({exc.message})"), None
    except errors.ChatcliError as exc:
        return _failed(name, exc), None
    return Check(name, True, f"{where} answers and lists {counted(len(models), 'model')}"), models


def _model_check(settings: Settings, models: list[str], *, answered: bool) -> Check:
    if settings.model in models:
        return Check("model", True, f"{settings.model} is available")
    sample = ", ".join(models[:6]) + (", ..." if len(models) > 6 else "")
    if answered:  # llama.cpp and others serve one model whatever the name asked for
        return Check("model", None, f"{settings.model} is not among the endpoint's models "
                     f"({sample or 'none'}), but it answered: the server ignores the name")
    return Check("model", False, f"{settings.model} is not among the endpoint's models",
                 f"set `model` or use --model; it lists: {sample or 'nothing'}", errors.EXIT_REQUEST)


def _stream_checks(client: Any, settings: Settings) -> list[Check]:
    request = ChatRequest(settings.model, [{"role": "user", "content": "Reply with the word OK."}],
                          max_tokens=16)
    started = time.monotonic()
    first: float | None = None
    usage = finished = False
    try:
        for event in client.stream(request):
            if isinstance(event, RequestSent):
                started = time.monotonic()  # the first words' wait, not the import's nor the connection's
            if isinstance(event, TextDelta) and first is None:
                first = time.monotonic() - started
            usage = usage or isinstance(event, UsageReport)
            finished = finished or isinstance(event, StreamEnd)
    except errors.ChatcliError as exc:
        return [_failed("streaming", exc)]
    latency = f"first words after {first:.2f} s" if first is not None else "no words came back"
    streaming = Check("streaming", finished, f"a streamed reply arrived ({latency})")
    if usage:
        reports = Check("usage in streams", True, "the server reports token usage")
    elif not client.usage_in_stream:
        reports = Check("usage in streams", None, "the server rejects stream_options; "
                        "token figures will be estimated (shown with ~)")
    else:
        reports = Check("usage in streams", None, "the server sends no usage in streams; "
                        "token figures will be estimated (shown with ~)")
    return [streaming, reports]


def exit_code(checks: list[Check]) -> int:
    """The exit code of the first failed check, 0 when none failed."""
    return next((c.exit_code or errors.EXIT_UNEXPECTED for c in checks if c.ok is False), 0)
