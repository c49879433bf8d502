"""The MCP SDK's side of chatcli: servers started and spoken to, from one thread.

The SDK is asynchronous and chatcli is not, so every server lives on one event loop in a
background thread (`Runtime`); a `Connection` is one server held open there, from its
start (initialize, list the tools) until chatcli stops. The caller waits on a future, so
Ctrl-C, a timeout or a server that dies each end the wait with one line, and the session
goes on. This is the only module that imports the SDK (`mcp`), and only when a server is
started: a configuration that names servers costs nothing until one is used.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chatcli.textsafe import url_shown
from chatcli.tools import Stopped, ToolError
from chatcli.tools.mcp import MAX_LISTED, Listed, Server, result_text

MAX_RESULT_CHARS = 8_000_000  # kept of one result's text; the rest is named, not held
STOP_SECONDS = 5.0  # how long chatcli's exit waits for its servers to stop
START_SECONDS = 30.0  # a start may take this long even when calls may not (npx fetching a package)


class Runtime:
    """One event loop in a daemon thread, for every server of this process; closed (each
    server stopped) when chatcli exits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mcp", daemon=True)
        self._thread.start()
        self.connections: list[Connection] = []
        atexit.register(self.close)

    def submit(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        for connection in list(self.connections):
            connection.close()
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_SECONDS)


_RUNTIME: Runtime | None = None
_LOCK = threading.Lock()


def runtime() -> Runtime:
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None:
            _quiet_sdk_logging()
            _RUNTIME = Runtime()
        return _RUNTIME


def _quiet_sdk_logging() -> None:
    """The SDK logs what a server does wrong; that belongs in the server's log, not on the
    screen (Python's last-resort handler would print it to stderr)."""
    logger = logging.getLogger("mcp")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


