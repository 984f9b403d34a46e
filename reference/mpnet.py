"""MPNet in NumPy: the math of the forward pass, top-down, as SPEC.md section 1 writes it.

Pure functions over plain arrays: embeddings -> relative position bias -> attention -> layer ->
encoder -> the model function ``mpnet`` -> the five heads. The calling convention (config, argument
checks, Keras-style inputs, the output classes, checkpoint rules) is in mpnet_model.py.

How MPNet differs from the textbook BERT encoder:
* no token-type embeddings; position ids skip padding tokens (id 1) and start at 2;
* a T5-style relative position bias, computed once per forward and added to every layer's scores;
* the masked-LM decoder is tied to the word embeddings and always uses the exact erf GELU.

Axis letters: B batch, S sequence, H heads, D head size, C hidden size, V vocabulary, L layers, NB
buckets.

``params`` is the checkpoint nested by its dots (reference/checkpoint.py, ``nest``): a layer is
``params["encoder"]["layer"][i]`` and holds ``attention.attn.{q,k,v,o}``, ``attention.LayerNorm``,
``intermediate.dense``, ``output.dense`` and ``output.LayerNorm``, each a dict of ``weight`` and
``bias``; a Linear's weight is [out, in], as stored.
"""

from __future__ import annotations

import math

import numpy as np

from .ops import (
    ACTIVATIONS,
    dropout,
    gelu,
    layer_norm,
    linear,
)
from .ops import (
    attention as scaled_dot_product_attention,
)

PADDING_IDX = (
    1  # the embeddings hard-code padding_idx=1 whatever config.pad_token_id says (SPEC 1.1)
)
MAX_DISTANCE = (
    128  # relative distances at or beyond this share the last log-spaced bucket (SPEC 1.4)
)


# ------------------------------------------------------------------------ positions and buckets


def position_ids_from_input_ids(input_ids):  # [B, S] -> [B, S]
    """Real tokens get 2, 3, ... counting only non-pad tokens; pad tokens (id 1) get 1 (SPEC
    1.3)."""
    real = (input_ids != PADDING_IDX).astype(np.int64)
    return np.cumsum(real, axis=1) * real + PADDING_IDX


def sequential_position_ids(seq_len):  # S -> [1, S]
    """With inputs_embeds padding cannot be seen, so positions are simply 2 .. S+1."""
    return np.arange(PADDING_IDX + 1, seq_len + PADDING_IDX + 1, dtype=np.int64)[None, :]


def relative_position_bucket(
    relative_position, num_buckets=32, max_distance=MAX_DISTANCE
):  # [...] -> [...]
    """T5 bucketing of key-minus-query distances (SPEC 1.4).

    Half the buckets hold keys to the left of (or at) the query, half those to the right. Within a
    half, the first num_buckets/4 distances get a bucket each; larger distances share log-spaced
    buckets up to max_distance, beyond which everything lands in the last one.
    """
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, (int, np.integer)):
        raise TypeError(f"num_buckets must be an integer, got {type(num_buckets).__name__}")
    if num_buckets < 4:  # upstream divides by max_exact = num_buckets // 4 and raises
        raise ValueError(f"num_buckets must be at least 4 (num_buckets // 4 > 0): {num_buckets}")
    n = -np.asarray(relative_position, dtype=np.int64)  # query minus key
    half = num_buckets // 2
    bucket = np.where(n < 0, half, 0)
    n = np.abs(n)
    max_exact = half // 2
    # log(0) occurs only where the exact branch is taken; where max_exact reaches max_distance
    # (num_buckets >= 4 * max_distance) the ratio is NaN or negative and so is the bucket (NaN as
    # INT64_MIN), which bucket_matrix refuses, as upstream's table lookup fails on it
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(n / max_exact) / math.log(max_distance / max_exact)
        large = max_exact + np.floor(log_ratio * (half - max_exact))
        large = np.minimum(np.where(n < max_exact, 0, large), half - 1)
        large = np.where(np.isnan(large), np.iinfo(np.int64).min, large).astype(np.int64)
    return bucket + np.where(n < max_exact, n, large)


