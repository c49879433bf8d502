"""The tools a turn offers, and one call's way through them: check, approve, run, cut.

`ToolBox` is what chat.py's loop calls. A call to a tool that is not offered, or with
arguments that are not a JSON object, is told to the model as an error (never a crash);
every other call goes to the approval callback the shell layer supplies (the menu on a
terminal, `--yes`, or a refusal without one), unless the tool only reads and the user
pre-approved it. Output over the budget is cut to its head and tail with a note; the
whole output stays with the result (ToolResult.output) for /tool-output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from chatcli.conversation import ToolCall, ToolResult, estimate_tokens
from chatcli.schema import ToolFallback as Fallback
from chatcli.textsafe import without_controls
from chatcli.tools import Context, Stopped, Tool, ToolError

if TYPE_CHECKING:
    from chatcli.tools.mcp import McpTools

Answer = Literal["yes", "no", "always"]



@dataclass(frozen=True)
class Decision:
    """What the user said to a call: yes, no, or always (this tool, this session); with
    `arguments` when they edited them (then those run, and the model is told so)."""

    answer: Answer
    arguments: dict[str, Any] | None = None
    reason: str = "the user did not allow this call"  # told to the model when the answer is no


# The approval callback: the tool, the call, its parsed arguments -> the user's decision.
Approver = Callable[[Tool, ToolCall, dict[str, Any]], Decision]
# Told when a call starts (the tool, the call) and ends (its result): the screen's lines.
Progress = Callable[[Tool, ToolCall, "ToolResult | None"], None]


def refuse_all(tool: Tool, call: ToolCall, arguments: dict[str, Any]) -> Decision:
    """Without a terminal and without --yes: nothing that needs approval runs."""
    return Decision("no", reason="there was no terminal to ask the user on, and --yes was not given")


class ToolBox:
    def __init__(self, tools: Sequence[Tool], *, approve: Approver = refuse_all,
                 pre_approved: Sequence[str] = (), yes: bool = False, budget_tokens: int = 4000,
                 context: Context, progress: Progress | None = None, fallback: Fallback = "ask",
                 confirm: Callable[[str], bool] | None = None, mcp: McpTools | None = None) -> None:
        self.tools: dict[str, Tool] = {tool.name: tool for tool in tools}
        self.mcp = mcp  # the MCP servers' tools, offered besides these (started on first use)
        self._approve = approve
        self.always = {name for name in pre_approved if name in self.tools and self.tools[name].read_only}
        self.yes = yes
        self.budget = budget_tokens
        self.context = context
        self._progress = progress
        self._stopped: ToolResult | None = None
        self.fallback = fallback
        self._confirm = confirm  # a yes or no from the user, when there is one to ask

    def without(self, refusal: Exception) -> bool:
        """Whether a question refused for its tools is asked without them: tool_fallback
        "answer" says yes, "stop" no, "ask" asks the user (no one to ask: no)."""
        if self.fallback == "ask" and self._confirm is not None:
            said = getattr(refusal, "message", str(refusal))
            if not self._confirm(f"{said}: ask without tools, for the rest of this session? [y/N] "):
                return False
            self.tools.clear()  # not offered again to be refused again (/tools turns them on)
            if self.mcp is not None:
                self.mcp.choose({})
            return True
        return self.fallback == "answer"

    def available(self) -> dict[str, Tool]:
        """The tools offered now: these, then the MCP servers' (started if not yet)."""
        if self.mcp is None or not self.mcp.on:
            return self.tools
        served = self.mcp.tools()
        return {**self.tools, **{name: tool for name, tool in served.items() if name not in self.tools}}

    def offered(self) -> list[dict[str, Any]]:
        return [tool.spec() for tool in self.available().values()]

    def stopped(self) -> ToolResult | None:
        """The result of the call Ctrl-C stopped (what it printed), once."""
        result, self._stopped = self._stopped, None
        return result

    def run(self, call: ToolCall) -> ToolResult:
        available = self.available()
        tool = available.get(call.name)
        if tool is None:
            names = ", ".join(available) or "none"
            return ToolResult(f"error: there is no tool named {without_controls(call.name)[:80]!r} "
                              f"(the tools are: {names})", status="error")
        try:
            arguments = parse_arguments(call.arguments)
        except ToolError as exc:
            return ToolResult(f"error: {exc}", status="error")
        edited = False
        if not (self.yes or call.name in self.always or (self.mcp is not None and self.mcp.trusted(tool))):
            decision = self._approve(tool, call, arguments)
            if decision.answer == "no":
                refused = ToolResult(f"refused: {decision.reason}", status="refused")
                if self._progress:
                    self._progress(tool, call, refused)
                return refused
            if decision.answer == "always":
                self.always.add(call.name)
            if decision.arguments is not None:
                edited, arguments = decision.arguments != arguments, decision.arguments
        return self._run(tool, call, arguments, edited)

    def _run(self, tool: Tool, call: ToolCall, arguments: dict[str, Any], edited: bool) -> ToolResult:
        if self._progress:
            self._progress(tool, call, None)
        started = time.monotonic()
        status: Literal["ok", "error"] = "ok"
        try:
            output = tool.run(arguments, self.context)
        except ToolError as exc:
            output, status = f"error: {exc}", "error"
        except (Stopped, KeyboardInterrupt) as exc:  # Ctrl-C: a program's output so far, or none
            so_far = exc.output if isinstance(exc, Stopped) else "stopped by the user"
            self._stopped = self._result(so_far, "interrupted", time.monotonic() - started)
            if self._progress:
                self._progress(tool, call, self._stopped)  # the live line ends with it
            raise KeyboardInterrupt from None
        except Exception as exc:  # a tool's own failure is the model's to read, not a crash
            output, status = f"error: {type(exc).__name__}: {exc}", "error"
        if edited:
            shown = json.dumps(arguments, ensure_ascii=False)
            output = f"(the user edited the arguments to: {shown})\n{output}"
        result = self._result(output, status, time.monotonic() - started)
        if self._progress:
            self._progress(tool, call, result)
        return result

    def _result(self, output: str, status: Any, seconds: float) -> ToolResult:
        content = cut(output, self.budget)
        return ToolResult(content, status=status, output=output if content != output else "",
                          seconds=round(seconds, 3))


