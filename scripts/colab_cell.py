"""Write (or check) the first code cell of every chapter: the Google Colab install cell.

The repository address lives in one place, ``_config.yml`` (``repository.url`` and
``repository.branch``), and the library floors in ``ptlib.requirements``; this script
writes both into each notebook's first code cell, which must stay a copy of
:func:`cell_source` (``tests/test_colab_cell.py`` checks it and runs it)::

    python scripts/colab_cell.py          # rewrite the cells
    python scripts/colab_cell.py --check  # exit 1 if a cell differs

On Colab the cell installs ``ptlib`` with ``--no-deps`` from the repository (or from
``PTLIB_INSTALL_SOURCE``, e.g. a local checkout or wheel), then the bounded PyTorch,
torchvision and timm: pip keeps Colab's own when they are new enough and upgrades
them otherwise. Elsewhere the cell does nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ptlib.requirements import pip_specs  # noqa: E402

MAX_WIDTH = 80
"""Every line of the cell fits the book's code column."""


def cell_source(config_path: Path = ROOT / "_config.yml") -> str:
    """The Colab cell, built from ``_config.yml`` and :func:`ptlib.requirements.pip_specs`.

    Raises:
        KeyError: If ``_config.yml`` lacks ``repository.url`` or ``repository.branch``.
        ValueError: If a line would be wider than :data:`MAX_WIDTH`.
    """
    config = yaml.safe_load(config_path.read_text())
    try:
        url, branch = config["repository"]["url"], config["repository"]["branch"]
    except (KeyError, TypeError) as err:
        raise KeyError(f"{config_path}: repository.url and repository.branch are needed") from err
    specs = " ".join(f'"{spec}"' for spec in pip_specs())
    lines = [
        "# NBVAL_SKIP",
        "# On Google Colab, install ptlib from the course repository, and PyTorch,",
        "# torchvision and timm only where Colab's are older than ptlib needs.",
        "# Made by scripts/colab_cell.py from _config.yml: edit those, not this.",
        "import os",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        f'    REPO = "{url}@{branch}"',
        '    SOURCE = os.environ.get("PTLIB_INSTALL_SOURCE", f"git+{REPO}")',
        '    %pip install -q --no-deps "{SOURCE}"',
        f"    %pip install -q {specs}",
        "    %pip install -q pycocotools pycocoevalcap pyyaml ipywidgets",
    ]
    wide = [line for line in lines if len(line) > MAX_WIDTH]
    if wide:
        raise ValueError(f"Colab cell lines wider than {MAX_WIDTH} characters: {wide}")
    return "\n".join(lines)


def first_code_cell(notebook: dict) -> dict:
    """The first code cell of a notebook (JSON).

    Raises:
        ValueError: If the notebook has no code cell.
    """
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            return cell
    raise ValueError("the notebook has no code cell")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a difference")
    args = parser.parse_args(argv)
    source = cell_source()
    stale = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        cell = first_code_cell(notebook)
        if "".join(cell["source"]) == source:
            continue
        stale.append(path.name)
        if not args.check:
            cell["source"] = source.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    verb = "differ from" if args.check else "rewritten from"
    print(f"{len(stale)} Colab cell(s) {verb} scripts/colab_cell.py: {', '.join(stale) or '-'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
