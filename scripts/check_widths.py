"""Lines too wide for the book's column: notebook code, and text outputs of a built book.

The content column of the rendered book (sphinx-book-theme at 1280 px) holds about 80
monospace characters, so every code line in ``notebooks/*.ipynb`` and every text output
line must be at most ``LIMIT`` characters. ``tests/test_book_widths.py`` enforces the code
lines; ``make book-check`` (``scripts/check_book.py``) checks the rendered pages in a browser.

Usage (from the repository root):

    python scripts/check_widths.py                      # code lines of every notebook
    python scripts/check_widths.py _build/ci            # + text outputs of the ci build
    python scripts/check_widths.py _build/html 07 08    # only chapters 07_* and 08_*
    python scripts/check_widths.py --limit 88 _build/ci # another limit

A build dir is ``_build/html`` (``make book``), ``_build/ci/_build/html`` (``make book-ci``),
their parent, or ``_build/ci``; the executed notebooks are read from the build's
``jupyter_execute`` directory. Each wide line is printed as
``file: cell N code|output: W chars: text``; the exit status is 1 when any line is too wide.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LIMIT = 80
"""Most characters a code or text output line may have (the rendered column at 1280 px)."""

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"

# What myst-nb renders for an output, best first (its HTML priority list): a text/plain
# output is shown only when none of the richer types is present.
RICHER_THAN_TEXT = (
    "application/vnd.jupyter.widget-view+json",
    "application/javascript",
    "text/html",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "text/markdown",
    "text/latex",
)
REMOVED_TAGS = {"remove-cell", "remove-output", "remove_cell", "remove_output"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class WideLine:
    """One line wider than the limit.

    Attributes:
        file: Notebook path as given (or relative to the build dir).
        cell: Index of the cell among all cells of the notebook (0-based, as in its JSON).
        kind: ``"code"`` or ``"output"``.
        width: Display width in characters.
        text: The line itself.
        shown: Which code cell of the rendered page it is (1-based, the browser check's
            "cell N"; cells tagged remove-cell are not counted), or 0 for a removed cell.
    """

    file: str
    cell: int
    kind: str
    width: int
    text: str
    shown: int = 0

    def __str__(self) -> str:
        page = f" (page cell {self.shown})" if self.shown else ""
        return f"{self.file}: cell {self.cell}{page} {self.kind}: {self.width} chars: {self.text}"


def _code_cells(path: Path, notebook: dict | None = None) -> Iterable[tuple[int, int, dict]]:
    """(index in the notebook, 1-based index on the rendered page or 0, cell) per code cell."""
    shown = 0
    for index, cell in enumerate((notebook or _load(path))["cells"]):
        if cell.get("cell_type") != "code":
            continue
        rendered = not _tags(cell) & {"remove-cell", "remove_cell"}
        shown += rendered
        yield index, shown if rendered else 0, cell


def display_width(line: str) -> int:
    """Characters a line takes in a monospace column (tabs to 8, wide glyphs count 2).

    Args:
        line: One line of text, without its newline.

    Returns:
        Its width in monospace columns.
    """
    line = ANSI.sub("", line).expandtabs(8)
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in line)


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _visible_lines(text: str) -> list[str]:
    # A carriage return (progress bars) overwrites the line: only its last part stays.
    return [line.split("\r")[-1] for line in text.split("\n")]


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"{path}: not a readable notebook ({err})") from err


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def wide_code_lines(path: Path, limit: int = LIMIT, name: str | None = None) -> list[WideLine]:
    """Code lines of a notebook wider than ``limit`` (cells removed from the book included).

    Args:
        path: A ``.ipynb`` file.
        limit: Most characters allowed per line.
        name: Name to report the file under (default: ``path.name``).

    Returns:
        The wide lines, in notebook order.
    """
    name = name or path.name
    found = []
    for index, shown, cell in _code_cells(path):
        for line in _text(cell.get("source", "")).splitlines():
            if display_width(line) > limit:
                found.append(WideLine(name, index, "code", display_width(line), line, shown))
    return found


def output_texts(cell: dict) -> Iterable[str]:
    """Monospace text the rendered book shows for a code cell's outputs.

    Streams, errors and text/plain results that have no richer representation (myst-nb
    renders HTML, images or Markdown instead). Cells tagged ``remove-output``/``remove-cell``
    show nothing.

    Args:
        cell: A code cell of an executed notebook.

    Yields:
        The text of each shown output.
    """
    if _tags(cell) & REMOVED_TAGS:
        return
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            yield _text(output.get("text", ""))
        elif kind == "error":
            yield "\n".join(output.get("traceback", []))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "text/plain" in data and not any(mime in data for mime in RICHER_THAN_TEXT):
                yield _text(data["text/plain"])


def wide_output_lines(path: Path, limit: int = LIMIT, name: str | None = None) -> list[WideLine]:
    """Text output lines of an executed notebook wider than ``limit``.

    Args:
        path: An executed ``.ipynb`` (``_build/ci/_build/jupyter_execute/notebooks/x.ipynb``).
        limit: Most characters allowed per line.
        name: Name to report the file under (default: ``path.name``).

    Returns:
        The wide lines, in notebook order.
    """
    name = name or path.name
    found = []
    for index, shown, cell in _code_cells(path, _with_cached_outputs(path)):
        for text in output_texts(cell):
            for line in _visible_lines(text):
                width = display_width(line)
                if width > limit:
                    found.append(WideLine(name, index, "output", width, ANSI.sub("", line), shown))
    return found


def _with_cached_outputs(path: Path) -> dict:
    """An executed notebook, its outputs taken from the build's jupyter-cache when missing.

    A rebuild that finds every notebook in the execution cache writes the
    ``jupyter_execute`` copies without outputs (myst-nb 1.x); the cache still has them.
    """
    notebook = _load(path)
    if any(c.get("outputs") for c in notebook["cells"] if c.get("cell_type") == "code"):
        return notebook
    cache_dir = next((p / ".jupyter_cache" for p in path.parents
                      if (p / ".jupyter_cache").is_dir()), None)
    if cache_dir is None:
        return notebook
    import nbformat
    from jupyter_cache import get_cache

    try:
        _, merged = get_cache(cache_dir).merge_match_into_notebook(
            nbformat.reads(json.dumps(notebook), as_version=4))
    except KeyError:  # not in the cache: executed under other contents
        return notebook
    return json.loads(nbformat.writes(merged))


def executed_notebooks(build: Path) -> list[Path]:
    """The executed notebooks of a built book.

    Args:
        build: ``_build/html``, ``_build/ci/_build/html``, their parent or ``_build/ci``.

    Returns:
        The ``.ipynb`` files under the build's ``jupyter_execute`` directory, sorted.

    Raises:
        SystemExit: When the directory holds no executed notebooks.
    """
    candidates = [build / "jupyter_execute", build.parent / "jupyter_execute",
                  build / "_build" / "jupyter_execute"]
    for directory in candidates:
        if directory.is_dir():
            found = sorted(p for p in directory.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            if found:
                return found
    raise SystemExit(
        f"{build}: no executed notebooks in {' or '.join(map(str, candidates))}; build the book first "
        "(make book, or make book-ci for _build/ci/_build/html)"
    )


def _selected(path: Path, chapters: list[str]) -> bool:
    return not chapters or any(path.name.startswith(prefix) for prefix in chapters)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", nargs="?", type=Path, help="built book dir (optional)")
    parser.add_argument("chapters", nargs="*", help="chapter prefixes, e.g. 07 08 (default all)")
    parser.add_argument("--limit", type=int, default=LIMIT, help=f"characters (default {LIMIT})")
    args = parser.parse_args(argv)
    if args.build is not None and not args.build.is_dir():
        # `check_widths.py 07` means a chapter, not a build dir.
        if re.fullmatch(r"\d\d.*", str(args.build)):
            args.chapters.insert(0, str(args.build))
            args.build = None
        else:
            parser.error(f"build dir {args.build} does not exist")

    wide: dict[str, list[WideLine]] = {}
    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        if _selected(path, args.chapters):
            wide.setdefault(path.stem, []).extend(wide_code_lines(path, args.limit))
    if args.build is not None:
        for path in executed_notebooks(args.build):
            if _selected(path, args.chapters):
                wide.setdefault(path.stem, []).extend(wide_output_lines(path, args.limit))

    total = 0
    for chapter, lines in wide.items():
        code = sum(line.kind == "code" for line in lines)
        print(f"{chapter}: {code} code and {len(lines) - code} output lines over {args.limit}")
        for line in lines:
            print(f"  {line}")
        total += len(lines)
    print(f"check_widths: {total} lines wider than {args.limit} characters")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
