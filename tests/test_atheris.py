"""The atheris (libFuzzer) target for safetensors, config.json and index parsing, run for a bounded
time: any exception other than ValueError / TypeError, a hang or running out of memory fails the
test with the input that caused it. tools/fuzz_checkpoint.py says how to run it for longer by
hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

TARGET = Path(__file__).resolve().parents[1] / "tools" / "fuzz_checkpoint.py"
SECONDS = 30


def test_checkpoint_parsers_survive_coverage_guided_fuzzing(tmp_path):
    subprocess.run(
        [sys.executable, str(TARGET), "--write-seeds", str(tmp_path)],
        check=True,
        env={**os.environ, "FUZZ_WORKDIR": str(tmp_path / "work")},
    )
    run = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-max_total_time={SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-dict={tmp_path / 'tokens.dict'}",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path / "corpus"),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        env={**os.environ, "FUZZ_WORKDIR": str(tmp_path / "work")},
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"the fuzzer found a failing input:\n{log[-4000:]}"
    done = [line for line in log.splitlines() if line.startswith("Done ")]
    assert done and int(done[0].split()[1]) > 1000, f"the fuzzer barely ran:\n{log[-2000:]}"
