"""The linter configuration in pyproject.toml holds for the whole tree (ruff check and ruff format
--check)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff():
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (it is in the test extra)")
    return found


@pytest.mark.parametrize(
    "command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"]
)
def test_ruff(command):
    out = subprocess.run([ruff(), *command], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, (
        f"ruff {' '.join(command)}:\n{out.stdout[-4000:]}{out.stderr[-2000:]}"
    )
