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

from benchmarks import local, peers
from benchmarks.measure import Sample, run_on_pty, run_piped
from benchmarks.workload import BARE_PROMPT, SDK_SCRIPT

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
    lags = [s.lag for s in samples if s.lag is not None]
    streaming = [s.streaming for s in samples if s.streaming is not None]
    return Sample(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples),
                  max(s.rss_mb for s in samples), statistics.median(rates) if rates else None,
                  statistics.median(lags) if lags else None,
                  statistics.median(streaming) if streaming else None)


def chatcli(*args: str) -> list[str]:
    return [CHATCLI, *args]


# Three MCP servers, configured and not used: start-up must not notice them (none is started
# before a question offers its tools, and the SDK is not imported until one is).
MCP_SERVERS = ('[mcp.servers.time]\ncommand = "mcp-server-time"\n',
               '[mcp.servers.git]\ncommand = "mcp-server-git"\nargs = ["--repository", "."]\n',
               '[mcp.servers.tracker]\nurl = "https://mcp.example.com/mcp"\nkey_env = "TRACKER_TOKEN"\n')


# Tools on: the built-in ones offered in every request, and one of the user's own.
TOOLS = ('[tools]\nenabled = ["read_file", "list_files", "search_files", "wordcount"]\n'
         'approve = ["read_file"]\n\n[tools.wordcount]\ndescription = "Count the words of a text."\n'
         'parameters = { "type" = "object", "properties" = { "text" = { "type" = "string" } } }\n'
         'command = "wc -w"\nread_only = true\n\n')


def config_env(env: dict[str, str], work: Path, name: str, text: str) -> dict[str, str]:
    """`env` with a config file of this text."""
    path = work / f"{name}.toml"
    path.write_text(text)
    return {**env, "CHATCLI_CONFIG": str(path)}


