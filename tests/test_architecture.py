"""The house rules of ARCHITECTURE.md, enforced by reading the imports.

Arrows point down the layer list, never up; each third-party library has one
home; the expensive ones (openai, rich) are imported lazily, so starting
chatcli and writing to a pipe never pays for them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chatcli"

# Higher layers may import lower ones (later in the list), never the reverse.
LAYERS = ["cli", "repl", "keybindings", "commands", "session", "doctor", "approval", "chat", "render",
          "client", "local", "quirks", "export", "recorder", "store", "migrations", "config", "tools",
          "roles", "schema", "attachments", "reply", "think", "conversation", "mdblocks", "cmdview",
          "textsafe", "events", "errors"]
HOMES = {"openai": {"client"}, "rich": {"render"}, "typer": {"cli"},
         "prompt_toolkit": {"repl", "keybindings"}, "sqlite3": {"store", "migrations"}, "click": set(),
         "xllamacpp": {"local"}}
LAZY = {"openai", "rich", "xllamacpp"}
STDLIB_ONLY = {"attachments", "roles", "conversation", "errors", "mdblocks", "schema", "export", "textsafe",
               "cmdview",
               "events", "client/chunks", "client/sse", "think", "reply", "tools"}


def modules() -> dict[str, ast.Module]:
    """Each module by its room: files in a subpackage (cli/) belong to the subpackage's room."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        name = relative.parts[0] if len(relative.parts) > 1 else path.stem
        key = name if name not in found else f"{name}/{path.stem}"
        found[key] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def room(key: str) -> str:
    return key.split("/")[0]


def imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(module name, imported at module level outside TYPE_CHECKING)."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, top))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            else:
                nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                visit(child, top and not nested)

    visit(tree, True)
    return found


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_point_down_the_layers(name):
    home = room(name)
    if home in {"__init__", "__main__"}:
        return
    assert home in LAYERS, f"add {home} to LAYERS and to the layout in docs/development.md"
    for module, _ in imports(modules()[name]):
        if module.startswith("chatcli."):
            target = module.split(".")[1]
            if target == home:
                continue
            assert target != "cli", f"{name} imports cli"
            assert LAYERS.index(target) > LAYERS.index(home), f"{name} imports {target}, which is above it"


@pytest.mark.parametrize("name", sorted(modules()))
def test_each_library_has_one_home_and_the_heavy_ones_load_lazily(name):
    for module, top in imports(modules()[name]):
        root = module.split(".")[0]
        if root in HOMES:
            assert room(name) in HOMES[root], f"{name} imports {root}; only {HOMES[root]} may"
            if root in LAZY:
                assert not top, f"{name} imports {root} at module level; import it where it is used"


@pytest.mark.parametrize("name", sorted(STDLIB_ONLY))
def test_the_pure_core_uses_the_standard_library_only(name):
    import sys

    for module, _ in imports(modules()[name]):
        root = module.split(".")[0]
        assert root in sys.stdlib_module_names or root in {"__future__", "chatcli"}, (name, module)


def test_pure_modules_do_no_io():
    for name in ("conversation", "mdblocks", "textsafe"):
        source = (PACKAGE / f"{name}.py").read_text(encoding="utf-8")
        for word in ("open(", "os.environ", "time.", "print(", "sys."):
            assert word not in source, f"{name} uses {word}"


def test_every_module_says_its_job():
    for name, tree in modules().items():
        assert ast.get_docstring(tree), f"{name}.py has no docstring"
