"""Results as real tables, and numbers handed to the book's prose.

A notebook shows a result table with :func:`table`; Jupyter and the book render
it as an HTML table that wraps to the page, never as space-padded ``print``
output that runs past the column. Numbers quoted in the Markdown prose go
through :func:`glue` (myst-nb's ``glue``), so no figure in the text is typed by
hand::

    from ptlib.viz import glue, table
    table([{"model": "ViT", "CIDEr-D": 3.95}], formats={"CIDEr-D": "{:.2f}"})
    glue("vit_cider", 3.954, "{:.2f}")   # in Markdown: {glue:text}`vit_cider`
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Formatter = str | Callable[[Any], str]
"""A ``str.format`` pattern such as ``"{:.3f}"`` or a function of the value."""


def _format(value: Any, formatter: Formatter | None) -> str:
    if value is None:
        return "–"
    if formatter is None:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
        return str(value)
    if callable(formatter):
        return formatter(value)
    return formatter.format(value)


class Table:
    """A small table that renders as HTML in Jupyter and the book, and as text elsewhere.

    Build it with :func:`table`.

    Attributes:
        columns: Column headers, in order.
        cells: Formatted cell strings, one list per row.
        caption: Optional caption shown above the table.
    """

    def __init__(self, columns: list[str], cells: list[list[str]], caption: str | None) -> None:
        self.columns = columns
        self.cells = cells
        self.caption = caption

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self.cells
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (
            f'<table class="table ptlib-table">{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )

    def to_markdown(self) -> str:
        """The table as GitHub/MyST Markdown."""
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.cells]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"{self.caption}\n" if self.caption else "") + self.to_markdown()


def table(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    columns: Sequence[str] | None = None,
    *,
    formats: Mapping[str, Formatter] | None = None,
    caption: str | None = None,
) -> Table:
    """A table from rows of dicts (keys are columns) or of sequences (give ``columns``).

    Args:
        rows: The rows. Dict rows take their columns from the first row's keys
            unless ``columns`` names them (a subset, in order).
        columns: Column names (required for sequence rows).
        formats: Per-column formatter, e.g. ``{"CIDEr-D": "{:.2f}"}``; floats
            without one get three decimals, ``None`` shows as a dash.
        caption: Text shown above the table.

    Returns:
        A :class:`Table`; display it by leaving it as a cell's last expression.

    Raises:
        ValueError: If sequence rows come without ``columns`` or with the wrong length.
    """
    formats = dict(formats or {})
    rows = list(rows)
    if rows and isinstance(rows[0], Mapping):
        names = list(columns) if columns is not None else list(rows[0])
        values = [[row.get(name) for name in names] for row in rows]  # type: ignore[union-attr]
    else:
        if columns is None:
            raise ValueError("table: rows that are not dicts need columns=[...]")
        names = list(columns)
        values = [list(row) for row in rows]
        for index, row in enumerate(values):
            if len(row) != len(names):
                raise ValueError(f"table: row {index} has {len(row)} cells, columns has {len(names)}")
    cells = [[_format(v, formats.get(n)) for n, v in zip(names, row, strict=True)] for row in values]
    return Table(names, cells, caption)


def glue(name: str, value: Any, fmt: Formatter | None = None, *, display: bool = False) -> str:
    """Hand a number to the book's prose (myst-nb ``glue``) and return its text.

    In Markdown write ``{glue:text}`name``` to show the formatted value. Outside
    a Jupyter Book build (plain Jupyter, Colab without myst-nb) nothing is shown
    unless ``display=True``.

    Args:
        name: The key used in the Markdown, unique within the notebook.
        value: The value; formatted with ``fmt`` (see :func:`table`).
        fmt: A ``str.format`` pattern or a function.
        display: Also show the value in the cell's output.

    Returns:
        The formatted text.
    """
    text = _format(value, fmt)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # e.g. Colab: the book is not being built
        if display:
            print(f"{name} = {text}")
        return text
    myst_glue(name, text, display=display)
    return text
