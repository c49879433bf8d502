"""Roles: a layer of the settings merge, the built-in ones, -r, /role, `chatcli roles`, and a
conversation that keeps its role."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatcli.config import merge, parse_config, with_role
from chatcli.errors import ConfigError

FILE = {
    "model": "file-model",
    "temperature": 0.5,
    "profiles": {"ds": {"model": "deepseek-chat", "base_url": "https://api.deepseek.com"}},
    "roles": {
        "translate": {"system": "You translate into English.", "template": "Translate:\n\n{input}",
                      "model": "role-model", "temperature": 0.1, "params": {"seed": 7}},
        "cheap": {"system": "Be brief.", "profile": "ds"},
        "shell": {"model": "shell-model"},  # changes the built-in shell role's model only
    },
    "params": {"top_p": 0.9},
}


@pytest.mark.parametrize(("env", "flags", "model", "origin"), [
    ({}, {}, "file-model", "/c.toml"),
    ({}, {"role": "translate"}, "role-model", "role translate"),
    ({"CHATCLI_MODEL": "env-model"}, {"role": "translate"}, "env-model", "environment CHATCLI_MODEL"),
    ({"CHATCLI_MODEL": "env-model"}, {"role": "translate", "model": "flag-model"}, "flag-model", "flag"),
    ({}, {"role": "cheap"}, "deepseek-chat", "profile ds"),  # the role's profile
    ({}, {"role": "cheap", "profile": "ds", "model": "m"}, "m", "flag"),
])
def test_a_role_is_a_layer_between_the_profile_and_the_environment(env, flags, model, origin):
    settings = merge(FILE, env, flags, path=Path("/c.toml"))
    assert settings.model == model
    assert settings.origins["model"] == origin


def test_a_role_sets_the_system_prompt_temperature_and_adds_its_params():
    settings = merge(FILE, {}, {"role": "translate"}, path=Path("/c.toml"))
    assert settings.system_prompt == "You translate into English."
    assert settings.temperature == 0.1 and settings.origins["temperature"] == "role translate"
    assert settings.params == {"top_p": 0.9, "seed": 7}
    assert settings.role == "translate" and settings.template == "Translate:\n\n{input}"


def test_switching_roles_over_merged_settings_is_the_merge_itself():
    """/role and cmd's describe apply a role to settings already merged: the result is what
    the merge gives with that role, origins included, and no role puts everything back."""
    flags = {"temperature": 1.5, "params": {"seed": 1}}
    plain = merge(FILE, {"CHATCLI_MODEL": "env-model"}, flags, path=Path("/c.toml"))
    merged = merge(FILE, {"CHATCLI_MODEL": "env-model"}, {**flags, "role": "translate"}, path=Path("/c.toml"))
    applied = with_role(plain, "translate", {})
    for settings in (merged, applied):
        assert settings.model == "env-model" and settings.temperature == 1.5  # after roles: they stay
        assert settings.system_prompt == "You translate into English."
        assert settings.params == {"top_p": 0.9, "seed": 1}  # the flag's field over the role's
        assert settings.origins["system_prompt"] == "role translate"
    assert applied == merged
    assert with_role(merged, None, {}) == plain
    assert with_role(with_role(plain, "cheap", {}), "translate", {}) == merged


def test_a_roles_params_join_the_table_and_leave_with_it():
    plain = merge(FILE, {}, {}, path=Path("/c.toml"))
    applied = with_role(plain, "translate", {})
    assert applied.params == {"top_p": 0.9, "seed": 7} and applied.origins["params.seed"] == "role translate"
    back = with_role(applied, None, {})
    assert back.params == {"top_p": 0.9} and "params.seed" not in back.origins and back == plain


def test_the_environment_profile_comes_before_the_roles_own():
    settings = merge(FILE, {"CHATCLI_PROFILE": ""}, {"role": "cheap", "profile": ""}, path=Path("/c.toml"))
    assert settings.profile is None and settings.model == "file-model"


def test_a_configured_table_changes_a_built_in_role_key_by_key():
    roles = merge(FILE, {}, {}, path=Path("/c.toml")).roles
    assert roles["shell"].settings == {"model": "shell-model"}
    assert "exactly one shell command" in (roles["shell"].system or "")
    assert {"shell", "code", "describe", "translate", "cheap"} <= set(roles)


def test_the_shell_role_names_the_os_and_the_shell_and_nothing_else():
    settings = merge({}, {"SHELL": "/opt/homebrew/bin/fish", "HOME": "/home/li"}, {"role": "shell"})
    prompt = settings.system_prompt or ""
    assert "for fish on Linux" in prompt
    assert "/opt/homebrew" not in prompt and "/home/li" not in prompt


@pytest.mark.parametrize(("text", "message"), [
    ('[roles.t]\nsytem = "x"\n', "/c.toml:2: unknown key 'roles.t.sytem' (did you mean 'system'?)"),
    ('[roles.t]\ntemperature = "hot"\n', "/c.toml:2: roles.t.temperature: expected a number from 0 to 2"),
    ('[roles.t]\ntemplate = "no placeholder"\n', "/c.toml:2: roles.t.template: expected a string holding "
                                                 "{input}"),
    ('roles = 3\n', "/c.toml:1: roles: expected a table of [roles.NAME] tables"),
    ('[roles]\nt = 3\n', "/c.toml:2: roles.t: expected a [roles.NAME] table"),
    ('[roles.t]\nbase_url = "https://x"\n', "/c.toml:2: unknown key 'roles.t.base_url'"),
])
def test_a_bad_role_table_names_the_file_line_and_key(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("/c.toml"))
    assert caught.value.message.startswith(message)


def test_a_missing_role_is_one_line_naming_the_roles_and_exit_2(run, endpoint, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[roles.translate]\nsystem = "x"\n')
    result = run("ask", "--config", str(config), "-r", "translte", "hi")
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        f"chatcli: error: {config}: role 'translte' does not exist (roles: code, describe, shell, translate) "
        "(add a [roles.translte] table; `chatcli roles` lists them)"]
    assert endpoint.chat_requests == []


# --- on the command line -------------------------------------------------------------


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[roles.translate]\nsystem = "You translate into English."\n'
                    'template = "Translate:\\n\\n{input}"\ntemperature = 0.1\n'
                    '[roles.coder]\nsystem = "Write Go."\nmodel = "deepseek-chat"\ntemperature = 0.3\n')
    return path


def test_ask_with_a_role_sends_its_system_prompt_and_template(run, endpoint, config):
    assert run("ask", "-r", "translate", "你好").code == 0
    body = endpoint.chat_requests[0]
    assert body["messages"] == [{"role": "system", "content": "You translate into English."},
                                {"role": "user", "content": "Translate:\n\n你好"}]
    assert body["temperature"] == 0.1


def test_piped_text_fills_the_template_when_there_is_no_question(run, endpoint, config):
    run("ask", "-r", "translate", input="早上好\n")
    assert endpoint.chat_requests[0]["messages"][-1] == {"role": "user", "content": "Translate:\n\n早上好"}


@pytest.mark.parametrize(("role", "words"), [("shell", "exactly one shell command"),
                                             ("code", "Reply with the code only"),
                                             ("describe", "Explain the shell command")])
def test_each_built_in_role_sends_its_system_prompt_and_the_question_as_it_is(role, words, run, endpoint):
    assert run("ask", "-r", role, "list big files").code == 0
    system, user = endpoint.chat_requests[0]["messages"]
    assert system["role"] == "system" and words in system["content"]
    assert user == {"role": "user", "content": "list big files"}


def test_config_show_with_a_role_says_where_each_value_comes_from(run, config):
    shown = run("config", "show", "-r", "translate").stdout
    assert "# role: translate" in shown
    assert "temperature = 0.1  # role translate" in shown
    assert 'system_prompt = "You translate into English."  # role translate' in shown


def test_roles_lists_built_in_and_configured_roles_and_shows_one(run, config):
    listed = run("roles").stdout
    for name in ("shell", "code", "describe", "translate", "coder"):
        assert name in listed
    assert "translate  config" in listed and "shell      built in" in listed
    shown = run("roles", "show", "coder").stdout
    assert 'system = "Write Go."' in shown and 'model = "deepseek-chat"' in shown
    assert run("roles", "show", "nope").code == 2


def test_a_saved_conversation_keeps_its_role_and_resuming_uses_it(run, endpoint, config, db):
    import sqlite3

    run("ask", "--session", "go", "-r", "coder", "a web server")
    run("ask", "--session", "go", "and tests?")  # no -r: the conversation's role
    second = endpoint.chat_requests[1]
    assert second["temperature"] == 0.3 and second["messages"][0]["content"] == "Write Go."
    assert second["model"] == "test-model"  # CHATCLI_MODEL: the environment comes after roles
    assert sqlite3.connect(db).execute("SELECT role FROM conversations").fetchall() == [("coder",)]
    listed = run("sessions", "list", "--json").stdout
    assert '"role": "coder"' in listed
    run("ask", "-c", "and a Dockerfile?")  # -c: the latest conversation, with its role
    assert endpoint.chat_requests[2]["temperature"] == 0.3


# --- in the session ----------------------------------------------------------------


@pytest.fixture
def harness(server, tmp_path):
    from tests.test_repl import Harness

    return Harness(server, tmp_path, roles={"translate": {"system": "You translate.", "model": "tr-model"}},
                   system_prompt="Be kind.")


def test_role_changes_the_system_prompt_and_model_for_the_next_turns_and_dash_restores(harness):
    from chatcli.keybindings import toolbar

    harness.run("one\r/role translate\rtwo\r/role -\rthree\r\x04")
    first, second, third = harness.server.chat_requests
    assert first["messages"][0]["content"] == "Be kind." and first["model"] == "test-model"
    assert second["messages"][0]["content"] == "You translate." and second["model"] == "tr-model"
    assert third["messages"][0]["content"] == "Be kind." and third["model"] == "test-model"
    out = harness.out.getvalue()
    assert "role translate from the next message on; model tr-model, system prompt set" in out
    assert "no role from the next message on; model back to test-model, system prompt restored" in out
    harness.run("/role translate\r\x04")
    assert "role translate |" in toolbar(harness.session)


def test_an_unknown_role_is_refused_and_tab_offers_the_roles(harness):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from chatcli.keybindings import SlashCompleter

    harness.run("/role nope\r\x04")
    assert "no role 'nope'" in harness.err.getvalue()
    completer = SlashCompleter(harness.session)
    offered = [c.text for c in completer.get_completions(Document("/role "), CompleteEvent())]
    assert offered == ["code", "describe", "shell", "translate", "-"]


def test_switching_roles_puts_back_what_the_previous_one_changed(server, tmp_path):
    from tests.test_repl import Harness

    harness = Harness(server, tmp_path, system_prompt="Be kind.",
                      roles={"terse": {"system": "Be terse."}, "fast": {"model": "fast-model"}})
    harness.run("/system Be very kind.\r/role terse\r/role fast\rq\r/role -\rr\r\x04")
    first, second = harness.server.chat_requests
    assert (first["model"], first["messages"][0]["content"]) == ("fast-model", "Be very kind.")
    assert (second["model"], second["messages"][0]["content"]) == ("test-model", "Be very kind.")
