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
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402

from conformance.golden import sha256  # noqa: E402
from tools.make_demo_models import MPNET_SPECIAL_TOKENS, write_tokenizer  # noqa: E402

CASE = "mpnet/pt/question-answering"
NER_CASE = "mpnet/pt/token-classification"
# --framework tf runs the question-answering and token-classification records on TensorFlow with
# the tf golden cases' models (the seeds' TFMPNetForQuestionAnswering and TFMPNetForTokenClassification)
TF_CASES = {CASE: "mpnet/tf/question-answering", NER_CASE: "mpnet/tf/token-classification"}
MLM_CASE = "mpnet/pt/masked-lm"
SINGLE_CASE = "mpnet/pt/sequence-classification-single-label"
MULTI_CASE = "mpnet/pt/sequence-classification-multi-label"
REGRESSION_CASE = "mpnet/pt/sequence-classification-regression"
GEN_CASE = "mpt/hf/causal-lm-heads-3"
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
VOCAB = 99
NER_WORDS = {"tokenizer.json": 24, "tokenizer-bpe.json": 10}  # the short text's, in 38 positions


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
        (
            "<s> typed in the question (upstream answers there, with the question's offsets)",
            "0<s>",
            "0",
            {"max_seq_len": 7, "max_answer_len": 1},
        ),
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


def ner_examples(words):
    """Every aggregation on a text of ``words`` words (whole, within the model's 38 positions),
    and on a longer one cut at or read in windows of 24 and 30 tokens."""
    rng = np.random.default_rng(7)
    short, long = " ".join(text(rng, 24).split()[:words]), text(rng, 90)
    every = [
        (f"{aggregation}", short, {"aggregation_strategy": aggregation})
        for aggregation in ("none", "simple", "first", "average", "max")
    ]
    return every + [
        ("simple, O kept", short, {"aggregation_strategy": "simple", "ignore_labels": []}),
        (
            "first, cut at 24 tokens",
            long,
            {"aggregation_strategy": "first", "model_max_length": 24},
        ),
        (
            "simple, windows of 24, stride 6",
            long,
            {"aggregation_strategy": "simple", "model_max_length": 24, "stride": 6},
        ),
        (
            "first, windows of 24, stride 6",
            long,
            {"aggregation_strategy": "first", "model_max_length": 24, "stride": 6},
        ),
        (
            "average, windows of 30, stride 10",
            long,
            {"aggregation_strategy": "average", "model_max_length": 30, "stride": 10},
        ),
        (
            "max, windows of 30, stride 10, O kept",
            long,
            {
                "aggregation_strategy": "max",
                "model_max_length": 30,
                "stride": 10,
                "ignore_labels": [],
            },
        ),
    ]


def write_metaspace_bpe(path):
    """A SentencePiece-style BPE of 99 pieces over the same words ("▁w12", "s"): no mark for a
    word's later pieces, so the pipeline tells them by the spaces around them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    rng = np.random.default_rng(3)
    corpus = [text(rng, 12) for _ in range(400)]
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok.save(str(path))
    assert tok.get_vocab_size() <= VOCAB


def tokenizer_for(path, unk):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        **{**MPNET_SPECIAL_TOKENS, "unk_token": unk},
        model_input_names=["input_ids", "attention_mask"],
    )


def plain(value):  # numpy scalars of a pipeline's output -> JSON values
    return value.item() if isinstance(value, np.generic) else value


def framework_model(name, case, framework, **config):
    """transformers' class ``name`` (TF-prefixed for TensorFlow) loaded from a golden case."""
    import transformers

    if framework == "tf":
        return getattr(transformers, "TF" + name).from_pretrained(ROOT / "golden" / case, **config)
    return getattr(transformers, name).from_pretrained(ROOT / "golden" / case, **config).eval()


