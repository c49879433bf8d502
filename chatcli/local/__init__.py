"""The local model: llama.cpp's own server running inside this process (the `xllamacpp`
wheel, `pip install 'chatcli[local]'`), reached through the same openai client as every
other endpoint.

weights.py finds the bundled weights and joins them once into the cache; gguf.py reads a
model file's header; discovery.py finds the models already on this machine (Ollama,
LM Studio, the Hugging Face cache, llama.cpp's cache); server.py starts the in-process
server, or finds the one `chatcli local serve` runs. Nothing here imports cli/, repl or
render, and xllamacpp is imported only when a model is loaded.
"""

from __future__ import annotations

import importlib.util

from chatcli.schema import BUNDLED_NAME, INSTALL_HINT, file_stem, is_path, model_name

__all__ = ["BUNDLED_NAME", "INSTALL_HINT", "available", "file_stem", "is_path", "model_name"]


def available() -> bool:
    """True when the runtime is installed (found, not imported: that costs a tenth of a second)."""
    try:
        return importlib.util.find_spec("xllamacpp") is not None
    except (ImportError, ValueError):
        return False
