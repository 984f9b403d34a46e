"""The MPNet golden cases: model shapes, inputs and what each case is there to discriminate.

Framework-neutral (NumPy only); tools/golden/make_mpnet.py runs them through transformers on PyTorch
(profile pt) or TensorFlow (profile tf). Every case targets a behaviour from SPEC.md section 3, and
its inputs are chosen so that getting that behaviour wrong changes the outputs.
"""

from __future__ import annotations

import numpy as np

PAD = 1  # MPNet's hard-coded padding index

BASE_CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    relative_attention_num_buckets=32,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)


def tokens(rng, B, S, vocab=99):
    """Distinct-looking real tokens, never the pad id (so padding is decided by the mask we
    build)."""
    ids = rng.integers(3, vocab, size=(B, S))
    ids[:, 0] = 0  # <s>
    return ids.astype(np.int64)


def pad_right(ids, lengths):
    ids, mask = ids.copy(), np.zeros(ids.shape, np.int64)
    for b, n in enumerate(lengths):
        ids[b, n:] = PAD
        mask[b, :n] = 1
    return ids, mask


def pad_left(ids, lengths):
    ids, mask = ids.copy(), np.zeros(ids.shape, np.int64)
    S = ids.shape[1]
    for b, n in enumerate(lengths):
        ids[b, : S - n] = PAD
        mask[b, S - n :] = 1
    return ids, mask


def case(name, task, purpose, inputs, config=None, profiles=("pt", "tf"), seed=0, tolerance=None):
    """tolerance: per-profile overrides of the fp32 tolerance, each with its reason in the case."""
    return dict(
        name=name,
        task=task,
        purpose=purpose,
        inputs=inputs,
        config={**BASE_CONFIG, **(config or {})},
        profiles=profiles,
        seed=seed,
        tolerance=tolerance or {},
    )


# TF adds -10000 to every score of a fully masked row; in float32 numbers near 10000 are spaced
# 2^-10
# apart, so those scores (and their softmax) are only determined to about 1e-3 relative.
TF_QUANTIZED_ROW = {
    "tf": {
        "atol": 1e-4,
        "rtol": 2e-3,
        "reason": "fp32 scores near -10000 are quantised to 2^-10 (~1e-3 relative)",
    }
}


