"""The README's two set-up commands and CI agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    setup = ROOT.joinpath("README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", setup)


def test_readme_has_exactly_two_setup_commands_main_job_then_tests():
    main_job, tests = readme_commands()
    assert main_job.endswith("-m conformance run") and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    assert readme_commands()[1] in ROOT.joinpath(".ci", "run").read_text().splitlines()
