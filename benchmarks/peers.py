"""llm (Simon Willison's command-line client), installed as a baseline only: a venv of its own
in the user's cache, never the project's environment, pointed at the benchmark's test server
through its extra-openai-models.yaml. The answer is printed by llm's own code, as text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chatcli-benchmarks" / "llm"


def llm(work: Path, env: dict[str, str], *, install: bool) -> tuple[list[str], dict[str, str]] | None:
    """llm's command and environment, or None when it is not installed and `install` is off
    (or installing it failed: the cases are then left out, and stderr says so)."""
    program = VENV / "bin" / "llm"
    if not program.exists():
        if not install:
            print("  (llm is not installed: its cases are left out; a full run installs it)", file=sys.stderr)
            return None
        print(f"  installing llm into {VENV} (a baseline only)", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "llm"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"  (llm could not be installed: {e}; its cases are left out)", file=sys.stderr)
            return None
    home = work / "llm"
    home.mkdir(exist_ok=True)
    (home / "extra-openai-models.yaml").write_text(
        f'- model_id: bench\n  model_name: test-model\n  api_base: "{env["OPENAI_BASE_URL"]}"\n'
        "  api_key_name: bench\n")
    (home / "keys.json").write_text(json.dumps({"bench": env["OPENAI_API_KEY"]}))
    # -n: nothing logged (chatcli's cases run with --no-save)
    return [str(program), "-m", "bench", "-n"], {**env, "LLM_USER_PATH": str(home)}
