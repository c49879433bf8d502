"""The user's own tools: a [tools.NAME] table with a description, a JSON schema for the
arguments and a command, which receives the arguments as JSON on stdin and prints the
result. They run in the working directory, always with approval unless the table says
`read_only = true` and [tools] approve names them. Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from chatcli.tools import Context, Tool
from chatcli.tools.process import run_shell

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")  # what the API takes as a function name
TABLE_KEYS = {"description", "parameters", "command", "read_only", "timeout"}


def problem(name: str, table: Any) -> str | None:
    """What is wrong with a [tools.NAME] table, or None."""
    if not NAME.fullmatch(name):
        return "a tool's name is letters, digits, _ and - (at most 64), starting with a letter"
    if not isinstance(table, dict):
        return "expected a table with description, parameters and command"
    unknown = sorted(set(table) - TABLE_KEYS)
    if unknown:
        return f"unknown key {unknown[0]!r} (a tool takes {', '.join(sorted(TABLE_KEYS))})"
    if not isinstance(table.get("command"), str) or not table["command"].strip():
        return "command: expected the command to run (the arguments come as JSON on its stdin)"
    if not isinstance(table.get("description"), str) or not table["description"].strip():
        return "description: expected a sentence telling the model what the tool does"
    parameters = table.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        return "parameters: expected a JSON schema of type object (a table)"
    if "read_only" in table and not isinstance(table["read_only"], bool):
        return "read_only: expected true or false"
    timeout = table.get("timeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 86_400:
        return "timeout: expected a number of seconds up to 86400"
    return None


def command_tool(name: str, table: Mapping[str, Any]) -> Tool:
    command = str(table["command"])
    timeout = float(table.get("timeout", 60))

    def run(arguments: dict[str, Any], ctx: Context) -> str:
        from dataclasses import replace

        payload = json.dumps(arguments, ensure_ascii=False).encode("utf-8")
        return run_shell(command, replace(ctx, timeout=timeout), stdin=payload)

    parameters = dict(table.get("parameters") or {"type": "object", "properties": {}})
    parameters.setdefault("type", "object")
    return Tool(name, str(table["description"]), parameters, run,
                "read" if table.get("read_only") else "run")
