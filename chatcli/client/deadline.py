"""Deadlines a slow server cannot stretch, below the HTTP library.

The HTTP library's timeouts bound each read of the socket, so a server that sends
its response headers one slow line at a time, each within `timeout`, is waited
for without end (only its 100 kB header buffer stops it). Here every read of
the connection is bounded by the time left until a deadline the client sets:
the end of the headers (`timeout` after the request) and the end of the reply
(`reply_timeout`). The deadline is kept per thread (Tab completion lists models
from a thread of its own). Part of the client room; the backend wraps the one
httpcore2 gives each connection pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Deadlines:
    """The deadline of the request this thread is making, if any."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._local = threading.local()

    def current(self) -> tuple[float, str] | None:
        """The earliest deadline this thread is inside."""
        stack: list[tuple[float, str]] = getattr(self._local, "stack", [])
        return min(stack, key=lambda entry: entry[0]) if stack else None

    @property
    def received(self) -> int:
        """Bytes read by this thread inside the innermost `until`."""
        count: int = getattr(self._local, "received", 0)
        return count

    def count(self, size: int) -> None:
        self._local.received = self.received + size

    @contextmanager
    def until(self, when: float | None, what: str) -> Iterator[None]:
        """Reads end by `when` (None: no deadline) while inside; an earlier deadline stays.
        Leaving takes away this deadline only, in whatever order the insides end (they are
        often generators, closed when their reader is done with them)."""
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[tuple[float, str]] = self._local.stack
        entry = (when, what) if when is not None else None
        if entry is not None:
            stack.append(entry)
        received = self.received
        self._local.received = 0
        try:
            yield
        finally:
            if entry is not None:
                del stack[next(n for n in range(len(stack) - 1, -1, -1) if stack[n] is entry)]
            self._local.received = received

    def passed(self, when: float | None) -> bool:
        return when is not None and self.clock() >= when

    def bound(self, timeout: float | None) -> float | None:
        """`timeout` shortened to the time left; when none is left, the HTTP library's own read
        timeout (so it closes the connection as it does for any timeout)."""
        deadline = self.current()
        if deadline is None:
            return timeout
        left = deadline[0] - self.clock()
        if left <= 0:
            import httpcore2

            raise httpcore2.ReadTimeout(f"the {deadline[1]} did not arrive in time")
        return left if timeout is None else min(timeout, left)


def install(http_client: Any, deadlines: Deadlines) -> bool:
    """Wrap the network backend of every connection pool of `http_client` (the direct one and
    those of proxies), so that each read honours `deadlines`. False if the HTTP library no
    longer has the shape this expects (then only its own timeouts apply)."""
    transports = [getattr(http_client, "_transport", None), *getattr(http_client, "_mounts", {}).values()]
    pools = [getattr(transport, "_pool", None) for transport in transports if transport is not None]
    wrapped = False
    for pool in filter(None, pools):
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _Backend):
            pool._network_backend = _Backend(backend, deadlines)
            wrapped = True
    return wrapped


class _Backend:
    """A network backend whose streams honour the deadlines."""

    def __init__(self, inner: Any, deadlines: Deadlines) -> None:
        self._inner = inner
        self._deadlines = deadlines

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_tcp(*args, **kwargs), self._deadlines)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(*args, **kwargs), self._deadlines)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Stream:
    """A connection whose reads end by the deadline (TLS on top of it too: start_tls)."""

    def __init__(self, inner: Any, deadlines: Deadlines) -> None:
        self._inner = inner
        self._deadlines = deadlines

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = self._inner.read(max_bytes, self._deadlines.bound(timeout))
        self._deadlines.count(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.start_tls(*args, **kwargs), self._deadlines)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
