"""Conventions every chapter notebook and the book configuration must keep."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        for value in node.values():
            files.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            files.extend(_toc_files(item))
    return files


TOC_FILES = [TOC["root"], *_toc_files(TOC.get("parts", []))]


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def test_there_is_a_setup_notebook():
    assert ROOT / "notebooks" / "00_setup.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_stored_without_outputs(path):
    for index, cell in enumerate(_code_cells(path)):
        assert not cell.get("outputs"), f"{path.name}: code cell {index} has stored outputs"
        assert cell.get("execution_count") is None, (
            f"{path.name}: code cell {index} has an execution count; clear outputs before committing"
        )


BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=lambda p: p.name)
def test_book_page_notebook_is_stored_clean_and_listed(path):
    # executed pages of book/ (the claims page): no outputs, in the toc, one title,
    # the profile read through ptlib.course
    for index, cell in enumerate(_code_cells(path)):
        assert not cell.get("outputs"), f"{path.name}: code cell {index} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: cell {index} was executed"
    assert f"book/{path.stem}" in TOC_FILES, f"{path.name} is not listed in _toc.yml"
    sources = "\n".join(_source(c) for c in _code_cells(path))
    assert "course.get_profile()" in sources and "os.environ" not in sources
    cells = json.loads(path.read_text())["cells"]
    titles = [line for c in cells if c["cell_type"] == "markdown"
              for line in _source(c).splitlines() if line.startswith("# ")]
    assert len(titles) == 1, f"{path.name}: exactly one H1 title, found {titles}"


def test_claims_page_follows_the_paper_page():
    assert "book/claims" in TOC_FILES
    assert TOC_FILES.index("book/claims") == TOC_FILES.index("book/paper") + 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_toc(path):
    stem = f"notebooks/{path.stem}"
    assert stem in TOC_FILES, f"{path.name} is not listed in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_only_on_colab(path):
    first = _source(_code_cells(path)[0])
    assert first.startswith("# NBVAL_SKIP"), f"{path.name}: first code cell must be # NBVAL_SKIP"
    assert 'if "google.colab" in sys.modules:' in first
    assert not re.search(r"\btorch(vision)?\s*[=<>]", first), f"{path.name} re-pins torch"
    pip_lines = [line for line in first.splitlines() if "pip install" in line]
    assert pip_lines, f"{path.name}: the Colab cell installs nothing"
    for line in pip_lines:
        assert not re.search(r"\btorch(vision)?\b", line), f"{path.name} installs torch: {line}"
    assert any("--no-deps" in line and "git+" in line for line in pip_lines), (
        f"{path.name}: install ptlib with --no-deps so Colab's torch is kept"
    )
    url = CONFIG["repository"]["url"]
    branch = CONFIG["repository"]["branch"]
    assert f"git+{url}@{branch}" in first, (
        f"{path.name}: the Colab cell must install from {url}@{branch} (_config.yml repository)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_reads_profile_from_course(path):
    sources = "\n".join(_source(c) for c in _code_cells(path))
    assert "course.get_profile()" in sources, f"{path.name} must read its profile via ptlib.course"
    assert "os.environ" not in sources, f"{path.name} must not read ad-hoc environment flags"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_title(path):
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown"
    headings = [
        line
        for c in cells
        if c["cell_type"] == "markdown"
        for line in _source(c).splitlines()
        if line.startswith("# ")
    ]
    assert len(headings) == 1, f"{path.name}: exactly one H1 title, found {headings}"


def test_toc_entries_exist():
    for entry in TOC_FILES:
        candidates = [ROOT / f"{entry}{ext}" for ext in ("", ".md", ".ipynb")]
        assert any(p.is_file() for p in candidates), f"_toc.yml lists {entry}, which is missing"


def test_book_config_is_strict_and_excludes_code():
    assert CONFIG["only_build_toc_files"] is True
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert execute["raise_on_error"] is True and execute["timeout"] > 0
    assert execute["show_tb"] is True
    for folder in ("_build", ".venv", "tests", "ptlib"):
        assert folder in CONFIG["exclude_patterns"]
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")


def test_every_reference_is_cited():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M)
    pages = "\n".join(p.read_text() for p in (ROOT / "book").glob("*.md"))
    paper_list = re.search(r"The references of the paper \{cite:p\}`([^`]+)`", pages)
    assert paper_list, "book/references.md must cite the paper's reference list in one role"
    assert len(paper_list.group(1).split(",")) == 14, "the paper has 14 references"
    cited = set()
    for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", pages):
        cited.update(k.strip() for k in group.split(","))
    assert set(keys) <= cited, f"never cited: {sorted(set(keys) - cited)}"
    assert cited <= set(keys), f"cited but not in references.bib: {sorted(cited - set(keys))}"
