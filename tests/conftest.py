"""Shared fixtures: every test is isolated from the user's machine and the network.

Config and data directories live in tmp_path, OPENAI_* and CHATCLI_* are
scrubbed, and the only server is the fake one on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from chatcli.cli import typer_app
from tests.fake_server import FakeServer

TEST_KEY = "sk-test-4f9c2e7a1b"
ANSI = re.compile(r"\x1b[\[\]]")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATCLI_")) or name in {"NO_COLOR", "HTTPS_PROXY", "HTTP_PROXY",
                                                                 "https_proxy", "http_proxy",
                                                                 "ALL_PROXY", "all_proxy"}:
            monkeypatch.delenv(name, raising=False)
    # A program in a test's pseudo-terminal measures that terminal; COLUMNS and LINES (which
    # pytest-xdist's workers have) would override it and fix every width at 80.
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    monkeypatch.setenv("CHATCLI_CONFIG", str(tmp_path / "config" / "config.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("CHATCLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATCLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # The local models other tools keep (Ollama, LM Studio, the Hugging Face cache) are found
    # under HOME, and a `chatcli local serve` through the runtime directory: both are the test's.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE", "LLAMA_CACHE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def endpoint(server, monkeypatch) -> FakeServer:
    """The fake server, named by OPENAI_BASE_URL and OPENAI_API_KEY as a user would."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("CHATCLI_MODEL", "test-model")
    return server


@pytest.fixture
def db(tmp_path):
    """The conversation database the CLI writes in a test (CHATCLI_DATA_DIR above)."""
    return tmp_path / "data" / "chatcli.db"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run():
    """Invoke the CLI in-process with CliRunner; stdout and stderr apart."""

    def invoke(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Run:
        result = CliRunner().invoke(typer_app(), list(args), input=input, env=env, prog_name="chatcli")
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return invoke
