"""The README's "Using ptlib from your own code" example runs exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The Python block of the README section "Using `ptlib` from your own code"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Using `ptlib` from your own code", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section should hold exactly one Python block"
    return blocks[0]


def test_readme_example_runs_as_written(tmp_path):
    """Four held-out images, captioned by the shipped model and by its re-pruned copy."""
    env_data = {"PTLIB_DATA_DIR": str(tmp_path / "data"), "PTLIB_PROFILE": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", readme_example()], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **env_data}, timeout=900,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 8, done.stdout
    assert [line.split()[0] for line in lines] == ["trained"] * 4 + ["re-pruned"] * 4
    assert all(" exact set True " in line or " exact set False " in line for line in lines)
    # a real caption after the verdict: words of the shapes grammar
    assert all(re.search(r"(circle|square|triangle|star|diamond)", line) for line in lines)
