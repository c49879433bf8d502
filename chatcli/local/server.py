"""A local model answering over HTTP: llama.cpp's server started inside this process, or
the one a `chatcli local serve` started (found through its state file).

The in-process server listens on 127.0.0.1 only, on a free port, with a random key; it
is one per process and model (the REPL loads its model once) and stops when the process
ends. Its own log lines are silenced unless debugging. A `local serve` writes a state
file (0600) in the user's runtime directory naming its address, key and model; a file
whose process is gone, or whose port no longer answers, is ignored and removed.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chatcli.errors import LocalModelError

HEADROOM_BYTES = 256 * 1024 * 1024  # beyond the weights: the context's cache, buffers, Python
STATE_PREFIX = "serve-"


@dataclass(frozen=True)
class Served:
    """Where a loaded model answers: what a client needs, and what it is."""

    url: str  # the base_url, up to and including /v1
    key: str
    name: str
    path: str
    context: int
    pid: int


def threads_for(setting: int) -> int:
    """local_threads, where 0 means half the cores: under contention two threads on two
    cores fall under one token a second, where one keeps fifteen."""
    return setting if setting > 0 else max(1, (os.cpu_count() or 2) // 2)


def memory_available() -> int | None:
    """Bytes the system can give without swapping (Linux's MemAvailable); None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(name: str, size: int, available: int | None) -> None:
    if available is not None and available < size + HEADROOM_BYTES:
        raise LocalModelError(
            f"not enough memory to load {name}: it needs about {(size + HEADROOM_BYTES) / 1e6:,.0f} MB "
            f"and {available / 1e6:,.0f} MB is free",
            hint="close other programs, or choose a smaller model (chatcli local models)")


_loaded: dict[tuple[Any, ...], tuple[Any, Served]] = {}  # (path, context, ...) -> (server, served)


def start(path: Path, name: str, *, context: int, threads: int, options: Mapping[str, Any],
          debug: bool = False, port: int = 0, key: str | None = None,
          memory: Callable[[], int | None] = memory_available) -> Served:
    """The model at `path` served in this process (loaded now, or already), on 127.0.0.1."""
    identity = (str(path), name, context, threads, tuple(sorted(options.items())), port)
    if identity in _loaded:
        return _loaded[identity][1]
    _loaded.clear()  # one model at a time: the one before is unloaded when its server goes
    check_memory(name, path.stat().st_size, memory())
    import xllamacpp

    params = xllamacpp.CommonParams()
    for option, value in options.items():
        _set_option(params, option, value)
    params.model.path = str(path)
    params.model_alias = {name}
    params.n_ctx = context
    params.n_parallel = 1  # one conversation: every token of the context is its own
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.port = port
    key = key or secrets.token_urlsafe(24)
    params.api_keys = [key]
    params.use_jinja = True  # the model's own chat template, and tool calls later
    params.endpoint_props = True
    params.verbosity = 3 if debug else -1
    try:
        server = xllamacpp.Server(params)
    except (RuntimeError, ValueError):  # its own words ("please check the input params") help nobody
        raise LocalModelError(f"the local runtime could not load {name} from {path}",
                              hint="is it a model llama.cpp supports? --debug shows the runtime's log",
                              ) from None
    served = Served(server.listening_address.rstrip("/") + "/v1", key, name, str(path), context, os.getpid())
    _loaded[identity] = (server, served)
    return served


# What chatcli sets itself: where the server listens and with which key is never the
# config's to change (a typo in a table must not open the model to the network).
OWNED = {"hostnames": "127.0.0.1 only", "port": "chatcli local serve --port", "api_keys": "--key-env",
         "model": "local_model", "model_alias": "local_model", "n_ctx": "local_context",
         "cpuparams": "local_threads", "cpuparams_batch": "local_threads"}


def serving_or_start(path: Path, name: str, *, context: int, threads: int, options: Mapping[str, Any],
                     env: Mapping[str, str], reuse: bool = True, loading: Callable[[], None] = lambda: None,
                     **start_options: Any) -> tuple[Served, bool]:
    """A running `local serve` of the model at `path` (with `reuse`), else the model loaded
    here now (`loading` is told first: it takes seconds); and whether it was loaded."""
    served = find_serving(path, context, env) if reuse else None
    if served is not None:
        return served, False
    loading()
    return start(path, name, context=context, threads=threads, options=options, **start_options), True


def _set_option(params: Any, option: str, value: Any) -> None:
    """One of local_options: an attribute of llama.cpp's common parameters, by name."""
    owner = OWNED.get(option.split(".")[0])
    if owner is not None:
        raise LocalModelError(f"local_options: {option} is chatcli's to set", hint=f"see {owner}")
    target, _, attribute = option.rpartition(".")
    holder = params
    for step in target.split(".") if target else ():
        holder = getattr(holder, step, None)
    if holder is None or attribute.startswith("_") or not hasattr(holder, attribute):
        raise LocalModelError(f"local_options: {option!r} is not a setting of llama.cpp's server",
                              hint="names are those of xllamacpp.CommonParams, as n_batch or sampling.top_k")
    try:
        setattr(holder, attribute, value)
    except (TypeError, ValueError) as exc:
        raise LocalModelError(f"local_options: {option} = {value!r} was refused ({exc})") from None


# --- chatcli local serve --------------------------------------------------------------


def runtime_dir(env: Mapping[str, str]) -> Path:
    """$XDG_RUNTIME_DIR/chatcli (private to the user, emptied at logout), else the cache."""
    if env.get("XDG_RUNTIME_DIR") and Path(env["XDG_RUNTIME_DIR"]).is_dir():
        return Path(env["XDG_RUNTIME_DIR"]) / "chatcli"
    from chatcli.quirks import cache_dir

    return cache_dir(env) / "run"


def announce(served: Served, env: Mapping[str, str]) -> Path:
    """Write the state file of a `local serve` (0600: it holds the key)."""
    folder = runtime_dir(env)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{STATE_PREFIX}{served.pid}.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(asdict(served), handle)
    return path


def find_serving(path: Path, context: int, env: Mapping[str, str]) -> Served | None:
    """A running `local serve` of the model at `path` with at least `context` tokens."""
    folder = runtime_dir(env)
    try:
        files = sorted(folder.glob(f"{STATE_PREFIX}*.json"))
    except OSError:
        return None
    for file in files:
        served = _read_state(file)
        if served is None:
            continue
        if not _alive(served):
            file.unlink(missing_ok=True)
        elif os.path.realpath(served.path) == os.path.realpath(path) and served.context >= context:
            return served
    return None


def _read_state(file: Path) -> Served | None:
    try:
        if file.stat().st_uid != os.getuid() or file.stat().st_mode & 0o077:
            return None  # not written by this user's chatcli: never trusted with a request
        data = json.loads(file.read_text(encoding="utf-8"))
        return Served(**{k: data[k] for k in ("url", "key", "name", "path", "context", "pid")})
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _alive(served: Served) -> bool:
    from urllib.parse import urlsplit

    try:
        os.kill(served.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
        with socket.create_connection((host or "127.0.0.1", port or 80), timeout=1):
            return True
    except (OSError, ValueError):
        return False
