"""Shared pytest setup: tests never touch the network or the user's folders."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Point ptlib's data/results/checkpoint folders at a temporary directory."""
    for var, name in (
        ("PTLIB_DATA_DIR", "data"),
        ("PTLIB_RESULTS_DIR", "results"),
        ("PTLIB_CHECKPOINT_DIR", "checkpoints"),
    ):
        monkeypatch.setenv(var, str(tmp_path / name))
    return tmp_path
