"""Numba CUDA kernels, each equal to a NumPy twin in reference/ops.py (tests/test_cuda_kernels.py).

| kernel                 | NumPy twin                | shape of the work                           |
|------------------------|---------------------------|---------------------------------------------|
| ``matmul_bt``          | ``ops.linear``            | 64 x 64 output tiles, 4 x 4 outputs a       |
|                        |                           | thread, K staged in shared memory, 16 a go  |
| ``matvec``             | ``ops.linear`` (few rows) | a block per output, shared-memory reduction |
| ``layer_norm_rows``    | ``ops.layer_norm``        | one block per row                           |
| ``gelu``, ``add``      | ``ops.gelu``, ``+``       | elementwise                                 |
| ``gather_rows``        | ``x[:, rows]``            | elementwise over the output                 |
| ``flash_attention(D)`` | ``ops.attention``         | a thread per (query row, key group); key    |
|                        |                           | and bias/mask tiles in shared memory;       |
|                        |                           | online softmax in registers, groups merged  |
|                        |                           | at the end (a second sweep: probabilities)  |
| ``decode_attention``   | ``ops.attention`` (S = 1) | a block per (batch, head), threads over the |
|                        |                           | cached keys in chunks (online softmax       |
|                        |                           | across them); stores the step's key, value  |

Attention reads q, k and v straight from the projection outputs, laid out [B, S, n * C] with a
column offset per tensor (MPT's fused Wqkv is one buffer) and writes the context as [B, S, C], so no
head split or merge copies are needed. Masks: ``bias`` [Hb, Sb, K] (relative or ALiBi; 1-sized axes
broadcast), ``mask_add`` [Bm, Sm, K] added after it, ``masked`` [Bk, Sk, K] uint8 whose scores are
replaced by finfo(float32).min. Empty arrays mean "absent".
"""

from __future__ import annotations

import math
import os

from numba import cuda, float32, uint8

from .. import ops

# The simulator runs every GPU thread as a Python thread, so there the blocks are made small; the
# kernels are written for any power-of-two sizes.
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
SIDE = 4 if SIMULATED else 16  # matmul: threads per block side
PER = 2 if SIMULATED else 4  # matmul: outputs per thread side
TILE = SIDE * PER  # matmul: output tile side (64 on a GPU)
DEPTH = 8 if SIMULATED else 16  # matmul: columns of a and b staged per step
TILE_PADDED = (
    TILE + 1
)  # matmul: staged row length; odd, so a warp's staging stores hit distinct banks
ROW_THREADS = (
    16 if SIMULATED else 128
)  # threads per block for row reductions (layer norm, matvec, decode)
# largest head size of the attention kernel (its key and value tiles fill the shared memory)
MAX_HEAD = 128
DECODE_CHUNK = (
    16 if SIMULATED else 2048
)  # decode attention: cached keys scored per pass (in shared memory)
DIMS_PER_THREAD = -(
    -MAX_HEAD // ROW_THREADS
)  # decode attention: head dimensions a thread accumulates
MASK_VALUE = float32(ops.MASK_VALUE)  # finfo(float32).min


