"""The numba backend's stacks: MPNet's encoder layers, MPT's blocks, and MPT decoding over a
preallocated cache.

Each stack is bound once at load to one model's nested params and runs the same operations as the
NumPy function it names, in the same order, on the Numba kernels of numba_cpu.py and numba_gemm.py
(one product for q, k and v; the residual add inside the LayerNorm; GELU on the product's output;
fused attention).
tests/test_numba_kernels.py holds each to its NumPy twin, and the golden tier runs through them.

MPT decoding: the cache holds, per layer, keys ``k[B, H, T, D]`` and values ``v[B, H, T, D]``
(float32, or their bf16 bits with kv_cache "bf16") for the whole generation (T = prompt + new
tokens); a step writes one slot and attends over the live ones, so nothing grows or is copied per
token. A session takes the stack (config, features, params), never the model. The prompt runs the
stack; a step runs every block, the final norm and the tied head in one compiled call,
numba_cpu.decode_step, over weights stacked per kind at load.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads

from .. import mpnet, mpt
from ..checkpoint import DeferredTensor, bf16_to_float32, load_deferred
from ..inputs import as_float, as_ids
from ..ops import ACTIVATIONS, dropout
from ..precision import (
    Q8_BLOCK,
    Q8_CHUNK,
    QUAD_BLOCK,
    QUAD_ROWS,
    InterleavedBf16,
    InterleavedQ8,
    Q8Matrix,
    interleave_quads,
    interleaved_shape,
    q8_interleaves,
    quantize_q8,
    round_to_bf16,
    to_bf16_bits,
)
from . import Backend
from .numba_bf16dot import SPLIT_DOTS
from .numba_cpu import (
    NUMBA,
    TILED_MIN_ROWS,
    add_layer_norm,
    attention,
    decode_step,
    gelu,
    kernel_operands,
    layer_norm,
    linear,
    linear_gelu,
    quantize_q8_into,
    quantize_q8_quads_into,
    round_to_bf16_in_place,
)
from .numba_gemm import pack, pack_side_by_side, packed_linear, packed_product, padded_bias
from .numba_q8dot import Q8_DOT
from .numba_vec16 import AVX512

# ------------------------------------------------------------------------------------ MPNet


def pack_qkv(attn):  # -> weight [3C, C] (a transposed view), bias [3C]
    """q, k and v of one layer packed for one GEMM: the weights side by side in one [C, 3C] array,
    stored transposed (input-major) as transposed_layout stores them, and the biases in one [3C]
    array. ``attn`` then holds views of these blocks (the same values; the separate arrays can be
    freed)."""
    parts = [attn[name]["weight"] for name in "qkv"]
    block = np.ascontiguousarray(np.concatenate(parts).T)  # [C, 3C], C-contiguous
    biases = np.concatenate([attn[name]["bias"] for name in "qkv"])
    start = 0
    for name, part in zip("qkv", parts):
        stop = start + part.shape[0]
        attn[name]["weight"] = block[:, start:stop].T
        attn[name]["bias"] = biases[start:stop]
        start = stop
    return block.T, biases


def transposed_layout(dense):
    """A dense layer's weight [O, I] replaced, in place, by the transposed view of an [I, O]
    C-contiguous copy: the same values at the same indices, laid out so ``x @ weight.T`` is a plain
    (not transposed) GEMM, which OpenBLAS runs a few percent faster at MPNet's shapes
    (tools/bench.py --workload encode). numba_cpu.linear sends such weights to BLAS for any number
    of rows."""
    dense["weight"] = np.ascontiguousarray(dense["weight"].T).T


def pack_attention(attn):  # -> PackedMatrix [columns, C], bias [columns], starts of q, k, v
    """q, k and v of one layer packed side by side for one product (numba_gemm); ``attn`` then
    holds PackedMatrix views of their panels."""
    fused, parts, starts = pack_side_by_side([attn[name]["weight"] for name in "qkv"])
    bias = padded_bias(None, fused.columns, [attn[name]["bias"] for name in "qkv"], starts)
    for name, part in zip("qkv", parts):
        attn[name]["weight"] = part
    return fused, bias, starts


class EncoderStack:
    """Twin of mpnet.encoder for one model's layers.

    On AVX-512 CPUs with float32 weights the layers' matrices are packed for numba_gemm (the
    model's params then hold PackedMatrix objects, which state_dict unpacks); elsewhere they are
    laid out for BLAS (pack_qkv, transposed_layout)."""

    def __init__(self, config, params):
        self.config = config
        self.layers = params["encoder"]["layer"]
        self.packed = AVX512 and all(
            p["attention"]["attn"][name]["weight"].dtype == np.float32
            for p in self.layers
            for name in "qkvo"
        )
        C, self.qkv = config.hidden_size, []
        for p in self.layers:  # a layer at a time: its matrices read from the file, then laid out
            load_deferred(p)
            attn = p["attention"]["attn"]
            self.qkv.append(
                pack_attention(attn) if self.packed else (*pack_qkv(attn), (0, C, 2 * C))
            )
            for dense in (
                p["attention"]["attn"]["o"],
                p["intermediate"]["dense"],
                p["output"]["dense"],
            ):
                if self.packed:
                    dense["weight"] = pack(dense["weight"])
                else:
                    transposed_layout(dense)

    def linear(self, x, dense, gelu=False):  # [..., I] -> [..., O], then GELU where asked
        if self.packed:
            return packed_linear(x, dense["weight"], dense.get("bias"), gelu)
        return linear_gelu(x, **dense) if gelu else linear(x, **dense)

    def __call__(
        self, x, position_bias, mask_bias, head_masks, rng, per_layer=True
    ):  # [B, S, C] -> as mpnet.encoder
        c = self.config
        C, H = c.hidden_size, c.num_attention_heads
        eps, drop = c.layer_norm_eps, c.hidden_dropout_prob
        if position_bias is not None:
            # laid out once as the attention reads it, not copied by each layer (a [H, S, S]
            # gather's transposed view: 0.13 ms a layer at 8 x 128)
            position_bias = np.ascontiguousarray(position_bias)
        hidden_states, attentions = [x], []
        for p, (w_qkv, b_qkv, starts), head_mask in zip(self.layers, self.qkv, head_masks):
            qkv = packed_product(x, w_qkv, b_qkv) if self.packed else linear(x, w_qkv, b_qkv)
            q, k, v = (mpnet.split_heads(qkv[..., s : s + C], H) for s in starts)  # [B, H, S, D]
            context, probs = attention(
                q,
                k,
                v,
                1 / math.sqrt(c.head_size),
                bias=position_bias,
                mask_add=mask_bias,
                dropout_p=c.attention_probs_dropout_prob,
                rng=rng,
                head_mask=head_mask,
                want_probs=per_layer,
            )
            a = self.linear(mpnet.merge_heads(context), p["attention"]["attn"]["o"])
            x = add_layer_norm(dropout(a, drop, rng), x, **p["attention"]["LayerNorm"], eps=eps)
            if c.hidden_act == "gelu":
                f = self.linear(x, p["intermediate"]["dense"], gelu=True)  # [B, S, 4C]
            else:
                f = ACTIVATIONS[c.hidden_act](self.linear(x, p["intermediate"]["dense"]))
            f = self.linear(f, p["output"]["dense"])
            x = add_layer_norm(dropout(f, drop, rng), x, **p["output"]["LayerNorm"], eps=eps)
            if per_layer:
                hidden_states.append(x)
                attentions.append(probs)
        return (x, hidden_states, attentions) if per_layer else (x, None, None)


# -------------------------------------------------------------------------------------- MPT


def interleaves(shape):  # whether bf16 matrices of this shape are kept interleaved here
    """Where the bf16 matvec runs on AVX512-BF16 dot products (SPLIT_DOTS), bf16 matrices whose
    rows are a multiple of 4 and columns of 32 are kept four rows interleaved
    (precision.interleave_quads), which the decode kernels stream faster; others stay [O, I]."""
    return SPLIT_DOTS and shape[0] % QUAD_ROWS == 0 and shape[1] % QUAD_BLOCK == 0


def to_bf16(w, out=None, chunk=1 << 20):  # float [O, I] -> uint16 [O, I] or InterleavedBf16
    """A float matrix rounded to bf16 bit patterns, interleaved where ``interleaves``; into ``out``
    (a slot of a stacked array, in the layout asked for) where given. Rows go a chunk (about
    ``chunk`` weights, a multiple of 4 rows) at a time, so a large matrix (an embedding) needs no
    full-size temporaries."""
    if not interleaves(w.shape):
        if out is None:
            return _bf16_bits(w, slice(None))
        out[...] = _bf16_bits(w, slice(None))
        return out
    packed = np.empty(interleaved_shape(w.shape), np.uint16) if out is None else out
    for rows, groups in _quad_chunks(w.shape, chunk):
        interleave_quads(_bf16_bits(w, rows), out=packed[groups])
    return InterleavedBf16(packed)


def _bf16_bits(w, rows):  # the bf16 bits of w[rows]: a bf16 file's own, without widening them
    if isinstance(w, DeferredTensor) and w.tag == "BF16":
        start, stop, _ = rows.indices(len(w))
        return w.bf16_rows(start, stop)
    return to_bf16_bits(w[rows])


def _quad_chunks(shape, chunk):  # -> (rows, groups) slices of [O, I], about chunk weights each
    """The rows of a matrix [O, I] (O a multiple of 4) a chunk at a time, a multiple of 4 rows of
    about ``chunk`` weights, each with the slice of its groups of four (the interleaved layouts'
    first axis): to_bf16 and to_q8 convert a large matrix this way, without full-size
    temporaries."""
    O, I = shape
    step = max(QUAD_ROWS, chunk // I // QUAD_ROWS * QUAD_ROWS)
    for start in range(0, O, step):
        stop = min(start + step, O)
        yield slice(start, stop), slice(start // QUAD_ROWS, stop // QUAD_ROWS)


def interleaves_q8(shape):  # whether q8 matrices of this shape are kept interleaved here
    """Where the CPU has AVX512-VNNI (numba_q8dot.Q8_DOT), q8 matrices whose rows are a multiple
    of 4 and columns of 128 are kept four rows by four blocks interleaved (precision.interleave_q8),
    which the int8 dot-product matvec takes; others stay a plain Q8Matrix."""
    return Q8_DOT and q8_interleaves(shape)


def q8_shapes(shape):  # [O, I] -> (weight slot's shape, scales slot's shape) for q8 storage
    O, I = shape
    if interleaves_q8(shape):
        G, C = O // QUAD_ROWS, I // Q8_CHUNK
        return (G, C, QUAD_ROWS * Q8_CHUNK), (G, C, 16)
    return (O, I), (O, I // Q8_BLOCK)


def to_q8(w, out=None, s_out=None, chunk=1 << 20):  # float [O, I] -> Q8Matrix or InterleavedQ8
    """A float matrix rounded to q8 blocks, interleaved where ``interleaves_q8``; into ``out`` and
    ``s_out`` (slots of stacked arrays, shaped as q8_shapes says) where given. Rows go a chunk
    (about ``chunk`` weights, a multiple of 4 rows) at a time, so a large matrix (an embedding)
    needs no full-size temporaries, through numba_cpu.quantize_q8_into or
    quantize_q8_quads_into: precision.quantize_q8 (then interleave_q8) bit for bit, 3.3x faster
    than those on the Zen 4 VM, which is most of what loading a model into q8 does."""
    quads = interleaves_q8(w.shape)
    if not quads and w.shape[1] % Q8_BLOCK:
        return quantize_q8(w, out, s_out, chunk)  # which refuses the shape by name
    shape, s_shape = q8_shapes(w.shape)
    q = np.empty(shape, np.uint8 if quads else np.int8) if out is None else out
    scales = np.empty(s_shape, np.float32) if s_out is None else s_out
    if quads:
        for rows, groups in _quad_chunks(w.shape, chunk):
            quantize_q8_quads_into(_float32_rows(w, rows), q[groups], scales[groups])
    else:
        step = max(1, chunk // w.shape[1])
        for start in range(0, w.shape[0], step):
            rows = slice(start, start + step)
            quantize_q8_into(_float32_rows(w, rows), q[rows], scales[rows])
    if not np.isfinite(scales).all():  # a block with inf or NaN, as precision.quantize_q8 says
        raise ValueError(f"weight_storage='q8': a matrix of shape {w.shape} holds inf or NaN")
    return InterleavedQ8(q, scales) if quads else Q8Matrix(q, scales)


def _float32_rows(w, rows):  # w[rows] as a contiguous float32 array (w may be a DeferredTensor)
    return np.ascontiguousarray(w[rows], dtype=np.float32)


def to_low_storage(params, config, storage):
    """The embeddings (and an untied LM head) replaced, in place, by bfloat16 bit patterns (uint16,
    or interleaved: to_bf16) or q8 matrices (precision.Q8Matrix): half or about a quarter of the
    bytes, widened as they are read. The blocks' matrices are converted by stack_blocks, straight
    into their stacked arrays."""
    convert = {"bf16": to_bf16, "q8": to_q8}[storage]
    for name in ("wte",) if config.tie_word_embeddings else ("wte", "lm_head"):
        params[name]["weight"] = convert(params[name]["weight"])


class DecoderStack:
    """Twin of mpt.decoder (and of the embedding lookup and mpt.lm_logits) for one model's
    blocks."""

    def __init__(self, config, features, params, weight_storage):
        self.config, self.features, self.params = config, features, params
        self.storage = weight_storage
        if weight_storage != "fp32":
            to_low_storage(params, config, weight_storage)
        self.stacked = stack_blocks(params, weight_storage)  # the block weights: views of it
        load_deferred(params)  # the rest (an fp32 embedding, a head) as arrays, read whole
        head = params["wte"] if config.tie_word_embeddings else params.get("lm_head")
        self.head_weight = None if head is None else head["weight"]

    def embed(self, ids):  # [...] -> [..., C] float32
        wte = self.params["wte"]["weight"]
        if isinstance(wte, (Q8Matrix, InterleavedQ8)):
            return wte.dequantize(ids)
        if isinstance(wte, InterleavedBf16):
            return wte.widen(ids)
        rows = wte[ids]
        return bf16_to_float32(rows) if rows.dtype == np.uint16 else rows

    def __call__(self, x, past, masked, bias, rng, per_layer=True):  # [B, S, C] -> as mpt.decoder
        c, f = self.config, self.features
        if rng is not None and (f.resid_pdrop or c.attn_pdrop):
            if self.storage != "fp32":
                raise ValueError(
                    f"dropout (training=True) with weight_storage={self.storage!r} is not"
                    " supported; load with fp32 weights to train"
                )
            return mpt.decoder(self.params["blocks"], c, f, x, past, masked, bias, rng)
        hidden_states, attentions, presents = [], [], []
        for p, layer_past in zip(self.params["blocks"], past):
            if per_layer:
                hidden_states.append(x)
            x, probs, present = self.block(p, x, layer_past, masked, bias, per_layer)
            if per_layer:
                attentions.append(probs)
            presents.append(present)
        return x, presents, hidden_states, attentions

    def block(self, p, x, past, masked, bias, want_probs=True):  # -> [B, S, C], probs, present
        """Twin of mpt.block (and mpt.attention) without dropout, on the Numba kernels; the
        attention maps (probs) are None unless ``want_probs``."""
        c, f = self.config, self.features
        B, S, C = x.shape
        H, D, eps = c.n_heads, c.head_size, c.layer_norm_epsilon
        qkv = linear(
            layer_norm(x, p["norm_1"]["weight"], p["norm_1"].get("bias"), eps), **p["attn"]["Wqkv"]
        )  # [B, S, 3C]
        if f.clip_qkv is not None:
            qkv = np.clip(qkv, -f.clip_qkv, f.clip_qkv)
        q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]
        if f.qk_ln:
            q = layer_norm(q, p["attn"]["q_ln"]["weight"], p["attn"]["q_ln"].get("bias"), eps)
            k = layer_norm(k, p["attn"]["k_ln"]["weight"], p["attn"]["k_ln"].get("bias"), eps)
        if f.kv_cache == "bf16":  # as mpt.attention rounds them (k and v may be views of qkv)
            round_to_bf16_in_place(k)
            round_to_bf16_in_place(v)
        q, k, v = (t.reshape(B, S, H, D).transpose(0, 2, 1, 3) for t in (q, k, v))  # [B, H, S, D]
        if past is not None:
            if f.kv_cache == "bf16":  # a given cache too, as mpt.attention rounds it
                past = tuple(round_to_bf16(t) for t in past)
            k, v = np.concatenate([past[0], k], axis=2), np.concatenate([past[1], v], axis=2)
        context, probs = attention(
            q, k, v, mpt.softmax_scale(c), bias=bias, masked=masked, want_probs=want_probs
        )
        x = x + linear(context.transpose(0, 2, 1, 3).reshape(B, S, C), **p["attn"]["out_proj"])
        h = layer_norm(x, p["norm_2"]["weight"], p["norm_2"].get("bias"), eps)
        h = gelu(linear(h, **p["ffn"]["up_proj"]))  # [B, S, 4C]
        return x + linear(h, **p["ffn"]["down_proj"]), probs, (k, v)

    def lm_logits(self, x, logit_scale=None):  # [..., C] -> [..., V]; twin of mpt.lm_logits
        return mpt.scale_logits(linear(x, self.head_weight), logit_scale)

    def decode_session(self, batch, total_len):
        return (
            DecodeSession(self, batch, total_len) if supports(self.config, self.features) else None
        )


STACKED = (
    ("norm_1",),
    ("attn", "Wqkv"),
    ("attn", "out_proj"),
    ("norm_2",),
    ("ffn", "up_proj"),
    ("ffn", "down_proj"),
)


def stack_blocks(params, storage="fp32"):  # -> (ln1_w, ln1_b, w_qkv, s_qkv, b_qkv, ...)
    """Every block's weight of one kind written into one [L, ...] array, for numba_cpu.decode_step:
    matrices as float32, bf16 bits (interleaved where ``interleaves``: [L, O / 4, I / 32, 128],
    which the blocks' params hold as precision.InterleavedBf16) or q8 (int8 [L, O, I] and its
    scales [L, O, I / 32], which follow each matrix in the tuple, or interleaved where
    ``interleaves_q8``: uint8 [L, O / 4, I / 128, 512] and scales [L, O / 4, I / 128, 16], held as
    precision.InterleavedQ8; [L, 1, 1] zeros for the other kinds), biases [L, O] (zeros where
    the checkpoint has none). The blocks' params then hold views of them (the same values; the
    separate arrays can be freed). Each layer is converted
    straight into its slot, so no second full copy of the weights is ever made."""
    blocks = params["blocks"]
    arrays = []
    for path in STACKED:
        parts = [b[path[0]] if len(path) == 1 else b[path[0]][path[1]] for b in blocks]
        w0 = parts[0]["weight"]
        L, matrix = len(parts), w0.ndim == 2
        kind = storage if matrix else "fp32"
        if kind == "q8":
            shape, s_shape = q8_shapes(w0.shape)
            dtype = np.uint8 if interleaves_q8(w0.shape) else np.int8
            scales = np.empty((L,) + s_shape, np.float32)
        else:
            quads = kind == "bf16" and interleaves(w0.shape)
            shape = interleaved_shape(w0.shape) if quads else w0.shape
            dtype = np.uint16 if kind == "bf16" else w0.dtype
            scales = np.zeros((L, 1, 1), np.float32)
        weight = np.empty((L,) + shape, dtype)
        bias = np.zeros((L, w0.shape[0]), np.float32)
        for i, p in enumerate(parts):
            if kind == "q8":  # plain or interleaved, as the slot was made (to_q8)
                p["weight"] = to_q8(p["weight"], weight[i], scales[i])
            elif kind == "bf16":  # plain or interleaved, as the slot was made (to_bf16)
                p["weight"] = to_bf16(p["weight"], weight[i])
            else:
                weight[i] = p["weight"]
                p["weight"] = weight[i]
            if p.get("bias") is not None:
                bias[i] = p["bias"]
                p["bias"] = bias[i]
        arrays += [weight, scales, bias] if matrix else [weight, bias]
    return tuple(arrays)


def supports(config, features) -> bool:
    """The fast step covers the hf feature set (ALiBi, no learned positions, no
    clip/qk_ln/logit_scale)."""
    f = features
    return (
        f.alibi
        and not (
            f.learned_pos_emb
            or f.clip_qkv is not None
            or f.qk_ln
            or f.logit_scale is not None
            or f.prefix_lm
        )
        and config.tie_word_embeddings
    )


def checked_tokens(ids, batch, vocab_size, used, capacity, ndim):
    """Token ids for a session's prefill (ndim 2) or step (ndim 1), vetted before any kernel sees
    them: integers in the vocabulary, the session's batch, and room left in the preallocated cache.
    """
    ids = as_ids(ids, "input_ids" if ndim == 2 else "token", vocab_size, ndim)
    if ids.shape[0] != batch:
        raise ValueError(f"this decode session holds {batch} rows, got {ids.shape[0]}")
    new = ids.shape[1] if ndim == 2 else 1
    if used + new > capacity:
        raise ValueError(
            f"the decode session's cache holds {capacity} positions: {used} are used, {new} more do"
            " not fit"
        )
    return ids


def checked_rows(rows, batch):  # -> rows [batch] as an array, each in [0, batch)
    """Beam search's reorder: the row each row goes on from, vetted before the cache is indexed
    with them."""
    rows = np.asarray(rows)
    if rows.shape != (batch,) or rows.min() < 0 or rows.max() >= batch:
        raise ValueError(f"reorder takes {batch} row indices in [0, {batch})")
    return rows


def prompt_masks(config, features, ids, mask):  # [B, S], [B, S] -> [B, 1, S, S], [B, S], [H, 1, S]
    """The prompt's masked scores, which of its keys are real, and its ALiBi bias, as
    mpt.decoder_masks and mpt.decoder_bias give them (the cuda session's prefill; the numba
    session's extend asks decoder_masks itself, over the cache and the new tokens)."""
    B, S = ids.shape
    masked, key_mask = mpt.decoder_masks(features, mask, None, None, B, S, 0, np.float32)
    return masked, key_mask, mpt.decoder_bias(config, features, S, 0, np.float32)


def _grid_bits(x):  # float array on the bf16 grid -> its bf16 bits (the high half of float32's)
    """to_bf16_bits without its rounding passes, exact for values already rounded (the block's
    keys and values with kv_cache "bf16"): a 1024-token prompt's 12 layers filled in 7 ms, not 84
    (Zen 4)."""
    return np.asarray(x, np.float32).view(np.uint32) >> np.uint32(16)


# Up to this many tokens (rows times tokens) a pass over a cache runs as a step does, through
# decode_step (all layers and the head in one parallel region, the matvecs' register tiles from
# four rows on); more, or padding, or an empty cache (a prompt), go through the stack's layers as
# a prompt does (_rows_tiled, then numba_gemm past 64 rows). One row after 96 cached tokens,
# MPT-125M fp32 (Zen 4, 2 threads, medians of 11), the fused pass against the stack's: 2 tokens
# 15.8 against 18.3 ms (a step 15.5), 4 17.3 / 25.7, 8 23.8 / 33.7, 11 29.1 / 39.1, 16 35.0 /
# 43.7, 32 59.3 / 67.9, 64 108.0 / 108.9
FUSED_PASS_MAX_ROWS = 64


class DecodeSession:
    def __init__(self, stack, batch, total_len):
        c = stack.config
        self.stack, self.c = stack, c
        H, D, L = c.n_heads, c.head_size, c.n_layers
        # float32, or the bf16 bits (uint16) of keys and values already rounded (kv_cache "bf16")
        self.bf16 = stack.features.kv_cache == "bf16"
        dtype = np.uint16 if self.bf16 else np.float32
        self.k = np.zeros((L, batch, H, total_len, D), dtype)  # [L, B, H, T, D]
        self.v = np.zeros((L, batch, H, total_len, D), dtype)  # [L, B, H, T, D]
        # the cache row that holds each row's keys and values (beam search moves rows by this
        # map, copying a row only where two beams go on from one: reorder)
        self.rows = np.arange(batch, dtype=np.int64)
        self.key_ok = np.zeros((batch, total_len), np.bool_)
        self.length = 0
        self.slopes = mpt.alibi_slopes(H, stack.features.alibi_bias_max)
        self.scale = mpt.softmax_scale(c)
        # the step's last phase: norm_f (no bias: zeros), then the tied head as the kernels take it
        norm_f = stack.params["norm_f"]
        bias = norm_f.get("bias")
        self.head = (
            norm_f["weight"],
            np.zeros(c.d_model, np.float32) if bias is None else bias,
        ) + kernel_operands(stack.head_weight)

    def _final(self, x):  # [..., C] -> logits [..., V]: norm_f, then the tied head
        norm_f = self.stack.params["norm_f"]
        return self.stack.lm_logits(
            layer_norm(x, norm_f["weight"], norm_f.get("bias"), self.c.layer_norm_epsilon)
        )

    def prefill(self, ids, mask):  # [B, S], [B, S] -> last logits [B, V]
        self.length = 0  # a prompt starts the cache again
        return self.extend(ids, mask, last=1)[:, -1]

    def extend(self, ids, mask=None, last=None):  # [B, n], [B, n] -> logits [B, last or n, V]
        """Several tokens after those cached (prompt lookup's guesses; from an empty cache, a
        prompt), over the cached keys and values; their keys and values join the cache.
        ``mask`` (ones by default) marks which are real. Real tokens after a cache, up to
        FUSED_PASS_MAX_ROWS of them, run as a step does (decode_step, n a row); others through
        the stack as a prompt is."""
        c, L, P = self.c, self.c.n_layers, self.length
        ids = checked_tokens(
            ids, self.key_ok.shape[0], c.vocab_size, P, self.key_ok.shape[1], ndim=2
        )
        B, n = ids.shape
        if P and B * n <= FUSED_PASS_MAX_ROWS and (mask is None or np.all(np.asarray(mask) == 1)):
            return self._fused(ids)[:, n - (last or n) :]
        mask = (
            np.ones((B, n), np.float32)
            if mask is None
            else as_float(mask, "attention_mask", (B, n), np.float32)
        )
        full = np.concatenate([self.key_ok[:, :P].astype(np.float32), mask], axis=1)  # [B, P + n]
        features = self.stack.features
        masked, key_mask = mpt.decoder_masks(features, full, None, None, B, n, P, np.float32)[:2]
        bias = mpt.decoder_bias(c, features, n, P, np.float32)
        widen = bf16_to_float32 if self.bf16 else np.asarray
        rows = self._row_order()
        past = [  # nothing cached: the blocks run a prompt
            (widen(self.k[i, rows, :, :P]), widen(self.v[i, rows, :, :P])) if P else None
            for i in range(L)
        ]
        x, presents, _, _ = self.stack(
            self.stack.embed(ids), past, masked, bias, None, per_layer=False
        )
        for i, (k, v) in enumerate(presents):  # [B, H, P + n, D]: the new positions are cached
            self.k[i, rows, :, P : P + n] = _grid_bits(k[:, :, P:]) if self.bf16 else k[:, :, P:]
            self.v[i, rows, :, P : P + n] = _grid_bits(v[:, :, P:]) if self.bf16 else v[:, :, P:]
        self.key_ok[:, P : P + n] = key_mask[:, P:]
        self.length = P + n
        return self._final(np.ascontiguousarray(x[:, n - (last or n) :]))

    def rewind(self, length):
        """Forgets every cached position from ``length`` on (a step overwrites them)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind a cache of {self.length} positions to {length}")
        self.length = length

    def _row_order(self):  # -> an index of the cache's rows in the rows' order
        """A slice (a view, no copy) while each row is its own cache row, else the map."""
        return slice(None) if np.array_equal(self.rows, np.arange(len(self.rows))) else self.rows

    def cache(self):  # -> L (key, value) pairs [B, H, length, D] float32: past_key_values
        """The cached positions' keys and values, copied out (bf16 ones widened)."""
        t, rows = self.length, self._row_order()
        widen = bf16_to_float32 if self.bf16 else np.array
        return tuple((widen(k[rows, :, :t]), widen(v[rows, :, :t])) for k, v in zip(self.k, self.v))

    def load(self, past, key_mask, ids=None):  # L pairs [B, H, P, D], [B, P] -> a cache of P
        """Starts from a given cache (generate(past_key_values=)): its keys and values, and which
        keys are real. A bf16 cache rounds values off its grid (a float32 model's cache), as the
        NumPy model does (mpt.attention)."""
        P = past[0][0].shape[2]
        for i, (k, v) in enumerate(past):
            for given, slot in ((k, self.k), (v, self.v)):
                slot[i, :, :, :P] = to_bf16_bits(given) if self.bf16 else given
        self.key_ok[:, :P] = np.asarray(key_mask) == 1
        self.rows = np.arange(len(self.rows), dtype=np.int64)
        self.length = P

    def reorder(self, rows):  # [B] row indices: row i goes on from row rows[i] (beam search)
        """Row i goes on from row rows[i]'s cache: the map from rows to cache rows follows, and
        only where several rows go on from one is its cache copied, to a cache row no row reads
        any more (there are as many of those as such copies). Against a gathered copy of every
        row's cache, beam search (4 beams, MPT-125M fp32, 64 tokens after 32) spent 1.05 ms a
        step reordering, not 3.8, and took 0.92x the time (1.575 s against 1.716, medians of 7
        alternating runs, Zen 4), the same tokens. Which keys are real stays each row's own, as
        upstream keeps each row's attention mask (ModelSession.reorder)."""
        t, rows = self.length, checked_rows(rows, len(self.rows))
        wanted = self.rows[rows]  # the cache row each row goes on from
        free = sorted(set(range(len(rows))) - set(wanted.tolist()))  # read by no row now
        taken = set()
        for i, source in enumerate(wanted.tolist()):
            if source in taken:  # a second row from one cache row: a copy of its own
                target = free.pop()
                self.k[:, target, :, :t] = self.k[:, source, :, :t]
                self.v[:, target, :, :t] = self.v[:, source, :, :t]
                wanted[i] = target
            taken.add(source)
        self.rows = wanted

    def step(self, token):  # [B] -> logits [B, V]
        c = self.c
        token = checked_tokens(
            token, self.key_ok.shape[0], c.vocab_size, self.length, self.key_ok.shape[1], ndim=1
        )
        return self._fused(token[:, None])[:, 0]

    def _fused(self, ids):  # [B, n] checked ids, real tokens -> logits [B, n, V]
        """The tokens through the compiled decode_step, n a row of the cache (a plain step: 1),
        all layers and the head in one parallel region."""
        c, t = self.c, self.length
        B, n = ids.shape
        self.key_ok[:, t : t + n] = True  # the new tokens are real keys
        # [B n, C], row b n + i the token at slot t + i of cache row b; updated in place
        x = np.array(self.stack.embed(ids.reshape(-1)), np.float32)
        logits = np.empty((x.shape[0], c.vocab_size), np.float32)
        decode_step(
            x,
            t,
            *self.stack.stacked,
            self.k,
            self.v,
            self.rows,
            self.key_ok,
            self.slopes,
            np.float32(self.scale),
            np.float32(c.layer_norm_epsilon),
            *self.head,
            logits,
            True if x.shape[0] >= TILED_MIN_ROWS else None,  # tiles compiled for batches only
            get_num_threads(),
        )
        self.length = t + n
        return logits.reshape(B, n, -1)


NUMBA_BACKEND = Backend(
    "numba",
    NUMBA,
    mpnet_encoder=EncoderStack,
    mpt_decoder=DecoderStack,
    weight_storages=("fp32", "bf16", "q8"),
    kv_caches=("fp32", "bf16"),
    defers=("mpt", "mpnet"),  # the stacks keep the matrices stacked, packed or transposed
)
