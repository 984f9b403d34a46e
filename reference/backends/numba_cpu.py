"""Numba CPU kernels: the hot operations of both families, each equal to a NumPy twin in reference/ops.py.

| kernel here                     | NumPy twin                | strategy                                                |
|---------------------------------|---------------------------|---------------------------------------------------------|
| ``linear``                      | ``ops.linear``            | BLAS GEMM for many rows; parallel Numba matvec for few  |
| ``layer_norm``                  | ``ops.layer_norm``        | one parallel pass per row (two-pass mean / variance)    |
| ``gelu``                        | ``ops.gelu``              | parallel elementwise erf                                |
| ``attention``                   | ``ops.attention``         | fused kernel; BLAS products + fused softmax when large  |
| ``decode_attention``            | ``ops.attention`` (S = 1) | one query over a cache whose keys are stored [D, T]     |
| ``matvec_bf16``                 | ``ops.linear`` on widened | bf16 weights widened inside the loop                    |

Fast paths fall back to the NumPy twin where they do not apply (dropout, head masks).
``fastmath`` is limited to reassociation and contraction flags so that -inf and NaN still behave.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from .. import ops
from ..kernels import Kernels

FASTMATH = {"contract", "reassoc", "arcp", "nsz", "afn"}

# Numba's OpenMP workers spin after each parallel region, as OpenBLAS's do after a GEMM; on a machine
# with few cores the two pools then fight for them (a 32 x 768 LayerNorm between GEMMs took 4 ms
# instead of 0.1 ms). A short spin keeps back-to-back kernel launches fast during decoding and lets
# the cores go soon after. Read when libgomp loads (the first parallel launch); the user's value wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
MASK_VALUE = np.float32(np.finfo(np.float32).min)
MATVEC_MAX_ROWS = 4  # up to this many rows (decode steps) a Numba matvec streams the weights once;
# above it BLAS GEMM wins.


# ------------------------------------------------------------------------------------- linear


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matvec_rows(x, w, out):  # [N, I], [O, I] -> [N, O]
    N, I = x.shape
    O = w.shape[0]
    for o in prange(O):
        for n in range(N):
            acc = np.float32(0.0)
            for i in range(I):
                acc += w[o, i] * x[n, i]
            out[n, o] = acc


@intrinsic
def _bits_to_float32(typingctx, bits):
    """Reinterpret a uint32 as the float32 with those bits (a free bitcast in the generated code)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.uint32), codegen


@njit(inline="always")
def bf16_to_float32(h):  # uint16 -> float32
    """bfloat16 is the top half of a float32: shift its 16 bits into place (twin: checkpoint.bf16_to_float32)."""
    return _bits_to_float32(np.uint32(h) << np.uint32(16))


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matvec_rows_bf16(x, w16, out):  # [N, I] f32, [O, I] uint16 (bf16 bits) -> [N, O]
    N, I = x.shape
    O = w16.shape[0]
    for o in prange(O):
        for n in range(N):
            acc = np.float32(0.0)
            for i in range(I):
                acc += bf16_to_float32(w16[o, i]) * x[n, i]
            out[n, o] = acc


def linear(x, weight, bias=None):  # [..., I], [O, I] (float32, or uint16 holding bf16) -> [..., O]
    """Twin of ops.linear. Weights stored as uint16 are bfloat16 bit patterns (bf16 weight storage)."""
    lead, I = x.shape[:-1], x.shape[-1]
    rows = x.reshape(-1, I)
    if rows.shape[0] <= MATVEC_MAX_ROWS and x.dtype == np.float32:
        out = np.empty((rows.shape[0], weight.shape[0]), np.float32)
        kernel = _matvec_rows_bf16 if weight.dtype == np.uint16 else _matvec_rows
        kernel(np.ascontiguousarray(rows), weight, out)
    else:
        w = (weight.astype(np.uint32) << 16).view(np.float32) if weight.dtype == np.uint16 else weight
        out = rows @ w.T
    out = out.reshape(lead + (weight.shape[0],))
    return out if bias is None else out + bias