def qa_record(out_dir, tokenizer, framework="pt"):
    from transformers import pipeline

    case = CASE if framework == "pt" else TF_CASES[CASE]
    model = framework_model("MPNetForQuestionAnswering", case, framework)
    answerer = pipeline("question-answering", model=model, tokenizer=tokenizer, framework=framework)
    records = []
    for name, question, context, options in examples():
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
        answers = [{k: plain(a[k]) for k in ("score", "start", "end", "answer")} for a in got]
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
    return {"model": _model_entry(case), "examples": records}


def ner_record(out_dir, tokenizers, framework="pt"):
    from transformers import pipeline

    case = NER_CASE if framework == "pt" else TF_CASES[NER_CASE]
    model = framework_model("MPNetForTokenClassification", case, framework, id2label=NER_LABELS)
    records = []
    for tokenizer_file, tokenizer in tokenizers.items():
        finder = pipeline(
            "token-classification", model=model, tokenizer=tokenizer, framework=framework
        )
        for name, sentence, options in ner_examples(NER_WORDS[tokenizer_file]):
            options = dict(options)
            tokenizer.model_max_length = options.pop("model_max_length", int(1e30))
            got = finder(sentence, **options)
            entities = [{k: plain(v) for k, v in e.items()} for e in got]
            if tokenizer.model_max_length < 1e30:
                options["model_max_length"] = tokenizer.model_max_length
            records.append(
                {
                    "name": f"{name} ({tokenizer_file})",
                    "tokenizer": tokenizer_file,
                    "text": sentence,
                    "options": options,
                    "entities": entities,
                }
            )
            groups = sorted({e.get("entity_group", e.get("entity")) for e in entities})
            print(f"{records[-1]['name']}: {len(entities)} entities, labels {groups}")
    return {"model": _model_entry(case), "labels": NER_LABELS, "examples": records}


def write_mask_tokenizer(path):
    """The demo WordPiece of 99 tokens, the last <mask> (special, taking the space before it as
    MPNet's does)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        write_tokenizer(Path(folder), VOCAB, mask=True)
        shutil.copy(Path(folder) / "tokenizer.json", path)


def fill_mask_record(tokenizer):
    from transformers import MPNetForMaskedLM, pipeline

    model = MPNetForMaskedLM.from_pretrained(ROOT / "golden" / MLM_CASE).eval()
    filler = pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    examples = [
        ("one mask", "w1 w2 <mask> w4 w5s", {}),
        ("one mask, top 12", "w1 w2 <mask> w4 w5s", {"top_k": 12}),
        ("two masks (special tokens kept)", "w3 <mask> w9, w12 <mask>", {"top_k": 3}),
        ("targets (w9s: its first token)", "w1 <mask> w8", {"targets": ["w5", "w7", "w9s", "w5"]}),
        ("targets, fewer than top_k", "w1 <mask> w8", {"targets": ["w20", "w30"], "top_k": 6}),
    ]
    records = []
    for name, sentence, options in examples:
        got = filler(sentence, **options)
        rows = got if isinstance(got[0], list) else [got]
        rows = [[{k: plain(v) for k, v in p.items()} for p in row] for row in rows]
        records.append({"name": name, "text": sentence, "options": options, "proposals": rows})
        print(f"{name}: {[[p['token_str'] for p in row] for row in rows]}")
    return {"model": _model_entry(MLM_CASE), "examples": records}


def text_classification_record(tokenizer):
    from transformers import MPNetForSequenceClassification, pipeline

    rng = np.random.default_rng(11)
    first, second, long = text(rng, 8), text(rng, 5), text(rng, 30)
    pair = {"text": first, "text_pair": second}
    examples = [
        ("single label, default", SINGLE_CASE, None, first, {}),
        ("single label, all labels", SINGLE_CASE, None, first, {"top_k": None}),
        (
            "single label, top 2, sigmoid",
            SINGLE_CASE,
            None,
            first,
            {"top_k": 2, "function_to_apply": "sigmoid"},
        ),
        (
            "single label, raw logits",
            SINGLE_CASE,
            None,
            first,
            {"top_k": None, "function_to_apply": "none"},
        ),
        ("a pair", SINGLE_CASE, None, pair, {"top_k": None}),
        (
            "cut at 12 tokens",
            SINGLE_CASE,
            None,
            long,
            {"top_k": None, "truncation": True, "max_length": 12},
        ),
        (
            "multi-label problem: sigmoid",
            MULTI_CASE,
            "multi_label_classification",
            first,
            {"top_k": None},
        ),
        ("regression (one label): sigmoid", REGRESSION_CASE, None, first, {"top_k": None}),
    ]
    records = []
    for name, case, problem, inputs, options in examples:
        extra = {"problem_type": problem} if problem else {}
        model = MPNetForSequenceClassification.from_pretrained(
            ROOT / "golden" / case, **extra
        ).eval()
        classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
        got = classifier(inputs, **options)
        got = got if isinstance(got, list) else [got]
        labels = [{k: plain(v) for k, v in r.items()} for r in got]
        records.append(
            {
                "name": name,
                "model": _model_entry(case),
                "problem_type": problem,
                "inputs": inputs,
                "options": options,
                "labels": labels,
            }
        )
        print(f"{name}: {labels}")
    return {"examples": records}


def write_marks_tokenizer(path):
    """A WordPiece of MPT's 64 tokens with marks and contractions (".", ",", "'", "n't", "'s")
    and a decoder that leaves their spaces: transformers' clean-up is what takes them out. [UNK]
    is a special token in the file, as in real tokenizer.json files (transformers makes the
    special tokens its config names special anyway, so skip_special_tokens drops it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = ["<s>", "<pad>", "</s>", "[UNK]", "##s", ".", ",", "?", "'", "n't", "'s"]
    vocab += [f"w{i}" for i in range(64 - len(vocab))]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "[UNK]"])  # special, as in real files
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(cleanup=False)
    tok.save(str(path))


