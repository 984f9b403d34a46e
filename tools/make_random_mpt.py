"""Write an MPT checkpoint of any size with random bf16 weights, plus a WordPiece tokenizer, to try
loading and decoding at a real model's scale offline (the speed and memory do not depend on the
values; the text it generates is arbitrary).

    python tools/make_random_mpt.py /tmp/mpt-1b --d-model 2048 --layers 24   # 1.31G params, 2.6 GB
    /usr/bin/time -v python -m reference generate --model /tmp/mpt-1b --backend numba \\
        --weight-storage bf16 --prompt "w1 w2 w3" --max-new-tokens 64

The file is written a tensor at a time (bf16: the top half of each float32, as a truncation), so
making it needs the memory of its largest tensor, not of the model. Matrices are N(0, 0.02) and
the norms' weights ones, as MPT initialises them (no biases: no_bias true).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_demo_models  # noqa: E402

from reference.mpt_model import MPTConfig, param_shapes  # noqa: E402


def write(out: Path, d_model, layers, heads, vocab, max_seq_len=2048, seed=0):
    """-> the number of parameters written to out/model.safetensors (with config.json and
    tokenizer.json)."""
    config = dict(
        model_type="mpt",
        d_model=d_model,
        n_heads=heads,
        n_layers=layers,
        vocab_size=vocab,
        max_seq_len=max_seq_len,
        no_bias=True,
    )
    shapes = {
        "transformer." + k: v
        for k, v in param_shapes(MPTConfig.from_dict(config), "causal-lm").items()
    }
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * 2
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    head = json.dumps(header).encode()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(out / "model.safetensors", "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head)
        for shape in shapes.values():
            if len(shape) == 1:
                w = np.ones(shape, np.float32)
            else:
                w = rng.standard_normal(shape, np.float32) * np.float32(0.02)
            f.write((w.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    (out / "config.json").write_text(json.dumps(config))
    make_demo_models.write_tokenizer(out, vocab)
    return sum(int(np.prod(s)) for s in shapes.values())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--vocab", type=int, default=50432)
    args = p.parse_args(argv)
    n = write(args.out, args.d_model, args.layers, args.heads, args.vocab)
    print(f"wrote {args.out}: {n / 1e9:.2f}G parameters, {2 * n / 1e9:.2f} GB of bf16 weights")


if __name__ == "__main__":
    main()
