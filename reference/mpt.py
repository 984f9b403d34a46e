"""MPT in NumPy: the math of the forward pass, top-down, as SPEC.md section 2 writes it.

Pure functions over plain arrays: ALiBi -> masks -> attention over the cache -> pre-norm block ->
decoder -> the model function ``transformer`` -> the heads. Numbers follow transformers 4.37.2
(profile ``hf``) and MosaicML llm-foundry (profile ``mosaic``); ``feats`` (mpt_model.Features) is
what the profile made of the config. The calling convention (config, argument checks, output
classes, checkpoint rules) is in mpt_model.py.

How MPT differs from the textbook GPT decoder:
* no position embeddings by default: ALiBi adds ``slope_h * (j - (K - 1))`` to the score of key j.
  This key-only form differs from the paper's ``-slope_h * (i - j)`` by a per-row constant, which
  the softmax cancels (SPEC 2.2);
* one fused Wqkv projection split into contiguous thirds; masked scores are *replaced* by the most
  negative float32 (not added to), so a fully masked row attends uniformly;
* LayerNorms without bias and bias-free Linears (hf); the LM head is tied to the token embeddings.

Axis letters: B batch, S new tokens, P past length, K = P + S keys, H heads, D head size, C d_model,
V vocabulary, L layers.

The KV cache is a value: ``past`` is a list of L (key, value) pairs, each [B, H, P, D] (the HF
layout; keys are not transposed), or of L Nones; every layer returns its extended pair.

``params`` is the checkpoint nested by its dots (reference/checkpoint.py, ``nest``): a block is
``params["blocks"][i]`` with ``norm_1``, ``attn.Wqkv``, ``attn.out_proj`` (and ``attn.q_ln`` /
``attn.k_ln``), ``norm_2``, ``ffn.up_proj`` and ``ffn.down_proj``; a Linear's weight is [out, in]
and its ``bias`` is absent where the profile has none.
"""

from __future__ import annotations

import math

import numpy as np

from .inputs import as_float, as_ids
from .ops import attention as scaled_dot_product_attention
from .ops import dropout, gelu, layer_norm, linear
from .precision import round_to_bf16

HF_ALIBI_BIAS_MAX = 8  # HF 4.37.2 never passes config.alibi_bias_max (SPEC 2.1)


# ------------------------------------------------------------------------------------------ ALiBi


