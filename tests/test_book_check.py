"""scripts/check_book.py finds what it promises, in a real headless Chromium, on small pages
built like the book's (sphinx-book-theme's article, myst-nb's cells)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
sys.modules["check_book"] = check_book
_spec.loader.exec_module(check_book)

if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
    pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)",
                allow_module_level=True)

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; }} article.bd-article {{ width: 760px; padding: 0 20px; }}
pre {{ overflow-x: auto; font: 14px monospace; }}
</style></head><body><main><article class="bd-article">
<section id="intro"><h1>Title</h1>{body}</section></article></main></body></html>"""

CELL = ('<div class="cell docutils container"><div class="cell_input docutils container">'
        '<div class="highlight"><pre>{code}</pre></div></div>'
        '<div class="cell_output docutils container">{output}</div></div>')

CLEAN = (
    "<p>Fine prose, $5 and $6, a <a href='#intro'>link</a> and <a href='other.html#x'>one</a>.</p>"
    "<img src='ok.png'>"
    + CELL.format(code="print(1)", output='<div class="output stream highlight-myst-ansi">'
                  "<pre>1</pre></div>")
)
BROKEN = (
    "<p>The rule \\[K = \\max\\bigl(1, N\\bigr)\\] is raw.</p>"
    "<img src='missing.png'>"
    "<a href='nowhere.html'>a</a> <a href='other.html#nope'>b</a> <a href='#intro'>c</a>"
    + CELL.format(code="x = 1", output='<div class="output stream highlight-myst-ansi">'
                  f"<pre>{'w' * 200}</pre></div>")
    + CELL.format(code="f()", output='<div class="output traceback highlight-ipythontb">'
                  "<pre>Traceback (most recent call last):\nValueError: bad</pre></div>")
    + "<table><tr><td style='white-space:nowrap'>" + "t " * 400 + "</td></tr></table>"
)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    html = tmp_path_factory.mktemp("book") / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "index.html").write_text(PAGE.format(body="<p>home</p>"))
    (html / "ok.png").write_bytes(PNG)
    (html / "other.html").write_text(PAGE.format(body="<p id='x'>x</p>"))
    (html / "notebooks" / "01_clean.html").write_text(
        PAGE.format(body=CLEAN.replace("'ok.png'", "'../ok.png'").replace("'other", "'../other")))
    (html / "notebooks" / "02_broken.html").write_text(
        PAGE.format(body=BROKEN.replace("'other", "'../other")))
    # The executed notebook of chapter 2: an 85-character line fits 760 px but not the limit.
    executed = html.parent / "jupyter_execute" / "notebooks"
    executed.mkdir(parents=True)
    cell = {"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "v" * 85}]}
    (executed / "02_broken.ipynb").write_text(json.dumps({"cells": [cell]}))
    return html


def test_pages_of_a_book(book):
    names = [p.relative_to(book).as_posix() for p in check_book.book_pages(book, [])]
    assert names == ["index.html", "notebooks/01_clean.html", "notebooks/02_broken.html",
                     "other.html"]
    assert [p.name for p in check_book.book_pages(book, ["02"])] == ["02_broken.html"]


def test_every_problem_is_found_and_a_clean_page_passes(book, capsys):
    pages = check_book.book_pages(book, ["01", "02"])
    results = check_book.check_pages(book, pages, limit=80)
    clean, broken = results["notebooks/01_clean.html"], results["notebooks/02_broken.html"]
    assert all(not clean[c] for c in check_book.CATEGORIES), clean

    assert len(broken["overflow"]) == 2, broken["overflow"]
    assert broken["overflow"][0].startswith("cell 1 output <pre>")
    assert "200 chars" in broken["overflow"][0]
    assert "table" in broken["overflow"][1]
    assert broken["wide"] == ['cell 1 output (notebook cell 0): 85 chars: "' + "v" * 70 + '…"']
    assert len(broken["image"]) == 1 and "missing.png" in broken["image"][0]
    assert len(broken["error"]) == 1 and "ValueError: bad" in broken["error"][0]
    assert len(broken["tex"]) == 1 and "\\max\\bigl" in broken["tex"][0]
    assert sorted(broken["link"]) == [
        'section "Title": "../other.html#nope": no anchor #nope in other.html',
        'section "Title": "nowhere.html": no file notebooks/nowhere.html',
    ]
    assert check_book.report(results) == 8
    out = capsys.readouterr().out
    assert "notebooks/01_clean.html: OK" in out and "FAILED: 8 problems" in out


def test_a_column_narrower_than_the_limit_fails(book):
    pages = check_book.book_pages(book, ["01"])
    results = check_book.check_pages(book, pages, limit=200)
    [problem] = results["notebooks/01_clean.html"]["overflow"]
    assert re.fullmatch(r"a code block holds (8\d|9\d) characters, fewer than the 200 a line "
                        r"may have: widen the column \(_static/book-width.css\)", problem), problem
