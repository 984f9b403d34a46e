"""reference.question_answering against transformers 4.37.2's question-answering pipeline, as
recorded by tools/golden/make_pipelines.py on the golden MPNet question-answering model: contexts
of one to 26 windows, top_k, the empty answer, short answers, token offsets."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import reference
from conformance.golden import golden_root, sha256
from reference.question_answering import answer_question, context_windows

NUMBA = importlib.util.find_spec("numba") is not None
FOLDER = golden_root() / "pipelines"
RECORD = json.loads((FOLDER / "question-answering.json").read_text())
# the same examples through TensorFlow's pipeline and TFMPNetForQuestionAnswering (profile tf)
RECORD_TF = json.loads((FOLDER / "question-answering-tf.json").read_text())
SCORE_RTOL, SCORE_ATOL = 1e-5, 1e-6  # float32 probabilities from logits within ~1e-6 of torch's


# the pipelines run on either backend: the records hold numba's models to upstream's outputs too
BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not NUMBA, reason="no numba"))]


def recorded(record, task, model=None, backend="numpy"):
    """A pipeline record's model (``model``: an example's own entry) and tokenizers, loaded once
    their files are checked to be the ones the record was made with."""
    model = model or record["model"]
    case_dir = golden_root() / model["case"]
    for name, digest in model["sha256"].items():
        assert sha256(case_dir / name) == digest, f"{name} is not the model the record was made on"
    tokenizers = {}
    for name, digest in record["tokenizers"].items():
        assert sha256(FOLDER / name) == digest, f"{name} is not the tokenizer the record used"
        tokenizers[name] = reference.Tokenizer(str(FOLDER / name))
    profile = "tf" if "tensorflow" in record["provenance"] else None  # a TensorFlow pipeline's
    model = reference.from_pretrained(case_dir, task=task, backend=backend, profile=profile)
    return model, tokenizers


@pytest.fixture(scope="module", params=BACKENDS)
def qa(request):
    model, tokenizers = recorded(RECORD, "question-answering", backend=request.param)
    return model, tokenizers["tokenizer.json"]


@pytest.fixture(scope="module")
def qa_tf():
    model, tokenizers = recorded(RECORD_TF, "question-answering")
    return model, tokenizers["tokenizer.json"]


@pytest.mark.parametrize("example", RECORD["examples"], ids=lambda e: e["name"])
def test_answers_are_the_pipelines(qa, example):
    """The same spans, characters and text in the same order, scores within 1e-5 relative; the
    same number of answers. Where a window has fewer spans of nonzero score than top_k, upstream
    fills in spans of score 0 in the order numpy's argpartition leaves them, which differs between
    numpy versions (1.26 against 2.x here): those are compared by their score alone."""
    assert_answers(*qa, example)


@pytest.mark.parametrize("example", RECORD_TF["examples"], ids=lambda e: e["name"])
def test_answers_are_tensorflows_pipelines(qa_tf, example):
    """TensorFlow's pipeline on TFMPNetForQuestionAnswering (the tf golden model, profile tf):
    the same answers, held as above."""
    assert_answers(*qa_tf, example)


def assert_answers(model, tok, example):
    got = answer_question(model, tok, example["question"], example["context"], **example["options"])
    want = example["answers"]
    assert len(got) == len(want), (len(got), len(want))
    worst = 0.0
    for rank, (g, w) in enumerate(zip(got, want)):
        if w["score"] == 0.0:
            assert g["score"] == 0.0, (rank, g)
            continue
        assert (g["start"], g["end"], g["answer"]) == (w["start"], w["end"], w["answer"]), (
            rank,
            g,
            w,
        )
        error = abs(g["score"] - w["score"])
        worst = max(worst, error / max(abs(w["score"]), 1e-30))
        assert error <= SCORE_ATOL + SCORE_RTOL * abs(w["score"]), (rank, g["score"], w["score"])
    print(f"{example['name']}: {len(got)} answers, worst relative score error {worst:.2e}")


@pytest.mark.parametrize("example", RECORD["examples"], ids=lambda e: e["name"])
def test_the_context_is_cut_into_upstreams_windows(qa, example):
    _, tok = qa
    options = example["options"]
    size = options["max_seq_len"]
    stride = options.get("doc_stride", min(size // 2, 128))
    windows = context_windows(tok, example["question"], example["context"], size, stride)
    assert len(windows) == example["windows"]
    assert all(len(w.ids) <= size for w in windows)
    context_tokens = [[i for i, s in zip(w.ids, w.sequence_ids) if s == 1] for w in windows]
    for before, after in zip(context_tokens, context_tokens[1:]):  # neighbours share the stride
        assert before[-stride:] == after[:stride]


def test_a_long_context_finds_an_answer_past_the_first_window(qa):
    """The record's "windows of 24" example: its best answer lies beyond the first window's
    characters, so a reader that kept only the first window (truncation) could not return it."""
    model, tok = qa
    example = next(e for e in RECORD["examples"] if e["windows"] > 20)
    first = context_windows(tok, example["question"], example["context"], 24, 6)[0]
    first_end = max(end for (_, end), s in zip(first.offsets, first.sequence_ids) if s == 1)
    best = answer_question(
        model, tok, example["question"], example["context"], **example["options"]
    )
    assert best[0]["start"] >= first_end, (best[0], first_end)


def test_the_tokenizers_settings_are_left_as_they_were(qa, tmp_path):
    model, _ = qa
    tok = reference.Tokenizer(str(FOLDER / "tokenizer.json"))
    tok.backend.enable_truncation(10)
    tok.backend.enable_padding(pad_id=1, pad_token="<pad>", length=12)
    before = tok.backend.truncation, tok.backend.padding
    answer_question(model, tok, "w1 w2", " ".join(f"w{i}" for i in range(60)), max_seq_len=20)
    assert (tok.backend.truncation, tok.backend.padding) == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(question=""), "question is empty"),
        (dict(context=""), "context is empty"),
        (dict(question=3), "question must be a string"),
        (dict(top_k=0), "top_k must be an integer of at least 1"),
        (dict(max_answer_len=0), "max_answer_len must be an integer of at least 1"),
        (dict(doc_stride=30, max_seq_len=20), r"doc_stride \(30\) is larger than max_seq_len"),
        (dict(max_seq_len=0), "max_seq_len must be an integer of at least 1"),
        (dict(doc_stride=-1), "doc_stride must be an integer of at least 0"),
        (dict(question=" ".join(["w1"] * 30)), "holds the question's 30 and 4 special tokens"),
        (dict(max_seq_len=4, doc_stride=1), "which leaves 0 for the context"),
        (dict(max_seq_len=7, doc_stride=1), "which leaves 1 for the context"),  # tokenizers panics
        (dict(max_seq_len=10, doc_stride=4), "leaves 4 for the context: it must leave more than"),
        (
            dict(question="w1", context="w5", max_seq_len=6, doc_stride=5),
            "stride of 5 tokens is too",
        ),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(qa, kwargs, message):
    model, tok = qa
    call = dict(question="w1 w2", context=" ".join(f"w{i}" for i in range(40)), max_seq_len=24)
    call.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        answer_question(model, tok, **call)


def test_a_context_that_fits_needs_no_room_beyond_the_stride(qa):
    """Only a context cut into windows needs more room than the stride (upstream's tokenizer
    cuts nothing otherwise): a short one is answered whatever doc_stride is."""
    model, tok = qa
    got = answer_question(model, tok, "w1 w2", "w5 w6 w7", max_seq_len=10, doc_stride=8)
    assert got and got[0]["answer"]


def test_scores_are_probabilities_within_a_window(qa):
    """One window: the answers' scores are products of two softmax probabilities over the
    context tokens (and <s>), so all the spans of a window sum to at most 1."""
    model, tok = qa
    context = "w5 w6 w7s w8 w9"
    got = answer_question(model, tok, "w1 w2", context, top_k=100, max_seq_len=38)
    scores = np.array([a["score"] for a in got])
    assert np.all(scores >= 0) and scores.sum() <= 1 + 1e-6
    assert all(context[a["start"] : a["end"]] == a["answer"] for a in got)
