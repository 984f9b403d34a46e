"""Helpers shared by the golden generators: seeded weights, output flattening, case writing.

NumPy and safetensors only, so every generator environment (PyTorch, TensorFlow, llm-foundry) can
import it. Nothing here imports the reference implementation.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from conformance.golden import (
    flatten_outputs as flatten,
)  # noqa: E402,F401  (the on-disk layout; NumPy + safetensors)
from conformance.golden import tuple_leaves, write_tensors  # noqa: E402
from conformance.tolerances import TOLERANCES  # noqa: E402


def random_weights(shapes: dict, seed: int) -> dict:
    """Deterministic weights larger than the default initialisation, so attention is peaked and
    biases,
    masks and bucket choices visibly change the outputs: matrices N(0, 0.3), norm scales 1 + N(0,
    0.1),
    other vectors N(0, 0.1), MPNet's relative-bias table N(0, 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if "relative_attention_bias" in name:
            w = rng.normal(0, 1.0, shape)
        elif len(shape) >= 2:
            w = rng.normal(0, 0.3, shape)
        elif any(n in name for n in ("LayerNorm", "layer_norm", "norm_", "_ln")) and name.endswith(
            "weight"
        ):
            w = 1 + rng.normal(0, 0.1, shape)
        else:
            w = rng.normal(0, 0.1, shape)
        out[name] = w.astype(np.float32)
    return out


GROUPS = {"present": "past_key_values"}


def tuple_layout(values, named: dict):
    """Describe a return_dict=False tuple by the dict outputs it repeats.

    Each entry is a group name ("loss", "logits", "hidden_states", "past_key_values", ...) whose
    arrays, in conformance.golden.group_members order, equal the entry's arrays; "none"; or
    "tuple.i" when it repeats nothing (the array is then stored under that name).
    """
    from conformance.golden import group_members

    layout, extra = [], {}
    groups = sorted({GROUPS.get(n.split(".")[0], n.split(".")[0]) for n in named})
    for i, v in enumerate(values):
        if v is None:
            layout.append("none")
            continue
        items = tuple_leaves(v)
        match = None
        for group in groups:
            parts = [named[n] for n in group_members(named, group)]
            if len(parts) == len(items) and all(
                np.array_equal(a, b, equal_nan=True) for a, b in zip(parts, items)
            ):
                match = group
                break
        if match is None:
            match = f"tuple.{i}"
            extra[match] = np.asarray(v)
        layout.append(match)
    return layout, extra


def write_case(out_root: Path, case_id: str, model_dir, meta: dict, inputs: dict, run):
    """Write one case directory. run() returns (named outputs, tuple layout, extra arrays) or
    raises, in which case the upstream exception is recorded as expect_error."""
    case_dir = out_root / case_id
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(model_dir) / name, case_dir / name)
    if "generation_config" in meta.get("options", {}):  # the file the model was loaded with
        shutil.copy(Path(model_dir) / "generation_config.json", case_dir / "generation_config.json")
    meta = {"id": case_id, **meta, "inputs": sorted(inputs)}
    meta.setdefault("tolerance", {"fp32": TOLERANCES["fp32"]})
    meta["provenance"] = {**meta.get("provenance", {}), "python": platform.python_version()}
    write_tensors(case_dir / "inputs.safetensors", inputs)
    try:
        outputs, layout, extra = run()
    except Exception as e:  # noqa: BLE001 - upstream rejects this input: record what it raised
        meta["expect_error"] = {
            "type": type(e).__name__,
            "message": (str(e).strip().splitlines() or [""])[0][:300],
        }
        print(f"{case_id}: upstream raised {type(e).__name__}")
    else:
        meta["outputs"] = sorted(outputs)
        if layout is not None:
            meta["tuple_layout"] = layout
        write_tensors(case_dir / "outputs.safetensors", {**outputs, **extra})
        print(f"{case_id}: {len(outputs)} outputs")
    (case_dir / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
