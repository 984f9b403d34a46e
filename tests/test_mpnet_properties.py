"""Invariants of the MPNet reference, checked on hypothesis-drawn inputs."""

from __future__ import annotations

import numpy as np
from conftest import TINY, assert_close, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

PAD = 1
FAST = settings(max_examples=25, deadline=None)


@st.composite
def batches(draw, max_batch=3, max_len=12):
    """Real-token rows (ids never the pad id) with their lengths, right-aligned into a (B, S)
    grid."""
    B = draw(st.integers(1, max_batch))
    S = draw(st.integers(1, max_len))
    lengths = [draw(st.integers(1, S)) for _ in range(B)]
    seed = draw(st.integers(0, 2**31 - 1))
    ids = np.random.default_rng(seed).integers(2, TINY["vocab_size"], size=(B, S))
    return ids, lengths


def pad(ids, lengths, side):
    B, S = ids.shape
    out, mask = np.full((B, S), PAD), np.zeros((B, S), np.int64)
    for b, n in enumerate(lengths):
        sl = slice(0, n) if side == "right" else slice(S - n, S)
        out[b, sl], mask[b, sl] = ids[b, :n], 1
    return out, mask


def real_rows(hidden, lengths, side):
    S = hidden.shape[1]
    return [hidden[b, :n] if side == "right" else hidden[b, S - n :] for b, n in enumerate(lengths)]


@FAST
@given(batches(), st.sampled_from(["pt", "tf"]))
def test_left_and_right_padding_give_the_same_outputs_at_real_tokens(batch, profile):
    """Position ids skip pads and the relative bias depends only on distance, so padding side is
    invisible."""
    ids, lengths = batch
    model = tiny_model(profile=profile)
    right = model(
        *pad(ids, lengths, "right")[:1], attention_mask=pad(ids, lengths, "right")[1]
    ).last_hidden_state
    left = model(
        *pad(ids, lengths, "left")[:1], attention_mask=pad(ids, lengths, "left")[1]
    ).last_hidden_state
    for r, l in zip(real_rows(right, lengths, "right"), real_rows(left, lengths, "left")):
        assert_close(l, r, atol=2e-5, what="left vs right padding")


@FAST
@given(batches(), st.sampled_from(["pt", "tf"]))
def test_each_row_of_a_batch_equals_that_row_alone(batch, profile):
    """Rows of a batch do not interact: a padded batch row equals the unpadded sequence run
    alone."""
    ids, lengths = batch
    model = tiny_model(profile=profile)
    padded, mask = pad(ids, lengths, "right")
    together = model(padded, attention_mask=mask).last_hidden_state
    for b, n in enumerate(lengths):
        alone = model(ids[b : b + 1, :n]).last_hidden_state[0]
        assert_close(together[b, :n], alone, atol=2e-5, what=f"row {b}")


@FAST
@given(batches(), st.integers(0, 2**31 - 1))
def test_masked_trailing_tokens_do_not_change_real_outputs(batch, seed):
    """Changing the ids of masked positions after the real tokens leaves the real positions' outputs
    unchanged."""
    ids, lengths = batch
    model = tiny_model()
    padded, mask = pad(ids, lengths, "right")
    noise = np.random.default_rng(seed).integers(0, TINY["vocab_size"], size=padded.shape)
    scrambled = np.where(mask == 1, padded, noise)
    a = model(padded, attention_mask=mask).last_hidden_state
    b = model(scrambled, attention_mask=mask).last_hidden_state
    for row, n in enumerate(lengths):
        assert_close(b[row, :n], a[row, :n], atol=2e-5, what=f"row {row}")


@FAST
@given(
    batches(),
    st.sampled_from(["base", "masked-lm", "token-classification", "question-answering"]),
    st.sampled_from(["pt", "tf"]),
)
def test_hidden_states_and_attentions_bookkeeping(batch, task, profile):
    """L+1 hidden states (embeddings first), L attention maps of (B, H, S, S) whose rows sum to
    1."""
    ids, _ = batch
    model = tiny_model(task=task, profile=profile, num_labels=2)
    out = model(ids, output_hidden_states=True, output_attentions=True)
    L, H, C = TINY["num_hidden_layers"], TINY["num_attention_heads"], TINY["hidden_size"]
    B, S = ids.shape
    assert len(out.hidden_states) == L + 1 and len(out.attentions) == L
    assert all(h.shape == (B, S, C) for h in out.hidden_states)
    assert all(a.shape == (B, H, S, S) for a in out.attentions)
    for a in out.attentions:
        assert_close(a.sum(-1), np.ones((B, H, S)), atol=1e-5, what="attention row sums")
    if task == "base":
        assert_close(out.hidden_states[-1], out.last_hidden_state, atol=0, what="last hidden state")
    plain = model(ids)
    assert plain.hidden_states is None and plain.attentions is None