def cases(env: dict[str, str], sdk: str, work: Path, llm: tuple[list[str], dict[str, str]] | None
          ) -> list[Case]:
    mcp_off = config_env(env, work, "mcp-off", "".join(t + "enabled = false\n" for t in MCP_SERVERS))
    tools_on = config_env(env, work, "tools", TOOLS)
    everything = config_env(env, work, "tools-mcp", TOOLS + "".join(MCP_SERVERS))
    bare = work / "bare_prompt.py"
    bare.write_text(BARE_PROMPT)
    mark = work / "last-byte"  # the server's time of its last byte (workload.paced)
    sdk_one = "openai SDK script, one line (pipe)"
    sdk_md = "openai SDK script, 2,000 words (terminal)"
    llm_md = "llm, 2,000 words (terminal)"
    mcp_case = "ask one line, three MCP servers configured, not enabled (pipe)"
    fast = "ask 2,000-word Markdown from a 5,000 tokens/s server (terminal)"
    fast_long = "ask 8,000-word Markdown from a 5,000 tokens/s server (terminal)"

    def linear(r: dict[str, Sample], longer: str, shorter: str, most: float) -> bool:
        """The CPU after the first output (the answer's own cost, without the start-up and its
        noise) of `longer` at most `most` times `shorter`'s."""
        return (r[longer].streaming or 0) <= most * (r[shorter].streaming or 0)

    def within(ratio: float, name: str, base: str = sdk_one) -> Callable[[dict[str, Sample]], bool]:
        return lambda r: r[name].wall <= ratio * r[base].wall

    def keeps_up(r: dict[str, Sample], name: str) -> bool:
        return (r[name].lag or 0) <= 0.05

    def prompt_within(name: str) -> Callable[[dict[str, Sample]], bool]:
        return lambda r: r[name].wall <= r["bare prompt_toolkit prompt (terminal)"].wall + 0.08

    def md_goal(r: dict[str, Sample]) -> bool:
        name = "ask 2,000-word Markdown (terminal)"
        return r[name].cpu <= 1.3 * r[sdk_md].cpu and (llm_md not in r or r[name].cpu <= r[llm_md].cpu)

    peer = [] if llm is None else [
        Case("llm, one line (pipe)", lambda: run_piped([*llm[0], "capital?"], llm[1]), sdk_one),
        Case(llm_md, lambda: run_on_pty([*llm[0], "md2000"], llm[1]), sdk_md),
    ]
    return [
        Case("python -c pass", lambda: run_piped([PY, "-c", "pass"], env)),
        Case("chatcli --version", lambda: run_piped(chatcli("--version"), env), "python -c pass",
             "< 2x", lambda r: r["chatcli --version"].wall < 2 * r["python -c pass"].wall),
        Case("chatcli --help", lambda: run_piped(chatcli("--help"), env), "python -c pass"),
        Case("import prompt_toolkit, rich, typer",
             lambda: run_piped([PY, "-c", "import prompt_toolkit, rich, typer"], env)),
        Case("bare prompt_toolkit prompt (terminal)",
             lambda: run_on_pty([PY, str(bare)], env, until=PROMPT_DRAWN, then=b"\x04")),
        Case("time to the REPL prompt (terminal)",
             lambda: run_on_pty(chatcli(), env, until=PROMPT_DRAWN, then=b"\x04"),
             "bare prompt_toolkit prompt (terminal)", "+ 0.08 s at most",
             prompt_within("time to the REPL prompt (terminal)")),
        Case("time to the REPL prompt, tools on and three MCP servers configured (terminal)",
             lambda: run_on_pty(chatcli(), everything, until=PROMPT_DRAWN, then=b"\x04"),
             "bare prompt_toolkit prompt (terminal)", "+ 0.08 s at most",
             prompt_within("time to the REPL prompt, tools on and three MCP servers configured (terminal)")),
        Case(sdk_one, lambda: run_piped([PY, sdk, "capital?"], env)),
        Case("ask one line (pipe)", lambda: run_piped(chatcli("ask", "--no-save", "capital?"), env),
             sdk_one, "<= 1.05x", within(1.05, "ask one line (pipe)")),
        Case("ask one line, tools on (pipe)",
             lambda: run_piped(chatcli("ask", "--no-save", "capital?"), tools_on),
             sdk_one, "<= 1.05x", within(1.05, "ask one line, tools on (pipe)")),
        Case(mcp_case, lambda: run_piped(chatcli("ask", "--no-save", "capital?"), mcp_off),
             sdk_one, "<= 1.05x", within(1.05, mcp_case)),
        *peer[:1],
        # The same question with an option that takes a value: typer reads that command line
        # (the one above is read without typer). The difference is what typer costs.
        Case("ask one line, read by typer (pipe)",
             lambda: run_piped(chatcli("ask", "--no-save", "-t", "1", "capital?"), env),
             "openai SDK script, one line (pipe)"),
        Case("ask one line (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "capital?"), env)),
        Case(sdk_md, lambda: run_on_pty([PY, sdk, "md2000"], env)),
        *peer[1:],
        Case("ask 2,000-word Markdown (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "md2000"), env),
             sdk_md, "CPU <= 1.3x, and <= llm's" if llm else "CPU <= 1.3x", md_goal),
        Case("ask 2,000 words of thinking, then the 2,000-word answer (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "think2000"), env),
             "ask 2,000-word Markdown (terminal)", "CPU <= 1.2x",
             lambda r: r["ask 2,000 words of thinking, then the 2,000-word answer (terminal)"].cpu
             <= 1.2 * r["ask 2,000-word Markdown (terminal)"].cpu),
        Case("openai SDK script, 8,000 words (terminal)", lambda: run_on_pty([PY, sdk, "md8000"], env)),
        Case("ask 8,000-word Markdown (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "md8000"), env),
             "openai SDK script, 8,000 words (terminal)",
             "streaming CPU <= 4.5x the 2,000-word's; RSS < 100 MB",
             lambda r: linear(r, "ask 8,000-word Markdown (terminal)",
                              "ask 2,000-word Markdown (terminal)", 4.5)
             and r["ask 8,000-word Markdown (terminal)"].rss_mb < 100),
        # A fast server: the final frame within 50 ms of the last byte, CPU linear in the length.
        Case("openai SDK script, 2,000 words from a 5,000 tokens/s server (terminal)",
             lambda: run_on_pty([PY, sdk, "fast2000"], env, mark=mark)),
        Case(fast, lambda: run_on_pty(chatcli("ask", "--no-save", "fast2000"), env, mark=mark),
             "openai SDK script, 2,000 words from a 5,000 tokens/s server (terminal)",
             "final frame <= 50 ms after the last byte", lambda r: keeps_up(r, fast)),
        Case(fast_long, lambda: run_on_pty(chatcli("ask", "--no-save", "fast8000"), env, mark=mark),
             fast, "final frame <= 50 ms; streaming CPU <= 4.5x the 2,000-word's",
             lambda r: keeps_up(r, fast_long) and linear(r, fast_long, fast, 4.5)),
        # A paragraph that never ends: the live view is redrawn all the while it streams.
        Case("ask a 1 MB paragraph (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "para1m"), env)),
        Case("ask a 4 MB paragraph (terminal)",
             lambda: run_on_pty(chatcli("ask", "--no-save", "para4m"), env),
             "ask a 1 MB paragraph (terminal)",
             "streaming CPU <= 8x the 1 MB's (linear 4x, quadratic 16x); RSS < 150 MB",
             lambda r: linear(r, "ask a 4 MB paragraph (terminal)", "ask a 1 MB paragraph (terminal)", 8)
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


QUICK_CASE = 1.0  # seconds: a case under this gets twice the runs (its noise is the larger part)


def measure_all(all_cases: list[Case], runs: int) -> dict[str, Sample]:
    """Each case once to warm up (disk caches, bytecode), then in passes over every case, one
    run each, so that a case and its baseline meet the same load: a shared machine drifts
    over minutes, and cases run back to back would each meet a different part of it."""
    quick = set()
    for case in all_cases:
        if case.run().wall < QUICK_CASE:
            quick.add(case.name)
    samples: dict[str, list[Sample]] = {case.name: [] for case in all_cases}
    for n in range(2 * runs):
        for case in all_cases:
            if case.name in quick or n % 2 == 0:
                samples[case.name].append(case.run())
        print(f"  pass {n + 1} of {2 * runs}", file=sys.stderr)
    results = {name: median(taken) for name, taken in samples.items()}
    for name, sample in results.items():
        print(f"  {name}: {sample.wall:.3f} s", file=sys.stderr)
    return results


def in_process(kind: str, env: dict[str, str]) -> Sample:
    """benchmarks/rounds.py's figures for `kind`: CPU and wall time a request, peak RSS."""
    import json

    # A turn's request takes milliseconds: forty turns of those, ten of the large outputs.
    count = "40" if kind in ("plain", "tools") else "10"
    done = subprocess.run([PY, "-m", "benchmarks.rounds", kind, count, env["OPENAI_BASE_URL"]], cwd=ROOT,
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
    lines = [f"Medians of {runs} runs ({2 * runs} for a case under {QUICK_CASE:.0f} s) after a warm-up, "
             f"every case once a pass, on {machine()}; {time.strftime('%Y-%m-%d')}. "
             "Peak RSS is the most of any run.", "",
             "| case | wall s | CPU s | streaming CPU s | peak RSS MB | tokens/s | final frame ms | baseline "
             "| wall ratio | CPU ratio | goal | met |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for case in all_cases:
        r = results[case.name]
        base = results.get(case.baseline or "")
        ratios = (f"{r.wall / base.wall:.2f}x", f"{r.cpu / base.cpu:.2f}x") if base else ("", "")
        try:
            met = ("yes" if case.check(results) else "**no**") if case.check else ""
        except KeyError:  # --only left out a case the goal compares with
            met = ""
        rate = f"{r.rate:.1f}" if r.rate is not None else ""
        lag = f"{r.lag * 1000:.0f}" if r.lag is not None else ""
        streaming = f"{r.streaming:.3f}" if r.streaming is not None else ""
        lines.append(f"| {case.name} | {r.wall:.3f} | {r.cpu:.3f} | {streaming} | {r.rss_mb:.0f} | {rate} "
                     f"| {lag} | {case.baseline or ''} | {ratios[0]} | {ratios[1]} | {case.goal} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="two runs each, smaller database")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (default 7; twice as "
                        "many for a case under a second)")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this "
                        "(and their baselines)")
    parser.add_argument("--no-llm", action="store_true", help="leave out llm (a full run installs it "
                        "into a venv of its own in the cache, as a baseline)")
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
            # Every program runs with compiled bytecode, as an installed package has it (pip
            # compiles what it installs): a machine that sets PYTHONDONTWRITEBYTECODE would
            # otherwise compile chatcli's own modules on every run, and nothing of the SDK's.
            # The cache is the run's own, so neither the checkout nor the venv is written.
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("OPENAI_", "CHATCLI_")) and k != "PYTHONDONTWRITEBYTECODE"}
            env.update(OPENAI_BASE_URL=port_file.read_text(), OPENAI_API_KEY="sk-bench",
                       CHATCLI_MODEL="test-model", CHATCLI_DATA_DIR=str(work / "data"),
                       CHATCLI_CONFIG=str(work / "none.toml"), NO_PROXY="127.0.0.1",
                       PYTHONPYCACHEPREFIX=str(work / "bytecode"))
            llm = None if args.no_llm else peers.llm(work, env, install=not args.quick)
            all_cases = cases(env, str(sdk), work, llm) + local.cases(work, env, chatcli, Case)
            if args.only:
                wanted = {c.name for c in all_cases if args.only in c.name}
                wanted |= {c.baseline for c in all_cases if c.name in wanted and c.baseline}
                all_cases = [c for c in all_cases if c.name in wanted]
            results = measure_all(all_cases, runs)
        finally:
            local.stop()
            server.terminate()
            server.wait()
    print(table(results, all_cases, runs))


if __name__ == "__main__":
    main()
