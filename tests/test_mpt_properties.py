"""Invariants of the MPT reference: cache equivalence, causality, padding, ALiBi."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from reference import mpt, mpt_model

FAST = settings(max_examples=25, deadline=None)
CONFIG = dict(model_type="mpt", d_model=24, n_heads=3, n_layers=2, vocab_size=50, max_seq_len=20)


def tiny_mpt(task="causal-lm", profile=None, seed=0, backend="numpy", **overrides):
    """A random MPT of CONFIG's shape; ``overrides``: config fields, and the load options
    (kv_cache, weight_storage), which go to build as its keyword arguments."""
    options = {k: overrides.pop(k) for k in mpt_model.LOAD_OPTIONS if k in overrides}
    config = {**CONFIG, **overrides}
    c = mpt_model.MPTConfig.from_dict(config, profile)
    rng = np.random.default_rng(seed)
    params = {
        k: (
            (
                rng.normal(0, 0.3 if len(s) > 1 else 0.1, s)
                + (1.0 if "norm" in k and k.endswith("weight") else 0)
            ).astype(np.float32)
        )
        for k, s in mpt_model.param_shapes(c, task, profile).items()
    }
    return reference.build(config, params, task=task, profile=profile, backend=backend, **options)


@st.composite
def prompts(draw, max_batch=3, max_len=14):
    B, S = draw(st.integers(1, max_batch)), draw(st.integers(2, max_len))
    ids = np.random.default_rng(draw(st.integers(0, 2**31 - 1))).integers(
        0, CONFIG["vocab_size"], (B, S)
    )
    return ids


@FAST
@given(prompts(), st.data())
def test_prefill_then_decode_steps_equal_the_full_forward(ids, data):
    """Prefill P tokens, then feed the rest in random chunks: every new position's logits equal the
    full run's."""
    model = tiny_mpt()
    B, S = ids.shape
    full = model(ids).logits
    P = data.draw(st.integers(1, S - 1))
    out = model(ids[:, :P], use_cache=True)
    assert_close(out.logits, full[:, :P], atol=2e-5, what="prefill")
    pos = P
    while pos < S:
        step = data.draw(st.integers(1, S - pos))
        out = model(ids[:, pos : pos + step], past_key_values=out.past_key_values, use_cache=True)
        assert_close(out.logits, full[:, pos : pos + step], atol=2e-5, what=f"chunk at {pos}")
        assert out.past_key_values[0][0].shape == (
            B,
            CONFIG["n_heads"],
            pos + step,
            CONFIG["d_model"] // CONFIG["n_heads"],
        )
        pos += step


@FAST
@given(prompts(max_batch=1), st.data())
def test_changing_a_token_changes_no_earlier_output(ids, data):
    """Causality: outputs before position j do not depend on the token at j."""
    model = tiny_mpt()
    j = data.draw(st.integers(1, ids.shape[1] - 1))
    changed = ids.copy()
    changed[0, j] = (ids[0, j] + 1) % CONFIG["vocab_size"]
    a, b = model(ids).logits, model(changed).logits
    assert_close(b[:, :j], a[:, :j], atol=1e-6, what="outputs before the change")
    assert np.abs(b[:, j:] - a[:, j:]).max() > 1e-6


@FAST
@given(prompts(), st.data())
def test_left_padding_leaves_real_positions_unchanged(ids, data):
    """Left pads are masked keys and ALiBi is relative, so real tokens see the same thing with or
    without pads."""
    model = tiny_mpt()
    B, W = ids.shape
    pads = [
        data.draw(st.integers(0, W - 1)) for _ in range(B)
    ]  # row b: pads[b] pads, then W - pads[b] tokens
    mask = (np.arange(W)[None, :] >= np.array(pads)[:, None]).astype(np.int64)
    padded = np.where(mask == 1, ids, 0)
    out = model(padded, attention_mask=mask).logits
    for b, n in enumerate(pads):
        alone = model(ids[b : b + 1, n:]).logits[0]
        assert_close(out[b, n:], alone, atol=2e-5, what=f"row {b} with {n} left pads")


def paper_slopes(n):
    """ALiBi paper (Press et al.): geometric slopes for the nearest lower power of two, then every
    other slope of the doubled sequence. An independent statement of the same slopes."""

    def power_of_two(m):
        return [2 ** (-8 * (k + 1) / m) for k in range(m)]

    lower = 2 ** math.floor(math.log2(n))
    return power_of_two(lower) + power_of_two(2 * lower)[0::2][: n - lower]


