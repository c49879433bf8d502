"""What an endpoint's model refuses, learnt from its errors and remembered across runs.

OpenAI's reasoning models reject `max_tokens` (they take `max_completion_tokens`) and
any temperature but their default. The client learns this from the 400 it gets,
asks again, says so once, and writes it here, so the next run asks right the first
time. One small JSON file in the cache directory: losing it costs one retried
request, so a failure to read or write it is never an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FILE_NAME = "quirks.json"
MAX_BYTES = 1_000_000  # a file larger than this is not ours: ignored


def cache_dir(env: Mapping[str, str]) -> Path:
    """CHATCLI_CACHE_DIR, or the platform's user cache directory."""
    if env.get("CHATCLI_CACHE_DIR"):
        return Path(env["CHATCLI_CACHE_DIR"]).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("chatcli", appauthor=False)


class Quirks:
    """Per endpoint and model: {"max_tokens_param": "max_completion_tokens", "temperature": false}."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._data: dict[str, dict[str, Any]] | None = None

    def get(self, endpoint: str, model: str) -> dict[str, Any]:
        return dict(self._load().get(_key(endpoint, model), {}))

    def learn(self, endpoint: str, model: str, name: str, value: Any) -> None:
        data = self._load()
        data.setdefault(_key(endpoint, model), {})[name] = value
        if self.path is None:
            return
        import tempfile

        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".quirks-")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except OSError:
            pass  # a cache: the next run learns it again

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            self._data = {}
            try:
                if self.path is not None and self.path.stat().st_size <= MAX_BYTES:
                    loaded = json.loads(self.path.read_text(encoding="utf-8"))
                    if isinstance(loaded, dict):
                        self._data = {k: v for k, v in loaded.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                pass
        return self._data


def _key(endpoint: str, model: str) -> str:
    """The endpoint without what may be a credential (a user and password, a query): the file
    holds no secret."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        endpoint = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    except ValueError:
        pass
    return f"{endpoint.rstrip('/')} {model}"
