"""The README and the manual in docs/: every link between them leads somewhere."""

from __future__ import annotations

import re
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
