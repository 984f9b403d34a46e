"""tools/diff_generate.py's draws run on the reference (transformers is not needed here: the
comparison itself runs in the golden environment)."""

import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import diff_generate  # noqa: E402


def test_every_drawn_call_runs_or_is_refused_with_a_value_error():
    model = reference.from_pretrained(diff_generate.CASE, task="causal-lm")
    inputs = load_file(str(diff_generate.CASE / "inputs.safetensors"))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rng, ran = random.Random(0), 0
    for _ in range(80):
        kw, rows = diff_generate.draw(rng, likely=[16, 26, 31, 52])
        if "past_split" in kw:  # a given cache of the first tokens, as main() makes it
            split = kw.pop("past_split")
            kw["past_key_values"] = diff_generate.given_past(
                model, ids[:rows], mask[:rows], split, kw
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = model.generate(ids[:rows], attention_mask=mask[:rows], **kw)
        except ValueError:
            continue
        ran += 1
        seq = getattr(out, "sequences", out)
        assert seq.shape[0] == rows * kw.get("num_return_sequences", 1), kw
        np.testing.assert_array_equal(
            seq[:, : ids.shape[1]], np.repeat(ids[:rows], len(seq) // rows, 0)
        )
    assert ran >= 60, f"only {ran} of 80 drawn calls ran"


def test_sampling_from_nan_scores_is_refused():
    model = reference.from_pretrained(diff_generate.CASE, task="causal-lm")
    ids = load_file(str(diff_generate.CASE / "inputs.safetensors"))["input_ids"]
    with pytest.raises(ValueError, match="sampling from scores that are NaN"):
        model.generate(  # the decay lifts an eos that min_new_tokens holds at -inf: -inf + inf
            ids,
            do_sample=True,
            max_new_tokens=4,
            eos_token_id=16,
            min_new_tokens=3,
            exponential_decay_length_penalty=(0, 1.5),
            seed=0,
        )
