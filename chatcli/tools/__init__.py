"""Tools the model may call: what a tool is, and the box of those a turn offers.

A `Tool` is a name, a description, a JSON schema for its arguments, what kind of effect
it has and a function that runs it. Built-in tools (builtin.py), the user's own command
tools (command.py) and MCP servers (mcp.py) are providers of tools; `ToolBox` (box.py)
is what chat.py's loop calls: it checks the arguments, asks the shell layer's approval
callback, runs the tool, and cuts long output to the budget. Nothing here imports cli/,
repl or render, or reads the keyboard. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# read: looks at files or lists them; write: changes files; run: runs a program; network:
# fetches from the network; mcp: a tool of an MCP server, which may do any of these. Only read
# tools may run without asking ([tools] approve), and an MCP server's that its table trusts.
Effect = Literal["read", "write", "run", "network", "mcp"]


class ToolError(Exception):
    """A call that cannot be done as asked (a missing file, bad arguments): its message is
    told to the model as the result, which may then try otherwise."""


class Stopped(Exception):
    """The user stopped the tool (Ctrl-C); `output` is what it printed until then."""

    def __init__(self, output: str) -> None:
        super().__init__("stopped")
        self.output = output


@dataclass(frozen=True)
class Context:
    """Where a tool works: the directory its paths are relative to, the environment of the
    programs it runs, and how long a program may run."""

    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 120.0


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any], Context], str] = field(compare=False)
    effect: Effect = "read"
    # What the approval shows: the argument that is the whole call (run_command's command),
    # and a diff for a change to a file (write_file, edit_file), from the arguments.
    subject: str | None = None
    preview: Callable[[dict[str, Any], Context], str] | None = field(default=None, compare=False)
    # An MCP server's tool: the server, the tool's own name there, and whether the server says
    # it only reads (shown with the call, never trusted).
    server: str = ""
    remote_name: str = ""
    hint_read_only: bool = False

    def spec(self) -> dict[str, Any]:
        """The tool as a request offers it."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    @property
    def read_only(self) -> bool:
        return self.effect == "read"
