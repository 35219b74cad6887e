"""The documents point at files the repository holds: every picture and relative link in README.md,
BENCHMARKS.md and docs/*.md opens on a clean checkout, relative to the page that holds it; every document the
code cites by path exists; README stays the front door (short, linking every docs page); the metrics
definitions are cited as docs/metrics.md; LICENSE carries the licence pyproject.toml declares."""
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PAGES = ["README.md", "BENCHMARKS.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
README_MAX_LINES = 300
OLD_METRICS = "METRICS" + ".md"      # the old name of docs/metrics.md, spelt so that this file does not cite it
# a document cited by its path from the repository root: a page under docs/, or a root document (BENCHMARKS.md)
CITED = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md|[A-Z][A-Z_]*\.md)\b")


def relative_links(text: str) -> list[str]:
    """Targets of markdown links and images that name a file in the repository (not a URL, not an anchor)."""
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def missing_links(page: Path) -> list[str]:
    """The relative links and pictures of ``page`` that do not resolve from the folder that holds it."""
    return sorted({t for t in relative_links(page.read_text()) if not (page.parent / t).exists()})


def cited_docs(text: str) -> list[str]:
    """Documents cited by path from the repository root in ``text`` (code, comments or prose)."""
    return sorted(set(CITED.findall(text)))


def source_files() -> list[Path]:
    """The package, the benchmarks, the tests and the documents: every place a document is cited by path."""
    files = [ROOT / p for p in PAGES]
    for folder, pattern in (("genzoo", "*.py"), ("bench", "*.py"), ("bench", "*.sh"), ("tests", "*.py")):
        files += sorted((ROOT / folder).rglob(pattern))
    return files


SOURCES = source_files()


def test_relative_links_finds_pictures_and_skips_urls():
    text = "![a](docs/a.png) [b](https://x.org/b) [c](#part) ![d](bench/results/d.png#x) [e](mailto:e@x)"
    assert relative_links(text) == ["docs/a.png", "bench/results/d.png"]


def test_missing_links_resolve_from_the_page_that_holds_them(tmp_path):
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / "docs" / "figures" / "x.png").write_bytes(b"")
    (tmp_path / "top.md").write_text("")
    page = tmp_path / "docs" / "page.md"
    page.write_text("![x](figures/x.png) [top](../top.md) ![root-relative](docs/figures/x.png) [gone](../gone.md)")
    assert missing_links(page) == ["../gone.md", "docs/figures/x.png"]


@pytest.mark.parametrize("doc", PAGES)
def test_every_link_of_the_document_exists(doc):
    page = ROOT / doc
    if doc in ("README.md", "BENCHMARKS.md"):
        assert relative_links(page.read_text()), f"{doc} links to no file"
    missing = missing_links(page)
    assert not missing, f"{doc} links to files the repository does not hold (relative to {page.parent}): {missing}"


def test_cited_docs_finds_paths_and_skips_relative_links():
    text = ('see docs/metrics.md and BENCHMARKS.md; "README, Evaluation"; [x](../BENCHMARKS.md) '
            "[y](vaes.md) docs/figures/a.png NAME.json genzoo/docs/x.md")
    assert cited_docs(text) == ["BENCHMARKS.md", "docs/metrics.md"]


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_every_document_cited_by_path_exists(path):
    missing = [d for d in cited_docs(path.read_text()) if not (ROOT / d).is_file()]
    assert not missing, f"{path.relative_to(ROOT)} cites documents the repository does not hold: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_the_metrics_definitions_are_cited_as_docs_metrics_md(path):
    lines = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if OLD_METRICS in line]
    assert not lines, f"{path.relative_to(ROOT)} cites {OLD_METRICS} on lines {lines}: it is docs/metrics.md now"


def test_readme_is_short_and_links_every_docs_page():
    text = (ROOT / "README.md").read_text()
    n = len(text.splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; depth belongs in docs/ (at most {README_MAX_LINES})"
    linked = {str((ROOT / t).resolve().relative_to(ROOT)) for t in relative_links(text) if (ROOT / t).exists()}
    pages = {p for p in PAGES if p.startswith("docs/")}
    assert pages, "docs/ holds no page"
    assert not pages - linked, f"README.md does not link {sorted(pages - linked)}"


def test_license_is_the_one_pyproject_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "MIT", f"pyproject.toml declares {declared!r}; this test knows the MIT text only"
    text = (ROOT / "LICENSE").read_text()
    assert text.splitlines()[0].strip() == "MIT License", "LICENSE does not open with the licence's name"
    for phrase in ("Permission is hereby granted, free of charge, to any person obtaining a copy",
                   "The above copyright notice and this permission notice shall be included in all",
                   'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND'):
        assert phrase in text, f"LICENSE lacks the MIT clause starting {phrase[:40]!r}"
    assert re.search(r"Copyright \(c\) \d{4} ", text), "LICENSE names no copyright holder"
