"""The bibliography keeps its acronyms: BibTeX styles lowercase titles unless braced."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIB = ROOT / "book" / "references.bib"



def _acronyms(text: str) -> list[str]:
    """Words with a capital after their first letter (UNITER, DynamicViT, EViT)."""
    return [w for w in re.findall(r"[A-Za-z0-9]+", text) if any(c.isupper() for c in w[1:])]


def _titles(text: str) -> dict[str, str]:
    titles = {}
    for key, body in re.findall(r"@\w+\{([^,]+),(.*?)\n\}", text, flags=re.S):
        match = re.search(r"\btitle\s*=\s*\{(.*)\},?\s*$", body, flags=re.M)
        assert match, f"{BIB.name}: entry {key} has no title"
        titles[key] = match.group(1)
    return titles


def _unbraced(title: str) -> str:
    """The title with every braced group removed (what a style may lowercase)."""
    out, depth = [], 0
    for ch in title:
        depth += ch == "{"
        if depth == 0:
            out.append(ch)
        depth -= ch == "}"
    return "".join(out)


def test_acronyms_in_titles_are_braced():
    titles = _titles(BIB.read_text())
    assert len(titles) >= 10
    exposed = {key: _acronyms(_unbraced(title)) for key, title in titles.items()}
    exposed = {key: words for key, words in exposed.items() if words}
    assert not exposed, (
        f"{BIB.name}: acronyms a BibTeX style would lowercase (wrap them in braces): {exposed}")


def test_the_check_sees_an_unbraced_acronym():
    assert _acronyms(_unbraced("UNITER: {BLIP} and DynamicViT on {ViT}s")) == [
        "UNITER", "DynamicViT"]
