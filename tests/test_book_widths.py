"""Nothing wider than the book's column: every notebook code line fits in LIMIT characters.

Text outputs are checked on a built book: ``python scripts/check_widths.py _build/ci/_build/html``
and, in a browser, ``make book-check``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_widths", ROOT / "scripts" / "check_widths.py")
check_widths = importlib.util.module_from_spec(_spec)
sys.modules["check_widths"] = check_widths  # dataclasses look their module up
_spec.loader.exec_module(check_widths)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_column(path):
    wide = check_widths.wide_code_lines(path)
    report = "\n".join(f"  {line}" for line in wide)
    assert not wide, (
        f"{path.name}: {len(wide)} code lines wider than {check_widths.LIMIT} characters "
        f"(the rendered column):\n{report}"
    )


def _notebook(tmp_path: Path, cells: list[dict]) -> Path:
    path = tmp_path / "07_x.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def _code(source: str, outputs: list[dict] | None = None, tags: list[str] | None = None) -> dict:
    return {
        "cell_type": "code",
        "source": source,
        "metadata": {"tags": tags or []},
        "outputs": outputs or [],
        "execution_count": None,
    }


def test_wide_code_lines_are_found(tmp_path):
    limit = check_widths.LIMIT
    path = _notebook(
        tmp_path,
        [
            {"cell_type": "markdown", "source": "x" * 200, "metadata": {}},
            _code("a = 1\n" + "b" * limit),
            _code(["c = 2\n", "d" * (limit + 1)]),
        ],
    )
    wide = check_widths.wide_code_lines(path)
    assert [(w.cell, w.shown, w.width) for w in wide] == [(2, 2, limit + 1)]


def test_display_width_counts_tabs_wide_glyphs_and_no_colour_codes():
    assert check_widths.display_width("\tx") == 9
    assert check_widths.display_width("表") == 2
    assert check_widths.display_width("\x1b[31mred\x1b[0m") == 3


def test_wide_output_lines_are_the_ones_shown(tmp_path):
    long = "y" * 100
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": ["ok\n", long + "\n"]},
        # progress bar: the carriage return overwrites the long part
        {"output_type": "stream", "name": "stderr", "text": long + "\rdone\n"},
        # rendered as HTML: the plain text is not shown
        {"output_type": "execute_result", "data": {"text/plain": long, "text/html": "<b/>"},
         "metadata": {}, "execution_count": 1},
        {"output_type": "display_data", "data": {"text/plain": "z" * 90}, "metadata": {}},
        {"output_type": "error", "ename": "E", "evalue": "", "traceback": ["\x1b[31m" + "e" * 81]},
    ]
    path = _notebook(tmp_path, [_code("x", tags=["remove-cell"]), _code("f()", outputs),
                                _code("g()", outputs, ["remove-output"])])
    wide = check_widths.wide_output_lines(path)
    # the first rendered code cell is the notebook's second
    assert [(w.cell, w.shown, w.width) for w in wide] == [(1, 1, 100), (1, 1, 90), (1, 1, 81)]
    assert wide[2].text == "e" * 81


def test_executed_notebooks_of_a_build(tmp_path):
    html = tmp_path / "ci" / "html"
    html.mkdir(parents=True)
    with pytest.raises(SystemExit, match="no executed notebooks"):
        check_widths.executed_notebooks(html)
    executed = tmp_path / "ci" / "jupyter_execute" / "notebooks"
    executed.mkdir(parents=True)
    (executed / "01_a.ipynb").write_text("{}")
    assert check_widths.executed_notebooks(html) == [executed / "01_a.ipynb"]
    assert check_widths.executed_notebooks(tmp_path / "ci") == [executed / "01_a.ipynb"]