def bucket_matrix(seq_len, num_buckets):  # S -> [S, S] int64
    """buckets[i, j] = bucket(j - i) for query i and key j of a sequence of seq_len tokens; a
    negative bucket (see relative_position_bucket) is a ValueError."""
    positions = np.arange(seq_len)
    buckets = relative_position_bucket(positions[None, :] - positions[:, None], num_buckets)
    if buckets.size and buckets.min() < 0:  # num_buckets of 4 * max_distance or more
        shortest = int(np.abs(positions[None, :] - positions[:, None])[buckets < 0].min())
        raise ValueError(
            f"relative bucket {buckets.min()} (negative) at distance {shortest} and beyond: with"
            f" {num_buckets} buckets the exact range (num_buckets // 4 = {num_buckets // 4}) is not"
            f" below the max distance {MAX_DISTANCE}, and upstream's log-spaced buckets come out"
            " negative or undefined (its lookup fails on them too); use"
            f" config.relative_attention_num_buckets below {4 * MAX_DISTANCE}, or sequences of at"
            f" most {shortest} tokens"
        )
    return buckets


def relative_position_bias(table, seq_len, num_buckets):  # [NB, H], S -> [H, S, S]
    """bias[h, i, j] = table[bucket(j - i), h]; distances are arange indices, never position_ids."""
    buckets = bucket_matrix(seq_len, num_buckets)  # [S, S]
    if buckets.size and buckets.max() >= table.shape[0]:
        raise ValueError(
            f"relative bucket {buckets.max()} needs a bias table of at least {buckets.max() + 1}"
            f" rows, but encoder.relative_attention_bias has {table.shape[0]}"
            f" (config.relative_attention_num_buckets is smaller than the {num_buckets} buckets"
            " this profile uses)"
        )
    return table[buckets].transpose(2, 0, 1)  # [S, S, H] -> [H, S, S]


def mask_to_bias(attention_mask, mask_value):  # [B, S] or [B, S, S] -> [B, 1, 1|S, S]
    """(1 - mask) * mask_value: 0 where attended, the profile's large negative where hidden (SPEC
    1.5)."""
    m = (
        attention_mask[:, None, None, :]
        if attention_mask.ndim == 2
        else attention_mask[:, None, :, :]
    )
    return (1 - m) * m.dtype.type(mask_value)


# --------------------------------------------------------------------------------------- encoder


def embed(p, input_ids, inputs_embeds, position_ids, eps, drop, rng):  # -> [B, S, C]
    """layer_norm(word embedding + position embedding), then dropout (SPEC 1.3)."""
    words = (
        p["word_embeddings"]["weight"][input_ids] if inputs_embeds is None else inputs_embeds
    )  # [B, S, C]
    positions = p["position_embeddings"]["weight"][position_ids]  # [B|1, S, C]
    return dropout(layer_norm(words + positions, **p["LayerNorm"], eps=eps), drop, rng)


def split_heads(x, H):  # [B, S, C] -> [B, H, S, D]
    B, S, C = x.shape
    return x.reshape(B, S, H, C // H).transpose(0, 2, 1, 3)


def merge_heads(x):  # [B, H, S, D] -> [B, S, C]
    B, H, S, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, S, H * D)


def attention(
    p, x, position_bias, mask_bias, H, head_mask, drop, rng
):  # [B, S, C] -> [B, S, C], [B, H, S, S]
    """Self-attention with the relative bias and the additive mask (SPEC 1.6 steps 1-5).

    scores = q k^T / sqrt(D) + position_bias (not scaled) + mask_bias; softmax; dropout; head mask.
    p holds this layer's ``attention.attn`` weights; position_bias [H, S, S]; mask_bias [B, 1, 1|S,
    S].
    """
    q, k, v = (split_heads(linear(x, **p[name]), H) for name in ("q", "k", "v"))  # 3 x [B, H, S, D]
    context, probs = scaled_dot_product_attention(
        q,
        k,
        v,
        1 / math.sqrt(q.shape[-1]),
        bias=position_bias,
        mask_add=mask_bias,
        dropout_p=drop,
        rng=rng,
        head_mask=head_mask,
    )
    return linear(merge_heads(context), **p["o"]), probs  # [B, H, S, D] -> [B, S, C]


