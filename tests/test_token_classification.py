"""reference.token_classification against transformers 4.37.2's token-classification pipeline, as
recorded by tools/golden/make_pipelines.py on the golden MPNet token-classification model (labels
O, B-PER, I-PER, B-LOC, I-LOC): every aggregation, O kept, a text cut at model_max_length, and
texts read in windows with a stride, with a WordPiece tokenizer ("##" marks a word's later
pieces) and a SentencePiece-style BPE (no mark: words told by spaces)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_question_answering import BACKENDS, FOLDER, SCORE_ATOL, SCORE_RTOL, recorded

import reference
from reference.token_classification import find_entities

RECORD = json.loads((FOLDER / "token-classification.json").read_text())
# the same examples through TensorFlow's pipeline and TFMPNetForTokenClassification (profile tf)
RECORD_TF = json.loads((FOLDER / "token-classification-tf.json").read_text())


@pytest.fixture(scope="module", params=BACKENDS)
def ner(request):
    return recorded(RECORD, "token-classification", backend=request.param)


@pytest.fixture(scope="module")
def ner_tf():
    return recorded(RECORD_TF, "token-classification")


@pytest.mark.parametrize("example", RECORD_TF["examples"], ids=lambda e: e["name"])
def test_entities_are_tensorflows_pipelines(ner_tf, example):
    """TensorFlow's pipeline on TFMPNetForTokenClassification (the tf golden model, profile tf):
    the same entities, held as test_entities_are_the_pipelines holds them."""
    assert_entities(ner_tf, example)


def run(ner, example):
    model, tokenizers = ner
    options = dict(example["options"])
    return find_entities(
        model,
        tokenizers[example["tokenizer"]],
        example["text"],
        aggregation=options.pop("aggregation_strategy"),
        labels=RECORD["labels"],
        **options,
    )


@pytest.mark.parametrize("example", RECORD["examples"], ids=lambda e: e["name"])
def test_entities_are_the_pipelines(ner, example):
    """The same entities in the same order: label, word, characters (and token index), scores
    within 1e-5 relative."""
    assert_entities(ner, example)


def assert_entities(ner, example):
    got, want = run(ner, example), example["entities"]
    assert len(got) == len(want), (len(got), len(want))
    worst = 0.0
    for k, (g, w) in enumerate(zip(got, want)):
        assert set(g) == set(w), (k, sorted(g), sorted(w))
        assert {n: g[n] for n in w if n != "score"} == {n: w[n] for n in w if n != "score"}, (
            k,
            g,
            w,
        )
        error = abs(float(g["score"]) - w["score"])
        worst = max(worst, error / abs(w["score"]))
        assert error <= SCORE_ATOL + SCORE_RTOL * abs(w["score"]), (k, g["score"], w["score"])
    print(f"{example['name']}: {len(got)} entities, worst relative score error {worst:.2e}")


def test_the_records_cover_what_they_claim():
    """B- starts and I- continuations both group; O is dropped unless kept; windows overlap."""
    names = {e["name"]: e for e in RECORD["examples"]}
    tags = {e["entity"] for e in names["none (tokenizer.json)"]["entities"]}
    assert {"B-PER", "I-PER", "B-LOC"} <= tags
    kept = names["max, windows of 30, stride 10, O kept (tokenizer.json)"]["entities"]
    assert any(e["entity_group"] == "O" for e in kept)
    words = [e["word"] for e in names["first (tokenizer.json)"]["entities"]]
    assert any(w.endswith("s") for w in words)  # a word of two pieces, whole


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(aggregation="best"), "aggregation must be one of none, simple"),
        (dict(aggregation="none", stride=4, model_max_length=24), "choose simple, first"),
        (dict(aggregation="first", stride=4), "stride needs model_max_length"),
        (dict(aggregation="first", stride=24, model_max_length=24), r"stride must be an integer"),
        (dict(aggregation="first", stride=22, model_max_length=24), "leaves 22 after its special"),
        (dict(text=None), "text must be a string"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(ner, kwargs, message):
    model, tokenizers = ner
    call = dict(text=" ".join(f"w{i}" for i in range(40)))
    call.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        find_entities(model, tokenizers["tokenizer.json"], **call)


def test_the_tokenizers_settings_are_left_as_they_were(ner):
    model, _ = ner
    tok = reference.Tokenizer(str(FOLDER / "tokenizer.json"))
    tok.backend.enable_truncation(10)
    before = tok.backend.truncation, tok.backend.padding
    text = " ".join(f"w{i}" for i in range(60))
    found = find_entities(model, tok, text, "first", stride=4, model_max_length=20)
    assert (tok.backend.truncation, tok.backend.padding) == before
    assert max(e["end"] for e in found) > len(" ".join(f"w{i}" for i in range(20)))


def test_label_names_default_to_the_config(ner):
    model, tokenizers = ner
    found = find_entities(model, tokenizers["tokenizer.json"], "w1 w7s w9", ignore_labels=())
    assert {e["entity"] for e in found} <= {f"LABEL_{i}" for i in range(5)}
    assert all(0 < e["score"] <= 1 and isinstance(e["index"], int) for e in found)
    assert np.all(np.diff([e["index"] for e in found]) > 0)
