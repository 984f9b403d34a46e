"""Shared helpers: tiny random MPNet models built in-process, and error-reporting comparisons."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import reference
from reference import mpnet_model as mpnet

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    # The simulator runs each CUDA thread as a Python thread, and a block's threads meet at every
    # syncthreads(): each barrier is a round of GIL hand-offs, and a thread waiting for the GIL
    # asks for it only after the switch interval (5 ms by default). At 0.1 ms the left-padded
    # generation test took 18 s instead of 98 s (one core, Zen 4); 1e-5 and 1e-6 were no faster.
    sys.setswitchinterval(1e-4)

TINY = dict(
    model_type="mpnet",
    vocab_size=40,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=32,
    max_position_embeddings=24,
    layer_norm_eps=1e-5,
    num_labels=3,
)


def random_params(config_dict, task, seed=0, dtype=np.float32):
    """HF-named random weights for a tiny model (large enough that attention is peaked)."""
    config = mpnet.MPNetConfig.from_dict(config_dict)
    rng = np.random.default_rng(seed)
    return {
        name: (
            (
                rng.normal(0, 0.3 if len(shape) > 1 else 0.1, shape)
                + (1.0 if "LayerNorm.weight" in name else 0.0)
            ).astype(dtype)
        )
        for name, shape in mpnet.param_shapes(config, task).items()
    }


def tiny_model(task="base", profile=None, seed=0, backend="numpy", **overrides):
    config = {**TINY, **overrides}
    return reference.build(
        config, random_params(config, task, seed), task=task, profile=profile, backend=backend
    )


def write_checkpoint(path, config, weights):
    """A model directory of our own making: config.json and model.safetensors (names as given)."""
    import json

    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file(weights, str(path / "model.safetensors"))
    return path


def assert_close(actual, expected, atol, rtol=0.0, what="arrays"):
    """np.allclose with the max abs / rel error in the failure message."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    rel = diff / np.maximum(np.abs(expected), 1e-30)
    ok = np.all((diff <= atol + rtol * np.abs(expected)) | (np.isnan(actual) & np.isnan(expected)))
    assert ok, (
        f"{what}: max abs error {np.nanmax(diff):.3g}, max rel error {np.nanmax(rel):.3g} (atol"
        f" {atol}, rtol {rtol})"
    )


def assert_within(actual, expected, bound, what="arrays"):
    """|actual - expected| <= bound element by element (bound an array: an error bound worked out
    for each element), with the max error and the largest error-to-bound ratio on failure."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    assert np.all(diff <= bound), (
        f"{what}: max abs error {diff.max():.3g}, max error / bound {np.max(diff / bound):.3g}"
    )


@pytest.fixture
def tiny():
    return tiny_model


# CUDA tests need a GPU, or the simulator enabled for the whole process before Numba is imported:
#     NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda
# The compile checks need neither (only NVVM) and decide for themselves.
def pytest_collection_modifyitems(config, items):
    try:
        from numba import cuda

        usable = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or cuda.is_available()
    except Exception:  # noqa: BLE001 - no numba-cuda, or no driver
        usable = False
    if not usable:
        skip = pytest.mark.skip(
            reason="no CUDA GPU; run with NUMBA_ENABLE_CUDASIM=1 for the simulator"
        )
        for item in items:
            if "tests/cuda" in str(item.fspath) and "test_cuda_compile" not in str(item.fspath):
                item.add_marker(skip)
