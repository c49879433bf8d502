"""The benchmark suite: `python -m benchmarks` (or `--quick`), a Markdown table on stdout.

Each case runs once to warm up, then several times; the table gives medians
and each case's ratio to its baseline, measured in the same run, and whether
the project's goal for it is met. It never fails on a number: the machines
are shared and noisy, so numbers are for reading, not for asserting.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import local
from benchmarks.measure import Sample, run_on_pty, run_piped
from benchmarks.workload import SDK_SCRIPT

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CHATCLI = str(Path(PY).with_name("chatcli"))
PROMPT_DRAWN = b"| /help"  # the bottom toolbar, drawn with the prompt


@dataclass
class Case:
    name: str
    run: Callable[[], Sample]
    baseline: str | None = None
    goal: str = ""
    check: Callable[[dict[str, Sample]], bool] | None = None


def median(samples: list[Sample]) -> Sample:
    rates = [s.rate for s in samples if s.rate is not None]
    return Sample(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples),
                  max(s.rss_mb for s in samples), statistics.median(rates) if rates else None)


def chatcli(*args: str) -> list[str]:
    return [CHATCLI, *args]


# Three MCP servers, configured and not used: start-up must not notice them (none is started
# before a question offers its tools, and the SDK is not imported until one is).
MCP_SERVERS = ('[mcp.servers.time]\ncommand = "mcp-server-time"\n',
               '[mcp.servers.git]\ncommand = "mcp-server-git"\nargs = ["--repository", "."]\n',
               '[mcp.servers.tracker]\nurl = "https://mcp.example.com/mcp"\nkey_env = "TRACKER_TOKEN"\n')


def mcp_env(env: dict[str, str], work: Path, enabled: bool) -> dict[str, str]:
    """`env` with a config file of the three servers, enabled or not."""
    path = work / f"mcp-{'on' if enabled else 'off'}.toml"
    path.write_text("".join(table + ("" if enabled else "enabled = false\n") for table in MCP_SERVERS))
    return {**env, "CHATCLI_CONFIG": str(path)}


def cases(env: dict[str, str], sdk: str, work: Path) -> list[Case]:
    mcp_on, mcp_off = mcp_env(env, work, True), mcp_env(env, work, False)

    def extra_cpu(results: dict[str, Sample], name: str) -> float:
        return results[name].cpu - results["ask one line (terminal)"].cpu

    return [
        Case("python -c pass", lambda: run_piped([PY, "-c", "pass"], env)),
        Case("chatcli --version", lambda: run_piped(chatcli("--version"), env), "python -c pass",
             "< 2x", lambda r: r["chatcli --version"].wall < 2 * r["python -c pass"].wall),
        Case("chatcli --help", lambda: run_piped(chatcli("--help"), env), "python -c pass"),
        Case("import prompt_toolkit, rich, typer",
             lambda: run_piped([PY, "-c", "import prompt_toolkit, rich, typer"], env)),
        Case("time to the REPL prompt (terminal)",
             lambda: run_on_pty(chatcli(), env, until=PROMPT_DRAWN, then=b"\x04"),
             "import prompt_toolkit, rich, typer", "floor + 0.1 s",
             lambda r: r["time to the REPL prompt (terminal)"].wall
             <= r["import prompt_toolkit, rich, typer"].wall + 0.1),
        Case("time to the REPL prompt, three MCP servers configured (terminal)",
             lambda: run_on_pty(chatcli(), mcp_on, until=PROMPT_DRAWN, then=b"\x04"),
             "time to the REPL prompt (terminal)", "+ 0.03 s at most",
             lambda r: r["time to the REPL prompt, three MCP servers configured (terminal)"].wall
             <= r["time to the REPL prompt (terminal)"].wall + 0.03),
        Case("openai SDK script, one line (pipe)", lambda: run_piped([PY, sdk, "capital?"], env)),
        Case("ask one line (pipe)", lambda: run_piped(chatcli("ask", "--no-save", "capital?"), env),
             "openai SDK script, one line (pipe)", "<= 1.1x",
             lambda r: r["ask one line (pipe)"].wall <= 1.1 * r["openai SDK script, one line (pipe)"].wall),
        Case("ask one line, three MCP servers configured, not enabled (pipe)",
             lambda: run_piped(chatcli("ask", "--no-save", "capital?"), mcp_off),
             "ask one line (pipe)", "<= 1.03x",
             lambda r: r["ask one line, three MCP servers configured, not enabled (pipe)"].wall
             <= 1.03 * r["ask one line (pipe)"].wall),
        # The same question with an option that takes a value: typer reads that command line
        # (the one above is read without typer). The difference is what typer costs.
        Case("ask one line, read by typer (pipe)",
             lambda: run_piped(chatcli("ask", "--no-save", "-t", "1", "capital?"), env),
             "openai SDK script, one line (pipe)"),
        Case("ask one line (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "capital?"), env)),
        Case("openai SDK script, 2,000 words (terminal)", lambda: run_on_pty([PY, sdk, "md2000"], env)),
        Case("ask 2,000-word Markdown (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "md2000"), env),
             "openai SDK script, 2,000 words (terminal)", "CPU <= 1.5x",
             lambda r: r["ask 2,000-word Markdown (terminal)"].cpu
             <= 1.5 * r["openai SDK script, 2,000 words (terminal)"].cpu),
        Case("ask 2,000 words of thinking, then the 2,000-word answer (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "think2000"), env),
             "ask 2,000-word Markdown (terminal)", "CPU <= 1.2x",
             lambda r: r["ask 2,000 words of thinking, then the 2,000-word answer (terminal)"].cpu
             <= 1.2 * r["ask 2,000-word Markdown (terminal)"].cpu),
        Case("openai SDK script, 8,000 words (terminal)", lambda: run_on_pty([PY, sdk, "md8000"], env)),
        Case("ask 8,000-word Markdown (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "md8000"), env),
             "openai SDK script, 8,000 words (terminal)",
             "extra CPU <= 4.5x the 2,000-word's; RSS < 100 MB",
             lambda r: extra_cpu(r, "ask 8,000-word Markdown (terminal)")
             <= 4.5 * extra_cpu(r, "ask 2,000-word Markdown (terminal)")
             and r["ask 8,000-word Markdown (terminal)"].rss_mb < 100),
        # A paragraph that never ends: the live view is redrawn all the while it streams.
        Case("ask a 1 MB paragraph (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "para1m"), env)),
        Case("ask a 4 MB paragraph (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "para4m"), env),
             "ask a 1 MB paragraph (terminal)",
             "extra CPU <= 8x the 1 MB's (linear 4x, quadratic 16x); RSS < 150 MB",
             lambda r: extra_cpu(r, "ask a 4 MB paragraph (terminal)")
             <= 8 * extra_cpu(r, "ask a 1 MB paragraph (terminal)")
             and r["ask a 4 MB paragraph (terminal)"].rss_mb < 150),
        # A million events of one character each, into a pipe: time linear in the events,
        # memory flat (nothing is held per event).
        Case("ask 250,000 one-character events (pipe)",
             lambda: run_piped(chatcli("ask", "tiny250k"), env)),
        Case("ask 1,000,000 one-character events (pipe)",
             lambda: run_piped(chatcli("ask", "tiny1m"), env),
             "ask 250,000 one-character events (pipe)",
             "CPU <= 4.5x (linear 4x); RSS + 15 MB at most (60 bytes an event would be 45)",
             lambda r: r["ask 1,000,000 one-character events (pipe)"].cpu
             <= 4.5 * r["ask 250,000 one-character events (pipe)"].cpu
             and r["ask 1,000,000 one-character events (pipe)"].rss_mb
             <= r["ask 250,000 one-character events (pipe)"].rss_mb + 15),
        Case("resume an empty conversation",
             lambda: run_piped(chatcli("ask", "--session", "empty", "capital?"), env)),
        Case("resume 10,000 messages",
             lambda: run_piped(chatcli("ask", "--session", "big", "capital?"), env),
             "resume an empty conversation", "+ 0.15 s at most",
             lambda r: r["resume 10,000 messages"].wall <= r["resume an empty conversation"].wall + 0.15),
        # The tool loop, in one process (benchmarks/rounds.py): chatcli's own CPU a request.
        Case("a plain turn, in process (per request)", lambda: in_process("plain", env)),
        Case("three tool rounds and the answer, in process (per request)", lambda: in_process("tools", env),
             "a plain turn, in process (per request)", "CPU <= 1.2x",
             lambda r: r["three tool rounds and the answer, in process (per request)"].cpu
             <= 1.2 * r["a plain turn, in process (per request)"].cpu),
        Case("a tool round with 1 MB of output, in process", lambda: in_process("out1m", env)),
        Case("a tool round with 4 MB of output, in process", lambda: in_process("out4m", env),
             "a tool round with 1 MB of output, in process", "CPU <= 4.5x (linear 4x)",
             lambda r: r["a tool round with 4 MB of output, in process"].cpu
             <= 4.5 * r["a tool round with 1 MB of output, in process"].cpu),
        Case("ask, three tool rounds (pipe)",
             lambda: run_piped(chatcli("ask", "--no-save", "-T", "read_file", "--yes", "tools3"), env),
             "ask one line (pipe)"),
        Case("sessions list, 1,000 conversations",
             lambda: run_piped(chatcli("sessions", "list", "-n", "1000"), env),
             "python -c pass"),
    ]


def in_process(kind: str, env: dict[str, str]) -> Sample:
    """benchmarks/rounds.py's figures for `kind`: CPU and wall time a request, peak RSS."""
    import json

    done = subprocess.run([PY, "-m", "benchmarks.rounds", kind, "10", env["OPENAI_BASE_URL"]], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout)
    return Sample(figures["wall"], figures["cpu"], figures["rss_mb"])


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores {model}".rstrip()
            + f", Python {platform.python_version()}")