@cuda.jit
def matmul_bt(a, b, bias, c):  # a [M, K], b [N, K], bias [N] or [0] -> c [M, N] = a b^T + bias
    """grid (ceil(N / TILE), ceil(M / TILE)), block (SIDE, SIDE). Each thread computes PER x PER
    outputs, rows ty + SIDE * i and columns tx + SIDE * j of the block's TILE x TILE tile (strided,
    so a warp's shared-memory reads and its stores fall on consecutive addresses). Slices of DEPTH
    columns of a and b are staged in shared memory k-major, so each step reads PER values of a and
    PER of b for PER * PER multiply-adds."""
    sa = cuda.shared.array((DEPTH, TILE_PADDED), float32)
    sb = cuda.shared.array((DEPTH, TILE_PADDED), float32)
    acc = cuda.local.array((PER, PER), float32)
    fa = cuda.local.array(PER, float32)
    fb = cuda.local.array(PER, float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    t = ty * SIDE + tx
    row0, col0 = cuda.blockIdx.y * TILE, cuda.blockIdx.x * TILE
    M, K = a.shape
    N = b.shape[0]
    for i in range(PER):
        for j in range(PER):
            acc[i, j] = float32(0.0)
    for k0 in range(0, K, DEPTH):
        for e in range(
            t, TILE * DEPTH, SIDE * SIDE
        ):  # consecutive threads, consecutive columns of a row
            r, kk = e // DEPTH, e % DEPTH
            k = k0 + kk
            sa[kk, r] = a[row0 + r, k] if (row0 + r < M and k < K) else float32(0.0)
            sb[kk, r] = b[col0 + r, k] if (col0 + r < N and k < K) else float32(0.0)
        cuda.syncthreads()
        for kk in range(DEPTH):
            for i in range(PER):
                fa[i] = sa[kk, ty + SIDE * i]
                fb[i] = sb[kk, tx + SIDE * i]
            for i in range(PER):
                for j in range(PER):
                    acc[i, j] += fa[i] * fb[j]
        cuda.syncthreads()
    for i in range(PER):
        row = row0 + ty + SIDE * i
        for j in range(PER):
            col = col0 + tx + SIDE * j
            if row < M and col < N:
                c[row, col] = acc[i, j] + (bias[col] if bias.shape[0] > 0 else float32(0.0))


@cuda.jit(device=True)
def _block_reduce(buf, value, t, maximum):
    """The sum (or, with maximum set, the max) of value over the block's ROW_THREADS threads."""
    buf[t] = value
    cuda.syncthreads()
    step = ROW_THREADS // 2
    while step > 0:
        if t < step:
            buf[t] = max(buf[t], buf[t + step]) if maximum else buf[t] + buf[t + step]
        cuda.syncthreads()
        step //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _block_sum(buf, value, t):
    return _block_reduce(buf, value, t, False)


@cuda.jit
def matvec(a, b, bias, c):  # a [M, K] (M small), b [N, K] -> c [M, N]; one block per (m, n)
    buf = cuda.shared.array(ROW_THREADS, float32)
    n, m, t = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
    K = a.shape[1]
    acc = float32(0.0)
    for k in range(t, K, ROW_THREADS):
        acc += a[m, k] * b[n, k]
    total = _block_sum(buf, acc, t)
    if t == 0:
        c[m, n] = total + (bias[n] if bias.shape[0] > 0 else float32(0.0))


@cuda.jit(device=True)
def _row_stats(buf, x, row, t, eps):
    """Mean and 1/sqrt(var + eps) of x[row], reduced across the block (biased variance)."""
    C = x.shape[1]
    s = float32(0.0)
    for c in range(t, C, ROW_THREADS):
        s += x[row, c]
    mean = _block_sum(buf, s, t) / C
    s = float32(0.0)
    for c in range(t, C, ROW_THREADS):
        d = x[row, c] - mean
        s += d * d
    return mean, 1.0 / math.sqrt(_block_sum(buf, s, t) / C + eps)


@cuda.jit
def layer_norm_rows(x, w, b, eps, out):  # [N, C] -> [N, C]; b [C] or [0]
    buf = cuda.shared.array(ROW_THREADS, float32)
    row, t = cuda.blockIdx.x, cuda.threadIdx.x
    C = x.shape[1]
    mean, inv = _row_stats(buf, x, row, t, eps)
    for c in range(t, C, ROW_THREADS):
        out[row, c] = (x[row, c] - mean) * inv * w[c] + (b[c] if b.shape[0] > 0 else float32(0.0))


@cuda.jit
def gelu(x, out):  # flat [N] -> [N], exact erf GELU
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        out[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


@cuda.jit
def add(x, y, out):  # flat [N] + [N]
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] + y[i]


@cuda.jit
def gather_rows(x, rows, out):  # x [L, B, X], rows [B] -> out[l, b] = x[l, rows[b]]
    i = cuda.grid(1)
    B, X = x.shape[1], x.shape[2]
    if i < x.shape[0] * B * X:
        l, b, j = i // (B * X), i // X % B, i % X
        out[l, b, j] = x[l, rows[b], j]


def flash_attention(D, with_probs=False):
    """The prefill attention kernel for head size D (compiled once per D; D is a constant inside, so
    each thread's query row and context accumulator unroll into registers).

    Launch: grid (B * H, ceil(S / ROWS)), block ROWS * SPLIT threads. Arguments: qs [B, S, *],
    ks_src / vs_src [B, K, *] and the column where each tensor starts (q_off, k_off, v_off), H,
    scale, bias, mask_add, masked as in the module docstring; writes ctx [B, S, H * D] and, in the
    ``with_probs`` variant, probs [B, H, S, K] (a second sweep over the keys recomputes each score
    and writes exp(score - row max) / row total; the other variant takes an empty probs and has no
    trace of that sweep).

    Thread (g, r) owns query row r of the block's ROWS rows for key group g: each shared tile of KT
    keys is split into SPLIT runs of KT / SPLIT keys, so the SPLIT groups (one warp each on a GPU)
    stream disjoint keys with their own online softmax (running max, total and weighted sum,
    rescaled only when the max grows), and merge at the end. Keys, values, and the bias + mask_add
    and masked entries of the tile are copied into shared memory by all threads, consecutive threads
    taking consecutive columns. Scores are (q . k) * scale + (bias + mask_add), then replaced where
    masked: bias and mask_add are summed first, which can differ from the reference's order by a
    rounding.
    """
    key = (D, bool(with_probs))
    kernel = _FLASH.get(key)
    if kernel is None:
        kernel = _FLASH[key] = _make_flash_attention(*key)
    return kernel


_FLASH: dict = {}
ROWS = 8 if SIMULATED else 32  # query rows per attention block (a warp on a GPU)
SPLIT = 2 if SIMULATED else 4  # key groups per block: ROWS * SPLIT threads


def _make_flash_attention(D, WITH_PROBS):
    KT = max(ROWS, min(8 if SIMULATED else 64, 4096 // D) // SPLIT * SPLIT)  # keys per shared tile
    KG = KT // SPLIT  # keys per group per tile
    PADDED = KT + 1  # row length of the staged bias/mask tile (odd: rows fall in different banks)
    THREADS = ROWS * SPLIT
    CHAINS = 4 if D % 4 == 0 else 1  # independent partial sums in the q . k product

    @cuda.jit
    def kernel(
        qs, ks_src, vs_src, q_off, k_off, v_off, H, scale, bias, mask_add, masked, ctx, probs
    ):
        ks = cuda.shared.array((KT, D), float32)
        vs = cuda.shared.array((KT, D), float32)
        extra = cuda.shared.array((ROWS, PADDED), float32)  # bias + mask_add of the tile
        hide = cuda.shared.array((ROWS, PADDED), uint8)
        q = cuda.local.array(D, float32)
        acc = cuda.local.array(D, float32)
        part = cuda.local.array(CHAINS, float32)
        t = cuda.threadIdx.x
        r, g = t % ROWS, t // ROWS
        b, h = cuda.blockIdx.x // H, cuda.blockIdx.x % H
        i0 = cuda.blockIdx.y * ROWS
        i = i0 + r
        S, K = qs.shape[1], ks_src.shape[1]
        live = i < S
        has_bias, has_add, has_masked = (
            bias.shape[2] > 0,
            mask_add.shape[2] > 0,
            masked.shape[2] > 0,
        )
        staged = has_bias or has_add or has_masked
        for d in range(D):
            q[d] = qs[b, i, q_off + h * D + d] if live else float32(0.0)
            acc[d] = float32(0.0)
        top = float32(-math.inf)
        total = float32(0.0)
        # Sweep 0: the online softmax and the context. Sweep 1 (with_probs only): the same scores
        # again, written out as exp(score - row max) / row total.
        for sweep in range(2 if WITH_PROBS else 1):
            for k0 in range(0, K, KT):
                for e in range(t, KT * D, THREADS):
                    jr, d = e // D, e % D
                    inside = k0 + jr < K
                    ks[jr, d] = ks_src[b, k0 + jr, k_off + h * D + d] if inside else float32(0.0)
                    if sweep == 0:
                        vs[jr, d] = (
                            vs_src[b, k0 + jr, v_off + h * D + d] if inside else float32(0.0)
                        )
                if staged:
                    for e in range(t, ROWS * KT, THREADS):
                        rr, c = e // KT, e % KT
                        ii, j = i0 + rr, k0 + c
                        a, m = float32(0.0), uint8(0)
                        if ii < S and j < K:
                            if has_bias:
                                a = bias[
                                    h if bias.shape[0] > 1 else 0, ii if bias.shape[1] > 1 else 0, j
                                ]
                            if has_add:
                                a += mask_add[
                                    b if mask_add.shape[0] > 1 else 0,
                                    ii if mask_add.shape[1] > 1 else 0,
                                    j,
                                ]
                            if has_masked:
                                m = masked[
                                    b if masked.shape[0] > 1 else 0,
                                    ii if masked.shape[1] > 1 else 0,
                                    j,
                                ]
                        extra[rr, c] = a
                        hide[rr, c] = m
                cuda.syncthreads()
                if live:
                    first = g * KG
                    for c in range(first, first + min(KG, K - k0 - first)):
                        for u in range(CHAINS):
                            part[u] = float32(0.0)
                        for d0 in range(0, D, CHAINS):
                            for u in range(CHAINS):
                                part[u] += q[d0 + u] * ks[c, d0 + u]
                        s = float32(0.0)
                        for u in range(CHAINS):
                            s += part[u]
                        s *= scale
                        if staged:
                            s += extra[r, c]
                            if hide[r, c] != 0:
                                s = MASK_VALUE
                        if sweep == 1:
                            probs[b, h, i, k0 + c] = math.exp(s - top) / total
                            continue
                        if s == -math.inf:
                            # adds nothing (a row of only -inf scores ends as 0 / 0, like the
                            # reference)
                            continue
                        if s > top:
                            correction = math.exp(top - s)
                            total *= correction
                            for d in range(D):
                                acc[d] *= correction
                            top = s
                        p = math.exp(s - top)
                        total += p
                        for d in range(D):
                            acc[d] += p * vs[c, d]
                cuda.syncthreads()
            if sweep == 1:
                break
            for other in range(
                1, SPLIT
            ):  # merge group `other` into group 0 through the (now free) tiles
                if g == other:
                    extra[r, 0], extra[r, 1] = top, total
                    for d in range(D):
                        ks[r, d] = acc[d]
                cuda.syncthreads()
                if g == 0:
                    their_top, their_total = extra[r, 0], extra[r, 1]
                    if their_top != -math.inf:
                        new_top = max(top, their_top)
                        mine = math.exp(top - new_top) if top != -math.inf else float32(0.0)
                        theirs = math.exp(their_top - new_top)
                        total = total * mine + their_total * theirs
                        for d in range(D):
                            acc[d] = acc[d] * mine + ks[r, d] * theirs
                        top = new_top
                cuda.syncthreads()
            if g == 0 and live:
                for d in range(D):
                    ctx[b, i, h * D + d] = acc[d] / total
            if WITH_PROBS:  # every group needs the row's final max and total for sweep 1
                if g == 0:
                    extra[r, 0], extra[r, 1] = top, total
                cuda.syncthreads()
                top, total = extra[r, 0], extra[r, 1]
                cuda.syncthreads()

    return kernel


@cuda.jit
def decode_attention(qkv, kt, v, length, scale, slopes, key_ok, ctx):
    """grid B * H, block ROW_THREADS. qkv [B, 3 * H * D]: this step's fused projection (query, key,
    value columns); kt [B, H, D, T] (keys transposed: threads read consecutive keys); v [B, H, T,
    D]; slopes [H] (key-only ALiBi); key_ok [B, T] uint8. First stores this step's key and value in
    cache slot length - 1 (so a decode step needs no separate cache-write launch), then attends over
    slots 0 .. length - 1 in chunks of DECODE_CHUNK keys, whose scores sit in shared memory: a
    block-wide online softmax rescales the running totals when a chunk raises the max, so any cache
    length fits. Each thread accumulates the context for head dimensions t, t + ROW_THREADS, ... ctx
    [B, H * D]."""
    scores = cuda.shared.array(DECODE_CHUNK, float32)
    buf = cuda.shared.array(ROW_THREADS, float32)
    acc = cuda.local.array(DIMS_PER_THREAD, float32)
    H, D = kt.shape[1], kt.shape[2]
    C = H * D
    bh, t = cuda.blockIdx.x, cuda.threadIdx.x
    b, h = bh // H, bh % H
    for d in range(t, D, ROW_THREADS):
        kt[b, h, d, length - 1] = qkv[b, C + h * D + d]
        v[b, h, length - 1, d] = qkv[b, 2 * C + h * D + d]
    cuda.syncthreads()  # the block's own global writes are visible to it after the barrier
    for n in range(DIMS_PER_THREAD):
        acc[n] = float32(0.0)
    top = float32(-math.inf)
    total = float32(0.0)
    for c0 in range(0, length, DECODE_CHUNK):
        count = min(DECODE_CHUNK, length - c0)
        local_top = float32(-math.inf)
        for jj in range(t, count, ROW_THREADS):
            j = c0 + jj
            s = float32(0.0)
            for d in range(D):
                s += qkv[b, h * D + d] * kt[b, h, d, j]
            s = s * scale + slopes[h] * float32(j - (length - 1))
            if key_ok[b, j] == 0:
                s = MASK_VALUE
            scores[jj] = s
            local_top = max(local_top, s)
        new_top = max(top, _block_reduce(buf, local_top, t, True))
        correction = math.exp(top - new_top) if top != -math.inf else float32(0.0)
        partial = float32(0.0)
        for jj in range(t, count, ROW_THREADS):
            e = math.exp(scores[jj] - new_top)
            scores[jj] = e
            partial += e
        total = total * correction + _block_sum(buf, partial, t)  # its barriers publish scores[]
        for n in range(DIMS_PER_THREAD):
            d = t + n * ROW_THREADS
            if d < D:
                weighted = float32(0.0)
                for jj in range(count):
                    weighted += scores[jj] * v[b, h, c0 + jj, d]
                acc[n] = acc[n] * correction + weighted
        top = new_top
        cuda.syncthreads()  # every thread is done with scores[] before the next chunk
    for n in range(DIMS_PER_THREAD):
        d = t + n * ROW_THREADS
        if d < D:
            ctx[b, h * D + d] = acc[n] / total


@cuda.jit
def embed(ids, table, out):  # ids [N] int64, table [V, C] -> out [N, C]
    n, c = cuda.grid(2)
    if n < ids.shape[0] and c < table.shape[1]:
        out[n, c] = table[ids[n], c]


@cuda.jit
def cache_write(qkv, kt, v, start, C):
    """Copy the keys and values of qkv [B, S, 3C] into the cache at slots start .. start+S-1: kt [B,
    H, D, T] (transposed), v [B, H, T, D]."""
    b, s, c = cuda.grid(3)
    B, S = qkv.shape[0], qkv.shape[1]
    D = kt.shape[2]
    if b < B and s < S and c < C:
        h, d = c // D, c % D
        kt[b, h, d, start + s] = qkv[b, s, C + c]
        v[b, h, start + s, d] = qkv[b, s, 2 * C + c]


@cuda.jit
def set_column(x, column, value):  # x [B, T] uint8
    b = cuda.grid(1)
    if b < x.shape[0]:
        x[b, column] = value


@cuda.jit
def fused_matvec(x, ln_w, ln_b, eps, w, bias, gelu_out, resid, out):
    """One decode-step projection with its neighbours folded in (twin: layer_norm, linear, gelu, +):
    out[m, n] = resid[m, n] + act(LN(x[m]) . w[n] + bias[n]). Grid (N, M), block ROW_THREADS. ln_w
    of size 0 skips the norm (each block recomputes the row's mean and variance: C values, cheap
    next to the w row it streams); bias / resid of size 0 are absent; gelu_out != 0 applies exact
    GELU."""
    buf = cuda.shared.array(ROW_THREADS, float32)
    n, m, t = cuda.blockIdx.x, cuda.blockIdx.y, cuda.threadIdx.x
    K = x.shape[1]
    mean, inv = float32(0.0), float32(1.0)
    if ln_w.shape[0] > 0:
        mean, inv = _row_stats(buf, x, m, t, eps)
    acc = float32(0.0)
    for c in range(t, K, ROW_THREADS):
        v = x[m, c]
        if ln_w.shape[0] > 0:
            v = (v - mean) * inv * ln_w[c] + (ln_b[c] if ln_b.shape[0] > 0 else float32(0.0))
        acc += v * w[n, c]
    total = _block_sum(buf, acc, t)
    if t == 0:
        y = total + (bias[n] if bias.shape[0] > 0 else float32(0.0))
        if gelu_out != 0:
            y = 0.5 * y * (1.0 + math.erf(y * 0.7071067811865476))
        out[m, n] = y + (resid[m, n] if resid.shape[0] > 0 else float32(0.0))
