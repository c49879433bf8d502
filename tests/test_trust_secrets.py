"""Secrets never leave by a side door: endpoints and keys travel together, headers stay
with their host, and redaction works by value."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_KEY
from tests.fake_server import FakeServer, Reply, error_body


def config(tmp_path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_a_profiles_key_goes_to_the_profiles_endpoint_not_to_openai_base_url(run, tmp_path, monkeypatch):
    with FakeServer() as evil, FakeServer() as provider:
        monkeypatch.setenv("OPENAI_BASE_URL", evil.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-the-openai-key")
        monkeypatch.setenv("DS_KEY", "sk-the-deepseek-key")
        path = config(tmp_path, f'[profiles.ds]\nbase_url = "{provider.base_url}"\n'
                                'api_key_env = "DS_KEY"\nmodel = "deepseek-chat"\n')
        result = run("ask", "--config", path, "-p", "ds", "hi")
        assert result.code == 0, result.stderr
        assert evil.requests == []
        assert provider.requests[0].headers["authorization"] == "Bearer sk-the-deepseek-key"
        shown = run("config", "show", "--config", path, "-p", "ds").stdout
        assert f'base_url = "{provider.base_url}"  # profile ds' in shown


def test_the_shells_openai_key_is_not_sent_to_a_profiles_other_server(run, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-openai-key")
    path = config(tmp_path, '[profiles.other]\nbase_url = "https://llm.example.com/v1"\n')
    result = run("ask", "--config", path, "-p", "other", "hi")
    assert result.code == 2
    assert "keys are only sent to the endpoint they were configured with" in result.stderr
    assert "sk-the-openai-key" not in result.stderr


def redirecting(target: FakeServer, status: int) -> Reply:
    return Reply(status=status, headers={"Location": f"{target.base_url}/chat/completions"})


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_configured_headers_and_the_key_are_not_forwarded_to_another_server(run, endpoint, tmp_path,
                                                                            status):
    with FakeServer() as elsewhere:  # the same address, another port: another server
        endpoint.queue(redirecting(elsewhere, status))
        path = config(tmp_path, f'base_url = "{endpoint.base_url}"\n'
                                '[headers]\napi-key = "AZURESECRET_123"\nX-Title = "chatcli"\n')
        result = run("ask", "--config", path, "hi")
        assert result.code == (0 if status in (307, 308) else 7), result.stderr  # 301/302 become GET
        assert endpoint.requests[0].headers["api-key"] == "AZURESECRET_123"
        followed = elsewhere.requests[0].headers
        assert "api-key" not in followed and "authorization" not in followed
        assert "x-title" not in followed  # every configured header, whatever its name


def test_a_redirect_on_the_same_host_keeps_the_headers(run, endpoint, tmp_path):
    port = endpoint.base_url.split(":")[2].split("/")[0]
    endpoint.queue(Reply(status=307, headers={"Location": f"http://127.0.0.1:{port}/v1/chat/completions"}))
    path = config(tmp_path, f'base_url = "{endpoint.base_url}"\n[headers]\napi-key = "AZURESECRET_123"\n')
    assert run("ask", "--config", path, "hi").code == 0
    assert [r.headers.get("api-key") for r in endpoint.requests] == ["AZURESECRET_123"] * 2


def test_a_header_value_that_cannot_be_sent_is_refused_without_showing_it(run, endpoint, tmp_path):
    path = config(tmp_path, '[headers]\napi-key = "AZURESECRET_123\\n"\n')
    result = run("ask", "--config", path, "hi")
    assert result.code == 2 and "(hidden)" in result.stderr
    assert "AZURESECRET" not in result.stdout + result.stderr
    assert endpoint.requests == []


def test_a_header_name_with_a_newline_names_the_header_table(run, endpoint, tmp_path):
    result = run("ask", "--config", config(tmp_path, '[headers]\n"X-A\\nB" = "v"\n'), "hi")
    assert result.code == 2 and "headers: expected a table of header names" in result.stderr
    assert "base_url" not in result.stderr


def test_a_key_that_cannot_be_sent_is_refused_and_never_shown(run, endpoint, monkeypatch):
    for key, problem in (("gsk_SECRETVALUE\nsecond", "a space or a line break"),
                         ("sk-ключ-SECRETVALUE", "not ASCII")):
        monkeypatch.setenv("OPENAI_API_KEY", key)
        result = run("ask", "hi")
        assert result.code == 2 and problem in result.stderr
        assert "SECRETVALUE" not in result.stdout + result.stderr
    assert endpoint.requests == []


def test_a_server_that_echoes_a_header_value_has_it_removed(run, endpoint, tmp_path):
    endpoint.queue(Reply(status=400, error=error_body("bad header api-key=AZURESECRET_123 and key "
                                                      f"{TEST_KEY[3:]}", "invalid_request_error")))
    path = config(tmp_path, f'base_url = "{endpoint.base_url}"\n[headers]\napi-key = "AZURESECRET_123"\n')
    result = run("ask", "--debug", "--config", path, "hi")
    assert result.code == 7
    assert "AZURESECRET_123" not in result.stderr and "bad header api-key=***" in result.stderr


def test_api_key_cmd_that_leaves_a_child_running_is_not_waited_for(run, endpoint, tmp_path, monkeypatch):
    import time

    monkeypatch.delenv("OPENAI_API_KEY")
    path = config(tmp_path, f'base_url = "{endpoint.base_url}"\napi_key_cmd = "sleep 90 & echo sk-quick"\n')
    started = time.monotonic()
    result = run("ask", "--config", path, "hi")
    assert result.code == 0
    assert time.monotonic() - started < 30  # it waited 60 s for the stray child before
    assert endpoint.requests[0].headers["authorization"] == "Bearer sk-quick"


def test_api_key_cmd_that_prints_a_flood_is_told_as_printing_too_much(run, endpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    flood = tmp_path / "flood.sh"
    flood.write_text("head -c 50000000 /dev/zero | tr '\\0' x\n")  # 50 MB, not one newline
    path = config(tmp_path, f'base_url = "{endpoint.base_url}"\napi_key_cmd = "sh {flood}"\n')
    result = run("ask", "--config", path, "hi")
    assert result.code == 2
    assert "printed too much: more than 64 KB without a line holding the key" in result.stderr
    assert endpoint.chat_requests == []


def test_api_key_cmd_that_goes_on_printing_after_its_key_gives_the_key(run, endpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    path = config(tmp_path, f'base_url = "{endpoint.base_url}"\napi_key_cmd = "yes sk-again-and-again"\n')
    assert run("ask", "--config", path, "hi").code == 0
    assert endpoint.requests[0].headers["authorization"] == "Bearer sk-again-and-again"


def test_a_slow_api_key_cmd_is_said_to_be_waited_for(run, endpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    path = config(tmp_path, f'base_url = "{endpoint.base_url}"\napi_key_cmd = "sleep 2; echo sk-slow"\n')
    result = run("ask", "--config", path, "hi")
    assert result.code == 0
    assert "waiting for api_key_cmd `sleep 2; echo sk-slow` (up to 60 s)..." in result.stderr
    assert endpoint.requests[0].headers["authorization"] == "Bearer sk-slow"


# Credentials in base_url: a gateway's token in the query, a user and password before the host.
PASSWORD, TOKEN = "pw-9f3kq2-secret", "tok-7Hq2LmZx04"


def credentialed(server: FakeServer) -> str:
    host = server.base_url.split("//", 1)[1]
    return f"http://gateway-user:{PASSWORD}@{host}?token={TOKEN}&api-version=2024-02-01"


def subprocess_env(tmp_path, base_url: str) -> dict[str, str]:
    import os
    return {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": TEST_KEY,
            "CHATCLI_MODEL": "test-model", "CHATCLI_DATA_DIR": str(tmp_path / "data"),
            "CHATCLI_CONFIG": str(tmp_path / "none.toml"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def chatcli(env: dict[str, str], *args: str):
    import subprocess

    from tests.terminal import BIN
    return subprocess.run([str(BIN), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)


def test_a_query_in_base_url_goes_with_every_request_and_no_credential_is_printed(server, tmp_path):
    server.queue(Reply(text="fine"),
                 Reply(text="", status=400, error=error_body("bad request", "invalid_request_error")))
    env = subprocess_env(tmp_path, credentialed(server))
    done = chatcli(env, "--debug", "ask", "hi")
    assert done.returncode == 0 and done.stdout.strip() == "fine"
    failed = chatcli(env, "--debug", "ask", "again")
    assert failed.returncode != 0
    recorded = [r for r in server.requests if r.method == "POST"]
    assert [r.path for r in recorded] == [f"/v1/chat/completions?token={TOKEN}&api-version=2024-02-01"] * 2
    for output in (done.stdout, done.stderr, failed.stdout, failed.stderr):
        assert PASSWORD not in output and TOKEN not in output
    assert f"gateway-user:***@{server.base_url.split('//', 1)[1]}" in done.stderr  # --debug names it
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes() and TOKEN.encode() not in path.read_bytes()


def test_an_unreachable_base_url_is_named_without_its_credentials(tmp_path):
    env = subprocess_env(tmp_path, f"http://gateway-user:{PASSWORD}@127.0.0.1:9/v1?key={TOKEN}")
    done = chatcli(env, "ask", "hi")
    assert done.returncode != 0
    assert "cannot reach http://gateway-user:***@127.0.0.1:9/v1?key=***" in done.stderr
    assert PASSWORD not in done.stderr and TOKEN not in done.stderr


def test_config_show_and_doctor_never_print_a_credential_in_base_url(server, tmp_path):
    env = subprocess_env(tmp_path, credentialed(server))
    shown = chatcli(env, "config", "show")
    assert 'base_url = "http://gateway-user:***@' in shown.stdout
    assert "api-version=2024-02-01" in shown.stdout  # what is not a credential stays readable
    checked = chatcli(env, "doctor")
    for output in (shown.stdout, shown.stderr, checked.stdout, checked.stderr):
        assert PASSWORD not in output and TOKEN not in output
    assert "gateway-user:***@" in checked.stdout + checked.stderr
