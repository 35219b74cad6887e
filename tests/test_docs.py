"""The documents point at files the repository holds: every picture and relative link in README.md and
BENCHMARKS.md opens on a clean checkout."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    """Targets of markdown links and images that name a file in the repository (not a URL, not an anchor)."""
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def test_relative_links_finds_pictures_and_skips_urls():
    text = "![a](docs/a.png) [b](https://x.org/b) [c](#part) ![d](bench/results/d.png#x) [e](mailto:e@x)"
    assert relative_links(text) == ["docs/a.png", "bench/results/d.png"]


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md"])
def test_every_link_of_the_document_exists(doc):
    targets = relative_links((ROOT / doc).read_text())
    assert targets, f"{doc} links to no file"
    missing = sorted({t for t in targets if not (ROOT / t).exists()})
    assert not missing, f"{doc} links to files the repository does not hold: {missing}"