def layer(
    p, config, x, position_bias, mask_bias, head_mask, rng
):  # [B, S, C] -> [B, S, C], [B, H, S, S]
    """Post-LN: x = LN(x + attention(x)); x = LN(x + W2 act(W1 x)) (SPEC 1.6)."""
    eps, drop, act = (
        config.layer_norm_eps,
        config.hidden_dropout_prob,
        ACTIVATIONS[config.hidden_act],
    )
    a, probs = attention(
        p["attention"]["attn"],
        x,
        position_bias,
        mask_bias,
        config.num_attention_heads,
        head_mask,
        config.attention_probs_dropout_prob,
        rng,
    )
    x = layer_norm(x + dropout(a, drop, rng), **p["attention"]["LayerNorm"], eps=eps)
    f = linear(
        act(linear(x, **p["intermediate"]["dense"])), **p["output"]["dense"]
    )  # [B, S, 4C] -> [B, S, C]
    x = layer_norm(x + dropout(f, drop, rng), **p["output"]["LayerNorm"], eps=eps)
    return x, probs


def encoder(
    layers, config, x, position_bias, mask_bias, head_masks, rng
):  # -> x, L+1 hidden states, L maps
    """The L layers in turn. head_masks: one [H] or None per layer. Returns the last hidden state,
    every hidden state (the embeddings first) and every layer's attention probabilities."""
    hidden_states, attentions = [x], []
    for p, head_mask in zip(layers, head_masks):
        x, probs = layer(p, config, x, position_bias, mask_bias, head_mask, rng)
        hidden_states.append(x)
        attentions.append(probs)
    return x, hidden_states, attentions


def pool(p, x):  # [B, S, C] -> [B, C]
    """tanh(dense(x[:, 0])): the <s> vector through a dense layer (SPEC 1.7)."""
    return np.tanh(linear(x[:, 0], **p["dense"]))


def mpnet(
    params,
    config,
    input_ids,
    inputs_embeds,
    position_ids,
    mask_bias,
    head_masks,
    num_buckets,
    rng=None,
    stack=None,
):  # -> last hidden state [B, S, C], hidden states, attentions
    """The whole encoder: embeddings, the relative bias shared by every layer, the L layers (SPEC
    1.3-1.6).

    ``stack`` runs the L layers (``encoder`` over this model's layers when None): a fast backend
    passes its own, which must equal ``encoder`` (tests/test_numba_kernels.py, tests/cuda)."""
    x = embed(
        params["embeddings"],
        input_ids,
        inputs_embeds,
        position_ids,
        config.layer_norm_eps,
        config.hidden_dropout_prob,
        rng,
    )  # [B, S, C]
    bias = relative_position_bias(
        params["encoder"]["relative_attention_bias"]["weight"], x.shape[1], num_buckets
    )  # [H, S, S]
    if stack is None:
        return encoder(params["encoder"]["layer"], config, x, bias, mask_bias, head_masks, rng)
    return stack(x, bias, mask_bias, head_masks, rng)


# ------------------------------------------------------------------------------------------ heads


def masked_lm_head(p, word_embeddings, x, eps):  # [B, S, C] -> [B, S, V]
    """dense -> erf GELU (whatever hidden_act says) -> LayerNorm -> the tied decoder + bias (SPEC
    1.8)."""
    t = layer_norm(gelu(linear(x, **p["dense"])), **p["layer_norm"], eps=eps)
    return linear(t, word_embeddings, p["bias"])


def sequence_classification_head(p, x, drop, rng):  # [B, S, C] -> [B, num_labels]
    """<s> vector -> dropout -> dense -> tanh -> dropout -> out_proj (no pooler; SPEC 1.8)."""
    t = dropout(np.tanh(linear(dropout(x[:, 0], drop, rng), **p["dense"])), drop, rng)
    return linear(t, **p["out_proj"])


def multiple_choice_head(p, pooled, drop, rng, choices):  # [B*N, C] -> [B, N]
    """pooled -> dropout -> Linear(C, 1), one score per (example, choice) row (SPEC 1.8)."""
    return linear(dropout(pooled, drop, rng), **p).reshape(-1, choices)


def token_classification_head(p, x, drop, rng):  # [B, S, C] -> [B, S, num_labels]
    """dropout -> Linear(C, num_labels) at every position (SPEC 1.8)."""
    return linear(dropout(x, drop, rng), **p)


def question_answering_head(p, x):  # [B, S, C] -> start [B, S], end [B, S]
    """Linear(C, 2) split into start and end logits (SPEC 1.8)."""
    logits = linear(x, **p)  # [B, S, 2]
    return logits[..., 0], logits[..., 1]
