"""Shared by the transformers adapters: a checkpoint directory per model, and output flattening."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..golden import flatten_outputs as flatten  # noqa: F401  (re-exported for the adapters)
from ..golden import model_digest, split_past  # noqa: F401


def checkpoint_dir(config: dict, weights: dict, cache: dict) -> Path:
    """Write config.json and model.safetensors (PyTorch layout) once per distinct model."""
    from safetensors.numpy import save_file

    key = model_digest(config, weights)
    if key not in cache:
        directory = Path(tempfile.mkdtemp(prefix="conformance-hf-"))
        (directory / "config.json").write_text(json.dumps(config))
        save_file(
            {k: np.array(v, order="C") for k, v in weights.items()},
            str(directory / "model.safetensors"),
            metadata={"format": "pt"},
        )
        cache[key] = directory
    return cache[key]
