"""The local model for real: the installed chatcli, xllamacpp's runtime and the bundled
weights (the README's install command brings them), asked as a newcomer would, with no
key and no server. Kept to the few cases that need the model; the rest of the local
machinery is in test_local_units.py.

The weights are joined once per test worker into a shared cache; every question is
answered with temperature 0 and few tokens, so a run stays near a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import pexpect
import pytest

from chatcli.local import weights
from tests.terminal import BIN, PROMPT, expect, seen

NOTE = "answering with the local model qwen2.5-coder-0.5b (offline)"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """A cache holding the joined weights, made once for every test of this worker."""
    cache = tmp_path_factory.mktemp("local-cache")
    weights.bundled_path(cache / "models")
    yield cache
    shutil.rmtree(cache)  # half a gigabyte: not kept among pytest's last three runs


@pytest.fixture
def offline(shared_cache, tmp_path, monkeypatch):
    """The environment of a first run: no key, no endpoint, no config; the shared cache."""
    monkeypatch.setenv("CHATCLI_CACHE_DIR", str(shared_cache))
    return {**os.environ, "CHATCLI_CACHE_DIR": str(shared_cache)}


def session(env, *args, timeout=90):
    """`chatcli ARGS` on a 30x120 terminal."""
    return pexpect.spawn(str(BIN), list(args), env={**env, "TERM": "xterm-256color"}, dimensions=(30, 120),
                         encoding="utf-8", timeout=timeout)


def ask(env, *args, stdin=None, timeout=120):
    return subprocess.run([str(BIN), "ask", "-t", "0", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def test_a_first_run_answers_offline_in_english_and_chinese(offline):
    english = ask(offline, "--max-tokens", "16", "What is the capital of France? Answer with one word.")
    assert english.returncode == 0, english.stderr
    assert "Paris" in english.stdout
    # one line on stderr says what answered; the runtime's own log never reaches it
    assert english.stderr.count("chatcli:") == 1 and NOTE in " ".join(english.stderr.split())
    assert all(line.startswith(("chatcli:", "  ")) for line in english.stderr.splitlines())
    chinese = ask(offline, "--max-tokens", "24", "中华人民共和国的首都是哪里？")
    assert chinese.returncode == 0 and "北京" in chinese.stdout, chinese.stderr


def test_usage_comes_from_the_stream(offline):
    result = ask(offline, "--usage", "--max-tokens", "8", "Say hello.")
    assert result.returncode == 0, result.stderr
    usage = next(line for line in result.stderr.splitlines() if line.startswith("tokens:"))
    prompt, completion = (int(n) for n in usage.split()[1:5:3])
    assert prompt > 5 and 0 < completion <= 8 and "~" not in usage  # counted by the server, not guessed


def test_a_session_loads_the_model_once_and_keeps_the_conversation(offline, tmp_path):
    child = session(offline, "-t", "0")
    expect(child, PROMPT)
    child.send("What is 2 + 2? Answer with a number.\r")
    expect(child, r"this conversation: [\d,]+ tokens")
    first = seen(child)
    expect(child, PROMPT)
    child.send("And 3 + 3?\r")
    expect(child, r"this conversation: [\d,]+ tokens")
    second = seen(child)
    assert "loading qwen2.5-coder-0.5b" in first and "4" in first
    assert "loading" not in second and "6" in second
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    with sqlite3.connect(tmp_path / "data" / "chatcli.db") as db:
        roles = [row[0] for row in db.execute("SELECT role FROM messages ORDER BY id")]
    assert roles == ["user", "assistant", "user", "assistant"]


def test_a_question_larger_than_the_local_context_is_refused_and_kept_out(offline, tmp_path):
    (tmp_path / "config" / "config.toml").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "config.toml").write_text("local_context = 512\n")
    result = ask(offline, "summarise", stdin="The quick brown fox jumps over the lazy dog. " * 70)
    assert result.returncode == 7
    assert "more than the context window of 512" in result.stderr and "nothing was sent" in result.stderr


@pytest.fixture
def serving(offline, tmp_path):
    """`chatcli local serve` running, with a context of 2,048 tokens: (process, base_url, state)."""
    (tmp_path / "config" / "config.toml").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "config.toml").write_text("local_context = 2048\n")
    process = subprocess.Popen([str(BIN), "local", "serve"], env=offline, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    url = process.stdout.readline().strip()
    states = list((tmp_path / "run" / "chatcli").glob("serve-*.json"))
    yield process, url, states[0] if states else None
    if process.poll() is None:
        process.kill()
    process.wait()


def test_local_serve_is_an_endpoint_with_a_key_that_ask_reuses(offline, serving, tmp_path):
    process, url, state = serving
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), process.stderr.read()
    assert state is not None and state.stat().st_mode & 0o777 == 0o600
    key = json.loads(state.read_text())["key"]
    # another program, with the key: an OpenAI-compatible endpoint
    import openai

    reply = openai.OpenAI(base_url=url, api_key=key).chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Say OK."}], max_tokens=4, temperature=0)
    assert reply.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    # chatcli itself asks the running server instead of loading the model again
    result = ask(offline, "--debug", "--max-tokens", "4", "Say OK.")
    assert result.returncode == 0 and f"POST {url}/chat/completions" in result.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0 and not state.exists()


def test_a_llama_cpp_servers_context_is_learnt_before_sending(offline, serving):
    """The running `local serve` as any llama.cpp server would be used: by its URL and key."""
    _, url, state = serving
    key = json.loads(state.read_text())["key"]
    env = {**offline, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": key}
    result = ask(env, "-m", "qwen", "summarise", stdin="The quick brown fox jumps over the lazy dog. " * 400)
    assert result.returncode == 7 and "context window of 2,048" in result.stderr, result.stderr


def test_a_damaged_copy_of_the_weights_is_made_again(shared_cache, tmp_path, monkeypatch):
    cache = tmp_path / "own-cache"
    shutil.copytree(shared_cache / "models", cache / "models")
    with open(cache / "models" / weights.FILE_NAME, "r+b") as handle:
        handle.seek(200_000_000)
        handle.write(b"\0" * 4096)
    env = {**os.environ, "CHATCLI_CACHE_DIR": str(cache)}
    result = ask(env, "--max-tokens", "4", "Say OK.")
    assert result.returncode == 0 and "preparing the bundled model" in result.stderr, result.stderr
    joined = cache / "models" / weights.FILE_NAME
    assert weights._stamped(joined, weights._read_stamp(joined.with_name(weights.FILE_NAME + ".json")),
                            [weights._checked(p) for p in weights.installed_parts()])
    shutil.rmtree(cache)


BLOCKED = """
import sys
class NoRuntime:  # as on a machine where chatcli[local] was not installed
    def find_spec(self, name, path=None, target=None):
        if name == "xllamacpp":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoRuntime())
