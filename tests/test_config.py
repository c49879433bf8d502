"""Configuration: the merge order, profiles, key sources, and errors that name file, line and key."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from chatcli.config import (
    NO_KEY_NEEDED,
    describe,
    merge,
    parse_config,
    read_config,
    resolve_api_key,
)
from chatcli.errors import ConfigError
from chatcli.schema import KEYS, render_template

ROOT = Path(__file__).resolve().parent.parent
P = Path("/cfg/config.toml")

FILE = {
    "model": "file-model",
    "temperature": 0.3,
    "profile": "ds",
    "profiles": {
        "ds": {"model": "deepseek-chat", "base_url": "https://api.deepseek.com",
               "api_key_env": "DEEPSEEK_API_KEY", "max_tokens": 500},
        "local": {"base_url": "http://127.0.0.1:8080/v1", "model": "llama"},
    },
}


def test_defaults_without_file_env_or_flags():
    s = merge({}, {}, {}, path=P)
    assert (s.base_url, s.model, s.max_messages, s.temperature) == (
        "https://api.openai.com/v1", "gpt-4o-mini", 20, None)
    assert s.key_source.kind == "none"


@pytest.mark.parametrize(
    ("env", "flags", "expect_model", "expect_url"),
    [
        ({}, {}, "deepseek-chat", "https://api.deepseek.com"),  # profile beats file
        ({"CHATCLI_MODEL": "env-model"}, {}, "env-model", "https://api.deepseek.com"),  # env beats profile
        ({"CHATCLI_MODEL": "env-model"}, {"model": "flag-model"}, "flag-model", "https://api.deepseek.com"),
        # a profile's endpoint travels with its key: OPENAI_BASE_URL does not override it
        ({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, {}, "deepseek-chat", "https://api.deepseek.com"),
        ({"CHATCLI_PROFILE": "local"}, {}, "llama", "http://127.0.0.1:8080/v1"),
        ({"CHATCLI_PROFILE": "local"}, {"profile": "ds"}, "deepseek-chat", "https://api.deepseek.com"),
    ],
)
def test_merge_order_defaults_file_profile_env_flags(env, flags, expect_model, expect_url):
    s = merge(FILE, env, flags, path=P)
    assert (s.model, s.base_url) == (expect_model, expect_url)
    assert s.temperature == 0.3  # from the file's top level, untouched by the profile


def test_file_top_level_beats_defaults():
    s = merge({"model": "file-model", "max_messages": 8}, {}, {}, path=P)
    assert (s.model, s.max_messages) == ("file-model", 8)


def test_flags_of_none_do_not_override():
    s = merge(FILE, {}, {"model": None, "temperature": None}, path=P)
    assert s.model == "deepseek-chat" and s.temperature == 0.3


def test_unknown_profile_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match=r"profile 'nope' does not exist \(profiles: ds, local\)"):
        merge(FILE, {}, {"profile": "nope"}, path=P)


def test_profile_key_source_is_not_overridden_by_a_stray_openai_key():
    env = {"OPENAI_API_KEY": "sk-openai", "DEEPSEEK_API_KEY": "sk-deepseek"}
    s = merge(FILE, env, {}, path=P)
    assert s.key_source.detail == "DEEPSEEK_API_KEY"
    assert resolve_api_key(s, env) == "sk-deepseek"


def test_openai_api_key_applies_when_the_profile_names_no_key():
    env = {"OPENAI_API_KEY": "sk-openai"}
    s = merge({"api_key_env": "OTHER"}, env, {}, path=P)
    assert resolve_api_key(s, env) == "sk-openai"


def test_api_key_cmd_runs_only_when_the_key_is_needed(tmp_path):
    marker = tmp_path / "ran"
    s = merge({"api_key_cmd": f"touch {marker}; echo sk-from-cmd"}, {}, {}, path=P)
    assert not marker.exists()
    assert resolve_api_key(s, {}) == "sk-from-cmd"
    assert marker.exists()


def test_failing_api_key_cmd_says_which_command():
    s = merge({"api_key_cmd": "echo nope >&2; exit 3"}, {}, {}, path=P)
    with pytest.raises(ConfigError, match=r"api_key_cmd `.*` failed \(exit 3\): nope"):
        resolve_api_key(s, {})


def test_no_key_anywhere_names_the_three_ways():
    s = merge({}, {}, {}, path=P)
    with pytest.raises(ConfigError) as info:
        resolve_api_key(s, {})
    line = info.value.line()
    assert "OPENAI_API_KEY" in line and "api_key_env" in line and "api_key_cmd" in line
    assert "\n" not in line


def test_named_variable_that_is_unset_says_so():
    s = merge({"api_key_env": "MY_KEY"}, {}, {}, path=P)
    with pytest.raises(ConfigError, match=r"MY_KEY.*is not set"):
        resolve_api_key(s, {})


def test_local_servers_need_no_key():
    s = merge({}, {"OPENAI_BASE_URL": "http://localhost:11434/v1"}, {}, path=P)
    assert resolve_api_key(s, {}) == NO_KEY_NEEDED


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("model = \n", r"^/cfg/config.toml:1: invalid TOML: .* at column \d+$"),
        ('model = "a"\n\ntemperature = "hot"\n',
         r"^/cfg/config.toml:3: temperature: expected a number from 0 to 2, got 'hot'$"),
        ('[profiles.x]\nmodel = "m"\nmax_tokens = -5\n',
         r"^/cfg/config.toml:3: profiles.x.max_tokens: expected a whole number from 1 to 100000000, "
         r"got -5$"),
        ('temprature = 0.5\n',
         r"^/cfg/config.toml:1: unknown key 'temprature' \(did you mean 'temperature'\?\)$"),
        ('[profiles.x]\nmodle = "m"\n',
         r"^/cfg/config.toml:2: unknown key 'profiles.x.modle' \(did you mean 'model'\?\)$"),
        ('base_url = "api.deepseek.com"\n',
         r"^/cfg/config.toml:1: base_url: expected an http:// or https:// URL"),
        ('profiles = 3\n', r"^/cfg/config.toml:1: profiles: expected a table"),
        ('[headers]\nX-Id = 3\n', r"^/cfg/config.toml:1: headers: expected a table of header names"),
        ('[headers]\n"X-Api\\nKey" = "v"\n', r"^/cfg/config.toml:1: headers: expected a table of header"),
        ('[headers]\napi-key = "AZURESECRET_123\\n"\n',
         r"^/cfg/config.toml:1: headers: expected .* one-line values, got \(hidden\)$"),
        ('context_window = 99999999999999999\n',
         r"^/cfg/config.toml:1: context_window: expected a whole number from 256 to 100000000"),
        ('timeout = inf\n', r"^/cfg/config.toml:1: timeout: expected a number of seconds"),
        ('temperature = nan\n', r"^/cfg/config.toml:1: temperature: expected a number from 0 to 2"),
    ],
)
def test_broken_files_name_file_line_and_key(text, pattern):
    with pytest.raises(ConfigError) as info:
        parse_config(text, P)
    assert re.search(pattern, info.value.line()), info.value.line()


def test_a_literal_api_key_is_never_echoed_in_an_error():
    with pytest.raises(ConfigError) as info:
        parse_config("api_key = 12345678\n", P)
    assert "12345678" not in info.value.line()


def test_missing_file_is_an_empty_config(tmp_path):
    assert read_config(tmp_path / "none.toml") == {}


def test_example_file_documents_every_key_and_loads():
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert text == render_template(), "regenerate config.example.toml (see docs/development.md)"
    for key in KEYS:
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(f"# {key.name} = "))
        comment = lines[at - 1]
        assert comment.startswith("# ") and not re.match(r"# \w+ = ", comment), f"{key.name} lacks a comment"
    data = parse_config(text, P)
    for name in data["profiles"]:
        merge(data, {}, {"profile": name}, path=P)
    # every example value is valid too: uncomment them all and load again
    uncommented = re.sub(r"(?m)^# (\w+ = |\[(roles|tools|mcp\.servers)(\.\w+)?\]$)", r"\1", text)
    settings = merge(parse_config(uncommented, P), {}, {}, path=P)
    assert settings.profile == "deepseek"
    assert settings.model == "deepseek-chat"
    with_role = merge(parse_config(uncommented, P), {}, {"role": "translate"}, path=P)
    assert with_role.template == "Translate into English:\n\n{input}" and with_role.temperature == 0.2
    assert settings.tools == ("read_file", "list_files", "search_files")  # the [tools] example
    assert settings.approve_tools == ("read_file",) and "wordcount" in settings.custom_tools
    assert set(settings.mcp_servers) == {"time", "git", "tracker"}  # the [mcp.servers.NAME] examples


DS = {"profiles": {"ds": {"base_url": "https://api.deepseek.com", "api_key_env": "DEEPSEEK_API_KEY"},
                   "local": {"base_url": "http://localhost:8080/v1"},
                   "remote": {"base_url": "https://llm.example.com/v1"},
                   "keyonly": {"api_key_env": "KEYONLY"}}}
KEYS_ENV = {"OPENAI_API_KEY": "sk-openai", "DEEPSEEK_API_KEY": "sk-deepseek", "KEYONLY": "sk-keyonly"}


@pytest.mark.parametrize(("data", "env", "profile", "endpoint", "key"), [
    # the incident: a profile's key went to the host in OPENAI_BASE_URL
    (DS, {**KEYS_ENV, "OPENAI_BASE_URL": "https://evil.example/v1"}, "ds", "https://api.deepseek.com",
     "sk-deepseek"),
    # OPENAI_API_KEY never goes to a profile's other server, with or without OPENAI_BASE_URL
    (DS, KEYS_ENV, "remote", "https://llm.example.com/v1", None),
    (DS, {**KEYS_ENV, "OPENAI_BASE_URL": "https://llm.example.com/v1"}, "remote",
     "https://llm.example.com/v1", "sk-openai"),  # ...unless it was exported for that very server
    (DS, KEYS_ENV, "local", "http://localhost:8080/v1", "no-key-needed"),
    # a profile's key without a base_url of its own stays with the endpoint it inherits
    (DS, {"KEYONLY": "sk-keyonly", "OPENAI_BASE_URL": "https://evil.example/v1"}, "keyonly",
     "https://evil.example/v1", None),
    ({"base_url": "https://api.deepseek.com"}, {"OPENAI_API_KEY": "sk-ds"}, None, "https://api.deepseek.com",
     "sk-ds"),  # a base_url in the file, the key exported: the usual setup works
    ({}, {"OPENAI_API_KEY": "sk-openai"}, None, "https://api.openai.com/v1", "sk-openai"),
])
def test_a_key_is_only_sent_to_the_endpoint_it_was_configured_for(data, env, profile, endpoint, key):
    settings = merge(data, env, {"profile": profile}, path=P)
    assert settings.base_url == endpoint
    if key is None:
        with pytest.raises(ConfigError, match="keys are only sent to the endpoint they were configured"):
            resolve_api_key(settings, env)
    else:
        assert resolve_api_key(settings, env) == key


def test_config_show_says_where_each_value_came_from():
    data = {"model": "file-model", "temperature": 0.2, **DS}
    env = {**KEYS_ENV, "CHATCLI_MODEL": "env-model", "OPENAI_BASE_URL": "https://x.example/v1"}
    text = describe(merge(data, env, {"profile": "ds", "max_tokens": 9}, path=P), env)
    assert 'model = "env-model"  # environment CHATCLI_MODEL' in text
    assert 'base_url = "https://api.deepseek.com"  # profile ds' in text
    assert "temperature = 0.2  # /cfg/config.toml" in text
    assert "max_tokens = 9  # flag" in text and "max_messages = 20  # default" in text
    assert "DEEPSEEK_API_KEY (set; from profile ds in /cfg/config.toml), sent only to " \
           "https://api.deepseek.com" in text


def test_describe_shows_settings_and_key_source_but_never_secrets():
    data = {"api_key": "sk-very-secret", "headers": {"X-Api-Key": "hidden-value", "X-Title": "chatcli"}}
    text = describe(merge(data, {}, {}, path=P), {})
    assert "sk-very-secret" not in text and "hidden-value" not in text
    assert '"X-Title" = "chatcli" }  # /cfg/config.toml' in text
    assert "api_key in /cfg/config.toml (hidden)" in text


def test_config_init_writes_template_and_never_overwrites(run, tmp_path):
    path = tmp_path / "new" / "config.toml"
    first = run("config", "init", "--config", str(path))
    assert first.code == 0 and path.read_text() == render_template()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    path.write_text('model = "mine"\n')
    second = run("config", "init", "--config", str(path))
    assert second.code == 2
    assert "already exists" in second.stderr
    assert path.read_text() == 'model = "mine"\n'


def test_config_path_honours_env_and_flag(run, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATCLI_CONFIG", str(tmp_path / "env.toml"))
    assert run("config", "path").stdout.strip() == str(tmp_path / "env.toml")
    assert run("config", "path", "--config", "/x/y.toml").stdout.strip() == "/x/y.toml"


def test_config_show_with_profile(run, tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[profiles.ds]\nmodel = "deepseek-chat"\napi_key = "sk-zzz-secret"\n')
    result = run("config", "show", "--config", str(path), "--profile", "ds")
    assert result.code == 0
    assert 'model = "deepseek-chat"' in result.stdout
    assert "sk-zzz-secret" not in result.stdout + result.stderr


def test_broken_config_exits_2_with_one_line(run, tmp_path, endpoint):
    path = tmp_path / "bad.toml"
    path.write_text("[profiles.x]\ntemperature = 9\n")
    result = run("ask", "--config", str(path), "hi")
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"{path}:2: profiles.x.temperature" in result.stderr


def test_every_default_has_one_source():
    """schema.KEYS is where a default lives; Settings and the trimming code take theirs from it."""
    import dataclasses
    import inspect

    from chatcli import conversation
    from chatcli.config import Settings
    from chatcli.schema import KEYS

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    required = {f.name for f in fields.values() if f.default is dataclasses.MISSING and f.default_factory
                is dataclasses.MISSING}
    assert required == {"base_url", "model", "key_source"}  # always set by the merge, from KEYS
    for key in KEYS:
        if key.name in ("headers", "params", "local_options"):  # tables: a fresh dict each time
            assert fields[key.name].default_factory() == key.default, key.name
        elif key.name in fields and key.name not in required:
            assert fields[key.name].default == key.default, key.name
    schema_max = next(k.default for k in KEYS if k.name == "max_messages")
    assert conversation.Window.__dataclass_fields__["max_messages"].default == schema_max
    assert inspect.signature(conversation.build_window).parameters["max_messages"].default == schema_max
