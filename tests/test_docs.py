"""The README and the manual in docs/: every link between them leads somewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.zh-CN.md"]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    found = set()
    for heading in re.findall(r"(?m)^#+ (.+)$", page.read_text(encoding="utf-8")):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_leads_to_a_page_and_heading_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{page.name} links to {target}: no such heading"


def test_the_readme_is_short_and_links_every_page_of_the_manual():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("\n") <= 160
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"the README does not link docs/{page.name}"


def commands(page: Path) -> list[str]:
    """The command lines of a page's code blocks, without their comments."""
    text = page.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```(?:sh)?\n(.*?)```", text, re.S):
        lines += [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_chinese_readme_has_the_same_commands_as_the_english_one():
    english, chinese = ROOT / "README.md", ROOT / "README.zh-CN.md"
    assert commands(chinese) == commands(english)
    assert "README.zh-CN.md" in english.read_text(encoding="utf-8")  # linked from the top
    assert chinese.read_text(encoding="utf-8").count("\n") <= 160


def build_docs():
    """.ci/build_docs.py, the generator of the manual's generated parts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_docs", ROOT / ".ci" / "build_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_and_the_man_page_are_what_the_sources_make():
    docs = build_docs()
    current = docs.CONFIG_DOC.read_text(encoding="utf-8")
    assert current == docs.configuration_doc(current), "run python .ci/build_docs.py"
    assert docs.MAN_PAGE.read_text(encoding="utf-8") == docs.man_page(), "run python .ci/build_docs.py"


def test_the_man_page_names_every_command_key_exit_code_and_variable():
    from chatcli import errors
    from chatcli.schema import KEYS

    page = (ROOT / "docs" / "chatcli.1").read_text(encoding="utf-8")
    sections = re.findall(r"(?m)^\.SH (.+)$", page)
    assert sections == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXAMPLES",
                        "CONFIGURATION", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"]
    body = dict(zip(sections, re.split(r"(?m)^\.SH .+$", page)[1:], strict=True))
    for command in ("ask", "cmd", "doctor", "shell\\-init", "config init", "sessions list", "roles"):
        assert f".SS chatcli {command}" in body["COMMANDS"]
    for key in KEYS:
        assert f"\\fB{key.name.replace('-', chr(92) + '-')}\\fR" in body["CONFIGURATION"]
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    listed = {int(c) for c in re.findall(r"\\fB([\d, ]+)\\fR", body["EXIT STATUS"]) for c in c.split(",")}
    assert codes <= listed
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATCLI_CONFIG", "CHATCLI_DATA_DIR", "NO_COLOR"):
        assert f"\\fB{variable}\\fR" in body["ENVIRONMENT"]
    if shutil.which("groff"):  # and it is roff that renders without a warning
        done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(ROOT / "docs" / "chatcli.1")],
                              capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr


def test_the_wheel_carries_the_manual_and_puts_the_man_page_where_man_finds_it(tmp_path):
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*build, "--wheel-dir", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("chatcli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        man = next(name for name in names if name.endswith(".data/data/share/man/man1/chatcli.1"))
        assert archive.read(man) == (ROOT / "docs" / "chatcli.1").read_bytes()
        for page in [*(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "README.zh-CN.md"]:
            assert archive.read(f"chatcli/docs/{page.name}") == page.read_bytes(), page.name
