"""Distributed data parallel on this CPU: 2 processes (gloo) follow the single-process curve.

Both runs use the same global batch (16: one process x 16, or two x 8) and no
dropout. The caption loss is normalised by the token count of the global batch,
so the two runs take the same optimizer steps up to floating-point summation
order: per-epoch losses agree to a relative 1e-4.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from ptlib.cli import main

SETTINGS = ["train.epochs=2", "model.dropout=0.0", "train.eval_every=0"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one(isolated_dirs):
    single = isolated_dirs / "single"
    assert main(["train", "--config", "shapes_vit_ci", "--out", str(single),
                 *[a for s in SETTINGS for a in ("--set", s)]]) == 0

    double = isolated_dirs / "double"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "ptlib.cli", "train", "--config", "shapes_vit_ci", "--out", str(double),
        "--device", "cpu", *[a for s in SETTINGS for a in ("--set", s)],
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    one = json.loads((single / "history.json").read_text())
    two = json.loads((double / "history.json").read_text())
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert b["step"] == a["step"]
    # only rank 0 wrote files: one run.json, no stray temporary files
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())