@pytest.mark.parametrize("n", range(1, 65))
def test_alibi_slopes_match_the_paper_for_every_head_count(n):
    assert_close(
        mpt.alibi_slopes(n),
        np.array(paper_slopes(n)),
        atol=0,
        rtol=1e-6,
        what=f"slopes for {n} heads",
    )


@pytest.mark.parametrize("n", [0, -3, 2.0, True])
def test_alibi_slopes_refuse_a_head_count_that_is_not_a_positive_integer(n):
    with pytest.raises(ValueError, match=f"n_heads must be a positive integer, got {n!r}"):
        mpt.alibi_slopes(n)


def test_alibi_slopes_spec_values():
    np.testing.assert_array_equal(
        mpt.alibi_slopes(6), np.float32([0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125])
    )
    np.testing.assert_array_equal(mpt.alibi_slopes(3), np.float32([2**-4, 2**-8, 2**-2]))


def test_decode_step_bias_varies_across_keys_and_is_zero_at_the_newest():
    """The key-only bias for one query over K keys is slope * (j - (K - 1)): distinct per key, 0 at
    the last."""
    bias = mpt.alibi_bias(mpt.alibi_slopes(4), 7)  # [H, 1, K]
    assert bias.shape == (4, 1, 7)
    assert np.all(bias[:, 0, -1] == 0) and np.all(np.diff(bias[:, 0, :], axis=-1) > 0)


def test_fully_masked_query_rows_attend_uniformly():
    """SPEC 2.4: a left-pad query row has every key masked, so its softmax is uniform over all K
    keys."""
    model = tiny_mpt()
    ids, mask = np.array([[0, 0, 5, 6, 7]]), np.array([[0, 0, 1, 1, 1]])
    att = model(ids, attention_mask=mask, output_attentions=True).attentions[0]
    assert_close(att[0, :, 0], np.full((3, 5), 0.2), atol=1e-7, what="pad query row")


def test_generation_streams_the_same_tokens_it_returns():
    model = tiny_mpt()
    ids = np.array([[3, 4, 5], [6, 7, 8]])
    seq = model.generate(ids, max_new_tokens=6)
    streamed = np.stack(list(model.stream(ids, max_new_tokens=6)), axis=1)
    np.testing.assert_array_equal(seq[:, 3:], streamed)
    full = model(seq[:, :-1]).logits.argmax(-1)[
        :, 2:
    ]  # greedy: each new token is the argmax of a full recompute
    np.testing.assert_array_equal(seq[:, 3:], full)


def test_sampling_is_reproducible_with_a_seed_and_respects_top_k():
    model = tiny_mpt()
    ids = np.array([[3, 4, 5]])
    a = model.generate(ids, max_new_tokens=8, do_sample=True, seed=3, top_k=5, temperature=0.8)
    b = model.generate(ids, max_new_tokens=8, do_sample=True, seed=3, top_k=5, temperature=0.8)
    np.testing.assert_array_equal(a, b)
    top1 = model.generate(ids, max_new_tokens=8, do_sample=True, seed=9, top_k=1)
    np.testing.assert_array_equal(top1, model.generate(ids, max_new_tokens=8))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_ids=np.zeros((1, 21), np.int64)), "over max_seq_len 20"),
        (dict(input_ids=np.array([[1, 50]])), "outside the vocabulary"),
        (
            dict(input_ids=np.array([[1, 2]]), attention_mask=np.ones((1, 3))),
            r"attention_mask .* must have shape \(1, 2\)",
        ),
        (
            dict(input_ids=np.array([[1, 2]]), past_key_values=((np.zeros((1, 3, 4, 8)),) * 2,)),
            "past_key_values must be 2 .key, value. pairs",
        ),
        (
            dict(
                input_ids=np.array([[1, 2]]), past_key_values=((np.zeros((1, 3, 4, 7)),) * 2,) * 2
            ),
            r"past_key_values\[0\]\[0\] \(key\) must have shape",
        ),
    ],
)
def test_bad_inputs_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_mpt()(**kwargs)


def test_generate_refuses_to_run_past_max_seq_len():
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        tiny_mpt().generate(np.array([[1, 2, 3]]), max_new_tokens=18)