def cases():
    rng = np.random.default_rng(20240601)
    out = []
    ids, mask = pad_right(tokens(rng, 3, 12), [12, 7, 3])
    out.append(
        case(
            "base-right-padding",
            "base",
            "right padding: position ids skip pads; masked keys get 0 probability",
            dict(input_ids=ids, attention_mask=mask),
        )
    )
    ids, mask = pad_left(tokens(rng, 3, 12), [12, 7, 3])
    out.append(
        case(
            "base-left-padding",
            "base",
            "left padding: real tokens keep positions 2..; relative bias uses arange",
            dict(input_ids=ids, attention_mask=mask),
        )
    )
    ids = tokens(rng, 2, 9)
    mask = np.ones_like(ids)
    mask[1] = 0
    out.append(
        case(
            "base-fully-masked-row",
            "base",
            "a row of distinct non-pad ids whose mask is all zeros: pt -> uniform attention, tf ->"
            " as if unmasked",
            dict(input_ids=ids, attention_mask=mask),
            tolerance=TF_QUANTIZED_ROW,
        )
    )
    out.append(case("base-s1", "base", "a single token (S=1)", dict(input_ids=tokens(rng, 2, 1))))
    out.append(
        case(
            "base-max-length",
            "base",
            "S = max_position_embeddings - 2, the longest legal input",
            dict(input_ids=tokens(rng, 1, 38)),
        )
    )
    out.append(
        case(
            "base-too-long",
            "base",
            "S = max_position_embeddings - 1 needs position id 40: rejected",
            dict(input_ids=tokens(rng, 1, 39)),
        )
    )
    out.append(
        case(
            "base-bucket-edges",
            "base",
            "S=140 covers every bucket edge (7/8, 11/12, ..., 90/91, 127/128/129) on both sides",
            dict(input_ids=tokens(rng, 1, 140)),
            config=dict(max_position_embeddings=160),
        )
    )
    out.append(
        case(
            "base-buckets-64",
            "base",
            "relative_attention_num_buckets=64: pt still buckets with 32, tf with 64",
            dict(input_ids=tokens(rng, 2, 24)),
            config=dict(relative_attention_num_buckets=64),
        )
    )
    out.append(
        case(
            "base-buckets-16",
            "base",
            "relative_attention_num_buckets=16: pt indexes bucket >= 17 in a 16-row table (error),"
            " tf uses 16",
            dict(input_ids=tokens(rng, 2, 24)),
            config=dict(relative_attention_num_buckets=16),
        )
    )
    ids = tokens(rng, 3, 10)
    mask = np.ones((3, 10), np.float32)
    mask[0, 6:] = 0.5
    mask[1, :4], mask[1, 4:] = 0.5, 0.0
    mask[2, 5:] = 0.9999
    out.append(
        case(
            "base-nonbinary-mask",
            "base",
            "mask values 0.5 and 0.9999 scale the mask constant linearly (pt finfo.min, tf -10000)",
            dict(input_ids=ids, attention_mask=mask),
        )
    )
    ids = tokens(rng, 2, 8)
    mask3 = (rng.random((2, 8, 8)) > 0.4).astype(np.float32)
    mask3[:, np.arange(8), np.arange(8)] = 1.0
    out.append(
        case(
            "base-3d-mask",
            "base",
            "a per-query (B, S, S) mask: pt accepts it, tf rejects it",
            dict(input_ids=ids, attention_mask=mask3),
        )
    )
    out.append(
        case(
            "base-head-mask-h",
            "base",
            "head_mask (H,) with a zero and a fractional head, applied to every layer",
            dict(input_ids=tokens(rng, 2, 8), head_mask=np.array([1.0, 0.0, 0.5, 1.0], np.float32)),
        )
    )
    hm = np.array([[1.0, 0.25, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    out.append(
        case(
            "base-head-mask-lh",
            "base",
            "head_mask (L, H), with an all-zero layer (its context becomes 0)",
            dict(input_ids=tokens(rng, 2, 8), head_mask=hm),
        )
    )
    out.append(
        case(
            "base-gelu-new",
            "base",
            "hidden_act gelu_new (tanh approximation) in the feed-forward",
            dict(input_ids=tokens(rng, 2, 8)),
            config=dict(hidden_act="gelu_new"),
        )
    )
    emb = rng.normal(size=(2, 7, 32)).astype(np.float32)
    out.append(
        case(
            "base-inputs-embeds",
            "base",
            "inputs_embeds: positions are sequential 2..S+1 even under a mask",
            dict(inputs_embeds=emb, attention_mask=np.array([[1] * 7, [1] * 4 + [0] * 3])),
        )
    )
    ids = tokens(rng, 1, 10)
    ids[0, 4] = PAD
    out.append(
        case(
            "base-pad-id-unmasked",
            "base",
            "pad id inside the sequence without masking: it gets position 1 and later positions"
            " skip it",
            dict(input_ids=ids),
        )
    )
    out.append(
        case(
            "base-hub-config",
            "base",
            "hub-style config values: layer_norm_eps 1e-5, 514 positions",
            dict(input_ids=tokens(rng, 2, 11)),
            config=dict(layer_norm_eps=1e-5, max_position_embeddings=514),
        )
    )

    ids, mask = pad_right(tokens(rng, 2, 9), [9, 6])
    labels = np.where(rng.random((2, 9)) < 0.5, rng.integers(0, 99, (2, 9)), -100)
    labels[0, 1] = 5
    out.append(
        case(
            "masked-lm",
            "masked-lm",
            "tied decoder + bias; loss over labels != -100",
            dict(input_ids=ids, attention_mask=mask, labels=labels),
        )
    )
    out.append(
        case(
            "masked-lm-all-ignored",
            "masked-lm",
            "every label -100: the loss is NaN (pt 0-d, tf (1,))",
            dict(input_ids=tokens(rng, 2, 6), labels=np.full((2, 6), -100)),
        )
    )
    labels = np.full((2, 6), -100)
    labels[0, 2], labels[1, 3], labels[1, 4] = -1, 7, 11
    out.append(
        case(
            "masked-lm-negative-label",
            "masked-lm",
            "a -1 label: pt rejects it, tf counts it as class 0",
            dict(input_ids=tokens(rng, 2, 6), labels=labels),
        )
    )
    out.append(
        case(
            "masked-lm-gelu-new",
            "masked-lm",
            "gelu_new in the encoder; the LM head keeps exact erf GELU",
            dict(input_ids=tokens(rng, 2, 6)),
            config=dict(hidden_act="gelu_new"),
        )
    )

    ids, mask = pad_right(tokens(rng, 3, 8), [8, 5, 6])
    out.append(
        case(
            "sequence-classification-single-label",
            "sequence-classification",
            "integer labels with 3 classes: single-label cross-entropy on the <s> vector",
            dict(input_ids=ids, attention_mask=mask, labels=np.array([0, 2, 1])),
            config=dict(num_labels=3),
        )
    )
    out.append(
        case(
            "sequence-classification-regression",
            "sequence-classification",
            "num_labels=1: mean squared error",
            dict(input_ids=tokens(rng, 3, 8), labels=np.array([0.5, -1.0, 2.0], np.float32)),
            config=dict(num_labels=1),
        )
    )
    out.append(
        case(
            "sequence-classification-regression-b1",
            "sequence-classification",
            "num_labels=1 with B=1: logits and labels squeeze to 0-d",
            dict(input_ids=tokens(rng, 1, 8), labels=np.array([1.5], np.float32)),
            config=dict(num_labels=1),
        )
    )
    out.append(
        case(
            "sequence-classification-multi-label",
            "sequence-classification",
            "float labels of the logits' shape: pt uses BCE-with-logits, tf has no multi-label"
            " path",
            dict(input_ids=tokens(rng, 2, 8), labels=np.array([[1, 0, 1], [0, 0, 1]], np.float32)),
            config=dict(num_labels=3),
        )
    )
    ids = rng.integers(3, 99, size=(2, 3, 7))
    ids[..., 0] = 0
    mask = np.ones((2, 3, 7), np.int64)
    mask[1, 2, 4:] = 0
    ids[1, 2, 4:] = PAD
    out.append(
        case(
            "multiple-choice",
            "multiple-choice",
            "(B, N, S) flattened, pooled, one logit per choice",
            dict(input_ids=ids, attention_mask=mask, labels=np.array([2, 0])),
        )
    )
    labels = rng.integers(0, 5, (2, 9))
    labels[1, 6:] = -100
    out.append(
        case(
            "token-classification",
            "token-classification",
            "per-token logits; loss ignores -100",
            dict(input_ids=tokens(rng, 2, 9), labels=labels),
            config=dict(num_labels=5),
        )
    )
    labels = rng.integers(0, 5, (2, 9))
    labels[0, 3], labels[1, 7] = -1, -100
    out.append(
        case(
            "token-classification-negative-label",
            "token-classification",
            "a -1 label: pt rejects it, tf ignores every negative label",
            dict(input_ids=tokens(rng, 2, 9), labels=labels),
            config=dict(num_labels=5),
        )
    )
    labels = rng.integers(0, 5, (2, 9))
    labels[0, 2:4] = -100
    out.append(
        case(
            "token-classification-legacy-loss",
            "token-classification",
            "tf_legacy_loss=True: tf returns the (n,) per-token losses, pt ignores the flag",
            dict(input_ids=tokens(rng, 2, 9), labels=labels),
            config=dict(num_labels=5, tf_legacy_loss=True),
        )
    )
    out.append(
        case(
            "token-classification-all-ignored",
            "token-classification",
            "every label ignored: pt NaN, tf [nan]",
            dict(input_ids=tokens(rng, 2, 5), labels=np.full((2, 5), -100)),
            config=dict(num_labels=5),
        )
    )
    ids = tokens(rng, 3, 10)
    out.append(
        case(
            "question-answering",
            "question-answering",
            "span logits and loss with positions in range",
            dict(
                input_ids=ids,
                start_positions=np.array([1, 4, 9]),
                end_positions=np.array([3, 4, 9]),
            ),
        )
    )
    out.append(
        case(
            "question-answering-out-of-range",
            "question-answering",
            "positions = S and > S: pt clamps to S and ignores them, tf rejects them",
            dict(
                input_ids=ids,
                start_positions=np.array([10, 2, 50]),
                end_positions=np.array([3, 10, 50]),
            ),
        )
    )
    out.append(
        case(
            "question-answering-negative",
            "question-answering",
            "positions -100 and -1: pt clamps them to 0 and counts them, tf rejects them",
            dict(
                input_ids=ids,
                start_positions=np.array([-100, 2, 5]),
                end_positions=np.array([3, -1, 6]),
            ),
        )
    )
    out.append(
        case(
            "question-answering-all-ignored",
            "question-answering",
            "every position ignored (>= S): the pt loss is NaN",
            dict(
                input_ids=ids,
                start_positions=np.array([10, 11, 12]),
                end_positions=np.array([10, 10, 10]),
            ),
            profiles=("pt",),
        )
    )
    out.append(
        case(
            "question-answering-positions-b1",
            "question-answering",
            "positions shaped (B, 1) are squeezed",
            dict(
                input_ids=ids,
                start_positions=np.array([[2], [0], [7]]),
                end_positions=np.array([[5], [1], [8]]),
            ),
        )
    )
    return out