@FAST
@given(batches(max_batch=2))
def test_inputs_embeds_equal_input_ids_when_positions_are_sequential(batch):
    """Looking the embeddings up ourselves gives the same result when no pad id is present."""
    ids, _ = batch
    model = tiny_model()
    emb = model.state_dict()["embeddings.word_embeddings.weight"][ids]
    assert_close(
        model(inputs_embeds=emb).last_hidden_state,
        model(ids).last_hidden_state,
        atol=1e-6,
        what="inputs_embeds vs input_ids",
    )


def test_zero_head_mask_zeroes_that_heads_attention():
    """A head masked with 0 contributes no context: its returned attention is all zero."""
    model = tiny_model()
    ids = np.arange(3, 11)[None]
    out = model(ids, head_mask=np.array([1.0, 0.0, 1.0, 1.0]), output_attentions=True)
    for a in out.attentions:
        assert np.all(a[:, 1] == 0) and np.all(a[:, 0] > 0)


def test_pt_fully_masked_row_is_uniform_and_tf_row_is_unmasked():
    """SPEC 1.5: finfo.min makes every score equal (uniform); -10000 cancels in the softmax."""
    ids = np.arange(3, 10)[None]
    zeros = np.zeros_like(ids)
    pt = tiny_model(profile="pt")(ids, attention_mask=zeros, output_attentions=True).attentions[0]
    assert_close(pt, np.full(pt.shape, 1 / ids.shape[1]), atol=1e-7, what="pt uniform row")
    tf_model = tiny_model(profile="tf")
    masked = tf_model(ids, attention_mask=zeros, output_attentions=True).attentions[0]
    unmasked = tf_model(ids, output_attentions=True).attentions[0]
    assert_close(masked, unmasked, atol=2e-3, what="tf masked vs unmasked")


def test_dropout_is_seeded_and_only_active_in_training():
    model = tiny_model(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    ids = np.arange(3, 12)[None]
    eval_out = model(ids).last_hidden_state
    a = model(ids, training=True, rng=7).last_hidden_state
    b = model(ids, training=True, rng=np.random.default_rng(7)).last_hidden_state
    c = model(ids, training=True, rng=8).last_hidden_state
    assert_close(a, b, atol=0, what="same seed")
    assert np.abs(a - c).max() > 1e-3 and np.abs(a - eval_out).max() > 1e-3
    assert_close(model(ids).last_hidden_state, eval_out, atol=0, what="eval is deterministic")


def test_problem_type_settles_on_first_loss_and_sticks():
    """SPEC 1.9: the first call with labels fixes problem_type; float labels later still use
    single-label CE."""
    model = tiny_model(task="sequence-classification")
    ids = np.arange(3, 9)[None].repeat(2, 0)
    model(ids, labels=np.array([0, 2]))
    assert model.problem_type == "single_label_classification"
    with np.testing.assert_raises(TypeError):
        model(ids, labels=np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_bucketing_refuses_fewer_than_four_buckets_and_the_negative_buckets_of_too_many():
    """Below 4 buckets max_exact = num_buckets // 4 is 0 and upstream divides by it. From 4 x
    max_distance (512) on, max_exact reaches max_distance and log(max_distance / max_exact) is 0
    or negative: at 512 the distance 128 gives 0 / 0 (NaN), and at 1024 (max_exact 256) the bucket
    256 + floor(256 log(n / 256) / log(1 / 2)) is negative exactly when n > 512. Upstream's table
    lookup fails on those; a NumPy lookup would wrap a negative index round, so they are refused."""
    import pytest

    from reference.mpnet import relative_position_bias, relative_position_bucket

    for n in (0, 1, 3):
        with pytest.raises(ValueError, match="num_buckets must be at least 4"):
            relative_position_bucket(np.arange(-3, 4), n)
    with pytest.raises(TypeError, match="num_buckets must be an integer"):
        relative_position_bucket(np.arange(3), 32.0)
    for num_buckets, longest in ((512, 128), (1024, 513)):
        table = np.zeros((num_buckets, 2), np.float32)
        assert relative_position_bias(table, longest, num_buckets).shape == (2, longest, longest)
        with pytest.raises(ValueError, match=f"at distance {longest} and beyond.* most {longest}"):
            relative_position_bias(table, longest + 1, num_buckets)
