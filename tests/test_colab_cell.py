"""The Colab cell: generated from _config.yml, and run as on Colab in a fresh kernel.

Each chapter's first code cell runs in a fresh Jupyter kernel whose Python is a
throw-away virtual environment that sees this test's installed libraries (torch,
timm, ...) but not ``ptlib``; a stand-in ``google.colab`` module makes the cell
believe it is on Colab, and ``PTLIB_INSTALL_SOURCE`` points it at a wheel built from
this checkout. pip runs with ``--no-index``: nothing is downloaded. Then ``ptlib``
must import from that environment, with library versions that meet the floors the
cell installs (:mod:`ptlib.requirements`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import colab_cell  # noqa: E402

from ptlib.requirements import pip_specs  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "ptlib-colab-test"
CHECK = """
import importlib.metadata as md
import json
import ptlib
from ptlib.requirements import unmet
print(json.dumps({"file": ptlib.__file__, "unmet": unmet(),
                  "versions": {n: md.version(n) for n in ("torch", "torchvision", "timm")}}))
"""


def test_every_first_cell_is_the_generated_cell():
    source = colab_cell.cell_source()
    assert colab_cell.main(["--check"]) == 0
    assert all(len(line) <= 80 for line in source.splitlines())
    for spec in pip_specs():
        assert f'"{spec}"' in source


def test_the_cell_follows_the_config(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://example.org/fork/course\n  branch: dev\n")
    assert 'REPO = "https://example.org/fork/course@dev"' in colab_cell.cell_source(config)
    config.write_text("title: x\n")
    with pytest.raises(KeyError, match="repository.url"):
        colab_cell.cell_source(config)


@pytest.fixture(scope="module")
def colab_kernel(tmp_path_factory):
    """A kernelspec whose Python sees the test's libraries but not ptlib, on 'Colab'."""
    base = tmp_path_factory.mktemp("colab")
    source = base / "src"  # build from a copy: the checkout stays clean
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name if source.exists() else _mkdir(source) / name)
    shutil.copytree(ROOT / "ptlib", source / "ptlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(wheels), str(source)],
                   check=True, timeout=600)
    (wheel,) = wheels.glob("ptlib-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    # the libraries of this test run, as a plain path: no .pth inside runs, so the
    # editable ptlib of a development install stays invisible
    Path(purelib, "colab_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    fake = _mkdir(base / "fake" / "google" / "colab")
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab module."""\n')
    spec_dir = _mkdir(base / "jupyter" / "kernels" / KERNEL)
    (spec_dir / "kernel.json").write_text(json.dumps({
        # Colab's runtime has imported google.colab before the first cell runs
        "argv": [str(python), "-c", "import google.colab; from ipykernel.kernelapp import "
                 "launch_new_instance; launch_new_instance()", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python",
        "env": {"PYTHONPATH": str(base / "fake"), "PTLIB_INSTALL_SOURCE": str(wheel),
                "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "MPLBACKEND": "Agg"},
    }))
    return {"jupyter_path": str(base / "jupyter"), "venv": venv, "cwd": base}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_cell_installs_ptlib_in_a_fresh_kernel(path, colab_kernel, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", colab_kernel["jupyter_path"])
    notebook = nbformat.reads(path.read_text(), as_version=4)
    first = colab_cell.first_code_cell(notebook)
    check = nbformat.v4.new_code_cell(CHECK)
    run = nbformat.v4.new_notebook(cells=[first, check])
    NotebookClient(run, kernel_name=KERNEL, timeout=600,
                   resources={"metadata": {"path": str(colab_kernel["cwd"])}}).execute()
    installed = "".join(o.get("text", "") for o in run.cells[0].outputs)
    output = "".join(o.get("text", "") for o in run.cells[1].outputs if o.output_type == "stream")
    report = json.loads(output.strip().splitlines()[-1])
    assert "ERROR" not in installed, installed
    assert Path(report["file"]).is_relative_to(colab_kernel["venv"]), report["file"]
    assert report["unmet"] == [], report
