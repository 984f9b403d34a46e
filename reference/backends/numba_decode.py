"""MPT decoding on the Numba backend: a preallocated KV cache and a decode step that allocates no cache.

The cache holds, per layer, keys transposed ``kt[B, H, D, T]`` and values ``v[B, H, T, D]`` for the
whole generation (T = prompt + new tokens); a step writes one slot and attends over the live ones,
so nothing grows or is copied per token. The prompt itself runs through mpt.decoder on the Numba
kernels and its keys and values are copied in once. A session takes (config, params, features),
the public contract of reference/mpt.py (decoder_masks, decoder_bias's slopes, softmax_scale,
embedding_rows), never the model. A step must equal mpt.block for one new token, layer by layer,
then the final norm and the tied head: tests/test_numba_kernels.py holds it to the NumPy path.
"""

from __future__ import annotations

import numpy as np

from ..inputs import as_ids
from ..mpt import alibi_slopes, decoder, decoder_bias, decoder_masks, embedding_rows, softmax_scale
from .numba_cpu import NUMBA, decode_attention, gelu, layer_norm, linear


def checked_tokens(ids, batch, vocab_size, used, capacity, ndim):
    """Token ids for a session's prefill (ndim 2) or step (ndim 1), vetted before any kernel sees
    them: integers in the vocabulary, the session's batch, and room left in the preallocated cache."""
    ids = as_ids(ids, "input_ids" if ndim == 2 else "token", vocab_size, ndim)
    if ids.shape[0] != batch:
        raise ValueError(f"this decode session holds {batch} rows, got {ids.shape[0]}")
    new = ids.shape[1] if ndim == 2 else 1
    if used + new > capacity:
        raise ValueError(f"the decode session's cache holds {capacity} positions: {used} are used, {new} more do not fit")
    return ids


def supports(config, features) -> bool:
    """The fast step covers the hf feature set (ALiBi, no learned positions, no clip/qk_ln/logit_scale)."""
    f = features
    return f.alibi and not (f.learned_pos_emb or f.clip_qkv is not None or f.qk_ln or f.logit_scale is not None
                            or f.prefix_lm) and config.tie_word_embeddings


def prompt_masks(config, features, ids, mask):  # [B, S], [B, S] -> [B, 1, S, S], [B, S], [H, 1, S]
    """The prompt's masked scores, which of its keys are real, and its ALiBi bias, as mpt.decoder_masks
    and mpt.decoder_bias give them (both sessions use this)."""
    B, S = ids.shape
    masked, key_mask = decoder_masks(features, mask, None, None, B, S, 0, np.float32)
    return masked, key_mask, decoder_bias(config, features, S, 0, np.float32)


def open_session(config, params, features, batch, total_len):
    """The kernel set's decode_session (reference/kernels.py): a session, or None where the fast step
    does not cover the features."""
    return DecodeSession(config, params, features, batch, total_len) if supports(config, features) else None


class DecodeSession:
    def __init__(self, config, params, features, batch, total_len):
        c = config
        self.p, self.c, self.features = params, c, features
        H, D, L = c.n_heads, c.head_size, c.n_layers
        self.kt = np.zeros((L, batch, H, D, total_len), np.float32)  # [L, B, H, D, T]
        self.v = np.zeros((L, batch, H, total_len, D), np.float32)  # [L, B, H, T, D]
        self.key_ok = np.zeros((batch, total_len), np.bool_)
        self.length = 0
        self.slopes = alibi_slopes(H, features.alibi_bias_max)
        self.scale = softmax_scale(c)

    def prefill(self, ids, mask):  # [B, S], [B, S] -> last logits [B, V]
        ids = checked_tokens(ids, self.key_ok.shape[0], self.c.vocab_size, 0, self.key_ok.shape[1], ndim=2)
        masked, key_mask, bias = prompt_masks(self.c, self.features, ids, mask)
        out = decoder(self.p, self.c, self.features, embedding_rows(self.p, ids), [None] * self.c.n_layers, masked,
                      bias, kernels=NUMBA)
        S = ids.shape[1]
        for i, (k, v) in enumerate(out.past_key_values):
            self.kt[i, :, :, :, :S] = k.transpose(0, 1, 3, 2)
            self.v[i, :, :, :S] = v
        self.key_ok[:, :S] = key_mask
        self.length = S
        return linear(np.ascontiguousarray(out.last_hidden_state[:, -1]), self.p["wte.weight"])  # only the last position

    def step(self, token):  # [B] -> logits [B, V]
        p, c = self.p, self.c
        token = checked_tokens(token, self.key_ok.shape[0], c.vocab_size, self.length, self.key_ok.shape[1], ndim=1)
        B, C, H, D = token.shape[0], c.d_model, c.n_heads, c.head_size
        t = self.length
        self.key_ok[:, t] = True  # the new token is a real key
        x = embedding_rows(p, token)  # [B, C]
        eps = c.layer_norm_epsilon
        for i in range(c.n_layers):
            pre = f"blocks.{i}."
            h = layer_norm(x, p[pre + "norm_1.weight"], p.get(pre + "norm_1.bias"), eps)
            qkv = linear(h, p[pre + "attn.Wqkv.weight"], p.get(pre + "attn.Wqkv.bias"))  # [B, 3C]
            q = qkv[:, :C].reshape(B, H, D)
            self.kt[i, :, :, :, t] = qkv[:, C:2 * C].reshape(B, H, D)
            self.v[i, :, :, t] = qkv[:, 2 * C:].reshape(B, H, D)
            ctx = decode_attention(np.ascontiguousarray(q), self.kt[i], self.v[i], t + 1, self.scale, self.slopes,
                                   self.key_ok)
            x = x + linear(ctx.reshape(B, C), p[pre + "attn.out_proj.weight"], p.get(pre + "attn.out_proj.bias"))
            h = layer_norm(x, p[pre + "norm_2.weight"], p.get(pre + "norm_2.bias"), eps)
            h = gelu(linear(h, p[pre + "ffn.up_proj.weight"], p.get(pre + "ffn.up_proj.bias")))
            x = x + linear(h, p[pre + "ffn.down_proj.weight"], p.get(pre + "ffn.down_proj.bias"))
        x = layer_norm(x, p["norm_f.weight"], p.get("norm_f.bias"), eps)
        self.length = t + 1
        return linear(x, p["wte.weight"])  # [B, V]
