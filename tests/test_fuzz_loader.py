"""Hostile checkpoints: random bytes, mutated files, absurd configs and bad values give clear errors
only."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from reference.checkpoint import CheckpointError, read_safetensors

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mpnet" / "pt" / "base-s1"
ORIGINAL = (GOLDEN / "model.safetensors").read_bytes()
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DOCUMENTED = (ValueError, TypeError)  # CheckpointError is a ValueError


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_are_refused_cleanly(tmp_path, data):
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        read_safetensors(path)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(ORIGINAL) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.integers(0, len(ORIGINAL)),
)
def test_mutated_checkpoints_load_or_fail_with_a_documented_error(tmp_path, flips, cut):
    """Flip bytes (header or data) and truncate: the loader either loads (a data byte changed) or
    raises ValueError / TypeError; it never crashes with anything else."""
    data = bytearray(ORIGINAL[:cut] if cut > 64 else ORIGINAL)
    for position, value in flips:
        if position < len(data):
            data[position] = value
    target = tmp_path / "m"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    shutil.copy(GOLDEN / "config.json", target / "config.json")
    (target / "model.safetensors").write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reference.from_pretrained(target)
        except DOCUMENTED:
            pass


def test_absurd_sizes_are_refused_before_anything_is_allocated(tmp_path):
    config = json.loads((GOLDEN / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({**config, "hidden_size": 10**9, "num_attention_heads": 1})
    )
    (tmp_path / "model.safetensors").write_bytes(ORIGINAL)
    with pytest.raises(CheckpointError, match="GiB of weights, more than this machine"):
        reference.from_pretrained(tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_weights_load_with_a_warning(tmp_path, bad):
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(GOLDEN / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name].copy()
    weights[name].flat[-1] = bad
    save_file(weights, str(tmp_path / "model.safetensors"))
    shutil.copy(GOLDEN / "config.json", tmp_path / "config.json")
    with pytest.warns(UserWarning, match="NaN or Inf"):
        reference.from_pretrained(tmp_path)