def parse_arguments(text: str) -> dict[str, Any]:
    """A call's arguments: a JSON object ('' is {}); anything else is the model's error."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ToolError(f"the arguments are not valid JSON ({exc}); send them as a JSON object") from None
    if not isinstance(value, dict):
        raise ToolError("the arguments must be a JSON object")
    return value


def cut(output: str, budget: int) -> str:
    """`output` within about `budget` tokens: its head and tail, with a note of what is left
    out between them. Linear in the output's length."""
    tokens = estimate_tokens(output)
    if tokens <= budget:
        return output
    keep = max(int(len(output) * budget / tokens), 200)
    head, tail = output[: keep * 2 // 3], output[len(output) - keep // 3:]
    head = head[: head.rfind("\n") + 1] or head  # whole lines, where there are lines
    tail = tail[tail.find("\n") + 1:] if "\n" in tail[:-1] else tail
    left = output[len(head): len(output) - len(tail)]
    lines = left.count("\n")
    note = (f"\n[… {len(left):,} characters ({lines:,} lines) cut here to keep within "
            f"tool_output_tokens = {budget:,}; the whole output is kept with the conversation …]\n")
    return head + note + tail


def choose(names: Sequence[str], available: Mapping[str, Tool]) -> list[Tool]:
    """The tools called `names`, in order, or a ToolError naming those that do not exist."""
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ToolError(f"no tool named {', '.join(unknown)} (the tools are: {', '.join(available)})")
    return [available[name] for name in dict.fromkeys(names)]
