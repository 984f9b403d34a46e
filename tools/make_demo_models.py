"""Write tiny demo checkpoints (golden models plus a WordPiece tokenizer.json) to try the CLI
offline.

    python tools/make_demo_models.py demo
    python -m reference ner --model demo/mpnet-ner "w1 w7s w9"

The weights are the random ones of the golden cases, so outputs are arbitrary; the point is that
every command runs end to end without downloading anything. Words are w0, w1, ... and "##s".
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
DEMOS = {
    "mpnet-base": ("mpnet/pt/base-right-padding", 99),
    "mpnet-ner": ("mpnet/pt/token-classification", 99),
    "mpnet-qa": ("mpnet/pt/question-answering", 99),
    "mpnet-classify": ("mpnet/pt/sequence-classification-single-label", 99),
    "mpnet-mlm": ("mpnet/pt/masked-lm", 99),
    "mpt-lm": ("mpt/hf/causal-lm-heads-3", 64),
}


# MPNet's special tokens as its tokenizer_config.json names them (the demo tokenizer's are these)
MPNET_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "[UNK]",
}


def write_tokenizer(target: Path, vocab_size: int, normalizer=None, mask=False):
    """A WordPiece tokenizer.json of w0, w1, ... and "##s" (tools/bench_engines.py adds the
    lowercasing normalizer all-mpnet-base-v2 has; the demos have none). With ``mask``, the last
    of its vocab_size tokens is <mask> (special, taking the space before it as MPNet's does)."""
    words = vocab_size - 5 - bool(mask)
    vocab = ["<s>", "<pad>", "</s>", "[UNK]", "##s"] + [f"w{i}" for i in range(words)]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.add_special_tokens(["<s>", "<pad>", "</s>"])
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.decoder = decoders.WordPiece()
    if mask:
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.save(str(target / "tokenizer.json"))


def make(case: str, vocab_size: int, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(GOLDEN / case / name, target / name)
    write_tokenizer(target, vocab_size, mask=case.endswith("masked-lm"))
    return target


def main(out="demo"):
    for name, (case, vocab) in DEMOS.items():
        print(make(case, vocab, Path(out) / name))


if __name__ == "__main__":
    main(*sys.argv[1:2])
