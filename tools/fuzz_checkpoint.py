"""Coverage-guided fuzzing (atheris / libFuzzer) of what reads untrusted files: the safetensors
parser, config.json and the sharded index, through to a loaded model.

Each input's first byte picks what the rest of it becomes:
    0  model.safetensors, next to a valid config (the whole of from_pretrained);
    1  config.json, next to valid weights of the family the text names (MPNet or MPT);
    2  model.safetensors.index.json, next to one valid shard.
The only exceptions allowed out are the documented ones, ValueError and TypeError (CheckpointError
is a ValueError); anything else is a finding and stops the run with the input that caused it.

    pip install atheris
    python tools/fuzz_checkpoint.py --write-seeds DIR   # DIR/corpus (one valid input per mode),
    DIR/tokens.dict
    python tools/fuzz_checkpoint.py -max_total_time=60 -dict=DIR/tokens.dict DIR/corpus

tests/test_atheris.py runs it for a bounded number of inputs in CI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["reference"]):
    import reference
    from reference import checkpoint

# Scratch files: $FUZZ_WORKDIR if set (the test points it into its tmp_path, which outlives a
# crash),
# else a temporary directory in memory where there is one.
WORKDIR = Path(
    os.environ.get("FUZZ_WORKDIR")
    or tempfile.mkdtemp(
        prefix="fuzz-checkpoint-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
)
WORKDIR.mkdir(parents=True, exist_ok=True)
DOCUMENTED = (ValueError, TypeError)
MODES = ("model.safetensors", "config.json", "model.safetensors.index.json")
# Micro models (a few hundred weights) keep inputs small, so the fuzzer mutates whole files quickly.
MICRO = {
    "mpnet": dict(
        model_type="mpnet",
        vocab_size=8,
        hidden_size=4,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=4,
        max_position_embeddings=8,
        relative_attention_num_buckets=4,
    ),
    "mpt": dict(
        model_type="mpt",
        d_model=4,
        n_heads=2,
        n_layers=1,
        vocab_size=8,
        max_seq_len=8,
        expansion_ratio=1,
    ),
}


def micro_model(family):
    """config.json and model.safetensors bytes of a micro model with random weights."""
    from safetensors.numpy import save

    module = {"mpnet": reference.mpnet_model, "mpt": reference.mpt_model}[family]
    config = module.Config.from_dict(MICRO[family])
    rng = np.random.default_rng(0)
    weights = {
        k: rng.normal(size=shape).astype(np.float32)
        for k, shape in module.param_shapes(config, "base").items()
    }
    return json.dumps(MICRO[family]).encode(), save(weights)


FILES = {family: micro_model(family) for family in MICRO}


def stage(mode, payload):
    """A fresh model directory holding the fuzzed file and valid companions."""
    target = WORKDIR / "model"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    config, weights = FILES["mpt" if (mode == 1 and b'"mpt"' in payload) else "mpnet"]
    if mode != 1:
        (target / "config.json").write_bytes(config)
    (target / ("shard-1.safetensors" if mode == 2 else "model.safetensors")).write_bytes(weights)
    (target / MODES[mode]).write_bytes(payload)
    return target


def test_one_input(data: bytes):
    if not data:
        return
    mode, payload = data[0] % len(MODES), data[1:]
    target = stage(mode, payload)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # NaN weights and unexpected keys warn; that is documented behaviour
        try:
            checkpoint.read_safetensors_header(target)
            reference.from_pretrained(target)
        except DOCUMENTED:
            pass


def write_seeds(directory):
    """DIR/corpus: one valid input per mode from the micro models (including a sharded index), and
    DIR/tokens.dict: the JSON keys and dtype tags of the formats, for libFuzzer's -dict."""
    corpus = Path(directory) / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "safetensors").write_bytes(b"\0" + FILES["mpnet"][1])
    (corpus / "config-mpnet").write_bytes(b"\1" + FILES["mpnet"][0])
    (corpus / "config-mpt").write_bytes(b"\1" + FILES["mpt"][0])
    names = sorted(
        stage(0, FILES["mpnet"][1]) and checkpoint.read_safetensors_header(WORKDIR / "model")
    )
    index = {"metadata": {}, "weight_map": {n: "shard-1.safetensors" for n in names}}
    (corpus / "index").write_bytes(b"\2" + json.dumps(index).encode())
    keys = {
        f.name
        for cls in (reference.MPNetConfig, reference.MPTConfig)
        for f in dataclasses.fields(cls)
    }
    keys |= {
        "model_type",
        "attn_config",
        "dtype",
        "shape",
        "data_offsets",
        "__metadata__",
        "weight_map",
    }
    tokens = [f'"\\"{k}\\""' for k in sorted(keys)] + [
        f'"{t}"' for t in checkpoint.SAFETENSORS_DTYPES
    ]
    (Path(directory) / "tokens.dict").write_text("\n".join(tokens) + "\n")


def main(argv):
    if len(argv) == 3 and argv[1] == "--write-seeds":
        write_seeds(argv[2])
        return
    try:
        atheris.Setup(argv, test_one_input)
        atheris.Fuzz()
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
