"""ptlib.viz.table: results as HTML tables, numbers glued into prose."""

from __future__ import annotations

import pytest

from ptlib.viz import glue, table


def test_table_from_dicts_formats_and_escapes() -> None:
    t = table([{"model": "ViT <36>", "CIDEr-D": 3.95432}], formats={"CIDEr-D": "{:.2f}"})
    html = t._repr_html_()
    assert "<th>CIDEr-D</th>" in html and "<td>3.95</td>" in html
    assert "ViT &lt;36&gt;" in html
    assert t.to_markdown().splitlines()[2] == "| ViT <36> | 3.95 |"


def test_table_from_sequences_needs_columns() -> None:
    with pytest.raises(ValueError, match="columns"):
        table([[1, 2]])
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        table([[1]], columns=["a", "b"])
    assert table([[None, 0.5]], columns=["a", "b"]).cells == [["–", "0.500"]]


def test_glue_returns_the_formatted_text() -> None:
    assert glue("x", 0.12345, "{:.1%}") == "12.3%"
