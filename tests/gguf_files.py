"""GGUF files for the tests: a header with the metadata given and no tensors, what discovery
reads and nothing a runtime could load."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from chatcli.local.gguf import ARRAY, MAGIC, STRING


def write_header(path: Path, metadata: dict[str, Any], *, version: int = 3) -> None:
    """A GGUF header holding `metadata` (str, int as uint32, float, bool, list of str), and no
    tensors: what the tests of discovery read, and nothing a runtime could load."""
    count_format = "<I" if version == 1 else "<Q"

    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack(count_format, len(data)) + data

    def value(item: Any) -> bytes:
        if isinstance(item, bool):
            return struct.pack("<I?", 7, item)
        if isinstance(item, int):
            return struct.pack("<II", 4, item)
        if isinstance(item, float):
            return struct.pack("<If", 6, item)
        if isinstance(item, list):
            return struct.pack("<II", ARRAY, STRING) + struct.pack(count_format, len(item)) \
                + b"".join(string(x) for x in item)
        return struct.pack("<I", STRING) + string(item)

    body = b"".join(string(key) + value(item) for key, item in metadata.items())
    path.write_bytes(MAGIC + struct.pack("<I", version) + struct.pack(count_format, 0)
                     + struct.pack(count_format, len(metadata)) + body)