def alibi_slopes(n_heads, alibi_bias_max=HF_ALIBI_BIAS_MAX):  # H -> [H] float32
    """Per-head slopes 2^(-k * max / H') for k = 1..H', H' the next power of two (SPEC 2.2).

    When H is not a power of two, the H' slopes are reordered as the odd-indexed ones then the
    even-indexed ones and cut to H, so the first H slopes interleave two geometric sequences.
    """
    if isinstance(n_heads, bool) or not isinstance(n_heads, (int, np.integer)) or n_heads < 1:
        raise ValueError(f"n_heads must be a positive integer, got {n_heads!r}")
    padded = 2 ** math.ceil(math.log2(n_heads))
    exponents = np.arange(1, padded + 1, dtype=np.float32) * np.float32(alibi_bias_max / padded)
    slopes = np.float32(1.0) / np.power(np.float32(2.0), exponents)
    if padded != n_heads:
        slopes = np.concatenate([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes.astype(np.float32)


def alibi_bias(slopes, key_len):  # [H], K -> [H, 1, K]
    """Key-only ALiBi: bias[h, 0, j] = slope_h * (j - (K - 1)); 0 at the newest key, broadcast over
    queries."""
    distance = np.arange(1 - key_len, 1, dtype=np.int32).astype(np.float32)  # [K]
    return slopes[:, None, None] * distance[None, None, :]


def symmetric_alibi_bias(slopes, S, P):  # [H], S, P -> [H, S, K]
    """Prefix-LM ALiBi (llm-foundry "full" bias): -slope_h * |i - j| for query position i =
    P..P+S-1. Queries may look right inside the prefix, so the key-only shortcut no longer
    applies."""
    distance = -np.abs((P + np.arange(S))[:, None] - np.arange(P + S)[None, :]).astype(
        np.float32
    )  # [S, K]
    return slopes[:, None, None] * distance[None]


def decoder_bias(config, feats, S, P, dtype):  # -> [H, 1|S, K] or None
    """The ALiBi bias of S new tokens after P cached ones: key-only, or symmetric under
    prefix_lm."""
    if not feats.alibi:
        return None
    slopes = alibi_slopes(config.n_heads, feats.alibi_bias_max)
    return (
        symmetric_alibi_bias(slopes, S, P) if feats.prefix_lm else alibi_bias(slopes, P + S)
    ).astype(dtype)


def softmax_scale(config) -> float:
    """attn_config.softmax_scale, else 1 / sqrt(head size) (SPEC 2.3)."""
    return (
        config.softmax_scale
        if config.softmax_scale is not None
        else 1 / math.sqrt(config.head_size)
    )


# ------------------------------------------------------------------------------------------ masks


def causal_mask(S, P):  # -> [S, K] bool, True = masked
    """Query i (the (P+i)-th token) may see key j iff j <= P + i; past keys are always visible."""
    return np.arange(P + S)[None, :] > (P + np.arange(S))[:, None]


def key_is_masked(mask, rule):  # [...] -> [...] bool
    """hf: any value other than exactly 1 masks the key (SPEC 2.4); mosaic: only 0 does (bool
    cast)."""
    return mask != 1 if rule == "exactly-one" else mask == 0


def decoder_masks(feats, attention_mask, sequence_id, prefix_mask, B, S, P, dtype, profile="this"):
    """masked [B, 1, S, K] bool (True = masked) and the 2D key mask [B, K] (True = real key) or
    None.

    What is hidden: keys after the query (causal), keys the attention mask hides (under the feature
    set's rule), keys of another sequence (sequence_id); prefix keys are visible to every query. The
    inputs are checked here (dtype sets the float type masks are read in; profile names the profile
    in errors): every caller, the model and the decode sessions, goes through this one function."""
    K = P + S
    causal = causal_mask(S, P) if S > 1 else np.zeros((S, K), dtype=bool)
    if feats.prefix_lm:  # a query may also see every prefix key, even to its right
        if prefix_mask is None:
            raise ValueError(
                "prefix_mask [B, past + new] is required when attn_config.prefix_lm is true"
            )
        prefix = as_float(prefix_mask, "prefix_mask", (B, K), dtype) != 0
        causal = causal_mask(S, P)[None] & ~prefix[:, None, :]  # [B, S, K]
    elif prefix_mask is not None:
        raise ValueError("prefix_mask needs the mosaic profile with attn_config.prefix_lm=True")
    key_mask = None
    if attention_mask is None:
        masked = np.broadcast_to(causal.reshape(-1, 1, S, K), (B, 1, S, K))
    else:
        m = np.asarray(attention_mask)
        if m.ndim == 4:
            if not feats.accepts_4d_mask:
                raise ValueError(
                    f"the {profile} profile accepts only a 2D attention_mask ({B}, {K})"
                )
            masked = key_is_masked(
                as_float(m, "attention_mask", (B, 1, S, K), dtype), feats.mask_rule
            )
        else:  # a length-1 mask with a single new token broadcasts over every key (SPEC 2.4)
            width = 1 if (m.ndim == 2 and m.shape[1] == 1 and S == 1) else K
            m = as_float(m, "attention_mask (covering past and new tokens)", (B, width), dtype)
            key_masked = key_is_masked(m, feats.mask_rule)  # [B, K or 1]
            key_mask = np.broadcast_to(~key_masked, (B, K))
            masked = causal.reshape(-1, 1, S, K) | key_masked[:, None, None, :]
    if sequence_id is not None:
        if not feats.sequence_id:
            raise ValueError(
                "sequence_id needs the mosaic profile with attn_config.attn_uses_sequence_id=True"
            )
        if P:
            raise ValueError("sequence_id cannot be combined with past_key_values")
        seq = as_ids(sequence_id, "sequence_id", np.iinfo(np.int64).max, ndim=2)
        if seq.shape != (B, S):
            raise ValueError(f"sequence_id must have shape ({B}, {S}), got {seq.shape}")
        masked = masked | (seq[:, None, :, None] != seq[:, None, None, :])
    return masked, key_mask


# ------------------------------------------------------------------------------------- the blocks


def norm(x, p, eps):  # [..., C] -> [..., C]
    """LayerNorm with this profile's weights: a bias only where the checkpoint has one."""
    return layer_norm(x, p["weight"], p.get("bias"), eps)


def attention(
    p, config, feats, x, past, bias, masked, rng
):  # [B, S, C] -> [B, S, C], [B, H, S, K], (k, v)
    """Fused-QKV self-attention over the cache (SPEC 2.3).

    scores = q k^T * scale + ALiBi; masked scores replaced by finfo(float32).min (not added);
    softmax. p: this block's ``attn`` weights; past: (key, value) [B, H, P, D] or None; bias [H,
    1|S, K] or None; masked [B, 1, S, K] bool (True = masked). Returns the present (key, value) [B,
    H, K, D]. With feats.kv_cache "bf16" the new keys and values are rounded to bf16 (to nearest,
    ties to even) before anything reads them, this token's own included, as a 16-bit cache holds
    them, and so is ``past``: the model's own presents are on the bf16 grid already, and a cache
    given from elsewhere (a float32 model's) is rounded as it enters.
    """
    B, S, C = x.shape
    H, D = config.n_heads, config.head_size
    qkv = linear(x, **p["Wqkv"])  # [B, S, 3C]
    if feats.clip_qkv is not None:
        qkv = np.clip(qkv, -feats.clip_qkv, feats.clip_qkv)
    q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]  # contiguous thirds
    if feats.qk_ln:  # LayerNorm over all of d_model, before the split into heads
        q, k = (
            norm(q, p["q_ln"], config.layer_norm_epsilon),
            norm(k, p["k_ln"], config.layer_norm_epsilon),
        )
    q, k, v = (t.reshape(B, S, H, D).transpose(0, 2, 1, 3) for t in (q, k, v))  # [B, H, S, D]
    if feats.kv_cache == "bf16":  # opt-in (mpt_model.MPTModel): the keys and values as cached
        k, v = (round_to_bf16(t).astype(t.dtype) for t in (k, v))
        if past is not None:
            past = tuple(round_to_bf16(t).astype(np.asarray(t).dtype) for t in past)
    if past is not None:
        k, v = (
            np.concatenate([past[0], k], axis=2),
            np.concatenate([past[1], v], axis=2),
        )  # [B, H, K, D]
    context, probs = scaled_dot_product_attention(
        q,
        k,
        v,
        softmax_scale(config),
        bias=bias,
        masked=masked,
        dropout_p=config.attn_pdrop,
        rng=rng,
    )
    context = context.transpose(0, 2, 1, 3).reshape(B, S, C)  # [B, H, S, D] -> [B, S, C]
    return linear(context, **p["out_proj"]), probs, (k, v)


def block(p, config, feats, x, past, bias, masked, rng):  # [B, S, C] -> [B, S, C], probs, present
    """Pre-norm: x = x + attention(LN1(x)); x = x + down(GELU(up(LN2(x)))) (SPEC 2.6)."""
    eps, drop = config.layer_norm_epsilon, feats.resid_pdrop
    a, probs, present = attention(
        p["attn"], config, feats, norm(x, p["norm_1"], eps), past, bias, masked, rng
    )
    x = x + dropout(a, drop, rng)
    h = linear(
        gelu(linear(norm(x, p["norm_2"], eps), **p["ffn"]["up_proj"])), **p["ffn"]["down_proj"]
    )  # via [B, S, 4C]
    return x + dropout(h, drop, rng), probs, present


def decoder(
    blocks, config, feats, x, past, masked, bias, rng=None
):  # [B, S, C] -> x, presents, hidden, maps
    """The L blocks over embedded tokens (SPEC 2.5-2.6). past: L (key, value) pairs or Nones; masked
    and bias from decoder_masks and decoder_bias. Returns the output of the last block, the L
    presents, the L hidden states entering each block and the L attention maps."""
    hidden_states, attentions, presents = [], [], []
    for p, layer_past in zip(blocks, past):
        hidden_states.append(x)
        x, probs, present = block(p, config, feats, x, layer_past, bias, masked, rng)
        attentions.append(probs)
        presents.append(present)
    return x, presents, hidden_states, attentions


def learned_positions(key_mask, P, S, B):  # [B, K] bool or None -> [B, S]
    """llm-foundry: pos = arange(P, P+S) minus the number of padding keys so far, clamped at 0."""
    pos = np.arange(P, P + S)[None, :].repeat(B, 0)
    if key_mask is None:
        return pos
    pads_so_far = np.cumsum(~key_mask, axis=1)[:, P:]
    return np.maximum(pos - pads_so_far, 0)


def transformer(params, config, feats, x, past, masked, key_mask, bias, rng=None, stack=None):
    """Embedded tokens x [B, S, C] -> (learned positions) -> dropout -> the L blocks -> norm_f.

    Returns the final hidden state, the presents, the L+1 hidden states (the last one after norm_f,
    SPEC 2.6) and the L attention maps. ``stack`` runs the blocks (``decoder`` over this model's
    blocks when None): a fast backend passes its own, which must equal ``decoder``."""
    B, S, _ = x.shape
    P = 0 if past[0] is None else past[0][0].shape[2]
    if feats.learned_pos_emb:  # mosaic: learned positions that skip left padding
        x = x + params["wpe"]["weight"][learned_positions(key_mask, P, S, B)]
    x = dropout(x, feats.emb_pdrop, rng)
    if stack is None:
        x, presents, hidden_states, attentions = decoder(
            params["blocks"], config, feats, x, past, masked, bias, rng
        )
    else:
        x, presents, hidden_states, attentions = stack(x, past, masked, bias, rng)
    x = norm(x, params["norm_f"], config.layer_norm_epsilon)
    return x, presents, hidden_states + [x], attentions


# ------------------------------------------------------------------------------------------ heads


def embed(wte, ids):  # [V, C], [B, S] -> [B, S, C]
    return wte[ids]


def lm_logits(x, weight, logit_scale=None):  # [B, S, C], [V, C] -> [B, S, V]
    """x wte^T (the tied embeddings, or lm_head.weight), times logit_scale where the profile has one
    (SPEC 2.7)."""
    return scale_logits(linear(x, weight), logit_scale)


def scale_logits(logits, logit_scale):  # [..., V] -> [..., V]
    """mosaic's logit_scale (None: unchanged), in the logits' own dtype."""
    return logits if logit_scale is None else logits * logits.dtype.type(logit_scale)


def last_token_index(input_ids, pad_token_id, B, S):  # -> [B]
    """(argmax(ids == pad) - 1) mod S: the token before the first pad; S-1 when there is none
    (4.37.2, SPEC 2.7)."""
    if pad_token_id is None or input_ids is None:
        return np.full(B, S - 1)
    return (np.argmax(np.asarray(input_ids) == pad_token_id, axis=-1) - 1) % S
