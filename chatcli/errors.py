"""Error types: each failure a user can meet, with its exit code and a one-line message.

Every message says what happened and what to do next, on one line. The exit
codes are part of the interface (scripts branch on them) and are listed in
docs/asking.md (Exit codes); change them only with a note there.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_RATE_LIMIT = 4
EXIT_NETWORK = 5
EXIT_SERVER = 6
EXIT_REQUEST = 7
EXIT_STORAGE = 8
EXIT_LOCAL = 9
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a reader that left (`| head`)


MAX_MESSAGE_CHARS = 2000  # an error page quoted whole would not be one line a person reads


class ChatcliError(Exception):
    """A failure with a one-line message and an exit code; never shown as a traceback."""

    exit_code = EXIT_UNEXPECTED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Server messages sometimes span lines, or pages; the user gets exactly one line.
        self.message = " ".join(message.split())
        if len(self.message) > MAX_MESSAGE_CHARS:
            self.message = self.message[:MAX_MESSAGE_CHARS] + "…"
        self.hint = " ".join(hint.split()) if hint else None
        super().__init__(self.line())

    def line(self) -> str:
        """The message and, when there is one, what to do next."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ChatcliError):
    """The command line asks for something impossible (no question, bad value)."""

    exit_code = EXIT_USAGE


class ConfigError(ChatcliError):
    """The configuration file or environment is broken, or no API key is available."""

    exit_code = EXIT_USAGE


class ToolServerError(ChatcliError):
    """An MCP server could not be started or spoken to (`chatcli mcp test`, `mcp tools`)."""

    exit_code = EXIT_SERVER


class AuthError(ChatcliError):
    """The server refused the key (401) or the key may not do this (403)."""

    exit_code = EXIT_AUTH


class RateLimitError(ChatcliError):
    """Too many requests (429), or the account is out of quota."""

    exit_code = EXIT_RATE_LIMIT


class NetworkError(ChatcliError):
    """The server could not be reached, the connection dropped, or it timed out."""

    exit_code = EXIT_NETWORK


class ServerError(ChatcliError):
    """The server failed (5xx) or sent something that is not the protocol."""

    exit_code = EXIT_SERVER


class RequestError(ChatcliError):
    """The server rejected the request: bad parameter, unknown model."""

    exit_code = EXIT_REQUEST


class ContextTooLongError(RequestError):
    """The conversation does not fit in the model's context window.

    `limit` is the context size the server stated, `used` the tokens it counted in the
    request, when it said them."""

    def __init__(self, message: str, *, hint: str | None = None, limit: int | None = None,
                 used: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.limit = limit
        self.used = used


class ToolsUnsupported(RequestError):
    """The endpoint's model takes no tools (said by the server, or remembered from when it
    said so): the question may be asked again without them."""


class StorageError(ChatcliError):
    """The conversation database cannot be opened or written."""

    exit_code = EXIT_STORAGE


class LocalModelError(ChatcliError):
    """The local model is not installed, is damaged, does not fit in memory or will not load."""

    exit_code = EXIT_LOCAL


class Terminated(BaseException):
    """SIGTERM or SIGHUP (the terminal closed): save what there is and leave quietly.

    Not a KeyboardInterrupt: typer turns those into exit code 130 on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_code = 128 + signum


class Holding:
    """While a piece of a reply is shown and kept in memory, a SIGTERM or SIGHUP waits: its
    handler (cli/base.terminate) sees `active`, notes the signal in `pending` and returns,
    and the end of the piece raises it. What is saved is then what was shown, exactly."""

    def __init__(self) -> None:
        self.active = False
        self.pending: int | None = None

    def __enter__(self) -> None:
        self.active = True

    def __exit__(self, *exc: object) -> None:
        self.active = False
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Terminated(signum)


HOLD = Holding()


class Interrupted(ChatcliError):
    """The user pressed Ctrl-C."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)


class ToolInterrupted(Interrupted):
    """The user pressed Ctrl-C while a tool ran or was being asked about: the turn ends, the
    output so far is kept with the call."""
