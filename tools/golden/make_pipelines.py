"""Record transformers 4.37.2's question-answering pipeline on the golden MPNet question-answering
model, for reference.question_answering (tests/test_question_answering.py).

    /tmp/golden-pt/bin/python tools/golden/make_pipelines.py     # the PyTorch golden environment

The model is the golden case mpnet/pt/question-answering (40 positions, so windows of at most 38
tokens), loaded with transformers' from_pretrained from its case directory. The tokenizer is the
demo checkpoints' WordPiece (tools/make_demo_models.py, 99 tokens: w0 .. w93, "##s", and <s> ...
</s></s> ... </s> pairs as MPNet's), written beside the record as tokenizer.json and loaded as a
PreTrainedTokenizerFast with MPNet's special tokens and model inputs. Contexts are drawn from a
fixed seed: words, words of two pieces ("w7s") and marks outside the vocabulary ([UNK]), long
enough for several windows. Each example is run through pipeline("question-answering") with its
options; its answers (a list, also where upstream returns one dict) are recorded with the model's
file digests. Nothing here imports the reference implementation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402
from conformance.golden import sha256  # noqa: E402
from tools.make_demo_models import write_tokenizer  # noqa: E402

CASE = "mpnet/pt/question-answering"
VOCAB = 99


def text(rng, words):
    """``words`` words: w0 .. w93, some with "s" (two pieces), some followed by a mark."""
    out = []
    for _ in range(words):
        word = f"w{rng.integers(0, VOCAB - 5)}"
        if rng.random() < 0.15:
            word += "s"
        if rng.random() < 0.1:
            word += str(rng.choice([",", ".", "?"]))
        out.append(word)
    return " ".join(out)


def examples():
    rng = np.random.default_rng(2024)
    short, long, longer = text(rng, 14), text(rng, 70), text(rng, 150)
    question, question2, tiny = text(rng, 3), text(rng, 6), text(rng, 4)
    window = {"max_seq_len": 38}
    return [
        ("one window", question, short, {**window}),
        ("one window, top 5", question, short, {**window, "top_k": 5}),
        ("one window, top 40 (more than its spans)", question, tiny, {**window, "top_k": 40}),
        ("windows of 38, stride 19", question, long, {**window, "top_k": 3}),
        (
            "windows of 24, stride 6",
            question2,
            longer,
            {"max_seq_len": 24, "doc_stride": 6, "top_k": 4},
        ),
        (
            "no answer allowed (third best)",
            question,
            tiny,
            {**window, "handle_impossible_answer": True, "top_k": 5},
        ),
        (
            "no answer allowed, six windows",
            question,
            long,
            {**window, "handle_impossible_answer": True, "top_k": 3},
        ),
        (
            "answers of at most 2 tokens",
            question,
            long,
            {**window, "max_answer_len": 2, "top_k": 4},
        ),
        (
            "token offsets, not words (w6 of w6s)",
            question,
            short,
            {**window, "align_to_words": False, "top_k": 4},
        ),
        (
            "token offsets, not words, six windows",
            question,
            long,
            {**window, "align_to_words": False, "top_k": 4},
        ),
    ]


def main():
    import torch
    import transformers
    from transformers import MPNetForQuestionAnswering, PreTrainedTokenizerFast, pipeline

    torch.set_num_threads(1)
    out_dir = ROOT / "golden" / "pipelines"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer(out_dir, VOCAB)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(out_dir / "tokenizer.json"),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="[UNK]",
        model_input_names=["input_ids", "attention_mask"],
    )
    case_dir = ROOT / "golden" / CASE
    model = MPNetForQuestionAnswering.from_pretrained(case_dir).eval()
    answerer = pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
    records = []
    for name, question, context, options in examples():
        with torch.no_grad():
            got = answerer(question=question, context=context, **options)
        got = got if isinstance(got, list) else [got]
        windows = len(
            tokenizer(
                question,
                context,
                truncation="only_second",
                max_length=options["max_seq_len"],
                stride=options.get("doc_stride", options["max_seq_len"] // 2),
                return_overflowing_tokens=True,
            )["input_ids"]
        )
        answers = [{k: a[k] for k in ("score", "start", "end", "answer")} for a in got]
        records.append(
            {
                "name": name,
                "question": question,
                "context": context,
                "options": options,
                "windows": windows,
                "answers": answers,
            }
        )
        print(f"{name}: {windows} windows, {answers[0]}")
    record = {
        "format": 1,
        "pipeline": "question-answering",
        "provenance": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "generator": "tools/golden/make_pipelines.py",
        },
        "model": {
            "case": CASE,
            "sha256": {n: sha256(case_dir / n) for n in ("config.json", "model.safetensors")},
        },
        "tokenizer": {"file": "tokenizer.json", "sha256": sha256(out_dir / "tokenizer.json")},
        "examples": records,
    }
    path = out_dir / "question-answering.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
