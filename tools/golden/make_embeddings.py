"""Record sentence-transformers' encode() on the golden MPNet base model, for the embed command and
reference.embedding (tests/test_embedding.py).

    /tmp/bench-env/bin/python tools/golden/make_embeddings.py    # the benchmark environment
                                                                 # (tools/bench_env.sh): it has
                                                                 # sentence-transformers 2.7.0 with
                                                                 # transformers 4.37.2

Each layout is a sentence-transformers model folder as the library saves one: the golden case
mpnet/pt/base-right-padding's config.json and model.safetensors, the demo WordPiece tokenizer
(golden/pipelines/tokenizer.json) with a tokenizer_config.json naming its special tokens, and
modules.json, sentence_bert_config.json and 1_Pooling/config.json (and 2_Normalize) as written in
the record. Texts of different lengths (some past max_seq_length, some with upper-case letters
outside the vocabulary) are encoded in batches of 3 with SentenceTransformer(folder).encode; the
vectors are recorded with each layout's files. Nothing here imports the reference implementation.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402

from conformance.golden import sha256  # noqa: E402
from tools.make_demo_models import MPNET_SPECIAL_TOKENS  # noqa: E402

CASE = "mpnet/pt/base-right-padding"
TOKENIZER = ROOT / "golden" / "pipelines" / "tokenizer.json"
PADDED = ROOT / "golden" / "pipelines" / "tokenizer-padded.json"
SPECIAL = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    **MPNET_SPECIAL_TOKENS,
    "model_max_length": 38,
    "model_input_names": ["input_ids", "attention_mask"],
}


def pooling(mode):
    flags = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
    config = {f"pooling_mode_{f}": f == mode for f in flags}
    return {"word_embedding_dimension": 32, **config}


def layout(mode, normalize, max_seq_length, lower=False):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    return {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": max_seq_length, "do_lower_case": lower},
        "1_Pooling/config.json": pooling(mode),
    }


LAYOUTS = {
    "mean, normalized, 12 tokens (all-mpnet-base-v2's kind)": layout("mean_tokens", True, 12),
    "mean, not normalized, 38 tokens": layout("mean_tokens", False, 38),
    "cls token": layout("cls_token", False, 12),
    "max over tokens, normalized": layout("max_tokens", True, 12),
    "mean, lower-cased first": layout("mean_tokens", True, 12, lower=True),
    "mean, normalized, a tokenizer.json that pads to 30 (sentence-transformers' files do)": {
        **layout("mean_tokens", True, 12),
        "tokenizer": PADDED.name,
    },
}


def write_padded_tokenizer():
    """The demo tokenizer with the truncation and fixed padding many sentence-transformers
    tokenizer.json files carry, which transformers' tokenizer does not use."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.enable_truncation(30)
    tok.enable_padding(pad_id=1, pad_token="<pad>", length=30)
    tok.save(str(PADDED))


def texts():
    rng = np.random.default_rng(5)
    out = []
    for words in (3, 1, 9, 20, 6, 14, 2):
        out.append(
            " ".join(
                f"w{rng.integers(0, 94)}" + ("s" if rng.random() < 0.2 else "")
                for _ in range(words)
            )
        )
    out.append("W5 w6 W7s w8")  # upper case: [UNK] unless lower-cased
    return out


def write_folder(folder, files):
    case_dir = ROOT / "golden" / CASE
    for name in ("config.json", "model.safetensors"):
        shutil.copy(case_dir / name, folder / name)
    tokenizer = TOKENIZER.parent / files.get("tokenizer", TOKENIZER.name)
    shutil.copy(tokenizer, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(SPECIAL))
    for name, content in files.items():
        if name == "tokenizer":
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content))
    if any(m["path"] == "2_Normalize" for m in files["modules.json"]):
        (folder / "2_Normalize").mkdir()


def main():
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    sentences = texts()
    write_padded_tokenizer()
    records = []
    for name, files in LAYOUTS.items():
        with tempfile.TemporaryDirectory() as folder:
            write_folder(Path(folder), files)
            model = SentenceTransformer(folder, device="cpu")
            vectors = model.encode(sentences, batch_size=3, convert_to_numpy=True)
        records.append({"name": name, "files": files, "embeddings": vectors.tolist()})
        print(f"{name}: {vectors.shape}, norms {np.linalg.norm(vectors, axis=1).round(3).tolist()}")
    case_dir = ROOT / "golden" / CASE
    record = {
        "format": 1,
        "library": "sentence-transformers",
        "provenance": {
            "sentence-transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "generator": "tools/golden/make_embeddings.py",
        },
        "model": {
            "case": CASE,
            "sha256": {n: sha256(case_dir / n) for n in ("config.json", "model.safetensors")},
        },
        "tokenizers": {p.name: sha256(p) for p in (TOKENIZER, PADDED)},
        "tokenizer_config": SPECIAL,
        "texts": sentences,
        "batch_size": 3,
        "layouts": records,
    }
    path = ROOT / "golden" / "pipelines" / "sentence-embeddings.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
