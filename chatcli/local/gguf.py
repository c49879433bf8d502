"""What a GGUF model file says about itself: its name, architecture, quantisation and
trained context length, read from the header without loading the model.

A GGUF file starts with the magic `GGUF`, a version, the tensor and metadata counts, then
the metadata as typed key/value pairs (little-endian throughout). Only the keys needed
here are kept; the rest (the tokenizer's vocabulary is most of the header) is skipped. A
file is untrusted data: every count and length is bounded, and anything malformed is
`NotGGUF`, never an exception from struct.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
MAX_KEYS = 100_000
MAX_STRING = 1 << 24
MAX_ARRAY = 1 << 26

# llama.cpp's llama_ftype values, as general.file_type stores them.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}
# value type -> struct format of a scalar; 8 is a string, 9 an array
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
           12: "<d"}
STRING, ARRAY = 8, 9


class NotGGUF(Exception):
    """The file is not a GGUF model, or its header is damaged."""


@dataclass(frozen=True)
class Header:
    name: str | None
    architecture: str | None
    quantisation: str | None
    context_length: int | None
    kind: str | None  # general.type: "model", or "mmproj" for a vision projector


def read_header(path: Path) -> Header:
    """The header of the GGUF file at `path`; NotGGUF if it is not one."""
    try:
        with open(path, "rb") as handle:
            return _read(handle)
    except (OSError, struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise NotGGUF(str(exc) or type(exc).__name__) from None


def _read(handle: BinaryIO) -> Header:
    if handle.read(4) != MAGIC:
        raise NotGGUF("no GGUF magic")
    version = _unpack(handle, "<I")
    if version not in (1, 2, 3):
        raise NotGGUF(f"GGUF version {version}")
    count_format = "<I" if version == 1 else "<Q"
    _unpack(handle, count_format)  # tensors
    keys = _unpack(handle, count_format)
    if keys > MAX_KEYS:
        raise NotGGUF(f"{keys} metadata keys")
    found: dict[str, Any] = {}
    wanted = {"general.name", "general.architecture", "general.file_type", "general.type"}
    for _ in range(keys):
        key = _string(handle, count_format)
        kind = _unpack(handle, "<I")
        if key in wanted or key.endswith(".context_length"):
            found[key] = _value(handle, kind, count_format)
        else:
            _skip(handle, kind, count_format)
        architecture = found.get("general.architecture")
        if wanted <= found.keys() and f"{architecture}.context_length" in found:
            break
    architecture = _text(found.get("general.architecture"))
    context = found.get(f"{architecture}.context_length")
    file_type = found.get("general.file_type")
    return Header(name=_text(found.get("general.name")), architecture=architecture,
                  quantisation=FILE_TYPES.get(file_type, f"type {file_type}") if isinstance(file_type, int)
                  else None,
                  context_length=context if isinstance(context, int) and context > 0 else None,
                  kind=_text(found.get("general.type")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _unpack(handle: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise NotGGUF("the header ends early")
    return struct.unpack(fmt, data)[0]


def _string(handle: BinaryIO, count_format: str) -> str:
    length = _unpack(handle, count_format)
    if length > MAX_STRING:
        raise NotGGUF(f"a string of {length} bytes")
    data = handle.read(length)
    if len(data) != length:
        raise NotGGUF("the header ends early")
    return data.decode("utf-8")


def _value(handle: BinaryIO, kind: int, count_format: str) -> Any:
    if kind in SCALARS:
        return _unpack(handle, SCALARS[kind])
    if kind == STRING:
        return _string(handle, count_format)
    _skip(handle, kind, count_format)  # an array where a scalar was wanted: not kept
    return None


def _skip(handle: BinaryIO, kind: int, count_format: str) -> None:
    if kind in SCALARS:
        handle.seek(struct.calcsize(SCALARS[kind]), 1)
    elif kind == STRING:
        handle.seek(_bounded(_unpack(handle, count_format), MAX_STRING), 1)
    elif kind == ARRAY:
        item = _unpack(handle, "<I")
        count = _bounded(_unpack(handle, count_format), MAX_ARRAY)
        if item in SCALARS:
            handle.seek(count * struct.calcsize(SCALARS[item]), 1)
        else:
            for _ in range(count):
                _skip(handle, item, count_format)
    else:
        raise NotGGUF(f"metadata of unknown type {kind}")


def _bounded(value: int, limit: int) -> int:
    if value > limit:
        raise NotGGUF(f"a length of {value}")
    return value

