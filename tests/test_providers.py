"""`chatcli config init --provider NAME`: a working profile for each provider our users use,
each tried against the fake server speaking that provider's dialect."""

from __future__ import annotations

import re

import pytest

from chatcli.schema import PROVIDERS
from tests.fake_server import Reply

# How each one sends a reasoning model's thinking (None: it sends none in this test).
DIALECTS = {"deepseek": "reasoning_content", "qwen": "reasoning_content", "kimi": "reasoning_content",
            "glm": "reasoning_content", "doubao": "reasoning_content", "siliconflow": "reasoning_content",
            "vllm": "reasoning_content", "llamacpp": "reasoning_content", "openrouter": "reasoning",
            "ollama": "think", "lmstudio": "think", "openai": None}


def test_every_provider_has_a_dialect_here():
    assert set(DIALECTS) == set(PROVIDERS)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_providers_profile_works_as_written(name, run, endpoint, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    added = run("config", "init", "--provider", name, "--config", str(config))
    assert added.code == 0, added.stderr
    assert f"added [profiles.{name}] to {config}, the default profile" in added.stderr
    assert config.stat().st_mode & 0o077 == 0
    text = config.read_text()
    assert text.startswith(f'profile = "{name}"\n') and f"[profiles.{name}]" in text
    # The same profile, pointed at the fake server instead of the provider.
    config.write_text(re.sub(r'base_url = "[^"]+"', f'base_url = "{endpoint.base_url}"', text))
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("CHATCLI_MODEL")
    key = PROVIDERS[name].get("api_key_env")
    if key:
        monkeypatch.setenv(key, "sk-provider-key")
    endpoint.any_model = True
    dialect = DIALECTS[name]
    endpoint.queue(Reply(text="Paris.", reasoning="The capital..." if dialect else "",
                         dialect=dialect or "reasoning_content"))
    asked = run("ask", "--config", str(config), "capital of France?")
    assert asked.code == 0, asked.stderr
    assert asked.stdout == "Paris.\n"  # the thinking, in the provider's dialect, is not the answer
    sent = endpoint.requests[-1]
    assert endpoint.chat_requests[-1]["model"] == PROVIDERS[name]["model"]
    if key:
        assert sent.headers["authorization"] == "Bearer sk-provider-key"


def test_a_second_provider_is_added_without_touching_the_first(run, tmp_path):
    config = tmp_path / "config.toml"
    run("config", "init", "--provider", "deepseek", "--config", str(config))
    before = config.read_text()
    added = run("config", "init", "--provider", "ollama", "--config", str(config))
    assert added.code == 0 and "use it with -p ollama" in added.stderr
    assert config.read_text().startswith(before) and "[profiles.ollama]" in config.read_text()
    again = run("config", "init", "--provider", "ollama", "--config", str(config))
    assert again.code == 2 and "already has a [profiles.ollama] table" in again.stderr
    unknown = run("config", "init", "--provider", "nosuch", "--config", str(config))
    assert unknown.code == 2 and "no provider 'nosuch'" in unknown.stderr and "deepseek" in unknown.stderr


def test_the_providers_table_in_the_manual_is_the_one_in_the_code():
    from pathlib import Path

    manual = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for name, profile in PROVIDERS.items():
        key = f"`{profile['api_key_env']}`" if profile.get("api_key_env") else "none (this machine)"
        assert f"| `{name}` | `{profile['base_url']}` | {key} |" in manual, name
