"""The GGUF models already on this machine, where other tools keep them, and the one a
name or a path in the settings means.

Looked for, never loaded: each file's header gives its quantisation. Ollama keeps
manifests that name content-addressed blobs; LM Studio, the Hugging Face cache and
llama.cpp's cache keep .gguf files under folders of their own. The bundled model comes
first. Everything is found from the environment given (HOME, OLLAMA_MODELS, HF_HOME,
HF_HUB_CACHE, LLAMA_CACHE), so tests point it at a folder of their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from chatcli.errors import LocalModelError
from chatcli.local import BUNDLED_NAME, file_stem, is_path, model_name
from chatcli.local.gguf import NotGGUF, read_header

MAX_FILES = 2000  # per place: a huge cache is listed in part, never walked for minutes
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})$")  # gguf-split's shards: the first one is the model


@dataclass(frozen=True)
class Found:
    name: str
    path: Path | None  # None for the bundled model until its parts are joined
    size: int
    quantisation: str | None
    where: str  # "bundled", "ollama", "lm studio", "hugging face", "llama.cpp", "file"


def find_models(env: Mapping[str, str]) -> list[Found]:
    """Every model found: the bundled one (when installed) first, then by place and name."""
    from chatcli.local import weights

    found: list[Found] = []
    try:
        weights.installed_parts()
        found.append(Found(BUNDLED_NAME, None, weights.SIZE, "Q4_K_M", "bundled"))
    except LocalModelError:
        pass
    home = Path(env.get("HOME") or Path.home())
    found += sorted(_ollama(Path(env.get("OLLAMA_MODELS") or home / ".ollama" / "models")),
                    key=lambda f: f.name)
    places = [("lm studio", [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]),
              ("hugging face", [_hf_cache(env, home)]),
              ("llama.cpp", [Path(env["LLAMA_CACHE"]) if env.get("LLAMA_CACHE")
                             else home / ".cache" / "llama.cpp"])]
    for where, roots in places:
        found += sorted((f for root in roots for f in _files(root, where)), key=lambda f: f.name)
    return found


def _hf_cache(env: Mapping[str, str], home: Path) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    return Path(env["HF_HOME"]) / "hub" if env.get("HF_HOME") else home / ".cache" / "huggingface" / "hub"


def _described(name: str, path: Path, where: str) -> Found | None:
    """A model file as found, or None for what is not a model (a vision projector, a file
    that is not GGUF, a shard after the first)."""
    match = SPLIT.search(path.name.removesuffix(".gguf"))
    if match and match.group(1) != "00001":
        return None
    try:
        header = read_header(path)
        size = path.stat().st_size
    except (NotGGUF, OSError):
        return None
    if header.kind == "mmproj" or "mmproj" in path.name.lower():
        return None
    return Found(name, path, size, header.quantisation, where)


def _files(root: Path, where: str) -> Iterator[Found]:
    try:
        paths = sorted(root.rglob("*.gguf"))[:MAX_FILES]
    except OSError:
        return
    for path in paths:
        if (found := _described(file_stem(path), path, where)) is not None:
            yield found


def _ollama(root: Path) -> Iterator[Found]:
    """Ollama's models: manifests/HOST/NAMESPACE/MODEL/TAG, each naming its weights' blob."""
    manifests = root / "manifests"
    try:
        paths = sorted(p for p in manifests.glob("*/*/*/*") if p.is_file())[:MAX_FILES]
    except OSError:
        return
    for path in paths:
        host, namespace, model, tag = path.relative_to(manifests).parts
        try:
            layers = json.loads(path.read_text(encoding="utf-8")).get("layers", [])
            digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, AttributeError, TypeError, KeyError, StopIteration):
            continue
        if not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            continue
        prefix = "" if namespace == "library" else f"{namespace}/"
        prefix = prefix if host == "registry.ollama.ai" else f"{host}/{namespace}/"
        name = f"{prefix}{model}:{tag}"
        if (found := _described(name, root / "blobs" / digest.replace(":", "-"), "ollama")) is not None:
            yield found


def resolve(ref: str, env: Mapping[str, str]) -> Found:
    """The model `ref` means: the bundled one, a .gguf path, or a name among those found
    (exactly, then ignoring case, then an Ollama name without its `:latest`)."""
    if ref == BUNDLED_NAME:
        from chatcli.local import weights

        return Found(BUNDLED_NAME, None, weights.SIZE, "Q4_K_M", "bundled")
    if is_path(ref):
        return _file(Path(ref).expanduser())
    models = find_models(env)
    for loose in (False, True):
        for found in models:
            name = found.name.removesuffix(":latest").lower() if loose else found.name
            if name == (ref.removesuffix(":latest").lower() if loose else ref):
                return found
    raise LocalModelError(f"no local model called {ref!r} on this machine",
                          hint="`chatcli local models` lists those found; local_model may also be "
                               "the path of a .gguf file")


def _file(path: Path) -> Found:
    try:
        header = read_header(path)
        size = path.stat().st_size
    except NotGGUF as exc:
        if not path.exists():
            raise LocalModelError(f"no such model file: {path}",
                                  hint="check local_model, or see `chatcli local models`") from None
        raise LocalModelError(f"{path} is not a GGUF model file ({exc})",
                              hint="llama.cpp loads GGUF files; `chatcli local models` lists those "
                                   "found") from None
    except OSError as exc:
        raise LocalModelError(f"cannot read {path}: {exc.strerror}") from None
    return Found(file_stem(path), path, size, header.quantisation, "file")


def model_ref(model: str, local_model: str) -> str:
    """What a session's model means locally: local_model's file or name when the model is
    that one, else the model itself (`/model llama3.2:latest`, `-p local -m PATH.gguf`)."""
    return local_model if model == model_name(local_model) else model


def locate(ref: str, env: Mapping[str, str], progress: Callable[[str], None] | None = None) -> Path:
    """The GGUF file `ref` means; the bundled weights are joined into the cache if need be."""
    from chatcli.local import weights
    from chatcli.quirks import cache_dir

    found = resolve(ref, env)
    return found.path if found.path is not None else weights.bundled_path(cache_dir(env) / "models",
                                                                          progress=progress)