from chatcli.__main__ import main
sys.argv[0] = "chatcli"
main()
"""


def test_without_the_extra_the_first_contact_says_every_way_on(tmp_path):
    result = subprocess.run([sys.executable, "-c", BLOCKED, "ask", "hi"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    for way in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "no key needed for localhost",
                "pip install 'chatcli[local]'"):
        assert way in result.stderr
    chosen = subprocess.run([sys.executable, "-c", BLOCKED, "-p", "local", "ask", "hi"], capture_output=True,
                            text=True, timeout=60)
    assert chosen.returncode == 9 and "the local model is not installed" in chosen.stderr
    assert "pip install 'chatcli[local]'" in chosen.stderr


def test_doctor_checks_the_local_setup(offline):
    result = subprocess.run([str(BIN), "doctor"], env=offline, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    for check in ("local", "weights", "loads", "streaming"):
        assert " ok " in rows[check], result.stdout
    assert "SHA-256" in rows["weights"] and "context 8,192 tokens" in rows["loads"]


def test_a_model_that_fails_to_load_keeps_the_question(offline, tmp_path):
    """In a session, the model is loaded when the first question goes: if it cannot be, the
    question stays in the conversation (saved, marked no reply) and the session goes on."""
    from tests.gguf_files import write_header

    write_header(tmp_path / "hollow.gguf", {"general.architecture": "llama", "general.file_type": 15})
    child = session(offline, "--local-model", str(tmp_path / "hollow.gguf"))
    expect(child, PROMPT)
    child.send("a question worth keeping\r")
    expect(child, "your question is kept")
    said = " ".join(seen(child).split())
    assert "the local runtime could not load hollow" in said
    expect(child, PROMPT)
    child.send("/history\r")
    expect(child, "a question worth keeping")
    assert "no reply" in seen(child)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    with sqlite3.connect(tmp_path / "data" / "chatcli.db") as db:
        assert [r[0] for r in db.execute("SELECT content FROM messages")] == ["a question worth keeping"]


def test_the_session_lists_and_switches_local_models(offline, tmp_path):
    """/model on the local endpoint: Tab offers the models on this machine, and choosing one
    loads it (the answer comes from the other file; here, one that cannot load, which says so)."""
    from tests.gguf_files import write_header

    lmstudio = tmp_path / "home" / ".lmstudio" / "models" / "someone" / "Tiny-GGUF"
    lmstudio.mkdir(parents=True)
    write_header(lmstudio / "tiny-q4.gguf", {"general.architecture": "llama", "general.file_type": 15})
    child = session(offline, "-t", "0")
    expect(child, PROMPT)
    child.send("Say OK.\r")
    expect(child, r"this conversation: [\d,]+ tokens")
    expect(child, PROMPT)
    child.send("/model tiny")
    child.send("\t")
    expect(child, "-q4")  # completed from "tiny"
    child.send("\r")
    expect(child, "model: tiny-q4")
    expect(child, PROMPT)
    child.send("Say OK again.\r")
    expect(child, "could not load tiny-q4")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_tools_offered_to_the_local_model_are_taken_by_its_server(offline, tmp_path):
    """The in-process llama.cpp server runs the model's own (jinja) template, so a request
    with tools is accepted, not refused as "tools param requires --jinja". The bundled 0.5B
    model writes a call as JSON text rather than in its template's <tool_call> tag, so the
    server returns text: what it says is answered like any reply (see docs/tools.md)."""
    (tmp_path / "a.txt").write_text("hello\n")
    result = subprocess.run([str(BIN), "ask", "-t", "0", "--max-tokens", "48", "-T", "list_files", "--yes",
                             "List the files in this directory."], env=offline, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "does not take tools" not in result.stderr and "list_files" in result.stdout + result.stderr
