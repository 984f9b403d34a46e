"""reference.text_generation against transformers 4.37.2's text-generation pipeline, as recorded
by tools/golden/make_pipelines.py on the golden MPT causal-LM model, with a WordPiece whose decoder
leaves the spaces before marks (so transformers' clean-up is what takes them out)."""

from __future__ import annotations

import json

import pytest
from test_question_answering import BACKENDS, FOLDER, recorded

import reference
from reference.text_generation import generate_text
from reference.tokenizer import clean_up_tokenization

RECORD = json.loads((FOLDER / "text-generation.json").read_text())


@pytest.fixture(scope="module", params=BACKENDS)
def writer(request):
    model, tokenizers = recorded(RECORD, "causal-lm", backend=request.param)
    return model, tokenizers["tokenizer-marks.json"]


@pytest.mark.parametrize("example", RECORD["examples"], ids=lambda e: e["name"])
def test_texts_are_the_pipelines(writer, example):
    """The same texts: greedy, beams with two sequences, a repetition penalty, a stop sequence,
    the continuation alone, clean-up on and off, a prompt whose cleaned-up length is cut, a
    prefix (max_length counting it, the prompt cut at max_length)."""
    model, tok = writer
    got = generate_text(model, tok, example["prompt"], **example["options"])
    assert got == example["texts"]


def test_the_records_clean_up_takes_out_spaces_the_decoder_left():
    texts = {e["name"]: e["texts"][0]["generated_text"] for e in RECORD["examples"]}
    assert "w0's" in texts["greedy, 8 new tokens ('s cleaned up)"]
    assert "w0 's" in texts["no clean-up"]
    assert clean_up_tokenization("a , b . c ' d n't e 's") == "a, b. c'dn't e's"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt=3), "prompt must be a string"),
        (dict(prompt=""), "the prompt has no tokens"),
        (dict(stop_sequence=""), "stop_sequence '' has no tokens"),
        (dict(handle_long_generation="cut"), "handle_long_generation must be None or 'hole'"),
        (
            dict(handle_long_generation="hole", model_max_length=2, max_new_tokens=2),
            "2 new tokens leave no room for the prompt within 2 tokens",
        ),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(writer, kwargs, message):
    model, tok = writer
    call = dict(prompt="w1 w2", max_new_tokens=2)
    call.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=message):
        generate_text(model, tok, **call)


def test_hole_takes_the_tokenizers_limit(writer, tmp_path):
    """Without model_max_length, "hole" takes tokenizer_config.json's (transformers' 1e30 for none
    is no limit): the same text as the limit given outright."""
    model, tok = writer
    (tmp_path / "tokenizer.json").write_bytes((FOLDER / "tokenizer-marks.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 12}))
    limited = reference.Tokenizer(str(tmp_path))
    assert limited.model_max_length == 12 and tok.model_max_length is None
    prompt, kw = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10", dict(max_new_tokens=6)
    got = generate_text(model, limited, prompt, handle_long_generation="hole", **kw)
    assert got == generate_text(
        model, tok, prompt, handle_long_generation="hole", model_max_length=12, **kw
    )
    assert got != generate_text(model, tok, prompt, handle_long_generation="hole", **kw)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 1e30}))
    assert reference.Tokenizer(str(tmp_path)).model_max_length is None