# ---------------------------------------------------------------------------- norm and GELU


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _layer_norm_rows(x, w, b, eps, out):  # [N, C] -> [N, C]
    N, C = x.shape
    for n in prange(N):
        mean = 0.0
        for c in range(C):
            mean += x[n, c]
        mean /= C
        var = 0.0
        for c in range(C):
            d = x[n, c] - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / C + eps)
        for c in range(C):
            out[n, c] = (x[n, c] - mean) * inv * w[c] + b[c]


def layer_norm(x, weight, bias, eps):  # [..., C] -> [..., C]
    """Twin of ops.layer_norm (biased variance; bias None means no bias)."""
    if x.dtype != np.float32:
        return ops.layer_norm(x, weight, bias, eps)
    C = x.shape[-1]
    rows = np.ascontiguousarray(x.reshape(-1, C))
    out = np.empty_like(rows)
    _layer_norm_rows(rows, weight, np.zeros(C, np.float32) if bias is None else bias, eps, out)
    return out.reshape(x.shape)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gelu_flat(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


def gelu(x):  # [...] -> [...]
    """Twin of ops.gelu (exact erf GELU)."""
    if x.dtype != np.float32:
        return ops.gelu(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _gelu_flat(flat, out)
    return out.reshape(x.shape)


# -------------------------------------------------------------------------------- attention


@njit(inline="always")
def _biased(score, bias, mask_add, masked, b, h, i, j):
    """score + bias + mask_add, or MASK_VALUE where masked; 1-sized leading axes broadcast, empty = absent."""
    if bias.size > 0:
        score += bias[h if bias.shape[0] > 1 else 0, i if bias.shape[1] > 1 else 0, j]
    if mask_add.size > 0:
        score += mask_add[b if mask_add.shape[0] > 1 else 0, i if mask_add.shape[1] > 1 else 0, j]
    if masked.size > 0 and masked[b if masked.shape[0] > 1 else 0, i if masked.shape[1] > 1 else 0, j]:
        score = MASK_VALUE
    return score


@njit(inline="always")
def _exp_shift(row, n, top):
    """row[:n] = exp(row[:n] - top) in place; returns their sum, the softmax denominator."""
    total = np.float32(0.0)
    for j in range(n):
        row[j] = math.exp(row[j] - top)
        total += row[j]
    return total


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _attention(q, k, v, scale, bias, mask_add, masked, ctx, probs, want_probs):
    """q [B, H, S, D]; k, v [B, H, K, D]; bias [Hb, Sb, K]; mask_add [Bm, Sm, K]; masked [Bk, Sk, K] bool.
    Leading sizes of 1 broadcast; empty arrays mean "absent". ctx [B, H, S, D]; probs [B, H, S, K]."""
    B, H, S, D = q.shape
    K = k.shape[2]
    for row in prange(B * H * S):
        b = row // (H * S)
        h = (row // S) % H
        i = row % S
        scores = np.empty(K, np.float32)
        top = -np.inf
        for j in range(K):
            acc = np.float32(0.0)
            for d in range(D):
                acc += q[b, h, i, d] * k[b, h, j, d]
            acc = _biased(acc * scale, bias, mask_add, masked, b, h, i, j)
            scores[j] = acc
            top = max(top, acc)
        total = _exp_shift(scores, K, top)
        for d in range(D):
            ctx[b, h, i, d] = 0.0
        for j in range(K):
            p = scores[j] / total
            if want_probs:
                probs[b, h, i, j] = p
            for d in range(D):
                ctx[b, h, i, d] += p * v[b, h, j, d]


_EMPTY3 = np.zeros((0, 0, 0), np.float32)
_EMPTY3_BOOL = np.zeros((0, 0, 0), np.bool_)


def _as3(x, dtype):
    """Drop the head axis of a [B|1, 1, S|1, K] mask, or pass a [H, S|1, K] bias, as a contiguous 3D array."""
    if x is None:
        return _EMPTY3_BOOL if dtype == np.bool_ else _EMPTY3
    x = np.asarray(x)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError("per-head masks go through the NumPy path")
        x = x[:, 0]
    return np.ascontiguousarray(x, dtype=dtype)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _scores_to_probs(scores, scale, bias, mask_add, masked):
    """In place: scores [B, H, S, K] -> softmax(scores * scale + bias + mask_add, masked replaced)."""
    B, H, S, K = scores.shape
    for row in prange(B * H * S):
        b = row // (H * S)
        h = (row // S) % H
        i = row % S
        top = -np.inf
        for j in range(K):
            acc = _biased(scores[b, h, i, j] * scale, bias, mask_add, masked, b, h, i, j)
            scores[b, h, i, j] = acc
            top = max(top, acc)
        row_scores = scores[b, h, i]
        total = _exp_shift(row_scores, K, top)
        for j in range(K):
            row_scores[j] /= total


FUSED_MAX_WORK = 1 << 16  # below this many score entries one fused kernel wins; above, BLAS does the products


def attention(q, k, v, scale, bias=None, mask_add=None, masked=None, dropout_p=0.0, rng=None, head_mask=None):
    """Twin of ops.attention for inference (dropout and head masks take the NumPy path).

    Small problems run one fused kernel (products, bias, mask, softmax, weighted sum). Large prefills
    let BLAS do the two batched products and fuse only bias, mask and softmax in between.
    """
    if rng is not None or head_mask is not None or q.dtype != np.float32:
        return ops.attention(q, k, v, scale, bias, mask_add, masked, dropout_p, rng, head_mask)
    B, H, S, D = q.shape
    bias3 = _as3(bias, np.float32) if bias is None or np.ndim(bias) == 3 else _as3(np.asarray(bias)[0], np.float32)
    if B * H * S * k.shape[2] > FUSED_MAX_WORK:
        probs = q @ k.transpose(0, 1, 3, 2)  # [B, H, S, K] via BLAS
        _scores_to_probs(probs, np.float32(scale), bias3, _as3(mask_add, np.float32), _as3(masked, np.bool_))
        return probs @ v, probs
    ctx = np.empty((B, H, S, D), np.float32)
    probs = np.empty((B, H, S, k.shape[2]), np.float32)
    _attention(np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v), np.float32(scale),
               bias3, _as3(mask_add, np.float32), _as3(masked, np.bool_), ctx, probs, True)
    return ctx, probs


NUMBA = Kernels("numba", linear, layer_norm, gelu, attention)
NUMBA_VERSION = numba.__version__


# ----------------------------------------------------------------------------- decode step


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _decode_attention(q, kt, v, length, scale, slopes, key_ok, ctx):
    """One new query per row over a preallocated cache.

    q [B, H, D]; kt [B, H, D, T] (keys stored transposed so the score loop runs along contiguous
    keys); v [B, H, T, D]; only the first ``length`` slots are live; slopes [H] (ALiBi, key-only:
    slope * (t - (length - 1))); key_ok [B, T] False where the key is padding. ctx [B, H, D].
    """
    B, H, D = q.shape
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        scores = np.zeros(length, np.float32)
        for d in range(D):
            qd = q[b, h, d] * scale
            for t in range(length):
                scores[t] += qd * kt[b, h, d, t]
        top = -np.inf
        for t in range(length):
            s = scores[t] + slopes[h] * np.float32(t - (length - 1))
            if not key_ok[b, t]:
                s = MASK_VALUE
            scores[t] = s
            top = max(top, s)
        total = _exp_shift(scores, length, top)
        for d in range(D):
            ctx[b, h, d] = 0.0
        for t in range(length):
            p = scores[t] / total
            for d in range(D):
                ctx[b, h, d] += p * v[b, h, t, d]


def decode_attention(q, kt, v, length, scale, slopes, key_ok):  # [B, H, D] -> [B, H, D]
    """Twin of ops.attention for one query (S = 1) with key-only ALiBi and a key padding mask."""
    ctx = np.empty(q.shape, np.float32)
    _decode_attention(q, kt, v, length, np.float32(scale), slopes, key_ok, ctx)
    return ctx