def text_generation_record(tokenizer):
    from transformers import MptForCausalLM, pipeline

    model = MptForCausalLM.from_pretrained(ROOT / "golden" / GEN_CASE).eval()
    writer = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
    examples = [
        ("greedy, 8 new tokens ('s cleaned up)", "w1 w28", {"max_new_tokens": 8}),
        ("greedy (' cleaned up)", "w22 w48", {"max_new_tokens": 8}),
        ("the continuation alone (. first)", "w15 w17", {"max_new_tokens": 8, "return_full_text": False}),
        ("no clean-up", "w1 w28", {"max_new_tokens": 8, "clean_up_tokenization_spaces": False}),
        ("a prompt with marks (its cleaned length cut)", "w4 , w5 ' w6", {"max_new_tokens": 6}),
        (
            "beams, two sequences",
            "w7 w8",
            {"max_new_tokens": 6, "num_beams": 3, "num_return_sequences": 2},
        ),
        ("a prefix, max_length 12", "w9 w10", {"prefix": "w11 w12 ", "max_length": 12}),
        ("repetition penalty", "w13 w14", {"max_new_tokens": 8, "repetition_penalty": 1.5}),
        ("stop sequence (its first token)", "w1 w28", {"max_new_tokens": 8, "stop_sequence": "w46 w3"}),
        (
            "a long prompt, hole: its last tokens within 12",
            "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10",
            {"max_new_tokens": 6, "handle_long_generation": "hole", "model_max_length": 12},
        ),
        (
            "a prefix, the prompt cut at max_length 7",
            "w15 w16 w17 w18 w19 w20 w21 w22",
            {"prefix": "w11 w12 ", "max_length": 7},
        ),
    ]
    records = []
    for name, prompt, options in examples:
        options = dict(options)
        tokenizer.model_max_length = options.pop("model_max_length", int(1e30))
        got = writer(prompt, **options)
        if tokenizer.model_max_length < 1e30:
            options["model_max_length"] = tokenizer.model_max_length
        tokenizer.model_max_length = int(1e30)
        records.append({"name": name, "prompt": prompt, "options": options, "texts": got})
        print(f"{name}: {[g['generated_text'] for g in got]}")
    return {"model": _model_entry(GEN_CASE), "examples": records}


TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    **MPNET_SPECIAL_TOKENS,
    "mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": True, "special": True},
    "additional_special_tokens": ["<extra>"],
    "clean_up_tokenization_spaces": True,
}


def tokenizer_record(out_dir):
    """transformers' AutoTokenizer on the demo tokenizer.json with a tokenizer_config.json naming
    special tokens the file does not hold as special ([UNK], in its vocabulary) or at all (<mask>,
    <extra>): their ids, and decode with and without special tokens and clean-up."""
    import tempfile

    from transformers import AutoTokenizer

    texts = ["w1 [UNK] w2", "w3 <mask> w4s", "w5<extra> w6 ,", "<s> w7 </s>"]
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(out_dir / "tokenizer.json", Path(folder) / "tokenizer.json")
        (Path(folder) / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        records = []
        for sentence in texts:
            ids = tokenizer(sentence)["input_ids"]
            records.append(
                {
                    "text": sentence,
                    "ids": ids,
                    "decoded": tokenizer.decode(ids, clean_up_tokenization_spaces=False),
                    "decoded_without_special": tokenizer.decode(
                        ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
                    ),
                    "decoded_cleaned_up": tokenizer.decode(ids, skip_special_tokens=True),
                }
            )
            print(f"{sentence!r}: {ids} {records[-1]['decoded_without_special']!r}")
    return {"tokenizer_config": TOKENIZER_CONFIG, "examples": records}


def zero_shot_record(tokenizer):
    """The single-label classification model read as an NLI model: its three labels named as
    MNLI's in three orders (entailment last, first, and missing)."""
    from transformers import MPNetForSequenceClassification, pipeline

    rng = np.random.default_rng(13)
    premise, long = text(rng, 9), text(rng, 40)
    candidates = ["w1", "w2s", "w3 w4", "w5"]
    namings = {
        "entailment last": {0: "contradiction", 1: "neutral", 2: "entailment"},
        "ENTAILMENT first": {0: "ENTAILMENT", 1: "neutral", 2: "contradiction"},
        "no entailment label": {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},
    }
    examples = [
        ("four labels", "entailment last", premise, {"candidate_labels": candidates}),
        (
            "four labels, multi-label",
            "entailment last",
            premise,
            {"candidate_labels": candidates, "multi_label": True},
        ),
        ("one label (multi-label's scores)", "entailment last", premise, {"candidate_labels": ["w7"]}),
        (
            "labels in one string, a template",
            "entailment last",
            premise,
            {"candidate_labels": "w1, w9 ,w10", "hypothesis_template": "w8 {} w9"},
        ),
        (
            "ENTAILMENT first, multi-label",
            "ENTAILMENT first",
            premise,
            {"candidate_labels": candidates, "multi_label": True},
        ),
        ("ENTAILMENT first", "ENTAILMENT first", premise, {"candidate_labels": candidates}),
        ("no entailment label (the last logit)", "no entailment label", premise, {"candidate_labels": candidates}),
        (
            "the text cut at 20 tokens",
            "entailment last",
            long,
            {"candidate_labels": candidates, "model_max_length": 20},
        ),
    ]
    records = []
    for name, naming, sentence, options in examples:
        options = dict(options)
        labels = namings[naming]
        model = MPNetForSequenceClassification.from_pretrained(
            ROOT / "golden" / SINGLE_CASE, id2label=labels, label2id={v: k for k, v in labels.items()}
        ).eval()
        classifier = pipeline("zero-shot-classification", model=model, tokenizer=tokenizer, device="cpu")
        tokenizer.model_max_length = options.pop("model_max_length", int(1e30))
        got = classifier(sentence, **options)
        if tokenizer.model_max_length < 1e30:
            options["model_max_length"] = tokenizer.model_max_length
        tokenizer.model_max_length = int(1e30)
        records.append(
            {
                "name": name,
                "labels_of_model": {str(k): v for k, v in namings[naming].items()},
                "text": sentence,
                "options": options,
                "result": {k: plain(v) if not isinstance(v, list) else v for k, v in got.items()},
            }
        )
        print(f"{name}: {got['labels']} {np.round(got['scores'], 3).tolist()}")
    return {"model": _model_entry(SINGLE_CASE), "examples": records}


def _model_entry(case):
    case_dir = ROOT / "golden" / case
    return {
        "case": case,
        "sha256": {n: sha256(case_dir / n) for n in ("config.json", "model.safetensors")},
    }


def main():
    import argparse

    import transformers

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=["pt", "tf"], default="pt")
    framework = parser.parse_args().framework
    out_dir = ROOT / "golden" / "pipelines"
    provenance = {"transformers": transformers.__version__}
    if framework == "tf":  # the tokenizer files as the PyTorch run wrote them
        import tensorflow as tf

        provenance["tensorflow"] = tf.__version__
        wordpiece = tokenizer_for(out_dir / "tokenizer.json", "[UNK]")
        bpe = tokenizer_for(out_dir / "tokenizer-bpe.json", "<unk>")
        made = {
            "question-answering-tf": qa_record(out_dir, wordpiece, "tf"),
            "token-classification-tf": ner_record(
                out_dir, {"tokenizer.json": wordpiece, "tokenizer-bpe.json": bpe}, "tf"
            ),
        }
    else:
        import torch

        torch.set_num_threads(1)
        provenance["torch"] = torch.__version__
        out_dir.mkdir(parents=True, exist_ok=True)
        write_tokenizer(out_dir, VOCAB)
        write_metaspace_bpe(out_dir / "tokenizer-bpe.json")
        write_mask_tokenizer(out_dir / "tokenizer-mask.json")
        write_marks_tokenizer(out_dir / "tokenizer-marks.json")
        wordpiece = tokenizer_for(out_dir / "tokenizer.json", "[UNK]")
        bpe = tokenizer_for(out_dir / "tokenizer-bpe.json", "<unk>")
        masking = tokenizer_for(out_dir / "tokenizer-mask.json", "[UNK]")
        masking.mask_token = "<mask>"
        marks = tokenizer_for(out_dir / "tokenizer-marks.json", "[UNK]")
        with torch.no_grad():
            made = {
                "question-answering": qa_record(out_dir, wordpiece),
                "token-classification": ner_record(
                    out_dir, {"tokenizer.json": wordpiece, "tokenizer-bpe.json": bpe}
                ),
                "fill-mask": fill_mask_record(masking),
                "text-classification": text_classification_record(wordpiece),
                "text-generation": text_generation_record(marks),
                "special-tokens": tokenizer_record(out_dir),
                "zero-shot-classification": zero_shot_record(wordpiece),
            }
    files = {
        "question-answering": ["tokenizer.json"],
        "token-classification": ["tokenizer.json", "tokenizer-bpe.json"],
        "fill-mask": ["tokenizer-mask.json"],
        "text-classification": ["tokenizer.json"],
        "text-generation": ["tokenizer-marks.json"],
        "special-tokens": ["tokenizer.json"],
        "zero-shot-classification": ["tokenizer.json"],
    }
    provenance["generator"] = "tools/golden/make_pipelines.py"
    for task, record in made.items():
        record = {
            "format": 1,
            "pipeline": task.removesuffix("-tf"),
            "provenance": provenance,
            **record,
            "tokenizers": {f: sha256(out_dir / f) for f in files[task.removesuffix("-tf")]},
        }
        path = out_dir / f"{task}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
