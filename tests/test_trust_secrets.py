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
