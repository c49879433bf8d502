"""The local model's cases: a raw script (xllamacpp's server in the process and the openai
client, the same prompt and settings) is the floor that `chatcli ask` on the local model
is compared with, for wall time, decode speed and memory; and `ask` through a running
`chatcli local serve`, which loads nothing, against the same ask of the fake server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.measure import Sample, run_decoding, run_piped

PROMPT = "Write a story of three paragraphs about a lighthouse keeper."
TOKENS = 64

RAW_SCRIPT = '''
import sys
import openai
import xllamacpp

path, prompt = sys.argv[1], sys.argv[4]
threads, context, tokens = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
params = xllamacpp.CommonParams()
params.model.path = path
params.n_ctx = context
params.n_parallel = 1
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
params.port = 0
params.api_keys = ["k"]
params.verbosity = -1
params.use_jinja = True
server = xllamacpp.Server(params)
client = openai.OpenAI(base_url=server.listening_address + "/v1", api_key="k")
usage = None
for chunk in client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], max_tokens=tokens, temperature=0,
        stream=True, stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        sys.stdout.write(chunk.choices[0].delta.content)
        sys.stdout.flush()
    usage = chunk.usage or usage
print(f"tokens: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion", file=sys.stderr)
'''


# The floor of an ask through a running `local serve`: the same request, by the SDK alone,
# to the address and key the serve's state file gives.
SERVED_SCRIPT = '''
import glob, json, os, sys
import openai

state = json.load(open(glob.glob(os.path.join(os.environ["XDG_RUNTIME_DIR"], "chatcli", "serve-*.json"))[0]))
client = openai.OpenAI(base_url=state["url"], api_key=state["key"])
for chunk in client.chat.completions.create(
        model=state["name"], messages=[{"role": "user", "content": sys.argv[1]}], max_tokens=1,
        stream=True, stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        sys.stdout.write(chunk.choices[0].delta.content)
        sys.stdout.flush()
'''


def prepare(work: Path, env: dict[str, str]) -> tuple[dict[str, str], Path] | None:
    """An environment whose cache holds the joined weights, and their path; None without the
    local extra (the cases are then left out, and the table says so)."""
    from chatcli.local import available

    if not available():
        return None
    from chatcli.local.weights import bundled_path

    cache = work / "cache"
    path = bundled_path(cache / "models")
    local_env = {**{k: v for k, v in env.items() if k != "CHATCLI_MODEL"},  # the local model's own name
                 "CHATCLI_CACHE_DIR": str(cache), "XDG_RUNTIME_DIR": str(work / "run")}
    (work / "run").mkdir(exist_ok=True)
    return local_env, path


def cases(work: Path, env: dict[str, str], chatcli: Callable[..., list[str]], case: Any) -> list[Any]:
    prepared = prepare(work, env)
    if prepared is None:
        print("  (no local extra: the local model's cases are left out)", file=sys.stderr)
        return []
    local_env, path = prepared
    from chatcli.local.server import threads_for

    script = work / "raw_local.py"
    script.write_text(RAW_SCRIPT)
    raw = [sys.executable, str(script), str(path), str(threads_for(0)), "8192", PROMPT, str(TOKENS)]
    # A first run's ask (nothing configured: the local model answers), its sampling settings in
    # the file, so the command line is the commonest one, read without typer.
    (work / "first-run.toml").write_text(f"temperature = 0\nmax_tokens = {TOKENS}\n")
    # A runtime directory of its own: the serve the other cases start is not a first run's.
    (work / "run-first").mkdir(exist_ok=True)
    first_env = {**local_env, "CHATCLI_CONFIG": str(work / "first-run.toml"),
                 "XDG_RUNTIME_DIR": str(work / "run-first")}
    first_env = {k: v for k, v in first_env.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    ask = chatcli("ask", "--no-save", "--usage", PROMPT)
    raw_name = "raw xllamacpp script, 64 tokens (pipe)"
    ask_name = "ask on a first run: the local model, 64 tokens (pipe)"

    def meets(r: dict[str, Sample]) -> bool:
        a, b = r[ask_name], r[raw_name]
        return (a.wall <= 1.1 * b.wall and (a.rate or 0) >= 0.95 * (b.rate or 0)
                and a.rss_mb <= b.rss_mb + 80)

    served_name = "ask one line through a running local serve (pipe)"
    floor_name = "openai SDK script through the running local serve (pipe)"
    floor = work / "served_sdk.py"
    floor.write_text(SERVED_SCRIPT)
    # The one-line ask's own command line (read without typer), the settings in a file
    (work / "local.toml").write_text('base_url = "local"\nmax_tokens = 1\n')
    served_env = {**local_env, "CHATCLI_CONFIG": str(work / "local.toml")}
    floor_run, served_run = paired(lambda: serving(local_env, [sys.executable, str(floor), "capital?"]),
                                   lambda: serving(served_env, chatcli("ask", "--no-save", "capital?")))
    raw_run, ask_run = paired(lambda: run_decoding(raw, local_env), lambda: run_decoding(ask, first_env))
    return [
        case(raw_name, raw_run),
        case(ask_name, ask_run, raw_name,
             "wall <= 1.1x; tokens/s >= 0.95x; RSS <= raw + 80 MB", meets),
        # The goal is against the fake server's ask; the model's own work on the prompt is in
        # this ratio too, so the SDK's same request through the serve is shown beside it.
        case(floor_name, floor_run),
        case(served_name, served_run,
             "ask one line (pipe)", "<= 1.1x (and see the SDK's floor above)",
             lambda r: r[served_name].wall <= 1.1 * r["ask one line (pipe)"].wall),
    ]


def paired(first: Callable[[], Sample], second: Callable[[], Sample]
           ) -> tuple[Callable[[], Sample], Callable[[], Sample]]:
    """Two cases measured in pairs: each run of the first is followed at once by one of the
    second, kept for the second's own runs. A run takes seconds, and the load of a shared
    machine drifts over minutes: run one after the other, the two would meet different loads."""
    kept: list[Sample] = []

    def run_first() -> Sample:
        sample = first()
        kept.append(second())
        return sample

    def run_second() -> Sample:
        return kept.pop(0) if kept else second()

    return run_first, run_second


def serving(env: dict[str, str], command: list[str]) -> Sample:
    """`command` timed while a `chatcli local serve` runs (started once, for every run)."""
    global _server
    if _server is None:
        serve = [str(Path(sys.executable).with_name("chatcli")), "local", "serve"]
        _server = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
        assert _server.stdout is not None
        _server.stdout.readline()
        for _ in range(100):
            if list((Path(env["XDG_RUNTIME_DIR"]) / "chatcli").glob("serve-*.json")):
                break
            time.sleep(0.05)
    return run_piped(command, env)


_server: subprocess.Popen[str] | None = None


def stop() -> None:
    if _server is not None:
        _server.terminate()
        _server.wait()