def table(results: dict[str, Sample], all_cases: list[Case], runs: int) -> str:
    lines = [f"Medians of {runs} runs after a warm-up on {machine()}; "
             f"{time.strftime('%Y-%m-%d')}. Peak RSS is the most of any run.", "",
             "| case | wall s | CPU s | peak RSS MB | tokens/s | baseline | wall ratio | CPU ratio | goal "
             "| met |",
             "|---|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for case in all_cases:
        r = results[case.name]
        base = results.get(case.baseline or "")
        ratios = (f"{r.wall / base.wall:.2f}x", f"{r.cpu / base.cpu:.2f}x") if base else ("", "")
        try:
            met = ("yes" if case.check(results) else "**no**") if case.check else ""
        except KeyError:  # --only left out a case the goal compares with
            met = ""
        rate = f"{r.rate:.1f}" if r.rate is not None else ""
        lines.append(f"| {case.name} | {r.wall:.3f} | {r.cpu:.3f} | {r.rss_mb:.0f} | {rate} | "
                     f"{case.baseline or ''} | {ratios[0]} | {ratios[1]} | {case.goal} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="two runs each, smaller database")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (default 7)")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this "
                        "(and their baselines)")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 7)
    with tempfile.TemporaryDirectory(prefix="chatcli-bench-") as tmp:
        work = Path(tmp)
        port_file = work / "server"
        server = subprocess.Popen([PY, "-m", "benchmarks.workload", str(port_file)], cwd=ROOT)
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            # Seeded in a process of its own: a child's peak RSS counts the memory of the
            # process that started it, so this one stays small.
            subprocess.run([PY, "-m", "benchmarks.workload", "--seed", str(work / "data"),
                            "2000" if args.quick else "10000", "100" if args.quick else "1000"],
                           cwd=ROOT, check=True)
            sdk = work / "sdk_plain.py"
            sdk.write_text(SDK_SCRIPT)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATCLI_"))}
            env.update(OPENAI_BASE_URL=port_file.read_text(), OPENAI_API_KEY="sk-bench",
                       CHATCLI_MODEL="test-model", CHATCLI_DATA_DIR=str(work / "data"),
                       CHATCLI_CONFIG=str(work / "none.toml"), NO_PROXY="127.0.0.1")
            all_cases = cases(env, str(sdk), work) + local.cases(work, env, chatcli, Case)
            if args.only:
                wanted = {c.name for c in all_cases if args.only in c.name}
                wanted |= {c.baseline for c in all_cases if c.name in wanted and c.baseline}
                all_cases = [c for c in all_cases if c.name in wanted]
            results = {}
            for case in all_cases:
                case.run()  # warm-up: disk caches, .pyc files
                results[case.name] = median([case.run() for _ in range(runs)])
                print(f"  {case.name}: {results[case.name].wall:.3f} s", file=sys.stderr)
        finally:
            local.stop()
            server.terminate()
            server.wait()
    print(table(results, all_cases, runs))


if __name__ == "__main__":
    main()
