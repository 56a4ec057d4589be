"""ptlib.runcache: the run-or-load cache and its keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ptlib import runcache

STORED = Path(__file__).resolve().parent.parent / "results" / "cpu"


def test_run_or_load_runs_once_per_exact_config(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"loss": [1.0, 0.5], "n": 3}

    config = {"profile": "ci", "lr": 1e-3, "layers": [2, 2]}
    first = runcache.run_or_load("train/demo", config, fn, directory=tmp_path, verbose=False)
    again = runcache.run_or_load("train/demo", dict(config), fn, directory=tmp_path, verbose=False)
    assert first == again == {"loss": [1.0, 0.5], "n": 3}
    assert len(calls) == 1
    runcache.run_or_load("train/demo", {**config, "lr": 2e-3}, fn, directory=tmp_path, verbose=False)
    assert len(calls) == 2
    runcache.run_or_load("train/demo", config, fn, directory=tmp_path, force=True, verbose=False)
    assert len(calls) == 3


def test_run_or_load_record_carries_provenance(tmp_path):
    config = {"seed": 0}
    runcache.run_or_load("x", config, lambda: [1, 2], directory=tmp_path, verbose=False)
    record = json.loads(runcache.run_record_path("x", config, tmp_path).read_text())
    assert record["config"] == config and record["result"] == [1, 2]
    assert record["versions"]["torch"] == torch.__version__
    assert record["wall_time_s"] >= 0 and "machine" in record


def test_run_or_load_ignores_record_with_other_config_under_same_key(tmp_path):
    """A record is reused only if its stored config equals the requested one, not just its hash."""
    config = {"a": 1}
    path = runcache.run_record_path("x", config, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": {"a": 2}, "result": "stale"}))
    result = runcache.run_or_load("x", config, lambda: "fresh", directory=tmp_path, verbose=False)
    assert result == "fresh"


def test_run_or_load_rejects_unserialisable_config(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        runcache.run_or_load("x", {"f": object()}, lambda: 1, directory=tmp_path)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        runcache.run_or_load("x", {"a": 1}, lambda: object(), directory=tmp_path)
    with pytest.raises(ValueError, match="run name"):
        runcache.run_or_load("../escape", {"a": 1}, lambda: 1, directory=tmp_path)


def test_config_key_is_stable():
    # the key names every stored result: key order does not matter, and the hash
    # itself must not change (these values were computed before any refactoring)
    assert runcache.config_key({"seed": 0}) == "bd0488843468e63c"
    assert runcache.config_key({"b": "x", "a": [1, 2.5]}) == "5cefae54a95b31dc"


@pytest.mark.parametrize("path", sorted(STORED.rglob("*.json")), ids=lambda p: p.stem)
def test_stored_results_are_named_by_their_config_key(path):
    record = json.loads(path.read_text())
    assert path.stem == runcache.config_key(record["config"])
