"""reference.mask_filling, text_classification and zero_shot_classification against
transformers 4.37.2's fill-mask, text-classification and zero-shot-classification pipelines, as
recorded by tools/golden/make_pipelines.py on the golden MPNet masked-LM and sequence-classification
models."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_question_answering import BACKENDS, FOLDER, SCORE_ATOL, SCORE_RTOL, recorded

import reference
from reference.mask_filling import fill_mask
from reference.text_classification import classify_text
from reference.zero_shot_classification import classify_zero_shot

FILL = json.loads((FOLDER / "fill-mask.json").read_text())
CLASSIFY = json.loads((FOLDER / "text-classification.json").read_text())


def close(got, want):
    return abs(got - want) <= SCORE_ATOL + SCORE_RTOL * abs(want)


@pytest.fixture(scope="module", params=BACKENDS)
def filler(request):
    model, tokenizers = recorded(FILL, "masked-lm", backend=request.param)
    return model, tokenizers["tokenizer-mask.json"]


@pytest.mark.parametrize("example", FILL["examples"], ids=lambda e: e["name"])
def test_proposals_are_the_pipelines(filler, example):
    """Per mask, the same tokens, token texts and filled-in texts in the same order (special
    tokens kept where there are two masks), probabilities within 1e-5 relative."""
    model, tok = filler
    got = fill_mask(model, tok, example["text"], **example["options"])
    want = example["proposals"]
    assert [[p["token"] for p in row] for row in got] == [[p["token"] for p in row] for row in want]
    for row_got, row_want in zip(got, want):
        for g, w in zip(row_got, row_want):
            assert (g["token_str"], g["sequence"]) == (w["token_str"], w["sequence"]), (g, w)
            assert close(g["score"], w["score"]), (g["score"], w["score"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(text="w1 w2"), "has no mask token"),
        (dict(top_k=0), "top_k must be an integer of at least 1"),
        (dict(targets=[""]), "no target is in the vocabulary"),
        (dict(targets=[3]), "targets must be strings"),
        (dict(mask_token="[MASK]"), r"no mask token \(\[MASK\]\)"),
    ],
)
def test_fill_mask_refuses_with_the_reason(filler, kwargs, message):
    model, tok = filler
    call = dict(text="w1 <mask> w3")
    call.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        fill_mask(model, tok, **call)


@pytest.fixture(scope="module", params=BACKENDS)
def classifiers(request):
    models, tokenizers = {}, {}
    for example in CLASSIFY["examples"]:
        task = "sequence-classification"
        case = example["model"]["case"]
        models[case], tokenizers = recorded(CLASSIFY, task, example["model"], request.param)
    return models, tokenizers["tokenizer.json"]


@pytest.mark.parametrize("example", CLASSIFY["examples"], ids=lambda e: e["name"])
def test_labels_are_the_pipelines(classifiers, example, monkeypatch):
    """The same labels in the same order, scores within 1e-5 relative: the default function by
    problem type and label count (one label: sigmoid, a regression model's too), sigmoid,
    softmax and raw logits, a pair, a text cut at max_length."""
    models, tok = classifiers
    model = models[example["model"]["case"]]
    config = dataclasses.replace(model.config, problem_type=example["problem_type"])
    monkeypatch.setattr(model, "config", config)  # as upstream's from_pretrained(problem_type=)
    inputs, options = example["inputs"], dict(example["options"])
    text, pair = (
        (inputs, None) if isinstance(inputs, str) else (inputs["text"], inputs["text_pair"])
    )
    if options.pop("truncation", False):
        options["model_max_length"] = options.pop("max_length")
    got = classify_text(model, tok, text, pair, **options)
    want = example["labels"]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert all(close(g["score"], w["score"]) for g, w in zip(got, want)), (got, want)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(text=None), "text must be a string"),
        (dict(text_pair=3), "text_pair must be a string"),
        (dict(top_k="2"), "top_k must be an integer of at least 1, or None"),
        (dict(top_k=0), "top_k must be an integer of at least 1, or None"),
        (dict(function_to_apply="relu"), "function_to_apply must be one of sigmoid"),
    ],
)
def test_text_classification_refuses_with_the_reason(classifiers, kwargs, message):
    models, tok = classifiers
    model = next(iter(models.values()))
    call = dict(text="w1 w2")
    call.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        classify_text(model, tok, **call)


ZERO_SHOT = json.loads((FOLDER / "zero-shot-classification.json").read_text())


@pytest.mark.parametrize("example", ZERO_SHOT["examples"], ids=lambda e: e["name"])
def test_zero_shot_scores_are_the_pipelines(classifiers, example, monkeypatch):
    """transformers' zero-shot-classification pipeline on the single-label model read as an NLI
    model (its labels renamed as the example says): the same labels in the same order, scores
    within 1e-5 relative; one softmax over the candidates, or entailment against contradiction
    for each (multi_label, or one candidate), with entailment first, last or missing."""
    models, tok = classifiers
    model = models[ZERO_SHOT["model"]["case"]]
    names = {int(k): v for k, v in example["labels_of_model"].items()}
    monkeypatch.setattr(model, "config", dataclasses.replace(model.config, id2label=names))
    got = classify_zero_shot(model, tok, example["text"], **example["options"])
    want = example["result"]
    assert got["sequence"] == want["sequence"] and got["labels"] == want["labels"]
    assert all(close(g, w) for g, w in zip(got["scores"], want["scores"])), (got, want)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(text=""), "text must be a non-empty string"),
        (dict(candidate_labels=[]), "candidate_labels must be one or more strings"),
        (dict(candidate_labels=" , "), "candidate_labels must be one or more strings"),
        (dict(hypothesis_template="no slot"), "has no {} for the label"),
    ],
)
def test_zero_shot_refuses_with_the_reason(classifiers, kwargs, message):
    models, tok = classifiers
    call = dict(text="w1 w2", candidate_labels=["w3"])
    call.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        classify_zero_shot(next(iter(models.values())), tok, **call)


def test_the_tokens_a_config_names_are_the_ones_the_pipelines_use(filler, tmp_path):
    """The mask is the config's mask_token (here w5, as a checkpoint could name any token), not
    a guess at <mask>; a config that names none falls back to <mask> or [MASK]."""
    model, _ = filler
    (tmp_path / "tokenizer.json").write_bytes((FOLDER / "tokenizer-mask.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"mask_token": "w5"}))
    tok = reference.Tokenizer(str(tmp_path))
    assert tok.special_tokens == {"mask_token": "w5"}
    got = fill_mask(model, tok, "w1 w5 w3", top_k=2)
    assert len(got) == 1 and len(got[0]) == 2
    assert all(p["sequence"] == f"w1 {p['token_str']} w3" for p in got[0]), got
    with pytest.raises(ValueError, match=r"no mask token \(w5\)"):
        fill_mask(model, tok, "w1 <mask> w3")