class Connection:
    """One server, started and held open on the runtime's loop."""

    def __init__(self, server: Server, *, env: Mapping[str, str], headers: Mapping[str, str],
                 log: Path, runtime: Runtime) -> None:
        self.server = server
        self._env = dict(env)
        self._headers = dict(headers)
        self.log = log
        self._runtime = runtime
        self._stop: asyncio.Event | None = None
        self._main: concurrent.futures.Future[Any] | None = None
        self._session: Any = None
        self._calls: set[asyncio.Task[Any]] = set()
        self._malformed = ""
        self.failure = ""  # why a server that was running no longer is
        self.listed: list[Listed] = []
        self.seconds = 0.0  # how long the start took
        self._log_start = 0
        self._status = 0  # a remote server's last HTTP error status (the SDK says only "an error")

    @property
    def alive(self) -> bool:
        return self._session is not None and not self.failure

    # -- start and stop --------------------------------------------------------------------

    def start(self) -> list[Listed]:
        """Start the server and list its tools; a ToolError says in one line why it could not
        be done (with the first line of the server's stderr, for one started here)."""
        self.begin()
        return self.finish()

    def begin(self) -> None:
        """Start the server, without waiting for it (servers started together start at once)."""
        self._started = time.monotonic()
        self._ready: concurrent.futures.Future[list[Listed]] = concurrent.futures.Future()
        with contextlib.suppress(OSError):
            self.log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._log_start = self.log.stat().st_size
        self._main = self._runtime.submit(self._hold(self._ready))
        self._runtime.connections.append(self)

    def finish(self) -> list[Listed]:
        """Wait for the server `begin` started to be ready: its tools, or a ToolError."""
        limit = max(self.server.timeout, START_SECONDS)
        try:
            self.listed = self._ready.result(max(limit - (time.monotonic() - self._started), 0.1))
        except concurrent.futures.TimeoutError:
            self.close()
            raise ToolError(self._with_log(f"did not finish starting within {limit:g} s")) from None
        except KeyboardInterrupt:
            self.close()
            raise
        except ToolError as exc:
            self.close()
            raise ToolError(self._with_log(str(exc))) from None
        self.seconds = time.monotonic() - self._started
        return self.listed

    def close(self) -> None:
        """Stop the server (its stdin closed, then terminated): bounded, never raises."""
        if self in self._runtime.connections:
            self._runtime.connections.remove(self)
        if self._main is None or self._main.done():
            return
        stop = self._stop
        if stop is not None:
            self._runtime.loop.call_soon_threadsafe(stop.set)
        else:
            self._main.cancel()
        with contextlib.suppress(Exception):
            self._main.result(STOP_SECONDS)
        if not self._main.done():
            self._main.cancel()

    async def _hold(self, ready: concurrent.futures.Future[list[Listed]]) -> None:
        from mcp.client.session import ClientSession

        self._stop = asyncio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport(stack))
                session = await stack.enter_async_context(
                    ClientSession(read, write, message_handler=self._message,
                                  read_timeout_seconds=max(self.server.timeout, START_SECONDS)))
                await session.initialize()
                listed = await _list_tools(session)
                self._session = session
                ready.set_result(listed)
                await self._stop.wait()
        except BaseException as exc:
            reason = explain(exc, self.server, self._status)
            if not ready.done():
                ready.set_exception(ToolError(reason))
            elif not self.failure:
                self.failure = reason
        finally:
            self._session = None

    def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        server = self.server
        if server.url:
            import httpx2

            timeout = httpx2.Timeout(server.timeout, read=max(server.timeout, 300.0))
            if server.transport == "sse":
                from mcp.client.sse import sse_client

                return sse_client(server.url, headers=self._headers, timeout=server.timeout)
            from mcp.client.streamable_http import streamable_http_client

            client = httpx2.AsyncClient(headers=self._headers, timeout=timeout,
                                        event_hooks={"response": [self._response]})
            stack.push_async_callback(client.aclose)
            return streamable_http_client(server.url, http_client=client)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        try:  # only you may read it: a server may print what its environment gave it
            errlog = stack.enter_context(open(self.log, "a", encoding="utf-8", errors="replace",  # noqa: SIM115
                                              opener=lambda path, flags: os.open(path, flags, 0o600)))
        except OSError:  # a data directory that cannot be written: the stderr is thrown away
            errlog = stack.enter_context(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
        errlog.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {server.where()}\n")
        errlog.flush()
        parameters = StdioServerParameters(command=server.command, args=list(server.args), env=self._env,
                                           cwd=os.path.expanduser(server.cwd) if server.cwd else None)
        return stdio_client(parameters, errlog=errlog)

    async def _response(self, response: Any) -> None:
        if response.status_code >= 400:
            self._status = response.status_code

    async def _message(self, message: Any) -> None:
        """The SDK hands over what it could not read as a message: the call waiting for an
        answer ends now, saying so, instead of at its timeout."""
        if isinstance(message, Exception):
            text = " ".join(str(message).split())[:160]
            self._malformed = f"the server sent something that is not an MCP message ({text})"
            for task in list(self._calls):
                task.cancel()

    def _with_log(self, reason: str, *, last: bool = False) -> str:
        """`reason`, with the first line the server wrote to its stderr since it was started
        (or the last, for a server that died once running)."""
        if self.server.url:
            return reason
        try:
            with self.log.open("rb") as handle:
                handle.seek(self._log_start)
                lines = handle.read(65536).decode("utf-8", "replace").splitlines()
        except OSError:
            return reason
        said = [line.strip() for line in lines[1:] if line.strip()]
        return f"{reason}; it said: {said[-1 if last else 0][:200]}" if said else reason

    # -- calls -------------------------------------------------------------------------------

    def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call `tool`: its result as text; a ToolError for a result the server marked as an
        error or a call that failed (the server exited, did not answer in time, said
        something unreadable); Stopped on Ctrl-C (the call is cancelled)."""
        if not self.alive:
            raise ToolError(f"the MCP server {self.server.name} is not running"
                            + (f" ({self.failure})" if self.failure else ""))
        self._malformed = ""
        future = self._runtime.submit(self._call(tool, arguments))
        try:
            text: str = future.result(self.server.timeout + 5)
            return text
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolError(self._timed_out()) from None
        except concurrent.futures.CancelledError:
            raise ToolError(self._malformed or "the call was cancelled") from None
        except KeyboardInterrupt:
            future.cancel()
            raise Stopped("stopped by the user; the call to the MCP server was cancelled") from None

    def _timed_out(self) -> str:
        return (f"the MCP server {self.server.name} did not answer within {self.server.timeout:g} s "
                "(timeout in its table); the call was cancelled")

    async def _call(self, tool: str, arguments: dict[str, Any]) -> str:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            result = await self._session.call_tool(tool, arguments, read_timeout_seconds=self.server.timeout)
        except MCPError as exc:
            if exc.error.code == REQUEST_TIMEOUT:
                raise ToolError(self._timed_out()) from None
            if exc.error.code == CONNECTION_CLOSED:
                self.failure = "it exited"
                raise ToolError(self._with_log(f"the MCP server {self.server.name} exited during the "
                                               "call", last=True)) from None
            if self._status in (401, 403):
                raise ToolError(explain(exc, self.server, self._status)) from None
            raise ToolError(f"the MCP server {self.server.name} said: {exc.error.message}") from None
        finally:
            self._calls.discard(task)
        dumped = result.model_dump(mode="json", by_alias=True)
        text = result_text(dumped.get("content") or [], dumped.get("structuredContent"))
        if len(text) > MAX_RESULT_CHARS:
            left = len(text) - MAX_RESULT_CHARS
            text = text[:MAX_RESULT_CHARS] + f"\n[… {left:,} more characters not kept]"
        if getattr(result, "is_error", False):
            raise ToolError(text)
        return text


async def _list_tools(session: Any) -> list[Listed]:
    """Every tool the server lists (page by page, at most MAX_LISTED)."""
    from mcp_types import PaginatedRequestParams

    listed: list[Listed] = []
    cursor: str | None = None
    while len(listed) < MAX_LISTED:
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        for tool in page.tools:
            hints = tool.annotations
            listed.append(Listed(tool.name, tool.description or "", dict(tool.input_schema or {}),
                                 read_only=bool(hints and hints.read_only_hint)))
        cursor = page.next_cursor
        if not cursor:
            break
    return listed[:MAX_LISTED]


def explain(exc: BaseException, server: Server, http_status: int = 0) -> str:
    """Why a server could not be used, in one line (the SDK raises groups of groups)."""
    leaves = list(_leaves(exc))
    for leaf in [*leaves, None]:
        response = getattr(leaf, "response", None)
        status = getattr(response, "status_code", None) if leaf else http_status or None
        if status in (401, 403):
            return (f"{url_shown(server.url)} refused the connection: it needs authorization "
                    f"(HTTP {status}); set key_env, key_command or headers in [mcp.servers.{server.name}]")
        if status is not None:
            return f"{url_shown(server.url)} answered HTTP {status}"
    for leaf in leaves:
        if isinstance(leaf, FileNotFoundError) and not server.url:
            return f"the command `{server.command}` was not found (command in [mcp.servers.{server.name}])"
        if isinstance(leaf, PermissionError) and not server.url:
            return f"the command `{server.command}` cannot be run: permission denied"
        if isinstance(leaf, NotADirectoryError | FileNotFoundError):
            return f"cwd {server.cwd!r} is not a directory"
    for leaf in leaves:
        name = type(leaf).__name__
        if name in ("ConnectError", "ConnectTimeout"):
            return f"cannot connect to {url_shown(server.url)}: {leaf}"
        if name == "MCPError":
            message = getattr(getattr(leaf, "error", None), "message", str(leaf))
            if "closed" in message.lower():
                return "it exited before it was ready"
            return f"it said: {message}"
        if isinstance(leaf, asyncio.CancelledError):
            return "it was stopped before it was ready"
    first = leaves[0] if leaves else exc
    return f"{type(first).__name__}: {' '.join(str(first).split())[:200]}"


def _leaves(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
        if exc.__cause__ is not None:
            yield from _leaves(exc.__cause__)
