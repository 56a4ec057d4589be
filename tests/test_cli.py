"""The ptlib command line: --help, --version and info."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ptlib
from ptlib.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as done:
        assert done.code == 0
    assert capsys.readouterr().out.strip() == f"ptlib {ptlib.__version__}"


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as done:
        assert done.code == 0
    out = capsys.readouterr().out
    assert "info" in out and "bench" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: ptlib" in capsys.readouterr().out


def test_info_json(capsys, monkeypatch):
    monkeypatch.setenv("PTLIB_PROFILE", "ci")
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["profile"] == "ci"
    assert report["versions"]["ptlib"] == ptlib.__version__


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "ptlib"
    assert script.is_file(), f"no console script at {script}: reinstall with pip install -e ."
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"ptlib {ptlib.__version__}"
