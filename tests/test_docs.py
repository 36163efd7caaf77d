"""The docs hold together: every relative link in README.md, CONTRIBUTING.md, BENCHMARKS.md and
docs/ leads to a file (and heading) that exists, every command has a page that README links,
and README stays a first screen and a map."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "BENCHMARKS.md"]
PAGES += sorted((ROOT / "docs").rglob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings (outside code blocks)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_every_relative_link_resolves():
    checked = 0
    for page in PAGES:
        for target in relative_links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.relative_to(ROOT)} links {target}: no such file"
            if anchor and file.suffix == ".md":
                assert anchor in anchors(file), f"{page.relative_to(ROOT)} links {target}"
            checked += 1
    assert checked > 30  # the pattern finds the links it means to check


def test_the_link_check_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [broken](missing.md) [web](https://x.org)\n")
    assert relative_links(page) == ["#title", "missing.md"]
    assert anchors(page) == {"title"}
    assert not (tmp_path / "missing.md").exists()


def test_every_command_has_a_page_that_readme_links():
    from llmkit.commands import VERBS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Commands") :]
    for verb in VERBS:
        command = verb.name.split()[0]  # `recipes ls` is documented with `recipes`
        row = next((r for r in table.splitlines() if f"`llmkit {command}`" in r), None)
        assert row, f"README's command table has no row for {command}"
        pages = [t for t in LINK.findall(row) if t.startswith("docs/commands/")]
        assert pages and (ROOT / pages[0]).is_file(), f"{command}: no page linked"
        page = (ROOT / pages[0]).read_text(encoding="utf-8")
        assert f"llmkit {command}" in page, f"{pages[0]} does not show `llmkit {command}`"


def test_readme_is_a_first_screen_and_a_map():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
