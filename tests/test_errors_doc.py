"""docs/errors.md lists every exception and warning in the source, and explains each type it
lists."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import list_errors  # noqa: E402

EXPLAINED = {
    "ValueError",
    "TypeError",
    "CheckpointError",
    "CliError",
    "Unsupported",
    "FileNotFoundError",
    "RuntimeError",
    "ArgumentTypeError",
    "PortError",
    "warning",
}


def test_the_generated_list_matches_the_source():
    assert list_errors.current_doc_section() == list_errors.render(), (
        "docs/errors.md is out of date: run python tools/list_errors.py --write"
    )


def test_every_raised_type_is_explained():
    text = list_errors.DOC.read_text(encoding="utf-8")
    raised = {kind.rsplit(".", 1)[-1] for _, kind, _ in list_errors.all_rows()}
    assert raised <= EXPLAINED, (
        f"raised but not explained in docs/errors.md: {sorted(raised - EXPLAINED)}"
    )
    for kind in EXPLAINED - {"warning"}:
        assert f"`{kind}`" in text or f".{kind}`" in text, (
            f"{kind} has no entry in the table of types"
        )
