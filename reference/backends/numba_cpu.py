"""Numba CPU kernels: the hot operations of both families, each equal to a NumPy twin in
reference/ops.py.

| kernel here          | NumPy twin                | strategy                                      |
|----------------------|---------------------------|-----------------------------------------------|
| ``linear``           | ``ops.linear``            | matvec (<= 4 rows), 4 x 4 tiles (<= 64), then |
|                      |                           | numba_gemm on AVX-512 (panels packed per      |
|                      |                           | call from the stored weights), else BLAS      |
| ``layer_norm``       | ``ops.layer_norm``        | a parallel pass per row (two-pass variance)   |
| ``add_layer_norm``   | ``layer_norm(x + r)``     | the same, the residual added as it is read    |
| ``gelu``             | ``ops.gelu``              | parallel, elementwise, a rational erf         |
| ``linear_gelu``      | ``gelu(linear(x))``       | BLAS GEMM, then bias and GELU in one pass     |
| ``attention``        | ``ops.attention``         | a fused kernel per (batch, head), 6x16 tiles  |
| ``decode_step``      | ``mpt.block`` (S = 1),    | all blocks of a step and the LM head in one   |
|                      | then ``mpt.lm_logits``    | parallel region, its units claimed by the     |
|                      |                           | threads; KV [T, D], float32 or bf16           |
|                      |                           | (kv_cache "bf16"); from batch 4, fp32 and q8  |
|                      |                           | matvecs in 4 x 4 tiles (_tile_rows)           |
| ``linear``, bf16     | ``ops.linear``, widened   | each weight widened as read; with AVX512-BF16 |
|                      | (split_bf16's bound)      | the matvec and decode_step use bf16 dot       |
|                      |                           | products on activations split in two, except  |
|                      |                           | on Zen 5 (numba_bf16dot.SPLIT_DOTS)           |
| ``linear``, q8       | ``ops.linear``, dequant.  | int8 blocks widened, scaled per block of 32;  |
|                      | (split_q8's grid, VNNI)   | interleaved (InterleavedQ8), the matvec and   |
|                      |                           | decode_step use AVX512-VNNI int8 dot products |
|                      |                           | on activations on a 16-bit grid (numba_q8dot) |

Fast paths fall back to the NumPy twin where they do not apply (dropout, head masks).
numba_stacks.py composes them into whole MPNet layers, MPT blocks and the decode step. ``fastmath``
is limited to reassociation and contraction flags so that -inf and NaN still behave.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types
from numba.extending import intrinsic, overload

from .. import ops
from ..checkpoint import bf16_to_float32 as widen_bf16
from ..kernels import Kernels
from ..precision import (
    Q8_BLOCK,
    Q8_CHUNK,
    Q8_SPLIT_MAX,
    QUAD_BLOCK,
    QUAD_ROWS,
    InterleavedBf16,
    InterleavedQ8,
    Q8Matrix,
)
from .numba_bf16dot import SPLIT_DOTS, dot32, load32, load32_part
from .numba_q8dot import (
    Q8_DOT,
    add_i32,
    dot64,
    load16_u8_centred,
    load64_u8,
    quarter_sums,
    repeat4_f32,
    repeat4_i32,
    repeat16_i8,
    repeat_each4,
    scale_into,
    store_quarters,
    zero_i32,
)
from .numba_vec8 import (
    LANES,
    add8,
    element_pointer,
    fma8,
    hmax8,
    hsum8,
    load8,
    load8_i8,
    max8,
    splat8,
    store8,
    zero8,
)
from .numba_vec16 import (
    AVX512,
    add16,
    fma16,
    hsum16,
    load8_bf16,
    load16,
    load16_bf16,
    load16_i8,
    prefetch,
    splat16,
    store16,
    zero16,
)

# The kernels that may reorder, fuse and approximate float arithmetic. Every kernel that is not
# inlined says its fastmath outright, FASTMATH or False: Numba passes a caller's fastmath on to a
# callee that does not set its own, and caches that compilation for every later call. A kernel
# whose twin it equals bit for bit (the splits, the bf16 rounding, the score row) would then take
# the flags of whichever fast-math kernel compiled it first (test_numba_kernels checks both).
FASTMATH = {"contract", "reassoc", "arcp", "nsz", "afn"}

_TUNED = False  # whether tune_process() has run in this process


# GOMP_SPINCOUNT per workload (tune_process); encoding runs its projections in Numba (numba_gemm)
# on AVX-512 CPUs and in OpenBLAS elsewhere
SPIN_COUNTS = {"encode": "100000" if AVX512 else "1000", "decode": "100000"}


def tune_process(workload="encode"):
    """Process-wide settings under which the numba backend runs fast on a machine with few cores.

    Importing this module changes nothing; the command line and tools/bench.py call this once,
    early, and a program of yours may too. It changes three things, each only where the user has not
    set it:

    * GOMP_SPINCOUNT, by ``workload``: how long Numba's OpenMP workers spin after a parallel region
      before they sleep. libgomp reads it once, when it loads (the first parallel launch, or
      importing torch), so call this before either.
      - "encode" (the default; encoding and embedding): where the encoder's projections are
        OpenBLAS GEMMs (CPUs without AVX-512), 1000. The workers then yield the cores to
        OpenBLAS's threads; with libgomp's default the two pools fought (a 32 x 768 LayerNorm
        between GEMMs took 4 ms instead of 0.1 ms), and MPNet's encode measured 1.07 s at 1000 or
        10000, 1.26 s at 100000, 1.42 s at 300000. On AVX-512 CPUs the projections are Numba
        kernels too (numba_gemm), and 100000 is the faster: 0.93-0.96 s against 0.97-1.09 s at
        1000 (medians of three alternating pairs).
      - "decode" (generating with MPT; a step is Numba kernels only): 100000. When a step ran
        about 60 parallel regions with a few microseconds of serial work between them, workers
        that fell asleep in those gaps were woken by the kernel, which on a VM means waking a
        halted virtual CPU: bf16 decoding measured 1.47 / 1.33 / 1.27 / 1.18 / 1.30 s at 1000 /
        10^4 / 3 x 10^4 / 10^5 / 3 x 10^5, fp32 2.63 s at 1000 and 2.01 s at 100000 (AMD EPYC
        Zen 4, 2 vCPUs). A step is one region since (decode_step, the LM head included): the
        sampling between steps is the gap left, and 100000 still measured best there (bf16
        generation, processes alternating, six rounds: 1000 took 1.31x the time, 10000 1.05x).
        A prompt of more than 64 tokens runs its projections as BLAS GEMMs, which the spinning
        workers then slow: a 512-token prompt with 4 new tokens took 0.70 s at 1000 and 0.80 s at
        100000 (fp32), paid back after about 20 generated tokens.
    * OPENBLAS_THREAD_TIMEOUT=4, and OpenBLAS's thread pool restarted to read it
      (``_quiet_openblas_threads``).
    * glibc's mmap and trim thresholds raised to 512 MiB (``_keep_freed_memory``): freed memory then
      stays with the process for reuse, which also holds for fp32 weights converted to bf16 later.

    Linux only (elsewhere it does nothing); calling it again does nothing more.
    """
    if workload not in SPIN_COUNTS:
        raise ValueError(f"unknown workload {workload!r}; accepted: {sorted(SPIN_COUNTS)}")
    global _TUNED
    if _TUNED or not sys.platform.startswith("linux"):
        return
    _TUNED = True
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNTS[workload])
    _quiet_openblas_threads()
    _keep_freed_memory()


def _quiet_openblas_threads(timeout="4"):
    """OpenBLAS's threads likewise spin after each GEMM (2^28 cycles by default), taking the cores
    from the Numba kernel that follows it: the encoder's attention ran at half speed. OpenBLAS reads
    OPENBLAS_THREAD_TIMEOUT when it loads, which is before this module; so set it (unless the user
    did), have the library re-read its environment and restart its thread pool. Only for an OpenBLAS
    that exports those functions (NumPy's wheels do); anything else is left alone."""
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ or not os.path.exists("/proc/self/maps"):
        return
    with open("/proc/self/maps") as f:
        paths = {
            line.split()[-1]
            for line in f
            if "openblas" in line.lower() and line.rstrip().endswith((".so", ".so.0"))
        }
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = timeout
    for path in paths:
        try:
            lib = ctypes.CDLL(path)  # the already loaded instance
            lib.openblas_read_env, lib.blas_thread_shutdown_, lib.blas_thread_init  # noqa: B018 - all present?
        except (OSError, AttributeError):
            continue
        lib.openblas_read_env()
        lib.blas_thread_shutdown_()
        lib.blas_thread_init()


def _keep_freed_memory(limit=1 << 29):
    """glibc returns every large freed block to the kernel, so each new activation of a few MB is
    page-faulted in again (about 10 ms for 12 MB on these VMs, the whole cost of a GELU). Raising
    the mmap and trim thresholds to 512 MiB keeps freed blocks for reuse; RSS then holds the peak
    working set, which it reaches anyway. Other C libraries: nothing to do."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, limit)
    mallopt(M_TRIM_THRESHOLD, limit)


MASK_VALUE = np.float32(ops.MASK_VALUE)
_NO_SCALES = np.zeros((1, 1), np.float32)  # the scales argument of kernels given unscaled weights
TILED_MIN_ROWS = 4  # from this many rows of x on, a matvec takes four at a time (_tile_rows)
MATVEC_MAX_ROWS = 4  # up to this many rows (decode steps) a Numba matvec streams the weights once;
# above it _rows_tiled (up to FEW_ROWS_MAX rows), then BLAS GEMM.


# ------------------------------------------------------------------------------------- linear


@intrinsic
def _bits_to_float32(typingctx, bits):
    """Reinterpret a uint32 as the float32 with those bits (a free bitcast in the generated
    code)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.uint32), codegen


@njit(inline="always")
def bf16_to_float32(h):  # uint16 -> float32
    """bfloat16 is the top half of a float32: shift its 16 bits into place (twin:
    checkpoint.bf16_to_float32)."""
    return _bits_to_float32(np.uint32(h) << np.uint32(16))


@intrinsic
def _float32_to_bits(typingctx, x):
    """The uint32 bit pattern of a float32 (a free bitcast, the inverse of _bits_to_float32)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return types.uint32(types.float32), codegen


@njit(inline="always")
def _round_bits(u):  # float32 bits -> the bits of the nearest bf16 (ties to even), as uint32
    return (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)


@njit(inline="always")
def bf16_bits(x):  # float32 -> uint16: the bits of the nearest bf16 (twin: precision.to_bf16_bits)
    """Round to nearest, ties to even; overflow becomes inf, and NaN stays (quiet) NaN."""
    u = _float32_to_bits(x)
    if x != x:
        return np.uint16((u >> np.uint32(16)) | np.uint32(0x0040))
    return np.uint16(_round_bits(u))


@njit(parallel=True, cache=True, fastmath=False)
def round_to_bf16_in_place(x):  # [B, S, C] float32, any strides
    """x = precision.round_to_bf16(x), elementwise: the keys or values of a prompt as a bf16 cache
    holds them (DecoderStack.block with kv_cache "bf16"; x may be a view into the qkv product)."""
    B, S, C = x.shape
    for bs in prange(B * S):
        row = x[bs // S, bs % S]
        for c in range(C):
            row[c] = bf16_to_float32(bf16_bits(row[c]))


def _cached(cache, x):
    """x (float32) as the cache stores it: itself in a float32 cache, its bf16 bits in a uint16
    one (bf16_bits). Compiled per cache dtype."""


@overload(_cached)
def _cached_impl(cache, x):
    if cache.dtype == types.uint16:

        def as_bits(cache, x):
            return bf16_bits(x)

        return as_bits

    def as_is(cache, x):
        return x

    return as_is


@njit(inline="always")
def _split1(v):  # float32 -> the bf16 bits of hi and lo (uint32 each), v ~ hi + lo
    """Without branches (each case a select), so that LLVM vectorises the loops over it: a 3072
    activation split went from 5.6 us to 1.4 us (Zen 4), where a bf16 decode step makes 48."""
    u = _float32_to_bits(v)
    finite = (u & np.uint32(0x7F800000)) != np.uint32(0x7F800000)
    rounded = _round_bits(u)
    keep = finite and (rounded & np.uint32(0x7F80)) != np.uint32(0x7F80)  # not rounded to +-inf
    nan = not finite and (u & np.uint32(0x007FFFFF)) != np.uint32(0)
    # where rounding would overflow, and for inf and NaN, hi is v truncated (NaN kept quiet NaN)
    hi = rounded if keep else (u >> np.uint32(16)) | (np.uint32(0x0040) if nan else np.uint32(0))
    rest = v - _bits_to_float32(hi << np.uint32(16))
    return hi, _round_bits(_float32_to_bits(rest)) if finite else np.uint32(0)


@njit(cache=True, fastmath=False)
def split_bf16(x):  # [N, I] float32 -> [N, 2, I] uint16: the bf16 bits of hi and lo, x ~ hi + lo
    """Each activation as two bf16 values for the AVX512-BF16 dot products (twin:
    precision.split_bf16, whose docstring has the bounds): hi rounded to nearest, lo the exact
    remainder rounded; hi truncated where rounding would overflow; lo = 0 for inf and NaN."""
    N, I = x.shape
    out = np.empty((N, 2, I), np.uint16)
    for n in range(N):
        for i in range(I):
            out[n, 0, i], out[n, 1, i] = _split1(x[n, i])
    return out


@njit(cache=True, fastmath=False)
def split_bf16_blocks(x):  # [N, I] float32, I a multiple of 32 -> [N, 2 I / 32, 32] uint16
    """split_bf16's values laid out per block of 32 activations, its hi then its lo: row 2b of
    x[n]'s part is the hi of columns 32 b .. 32 b + 31, row 2b + 1 their lo. The interleaved
    kernel (_dot_bf16_quad) reads both halves of a block from one place, where split_bf16's
    layout puts them I values apart: at I = 3072 (the down-projection) the two 6 KB rows and the
    weights streaming past them did not stay in a 32 KB L1, and that matvec took 1.21x a read's
    time of its weights against 1.12x this way (Zen 4, 150 alternating rounds)."""
    N, I = x.shape
    out = np.empty((N, 2 * (I // QUAD_BLOCK), QUAD_BLOCK), np.uint16)
    for n in range(N):
        for b in range(I // QUAD_BLOCK):
            for k in range(QUAD_BLOCK):
                out[n, 2 * b, k], out[n, 2 * b + 1, k] = _split1(x[n, b * QUAD_BLOCK + k])
    return out


# fastmath=False (see FASTMATH): compiled inside the decode step with FASTMATH's arcp, the scale's
# division became a multiplication by a rounded reciprocal, one bit off the twin's scales
@njit(inline="always")
def _max_abs_bits(block):  # -> max |v| of a block of Q8_BLOCK float32, as its bits (uint32)
    """The bits of non-negative floats order as their magnitudes do (inf above every finite
    value, NaN above inf), so a block's largest magnitude is found in integers."""
    top = np.uint32(0)
    for k in range(Q8_BLOCK):
        top = max(top, _float32_to_bits(block[k]) & np.uint32(0x7FFFFFFF))
    return top


@njit(cache=True, fastmath=False)
def split_q8_chunks(x):  # [N, I] float32, I a multiple of 128 -> (parts, bias, scales)
    """x on precision.split_q8's 16-bit grid, laid out for the int8 dot-product kernel
    (_dot_q8_quad): parts int8 [N, 2 I / 128, 128], row 2c holding the high bytes of chunk c's
    integers q = 256 hi + lo and row 2c + 1 their low bytes, each in the order of a vector of the
    interleaved weights (``parts[n, 2c, 16 k + 4 b + m]`` is hi of column 128 c + 32 b + 4 k + m);
    bias int32 [N, I / 32], 128 times each block's sum of q (what the weights' +128 adds to its
    product); scales float32 [N, I / 32]. Twin: precision.split_q8, bit for bit (plain float32
    arithmetic: this function is compiled without fastmath, whoever calls it). Each chunk's bytes
    are made in column order, in loops LLVM vectorises, then moved four at a time into the
    vectors' order."""
    N, I = x.shape
    NB = I // Q8_BLOCK
    parts = np.empty((N, 2 * (I // Q8_CHUNK), Q8_CHUNK), np.int8)
    bias = np.empty((N, NB), np.int32)
    scales = np.empty((N, NB), np.float32)
    hi, lo = np.empty(Q8_CHUNK, np.int8), np.empty(Q8_CHUNK, np.int8)  # a chunk, column order
    hi4, lo4 = hi.view(np.int32), lo.view(np.int32)  # the same, four bytes at a time
    limit = np.float32(Q8_SPLIT_MAX)
    tiny = np.float32(np.finfo(np.float32).tiny)
    for n in range(N):
        for c in range(I // Q8_CHUNK):
            for b in range(4):
                j = c * Q8_CHUNK + b * Q8_BLOCK
                block = x[n, j : j + Q8_BLOCK]
                top = _max_abs_bits(block)
                finite = top < np.uint32(0x7F800000)  # no inf, no NaN
                s = _bits_to_float32(top) / limit
                usable = finite and s >= tiny
                inv = np.float32(1.0) / s if usable else np.float32(0.0)
                total = np.int32(0)
                for k in range(Q8_BLOCK):
                    q = np.int32(min(max(np.rint(block[k] * inv), -limit), limit))
                    h = (q + np.int32(128)) >> np.int32(8)
                    hi[b * Q8_BLOCK + k] = h
                    lo[b * Q8_BLOCK + k] = q - np.int32(256) * h
                    total += q
                bias[n, c * 4 + b] = np.int32(128) * total
                scales[n, c * 4 + b] = s if finite else np.float32(np.nan)
            hi_out, lo_out = parts[n, 2 * c].view(np.int32), parts[n, 2 * c + 1].view(np.int32)
            for k in range(8):
                for b in range(4):
                    hi_out[4 * k + b] = hi4[8 * b + k]
                    lo_out[4 * k + b] = lo4[8 * b + k]
    return parts, bias, scales


@njit(inline="always", fastmath=False)
def _q8_block_scale(block):  # 32 weights -> (their q8 scale, what they are divided by)
    """max |w| / 127, NaN where the block holds inf or NaN (the caller refuses those), and the
    divisor: the scale, or 1 for a block of zeros. Twin: precision.quantize_q8's per block."""
    top = _max_abs_bits(block)
    s = _bits_to_float32(top) / np.float32(127.0)
    if top >= np.uint32(0x7F800000):
        s = np.float32(np.nan)
    return s, (s if s > np.float32(0.0) else np.float32(1.0))


@njit(inline="always", fastmath=False)
def _q8_value(w, divisor):  # -> round(w / divisor) to nearest even, within +-127, as float32
    return min(max(np.rint(w / divisor), np.float32(-127.0)), np.float32(127.0))


@njit(parallel=True, cache=True, fastmath=False)
def quantize_q8_into(w, q, scales):  # [R, I] float32 -> q int8 [R, I], scales [R, I / 32]
    """precision.quantize_q8 of the rows of w into q and scales, bit for bit (plain float32
    division and rounding to even: compiled without fastmath); a block with inf or NaN gets a NaN
    scale, which the caller refuses. Rows in parallel: loading MPT's matrices into q8 storage
    spent most of its time in the NumPy twin's passes."""
    R, I = w.shape
    for r in prange(R):
        for b in range(I // Q8_BLOCK):
            j = b * Q8_BLOCK
            s, divisor = _q8_block_scale(w[r, j : j + Q8_BLOCK])
            scales[r, b] = s
            for k in range(Q8_BLOCK):
                q[r, j + k] = np.int8(_q8_value(w[r, j + k], divisor))


@njit(parallel=True, cache=True, fastmath=False)
def quantize_q8_quads_into(w, packed, scales):  # [4G, I] float32 -> interleave_q8's layout
    """quantize_q8_into, written straight in precision.interleave_q8's layout: ``packed[g, c, 64 k +
    16 r + 4 b + m] = q[4 g + r, 128 c + 32 b + 4 k + m] + 128`` (uint8 [G, I / 128, 512]) and
    ``scales[g, c, 4 r + b]`` (float32 [G, I / 128, 16]), bit for bit what interleave_q8 makes of
    quantize_q8's values."""
    G, C = packed.shape[0], packed.shape[1]
    for g in prange(G):
        for c in range(C):
            for r in range(QUAD_ROWS):
                row = QUAD_ROWS * g + r
                for b in range(4):
                    j = c * Q8_CHUNK + b * Q8_BLOCK
                    s, divisor = _q8_block_scale(w[row, j : j + Q8_BLOCK])
                    scales[g, c, 4 * r + b] = s
                    for k in range(8):
                        for m in range(4):
                            v = np.int32(_q8_value(w[row, j + 4 * k + m], divisor))
                            packed[g, c, 64 * k + 16 * r + 4 * b + m] = np.uint8(v + np.int32(128))


def _split_for(w, x):
    """x as the dot products with w's rows take it: split into bf16 pairs for bf16 weights where
    the matvec uses AVX512-BF16 (numba_bf16dot.SPLIT_DOTS: the CPU has it and is not one where
    widening was measured faster), per block of 32 (split_bf16_blocks) for interleaved ones and
    as two rows (split_bf16) for the others; otherwise x itself. Compiled per weight type."""


@overload(_split_for)
def _split_for_impl(w, x):
    if _is_q8_quads_type(w):
        if Q8_DOT:
            return lambda w, x: split_q8_chunks(x)
        return lambda w, x: x
    if SPLIT_DOTS and _is_interleaved_type(w):
        return lambda w, x: split_bf16_blocks(x)
    if SPLIT_DOTS and w.dtype == types.uint16:
        return lambda w, x: split_bf16(x)
    return lambda w, x: x


def _widen(w):
    """A weight as float32: itself, or a bf16 bit pattern (uint16) widened. Compiled per weight
    dtype."""


@overload(_widen, inline="always")
def _widen_impl(w):
    if w == types.uint16:
        return lambda w: bf16_to_float32(w)
    return lambda w: w


@njit(inline="always", fastmath=FASTMATH)
def _dot_q8_16(q, scales, o, x, n):  # _dot_q8 in 16-lane vectors, what _dot takes on AVX-512
    """Per two blocks of 32, four 16-lane products of the widened int8 weights with x, each
    block's pair summed, then scaled by the block's scale into one of two running sums; a last odd
    block into the first; one horizontal sum at the end. Half the instructions of the 8-lane
    kernel, which the int8 widening makes compute-bound: on the 2-vCPU Zen 5 VM that one ran at
    the same 33 Gweights/s from L2 as from memory, this one at 43.7 from memory (2 threads); on
    Zen 4 the two measured the same. Twin: Q8Matrix.dequantize(o) @ x[n]."""
    acc0, acc1 = zero16(), zero16()
    blocks = scales.shape[1]
    for pair in range(blocks // 2):
        j = pair * 2 * Q8_BLOCK
        p0 = fma16(zero16(), load16_i8(q, (o, j)), load16(x, (n, j)))
        p1 = fma16(zero16(), load16_i8(q, (o, j + 32)), load16(x, (n, j + 32)))
        p0 = fma16(p0, load16_i8(q, (o, j + 16)), load16(x, (n, j + 16)))
        p1 = fma16(p1, load16_i8(q, (o, j + 48)), load16(x, (n, j + 48)))
        acc0 = fma16(acc0, p0, splat16(scales[o, 2 * pair]))
        acc1 = fma16(acc1, p1, splat16(scales[o, 2 * pair + 1]))
    if blocks % 2:
        j = (blocks - 1) * Q8_BLOCK
        p0 = fma16(zero16(), load16_i8(q, (o, j)), load16(x, (n, j)))
        p0 = fma16(p0, load16_i8(q, (o, j + 16)), load16(x, (n, j + 16)))
        acc0 = fma16(acc0, p0, splat16(scales[o, blocks - 1]))
    return hsum16(add16(acc0, acc1))


@njit(inline="always", fastmath=FASTMATH)
def _dot_q8(q, scales, o, x, n):  # q8 row o of (q, scales) . x[n]; x [N, I] float32, unit stride
    """One q8 row (precision.Q8Matrix) times a float32 row: per block of 32, four 8-lane products of
    the widened int8 weights with x summed in two registers, then scaled by the block's scale into
    two running sums; one horizontal sum at the end. Twin: Q8Matrix.dequantize(o) @ x[n]."""
    acc0, acc1 = zero8(), zero8()
    for blk in range(scales.shape[1]):
        j = blk * Q8_BLOCK
        p0 = fma8(zero8(), load8_i8(q, o, j), load8(x, n, j))
        p1 = fma8(zero8(), load8_i8(q, o, j + 8), load8(x, n, j + 8))
        p0 = fma8(p0, load8_i8(q, o, j + 16), load8(x, n, j + 16))
        p1 = fma8(p1, load8_i8(q, o, j + 24), load8(x, n, j + 24))
        scale = splat8(scales[o, blk])
        acc0, acc1 = fma8(acc0, p0, scale), fma8(acc1, p1, scale)
    return hsum8(add8(acc0, acc1))


@njit(inline="always", fastmath=FASTMATH)
def _dot_bf16(w, o, xs, n):  # bf16 row o of w . (hi + lo)[n] of a split x (split_bf16)
    """One bf16 row times a split float32 row with AVX512-BF16 (numba_bf16dot): per 64 weights,
    four dot instructions into four running sums (the hi and lo halves of x, two blocks of 32),
    then a block of 32 and a widened scalar tail for what remains. Twin: the widened row times
    hi + lo in float64, within float32 accumulation."""
    I = w.shape[1]
    a0, a1, a2, a3 = zero16(), zero16(), zero16(), zero16()
    j = 0
    while j + 64 <= I:
        w0, w1 = load32(w, o, j), load32(w, o, j + 32)
        a0 = dot32(a0, w0, load32_part(xs, n, 0, j))
        a1 = dot32(a1, w1, load32_part(xs, n, 0, j + 32))
        a2 = dot32(a2, w0, load32_part(xs, n, 1, j))
        a3 = dot32(a3, w1, load32_part(xs, n, 1, j + 32))
        j += 64
    if j + 32 <= I:
        w0 = load32(w, o, j)
        a0 = dot32(a0, w0, load32_part(xs, n, 0, j))
        a2 = dot32(a2, w0, load32_part(xs, n, 1, j))
        j += 32
    acc = hsum16(add16(add16(a0, a1), add16(a2, a3)))
    for i in range(j, I):
        acc += bf16_to_float32(w[o, i]) * (
            bf16_to_float32(xs[n, 0, i]) + bf16_to_float32(xs[n, 1, i])
        )
    return acc


def _dot(w, scales, o, x, n):
    """w[o, :] . x[n, :] for float32 weights, bf16 bits (uint16) or q8 (int8 with ``scales``; the
    other kinds ignore it). x is a float32 [N, I] or, for bf16 weights, what _split_for made of it
    ([N, 2, I] uint16 on AVX512-BF16 CPUs). Compiled per weight dtype and x's type."""


@overload(_dot, jit_options={"forceinline": True})
def _dot_impl(w, scales, o, x, n):
    if w.dtype == types.int8 and AVX512:
        return lambda w, scales, o, x, n: _dot_q8_16(w, scales, o, x, n)
    if w.dtype == types.int8:
        return lambda w, scales, o, x, n: _dot_q8(w, scales, o, x, n)
    if w.dtype == types.uint16 and x.ndim == 3:
        return lambda w, scales, o, x, n: _dot_bf16(w, o, x, n)

    def dot(w, scales, o, x, n):
        acc = np.float32(0.0)
        for i in range(x.shape[1]):
            acc += _widen(w[o, i]) * x[n, i]
        return acc

    return dot


# How far ahead _dot_bf16_quad asks for its weights (prefetcht1, into L2): six blocks of four rows
# by 32 columns. Over the stacked MPT-125M block matrices from memory, against the same kernel
# without it (Zen 4; 1200 and 2500 alternating rounds binned by the rate of a read between them):
# 1.050x and 1.026x a plain read's time against 1.062x and 1.040x where the memory ran at its
# usual speed, 1.215x against 1.238x in its fast bursts, 1.055x against 1.148x in between. 1 and
# 2 KB ahead and prefetcht2 measured within 1.5% of it, 0.5 KB up to 4% and 3 KB up to 7% slower;
# prefetcht0 (into L1) was slower than none. One hint a block (its first line; the hardware's
# streamer fills in the other three) rather than one a line: where the weights fit the L3 the
# hints were pure cost, and whole bf16 steps took 0.91x the time (one layer and a 4096-token head,
# 20 MB: 100 alternating rounds) and 0.97x (two layers, 35 MB), while from memory they took
# 0.996x and 1.006x (MPT-125M, 300 and 200 rounds) and 0.996x (four layers, 63 MB) (Zen 4, L3
# 32 MiB, 2026-12-06). Per block, serially over one 3072 x 768 matrix held in cache, the hints on
# every line cost 18% of the kernel's rate.
QUAD_BYTES = QUAD_ROWS * QUAD_BLOCK * 2  # one block of the interleaved layout
PREFETCH_AHEAD = 6 * QUAD_BYTES


@njit(inline="always", fastmath=FASTMATH)
def _dot_bf16_quad(w, g, xs, n):  # rows 4g .. 4g + 3 of interleaved bf16 w . (hi + lo)[n]
    """Four bf16 rows, interleaved (precision.interleave_quads: [O / 4, I / 32, 128]), times one
    split float32 row (split_bf16_blocks' layout) with AVX512-BF16: per block of 32 columns, the
    hi and lo halves of x are loaded once and serve the four rows' 32 weights each, eight dot
    instructions into eight running sums, while the weights stream from one address upward. Per
    32 weights a row that is one weight load and half an activation load, where _dot_bf16 makes
    one of each; from memory the stacked decode matrices went through it at 1.03x the time of a
    plain read of their bytes, against 1.21x for _dot_bf16 (Zen 4, 60 alternating rounds;
    docs/performance.md). For x's first row (the callers go through the rows of x with the group
    fixed, n = 0 first) each block also asks for the first line of the one PREFETCH_AHEAD bytes
    on: the weights are one stream, so that is the same matrix or the next group's rows (past a
    matrix's end, a wasted hint). Twin: the widened rows times hi + lo in float64, within float32
    accumulation."""
    wg = w[g]
    a0, a1, a2, a3 = zero16(), zero16(), zero16(), zero16()
    b0, b1, b2, b3 = zero16(), zero16(), zero16(), zero16()
    for blk in range(wg.shape[0]):
        if n == 0:  # the block PREFETCH_AHEAD bytes on, into L2 (later rows find it in cache)
            prefetch(wg, (blk, 0), PREFETCH_AHEAD)
        hi, lo = load32_part(xs, n, 2 * blk, 0), load32_part(xs, n, 2 * blk + 1, 0)
        w0, w1 = load32(wg, blk, 0), load32(wg, blk, 32)
        w2, w3 = load32(wg, blk, 64), load32(wg, blk, 96)
        a0, b0 = dot32(a0, w0, hi), dot32(b0, w0, lo)
        a1, b1 = dot32(a1, w1, hi), dot32(b1, w1, lo)
        a2, b2 = dot32(a2, w2, hi), dot32(b2, w2, lo)
        a3, b3 = dot32(a3, w3, hi), dot32(b3, w3, lo)
    return (
        hsum16(add16(a0, b0)),
        hsum16(add16(a1, b1)),
        hsum16(add16(a2, b2)),
        hsum16(add16(a3, b3)),
    )


@njit(inline="always")
def _dot_pair32(acc, w, xs, n, blk):  # acc + w . (hi + lo) of x[n]'s block blk, in one sum
    hi, lo = load32_part(xs, n, 2 * blk, 0), load32_part(xs, n, 2 * blk + 1, 0)
    return dot32(dot32(acc, w, hi), w, lo)


@njit(inline="always", fastmath=FASTMATH)
def _dot_bf16_quad_rows4(w, g, xs, n):  # _dot_bf16_quad for rows n .. n + 3 of x: 16 sums
    """The four interleaved bf16 rows of group g times four split rows of x, n to n + 3: each
    block's four weight vectors are loaded once and serve the four rows of x, hi and lo of each
    into one running sum (16 sums, where _dot_bf16_quad keeps eight for one row). Row at a time,
    the down projection (I = 3072, its activations and a group's rows more than L1) ran at 0.63
    dot instructions a cycle on one Zen 4 core with the matrix in cache at batch 16; this way at
    0.98, and at I = 768 the two ran alike (0.91-0.94). Returns (row n's four sums, row n + 1's,
    ...), each group of four the rows 4g .. 4g + 3. Twin: as _dot_bf16_quad's, within float32
    accumulation (hi and lo are summed in one register here, in two there)."""
    wg = w[g]
    c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero16()
    c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero16()
    for blk in range(wg.shape[0]):
        if n == 0:  # as _dot_bf16_quad: the first rows of x ask for the weights ahead
            prefetch(wg, (blk, 0), PREFETCH_AHEAD)
        w0, w1 = load32(wg, blk, 0), load32(wg, blk, 32)
        w2, w3 = load32(wg, blk, 64), load32(wg, blk, 96)
        c00, c01 = _dot_pair32(c00, w0, xs, n, blk), _dot_pair32(c01, w1, xs, n, blk)
        c02, c03 = _dot_pair32(c02, w2, xs, n, blk), _dot_pair32(c03, w3, xs, n, blk)
        c10, c11 = _dot_pair32(c10, w0, xs, n + 1, blk), _dot_pair32(c11, w1, xs, n + 1, blk)
        c12, c13 = _dot_pair32(c12, w2, xs, n + 1, blk), _dot_pair32(c13, w3, xs, n + 1, blk)
        c20, c21 = _dot_pair32(c20, w0, xs, n + 2, blk), _dot_pair32(c21, w1, xs, n + 2, blk)
        c22, c23 = _dot_pair32(c22, w2, xs, n + 2, blk), _dot_pair32(c23, w3, xs, n + 2, blk)
        c30, c31 = _dot_pair32(c30, w0, xs, n + 3, blk), _dot_pair32(c31, w1, xs, n + 3, blk)
        c32, c33 = _dot_pair32(c32, w2, xs, n + 3, blk), _dot_pair32(c33, w3, xs, n + 3, blk)
    return (
        (hsum16(c00), hsum16(c01), hsum16(c02), hsum16(c03)),
        (hsum16(c10), hsum16(c11), hsum16(c12), hsum16(c13)),
        (hsum16(c20), hsum16(c21), hsum16(c22), hsum16(c23)),
        (hsum16(c30), hsum16(c31), hsum16(c32), hsum16(c33)),
    )


@njit(inline="always", fastmath=FASTMATH)
def _dot_quad_widened(w, g, x, n):  # the same four rows against float32 x, each weight widened
    """The interleaved layout on a CPU without the bf16 dot product (only where one is built by
    hand: numba_stacks interleaves only where SPLIT_DOTS holds)."""
    s0, s1, s2, s3 = np.float32(0.0), np.float32(0.0), np.float32(0.0), np.float32(0.0)
    for blk in range(w.shape[1]):
        for k in range(QUAD_BLOCK):
            xv = x[n, blk * QUAD_BLOCK + k]
            s0 += bf16_to_float32(w[g, blk, k]) * xv
            s1 += bf16_to_float32(w[g, blk, QUAD_BLOCK + k]) * xv
            s2 += bf16_to_float32(w[g, blk, 2 * QUAD_BLOCK + k]) * xv
            s3 += bf16_to_float32(w[g, blk, 3 * QUAD_BLOCK + k]) * xv
    return s0, s1, s2, s3


# How far ahead _dot_q8_quad asks for its weights (prefetcht1, into L2): four chunks of 512 bytes
Q8_PREFETCH_AHEAD = 4 * QUAD_ROWS * Q8_CHUNK


@njit(inline="always", fastmath=FASTMATH)
def _dot_q8_quad(w, scales, g, xs, n):  # rows 4g .. 4g + 3 of interleaved q8 w . x[n]
    """Four q8 rows, interleaved (precision.interleave_q8: [O / 4, I / 128, 512] bytes, scales
    [O / 4, I / 128, 16]), times one row of x on the 16-bit grid (split_q8_chunks' parts, bias
    and scales) with AVX512-VNNI (numba_q8dot): per chunk of 128 columns, eight 64-byte vectors
    of weights, each multiplied by the chunk's high and its low bytes of x (16 bytes each,
    repeated for the four rows) into int32 lanes, one lane per (row, block), in two pairs of
    running sums; then the chunk's integers less the bias, made float32 and scaled by the
    weights' and x's block scales, into sixteen float32 lanes; the four rows' lanes summed at
    the end. For x's first row each chunk also asks for the first line of the one
    Q8_PREFETCH_AHEAD bytes on (as _dot_bf16_quad does). Twin: precision.InterleavedQ8's
    dequantized rows times precision.split_q8's q s in float64, within float32 accumulation."""
    parts, bias, x_scales = xs
    wg, sg = w[g], scales[g]
    acc = zero16()
    for c in range(wg.shape[0]):
        if n == 0:
            prefetch(wg, (c, 0), Q8_PREFETCH_AHEAD)
        h0, h1, l0, l1 = zero_i32(), zero_i32(), zero_i32(), zero_i32()
        for k in range(0, 8, 2):
            w0, w1 = load64_u8(wg, (c, 64 * k)), load64_u8(wg, (c, 64 * k + 64))
            h0 = dot64(h0, w0, repeat16_i8(parts, (n, 2 * c, 16 * k)))
            l0 = dot64(l0, w0, repeat16_i8(parts, (n, 2 * c + 1, 16 * k)))
            h1 = dot64(h1, w1, repeat16_i8(parts, (n, 2 * c, 16 * k + 16)))
            l1 = dot64(l1, w1, repeat16_i8(parts, (n, 2 * c + 1, 16 * k + 16)))
        acc = scale_into(
            acc,
            add_i32(h0, h1),
            add_i32(l0, l1),
            repeat4_i32(bias, (n, 4 * c)),
            load16(sg, (c, 0)),
            repeat4_f32(x_scales, (n, 4 * c)),
        )
    return quarter_sums(acc)


@njit(inline="always", fastmath=FASTMATH)
def _dot_q8_quad_widened(w, scales, g, x, n):  # the same four rows against float32 x
    """The interleaved q8 layout on a CPU without AVX512-VNNI (only where one is built by hand:
    numba_stacks interleaves q8 only where Q8_DOT holds): each weight dequantized, times x."""
    s0, s1, s2, s3 = np.float32(0.0), np.float32(0.0), np.float32(0.0), np.float32(0.0)
    for c in range(w.shape[1]):
        for k in range(8):
            for b in range(4):
                for m in range(4):
                    xv = x[n, c * Q8_CHUNK + b * Q8_BLOCK + 4 * k + m]
                    at = 64 * k + 4 * b + m
                    s0 += _q8_lane(w, scales, g, c, at, 0) * xv
                    s1 += _q8_lane(w, scales, g, c, at, 1) * xv
                    s2 += _q8_lane(w, scales, g, c, at, 2) * xv
                    s3 += _q8_lane(w, scales, g, c, at, 3) * xv
    return s0, s1, s2, s3


@njit(inline="always")
def _q8_lane(w, scales, g, c, at, r):  # the weight at byte ``at`` of row r's lanes, as float32
    q = np.int32(w[g, c, at + 16 * r]) - np.int32(128)
    return np.float32(q) * scales[g, c, 4 * r + (at % 16) // 4]


def _is_interleaved_type(w):  # a Numba type: interleaved bf16 (uint16 [O / 4, I / 32, 128])?
    return isinstance(w, types.Array) and w.dtype == types.uint16 and w.ndim == 3


def _is_q8_quads_type(w):  # a Numba type: interleaved q8 (uint8 [O / 4, I / 128, 512])?
    return isinstance(w, types.Array) and w.dtype == types.uint8 and w.ndim == 3


def _is_grouped_type(w):  # either interleaved layout: rows in groups of four, w.shape[0] of them
    return _is_interleaved_type(w) or _is_q8_quads_type(w)


def _interleaved(w):
    """Whether a weight argument is in one of the layouts that keep rows in groups of four (bf16
    or q8 interleaved), as a compile-time constant."""


@overload(_interleaved, inline="always")
def _interleaved_impl(w):
    flag = _is_grouped_type(w)
    return lambda w: flag


@njit(inline="always")
def out_rows(w):  # the rows O of a weight as the kernels take it (plain [O, I] or interleaved)
    return w.shape[0] * QUAD_ROWS if _interleaved(w) else w.shape[0]


@njit(inline="always")
def _row_groups(w):  # how many groups of four rows _dot4 goes over (the last may run past O)
    return w.shape[0] if _interleaved(w) else (w.shape[0] + QUAD_ROWS - 1) // QUAD_ROWS


@njit(inline="always")
def _group_row(w, g, r):  # row 4g + r of a plain [O, I] w, or its last row where that is past it
    return min(g * QUAD_ROWS + r, w.shape[0] - 1)


def _dot4(w, scales, g, x, n):
    """Rows 4g .. 4g + 3 of w, each dotted with x[n] (as _dot takes it, or as _split_for made
    it), as a 4-tuple: the interleaved bf16 or q8 kernel where w is in that layout, otherwise _dot
    four times, rows past the last repeating it (the callers store only rows below O). Compiled
    per weight type."""


@overload(_dot4, jit_options={"forceinline": True})
def _dot4_impl(w, scales, g, x, n):
    if _is_q8_quads_type(w):
        if isinstance(x, types.BaseTuple):
            return lambda w, scales, g, x, n: _dot_q8_quad(w, scales, g, x, n)
        return lambda w, scales, g, x, n: _dot_q8_quad_widened(w, scales, g, x, n)
    if _is_interleaved_type(w):
        if x.ndim == 3:
            return lambda w, scales, g, x, n: _dot_bf16_quad(w, g, x, n)
        return lambda w, scales, g, x, n: _dot_quad_widened(w, g, x, n)

    def dot4(w, scales, g, x, n):
        return (
            _dot(w, scales, _group_row(w, g, 0), x, n),
            _dot(w, scales, _group_row(w, g, 1), x, n),
            _dot(w, scales, _group_row(w, g, 2), x, n),
            _dot(w, scales, _group_row(w, g, 3), x, n),
        )

    return dot4


# How a decode matvec's rows are shared between the threads. Split evenly (prange's static
# chunks), the two halves of a matrix finished at different times: over the 48 MPT-125M block
# matrices from memory, the first thread done waited a median 8% of the region for the other
# in fp32 and 4% in bf16 (Zen 4, cycle counts of each thread's finish). So each thread still
# starts on its own even span and streams it from the front, but a thread done with its span
# takes what is left of the others' from their far ends, CLAIM_GROUPS groups of four rows at a
# time, and the threads finish within about one such claim of each other. The owner of a span
# claims half of what is left of it at a time (never less than CLAIM_GROUPS): each claim is an
# atomic instruction, a fence that stalls the stream, and claims of 16 rows throughout made
# fp32 steps 4% slower rather than faster. The rows and the arithmetic of each are the same
# whoever computes them: the result does not change. Whole MPT-125M steps at t = 100 against
# prange's even halves, in one process (Zen 4, 200-400 alternating rounds): fp32 0.976x the time
# while the memory ran slow and 0.925x in its fast bursts, q8 0.967x, bf16 0.997x, fp32 at
# batch 4 0.980x; the logits are the same bit for bit.
CLAIM_GROUPS = 4  # groups of four rows a thief claims (16 rows: 48 KB of fp32 weights at I = 768)
CLAIM_STRIDE = 8  # int64 words this far apart, one cache line each
_LOW32 = (1 << 32) - 1


def _word_slot(context, builder, signature, args):  # -> i64* to args[0][args[1]]
    index = context.cast(builder, args[1], signature.args[1], types.intp)
    return element_pointer(
        context, builder, signature.args[0], args[0], index, vector=ir.IntType(64)
    )


def _int64_slot(words, i):  # an int64 [N] array and an integer index
    return (
        isinstance(words, types.Array)
        and words.dtype == types.int64
        and words.ndim == 1
        and isinstance(i, types.Integer)
    )


@intrinsic
def _load_word(typingctx, words, i):  # words[i], read in one atomic step
    if not _int64_slot(words, i):
        return None

    def codegen(context, builder, signature, args):  # acquire: what was published before is seen
        return builder.load_atomic(_word_slot(context, builder, signature, args), "acquire", 8)

    return types.int64(words, i), codegen


@intrinsic
def _add_word(typingctx, words, i, n):
    """words[i] += n in one atomic step -> the value it held before (release: every store made
    before it is seen by whoever reads the sum with _load_word)."""
    if not (_int64_slot(words, i) and n == types.int64):
        return None

    def codegen(context, builder, signature, args):
        slot = _word_slot(context, builder, signature, args)
        return builder.atomic_rmw("add", slot, args[2], "release")

    return types.int64(words, i, n), codegen


@intrinsic
def _swap_word(typingctx, words, i, expected, new):  # words[i] = new if it holds expected
    """-> the value words[i] held: the swap happened if that is expected (one atomic step)."""
    if not (_int64_slot(words, i) and expected == types.int64 and new == types.int64):
        return None

    def codegen(context, builder, signature, args):
        slot = _word_slot(context, builder, signature, args)
        pair = builder.cmpxchg(slot, args[2], args[3], "monotonic", "monotonic")
        return builder.extract_value(pair, 0)

    return types.int64(words, i, expected, new), codegen


@njit(inline="always")
def _span_start(task, tasks, groups):  # the first group of task's even span
    return task * groups // tasks


@njit(inline="always")
def _open_spans_into(spans, tasks, groups):  # spans [tasks * CLAIM_STRIDE]: each task's even span
    """Word s * CLAIM_STRIDE: task s's first group | its end << 32 (the others are padding)."""
    if tasks < 1:
        raise ValueError("a matvec needs at least one task (the number of threads)")
    if groups >= 1 << 31:
        raise ValueError("a matvec's groups of four rows must number under 2^31")
    for s in range(tasks):
        start, end = _span_start(s, tasks, groups), _span_start(s + 1, tasks, groups)
        spans[s * CLAIM_STRIDE] = start | end << 32


@njit(inline="always")
def _open_spans(tasks, groups):  # -> one word per task's span: its first group | its end << 32
    spans = np.zeros(max(tasks, 0) * CLAIM_STRIDE, np.int64)
    _open_spans_into(spans, tasks, groups)
    return spans


@njit(inline="always")
def _next_groups(spans, task, tasks, k):  # -> (lo, hi, k): the next groups [lo, hi) to compute
    """lo == hi when none are left anywhere. k is how many spans the task has moved on from its
    own (span task + k, modulo tasks, is the one it draws from). Each span's word holds the
    groups not yet claimed, [front, back); a claim moves the front (the owner) or the back
    (everyone else) by compare-and-swap, so each group is given out once."""
    while k < tasks:
        s = ((task + k) % tasks) * CLAIM_STRIDE
        word = _load_word(spans, s)
        while True:
            front, back = word & _LOW32, word >> 32
            if front >= back:
                break
            if k == 0:
                lo, hi = front, min(back, front + max(CLAIM_GROUPS, (back - front) // 2))
                claimed = hi | back << 32
            else:
                lo, hi = max(front, back - CLAIM_GROUPS), back
                claimed = front | lo << 32
            seen = _swap_word(spans, s, word, claimed)
            if seen == word:
                return lo, hi, k
            word = seen
        k += 1
    return 0, 0, k


def _weight_lanes(w, scales, g, r, i):
    """Row 4g + r of w (its last row where that is past it), columns i .. i + TILE_LANES, as
    float32 lanes: loaded (float32), or int8 times its block's scale (q8). Compiled per weight
    type."""


@overload(_weight_lanes, inline="always")
def _weight_lanes_impl(w, scales, g, r, i):
    if w.dtype == types.int8:

        def q8(w, scales, g, r, i):
            o = _group_row(w, g, r)
            scale = _tile_splat(scales[o, i // Q8_BLOCK])
            return _tile_fma(_tile_zero(), _tile_load_i8(w, o, i), scale)

        return q8
    return lambda w, scales, g, r, i: _tile_load(w, _group_row(w, g, r), i)


def _weight_at(w, scales, g, r, i):
    """One weight of row 4g + r (as _weight_lanes), at column i, as float32."""


@overload(_weight_at, inline="always")
def _weight_at_impl(w, scales, g, r, i):
    if w.dtype == types.int8:

        def q8(w, scales, g, r, i):
            o = _group_row(w, g, r)
            return np.float32(w[o, i]) * scales[o, i // Q8_BLOCK]

        return q8
    return lambda w, scales, g, r, i: w[_group_row(w, g, r), i]


# How far ahead along its rows _tile_rows asks for a group's weights: a constant, so that each
# hint's address is a row's own pointer plus a displacement (as an argument, the distance took
# four more registers in the loop, whose pointers then went to the stack)
TILE_PREFETCH_BYTES = 1024


@njit(inline="always", fastmath=FASTMATH)
def _tile_rows(w, scales, g, x, n0, bias, out, add, ahead):
    """out[n, o] (+)= w[o] . x[n] (+ bias[o]) for the rows o of group g and n = n0 .. n0 + 3 (those
    below O and N): sixteen running sums in registers along I, each weight vector loaded once,
    straight from w as stored (_weight_lanes), for four rows of x (rows of x past the last repeat
    it, unstored), each row of w asked for TILE_PREFETCH_BYTES ahead where ``ahead`` is set."""
    N, I = x.shape
    O = out.shape[1]
    I_lanes = I - I % TILE_LANES
    n1, n2, n3 = min(n0 + 1, N - 1), min(n0 + 2, N - 1), min(n0 + 3, N - 1)
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = _tile_zero()
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = _tile_zero()
    for i in range(0, I_lanes, TILE_LANES):
        x0, x1 = _tile_load(x, n0, i), _tile_load(x, n1, i)
        x2, x3 = _tile_load(x, n2, i), _tile_load(x, n3, i)
        if ahead:  # a line of each row
            for r in range(QUAD_ROWS):
                prefetch(w, (_group_row(w, g, r), i), TILE_PREFETCH_BYTES)
        w0, w1 = _weight_lanes(w, scales, g, 0, i), _weight_lanes(w, scales, g, 1, i)
        w2, w3 = _weight_lanes(w, scales, g, 2, i), _weight_lanes(w, scales, g, 3, i)
        a00, a01, a02, a03 = _fma_times4(a00, a01, a02, a03, w0, x0, x1, x2, x3)
        a10, a11, a12, a13 = _fma_times4(a10, a11, a12, a13, w1, x0, x1, x2, x3)
        a20, a21, a22, a23 = _fma_times4(a20, a21, a22, a23, w2, x0, x1, x2, x3)
        a30, a31, a32, a33 = _fma_times4(a30, a31, a32, a33, w3, x0, x1, x2, x3)
    sums = (
        (_tile_hsum(a00), _tile_hsum(a01), _tile_hsum(a02), _tile_hsum(a03)),
        (_tile_hsum(a10), _tile_hsum(a11), _tile_hsum(a12), _tile_hsum(a13)),
        (_tile_hsum(a20), _tile_hsum(a21), _tile_hsum(a22), _tile_hsum(a23)),
        (_tile_hsum(a30), _tile_hsum(a31), _tile_hsum(a32), _tile_hsum(a33)),
    )
    for r in range(QUAD_ROWS):
        o = g * QUAD_ROWS + r
        for c in range(4):
            n = n0 + c
            if o < O and n < N:
                total = sums[r][c]
                for i in range(I_lanes, I):
                    total += _weight_at(w, scales, g, r, i) * x[n, i]
                # the store written out, as in _claim_rows: through a helper of Numba's
                # inline="always" holding the same two lines, LLVM compiled the whole step
                # otherwise, and batched fp32 steps took 1.07-1.14x the time (batch 4-16); in
                # _claim_rows' row-at-a-time path, bf16 steps at batch 4 took 1.07x (Zen 4)
                y = total + bias[o] if bias.size else total
                out[n, o] = out[n, o] + y if add else y


def _tiles_of(tiles, a):
    """a where tiles is given, None where it is None (a compile-time choice: _tiled_group)."""


@overload(_tiles_of, inline="always")
def _tiles_of_impl(tiles, a):
    if isinstance(tiles, types.NoneType):
        return lambda tiles, a: None
    return lambda tiles, a: a


def _tiled_group(x, w, scales, g, bias, out, add):
    """Where x has TILED_MIN_ROWS rows or more and w is float32 or q8: out[n, o] (+)= w[o] . x[n]
    (+ bias[o]) for group g's rows o and every row n, four rows of x at a time (_tile_rows), and
    True; otherwise nothing, and False (the caller then takes a row of x at a time). x None
    (linear's matvecs, a step at batch 1-3) compiles without the tiles, which took the fp32
    step's cold compile from 14 to 30 s. bf16 weights never take these tiles: with the bf16
    dot products, tiles on widened weights made whole steps 1.10x the time at batch 4 and 1.22x
    at batch 8 (Zen 4); interleaved ones take four rows of x at a time through the dot products
    instead (_bf16_row_tiles). Interleaved q8 weights take a row at a time: with the int8 dot
    products so, whole MPT-125M steps took 0.63x the time of the q8 tiles at batch 4 and 0.74x
    at batch 16 (Zen 4). Compiled per type."""


@overload(_tiled_group, inline="always")
def _tiled_group_impl(x, w, scales, g, bias, out, add):
    if isinstance(x, types.NoneType) or w.dtype in (types.uint16, types.uint8):
        return lambda x, w, scales, g, bias, out, add: False

    def tiles(x, w, scales, g, bias, out, add):
        if x.shape[0] < TILED_MIN_ROWS:
            return False
        for n0 in range(0, x.shape[0], 4):  # the first four rows ask for the weights ahead
            _tile_rows(w, scales, g, x, n0, bias, out, add, n0 == 0)
        return True

    return tiles


def _bf16_row_tiles(x, w, g, xs, bias, out, add):
    """Where x has TILED_MIN_ROWS rows or more and w is interleaved bf16 that the dot products
    take (xs per block, split_bf16_blocks): out[n, o] (+)= w[o] . x[n] (+ bias[o]) for group g's
    rows o and rows n of x four at a time (_dot_bf16_quad_rows4), and how many rows of x that
    covered (a multiple of four; the caller takes the rest a row at a time); otherwise 0. x None
    (a step at batch 1-3) compiles without it, as it does without _tiled_group. Compiled per
    type."""


@overload(_bf16_row_tiles, inline="always")
def _bf16_row_tiles_impl(x, w, g, xs, bias, out, add):
    if isinstance(x, types.NoneType) or not _is_interleaved_type(w) or xs.ndim != 3:
        return lambda x, w, g, xs, bias, out, add: 0

    def tiles(x, w, g, xs, bias, out, add):
        N = xs.shape[0]
        if N < TILED_MIN_ROWS:
            return 0
        covered = N - N % 4
        for n in range(0, covered, 4):
            rows = _dot_bf16_quad_rows4(w, g, xs, n)
            for i in range(4):
                _put_quad(out, n + i, g, rows[i], bias, add)
        return covered

    return tiles


@njit(inline="always")
def _put_quad(out, n, g, d, bias, add):  # out[n, 4g + r] (+)= d[r] (+ bias), rows below O only
    for r in range(QUAD_ROWS):
        o = g * QUAD_ROWS + r
        if o < out.shape[1]:
            y = d[r] + bias[o] if bias.size else d[r]
            out[n, o] = out[n, o] + y if add else y


@njit(fastmath=FASTMATH, cache=True)
def _claim_rows(x, xs, w, scales, bias, out, add, gelu, spans, task, tasks):  # -> groups computed
    """One task's share of out[n] (+)= w . x[n] (+ bias) (_matvec_into): the groups of four rows
    it claims from spans (_next_groups): four rows of x at a time where _tiled_group takes them
    (x float32, or None for none) or, for interleaved bf16, _bf16_row_tiles; otherwise (and for
    the rows those leave) through _dot4 for every row of x as _split_for made it (xs) while its
    weights are in cache. Where gelu is set (and add is not) each claimed
    range of rows then goes through the GELU, in a loop of its own, which LLVM vectorises."""
    N, O = out.shape
    computed = 0
    k = 0
    while k < tasks:
        lo, hi, k = _next_groups(spans, task, tasks, k)
        for g in range(lo, hi):
            if _tiled_group(x, w, scales, g, bias, out, add):
                continue
            # the store written out: through an inline helper (_put_quad's two lines), LLVM
            # compiled the step otherwise, and bf16 steps at batch 4 took 1.07x the time (eighth
            # session of 2026-12-06)
            for n in range(_bf16_row_tiles(x, w, g, xs, bias, out, add), N):
                d = _dot4(w, scales, g, xs, n)
                for r in range(QUAD_ROWS):
                    o = g * QUAD_ROWS + r
                    if o < O:
                        y = d[r] + bias[o] if bias.size else d[r]
                        out[n, o] = out[n, o] + y if add else y
        if gelu:
            for n in range(N):
                for o in range(lo * QUAD_ROWS, min(hi * QUAD_ROWS, O)):
                    out[n, o] = _gelu1(out[n, o])
        computed += hi - lo
    return computed


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matvec_into(x, xs, w, scales, bias, out, add, tasks):  # out[n] (+)= w . x[n] (+ bias)
    """out [N, O] float32 gets each row n of x times w ([O, I] as _dot takes it, or interleaved
    bf16), plus bias [O] unless bias is empty, added to out where add is set (x + (w x + b), as
    a residual), written over it otherwise; xs is x as _split_for made it, and x None compiles
    without the tiles (_tiled_group). tasks is the number of threads (numba.get_num_threads(),
    from Python: called in compiled code it would keep the function out of the disk cache); any
    positive number gives the same result. The rows are shared out by _next_groups
    (_claim_rows)."""
    spans = _open_spans(tasks, _row_groups(w))
    for task in prange(tasks):
        _claim_rows(x, xs, w, scales, bias, out, add, False, spans, task, tasks)


_NO_BIAS = np.zeros(0, np.float32)


@njit(cache=True, fastmath=False)  # its callees set their own
def _split_matvec(x, w, scales, out, tasks):  # _matvec_into for x as it is, without a bias
    _matvec_into(None, _split_for(w, x), w, scales, _NO_BIAS, out, False, tasks)


def _matvec_rows(x, w, scales, out):  # [N, I] f32, [O, I] (f32, bf16 bits or q8) -> [N, O]
    """w may also be interleaved bf16 or q8 (_dot4)."""
    _split_matvec(x, w, scales, out, get_num_threads())


FEW_ROWS_MAX = 64  # up to this many rows (a prompt) _rows_tiled beats widening for BLAS


# _rows_tiled's vectors: one zmm register (16 lanes) where Numba compiles for AVX-512, which has
# the 32 registers its 16 running sums and 8 operands take; one ymm (8 lanes) elsewhere
TILE_LANES = 16 if AVX512 else LANES
_tile_zero, _tile_splat, _tile_fma, _tile_hsum = (
    (zero16, splat16, fma16, hsum16) if AVX512 else (zero8, splat8, fma8, hsum8)
)


@njit(inline="always")
def _tile_load(a, i, j):  # a[i, j : j + TILE_LANES] of a 2-D float32 array
    return load16(a, (i, j)) if AVX512 else load8(a, i, j)


@njit(inline="always")
def _tile_load_i8(a, i, j):  # a[i, j : j + TILE_LANES] of a 2-D int8 array, widened to float32
    return load16_i8(a, (i, j)) if AVX512 else load8_i8(a, i, j)


@njit(inline="always")
def _tile_store(a, i, j, v):  # a[i, j : j + TILE_LANES] = v, a 2-D float32 array
    if AVX512:
        store16(a, (i, j), v)
    else:
        store8(a, i, j, v)


def _row_as_float32(w, scales, o, out, r):
    """out[r] = row o of w as float32: float32 copied, bf16 bits widened, q8 scaled per block.
    Compiled per weight dtype."""


@overload(_row_as_float32)
def _row_as_float32_impl(w, scales, o, out, r):
    if w.dtype == types.int8:
        # in explicit vectors: LLVM left the block loop scalar, which held the prompt's q8 tiles
        # to 101-105 GFLOP/s with the weights in cache, where the bf16 ones ran at 188 (Zen 4).
        # A product plus +0 is the product, but for a -0 one (which needs a negative scale;
        # quantize_q8's are max |w| / 127), so these are the float32 products the loop made
        def q8_row(w, scales, o, out, r):
            for blk in range(out.shape[1] // Q8_BLOCK):
                scale = _tile_splat(scales[o, blk])
                for j in range(blk * Q8_BLOCK, (blk + 1) * Q8_BLOCK, TILE_LANES):
                    _tile_store(out, r, j, _tile_fma(_tile_zero(), _tile_load_i8(w, o, j), scale))

        return q8_row

    if _is_q8_quads_type(w):  # row o is in group o // 4

        def q8_quad_row(w, scales, o, out, r):
            g, within = o // QUAD_ROWS, o % QUAD_ROWS
            for c in range(w.shape[1]):
                _q8_quad_chunk_row(w, scales, g, c, within, out, r)

        return q8_quad_row

    if _is_interleaved_type(w):  # row o is in group o // 4

        def quad_row(w, scales, o, out, r):  # in explicit vectors: LLVM left this loop scalar
            g, first = o // QUAD_ROWS, (o % QUAD_ROWS) * QUAD_BLOCK
            for blk in range(w.shape[1]):
                for k in range(0, QUAD_BLOCK, 16):
                    store16(out, (r, blk * QUAD_BLOCK + k), load16_bf16(w, (g, blk, first + k)))

        return quad_row

    def row(w, scales, o, out, r):
        for i in range(out.shape[1]):
            out[r, i] = _widen(w[o, i])

    return row


@njit(inline="always", fastmath=FASTMATH)
def _q8_quad_chunk_row(w, scales, g, c, r, out, row):  # out[row] of chunk c = its row r, float32
    """Columns 128 c .. 128 c + 127 of row 4g + r of interleaved q8 weights (precision.
    interleave_q8), dequantized: each byte less 128, times its block's scale. Each of the chunk's
    eight vectors holds 16 of the row's bytes, four from each block, which go back to their
    columns as four stores of four values (in explicit vectors: a scalar loop made a 32-row
    prompt's products 1.5x the time of the plain layout's, Zen 4)."""
    scale = repeat_each4(scales, (g, c, 4 * r))
    for k in range(8):
        v = load16_u8_centred(w, (g, c, 64 * k + 16 * r))
        store_quarters(out, (row, c * Q8_CHUNK + 4 * k), fma16(zero16(), v, scale))


def _rows4_as_float32(w, scales, o0, o1, o2, o3, buf):
    """buf[0 .. 3] = rows o0 .. o3 of w as float32 (_row_as_float32); where w is interleaved, the
    four rows are its group o0 // 4 (o0 a multiple of 4 and O too, as _rows_tiled calls it on such
    weights), widened in one pass along it. Compiled per weight type."""


@overload(_rows4_as_float32, inline="always")
def _rows4_as_float32_impl(w, scales, o0, o1, o2, o3, buf):
    if _is_q8_quads_type(w):

        def q8_group(w, scales, o0, o1, o2, o3, buf):
            g = o0 // QUAD_ROWS
            for c in range(w.shape[1]):
                for r in range(QUAD_ROWS):
                    _q8_quad_chunk_row(w, scales, g, c, r, buf, r)

        return q8_group

    if _is_interleaved_type(w):

        def group(w, scales, o0, o1, o2, o3, buf):
            g = o0 // QUAD_ROWS
            for blk in range(w.shape[1]):
                for r in range(QUAD_ROWS):
                    for k in range(0, QUAD_BLOCK, 16):
                        v = load16_bf16(w, (g, blk, r * QUAD_BLOCK + k))
                        store16(buf, (r, blk * QUAD_BLOCK + k), v)

        return group

    def rows(w, scales, o0, o1, o2, o3, buf):
        _row_as_float32(w, scales, o0, buf, 0)
        _row_as_float32(w, scales, o1, buf, 1)
        _row_as_float32(w, scales, o2, buf, 2)
        _row_as_float32(w, scales, o3, buf, 3)

    return rows


@njit(inline="always")
def _fma_times4(a0, a1, a2, a3, w, x0, x1, x2, x3):  # a_j + w * x_j for four rows x_j
    return _tile_fma(a0, w, x0), _tile_fma(a1, w, x1), _tile_fma(a2, w, x2), _tile_fma(a3, w, x3)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _rows_tiled(x, w, scales, out):  # [N, I] f32, [O, I] (f32, bf16 bits or q8) -> [N, O]
    """x @ w.T for a few dozen rows (a prompt), reading the weights once in their stored form:
    each task widens four weight rows into a float32 buffer (cache-resident), then goes down x four
    rows at a time with the decode step's 4 x 4 tile of dot products (_tile_rows, over the buffer
    and the group's columns of out), sixteen running sums that stay in registers along I (16
    lanes each in AVX-512's 32 registers; 8 lanes on AVX2, where a few spill to L1, measured no
    slower than a 4 x 2 tile), so each loaded vector serves four products. On the MPT-125M
    prompt of 32 tokens the 8-lane tiles took the prefill from 112 / 135 / 155 ms (BLAS on
    widened or dequantized weights) to about 60 / 50 / 67 ms for fp32 / bf16 / q8 weights (AMD
    EPYC Zen 4, 2 threads); on Zen 5 the 16-lane ones run the 12 layers' products in 23-25 ms
    against 49-51 with the weights in cache."""
    N, I = x.shape
    O = out_rows(w)
    for ob in prange((O + 3) // 4):
        o0 = ob * 4
        o1, o2, o3 = min(o0 + 1, O - 1), min(o0 + 2, O - 1), min(o0 + 3, O - 1)
        buf = np.empty((4, I), np.float32)
        _rows4_as_float32(w, scales, o0, o1, o2, o3, buf)
        block = out[:, o0 : o0 + 4]  # the group's columns (fewer at the end)
        for n0 in range(0, N, 4):
            _tile_rows(buf, _NO_SCALES, 0, x, n0, _NO_BIAS, block, False, False)  # buf: in L1


def kernel_operands(weight):  # -> (w, scales): a stored weight as the Numba kernels take it
    """The array the kernels stream (the int8 of a precision.Q8Matrix, the packed array of an
    InterleavedBf16 or an InterleavedQ8, else the weight itself) and its scales (a Q8Matrix's or
    an InterleavedQ8's; _NO_SCALES for the others)."""
    if isinstance(weight, Q8Matrix):
        return weight.q, weight.scales
    if isinstance(weight, InterleavedBf16):
        return weight.packed, _NO_SCALES
    if isinstance(weight, InterleavedQ8):
        return weight.packed, weight.scales
    return weight, _NO_SCALES


def _fit_vector(what, name, v, n):  # -> v as a contiguous [n] array, None kept
    """A bias or norm weight as the kernels read it, n values one after another (one of shape [1]
    is repeated, as NumPy broadcasts it); a ValueError naming the shapes where NumPy would not
    broadcast it to [n] either. The kernels trust n: a shorter vector would be read past."""
    if v is None:
        return None
    v = np.asarray(v)
    if v.shape != (n,):
        try:
            v = np.broadcast_to(v, (n,))
        except ValueError:
            raise ValueError(f"{what}: {name} has shape {v.shape}, where [{n}] is wanted") from None
    return np.ascontiguousarray(v)


def linear(x, weight, bias=None):  # [..., I], [O, I] -> [..., O]
    """Twin of ops.linear. Weights stored as uint16 are bfloat16 bit patterns (bf16 weight storage),
    as is a precision.InterleavedBf16 (four rows interleaved; the kernels take its packed array); a
    precision.Q8Matrix is q8 storage, as is a precision.InterleavedQ8 (four rows by four blocks
    interleaved, which the matvec multiplies with AVX512-VNNI against x on a 16-bit grid,
    numba_q8dot). Up to 4 rows (decode) stream the weights once through a
    Numba matvec, up to 64 (a prompt) through _rows_tiled's register tiles, both over the weights as
    stored; more rows go to numba_gemm's register blocks over panels packed from the stored weights
    on AVX-512 CPUs, and otherwise (or for weights not in row-major order) to BLAS, on widened or
    dequantized weights."""
    if len(weight.shape) != 2 or np.ndim(x) == 0:
        raise ValueError(f"linear: x [..., I] and weight [O, I], got {np.shape(x)}, {weight.shape}")
    lead, I = x.shape[:-1], x.shape[-1]
    if I != weight.shape[1]:  # the kernels trust it: they would read past x's rows
        raise ValueError(f"linear: x has {I} features, the weight takes {weight.shape[1]}")
    bias = _fit_vector("linear", "bias", bias, weight.shape[0])
    rows = x.reshape(math.prod(lead), I)  # not -1: I may be 0
    q8 = isinstance(weight, (Q8Matrix, InterleavedQ8))
    quads = isinstance(weight, InterleavedBf16)
    # the Numba kernels take float32 rows and float32, bf16 (plain or interleaved) or q8 weights
    # in row-major order: each row's values (or each group's, interleaved) consecutive in memory
    numba_ok = x.dtype == np.float32 and (
        q8 or quads or (weight.dtype in (np.float32, np.uint16) and weight.flags.c_contiguous)
    )
    if numba_ok:
        w, scales = kernel_operands(weight)
        numba_ok = all(a.strides[-1] == a.itemsize for a in (w, scales))
    if numba_ok and rows.shape[0] <= FEW_ROWS_MAX:
        out = np.empty((rows.shape[0], weight.shape[0]), np.float32)
        kernel = _matvec_rows if rows.shape[0] <= MATVEC_MAX_ROWS else _rows_tiled
        kernel(np.ascontiguousarray(rows), w, scales, out)
    elif numba_ok and AVX512:
        from .numba_gemm import stored_linear  # numba_gemm builds on this module's kernels

        return stored_linear(rows, w, scales, bias).reshape(lead + (weight.shape[0],))
    elif q8:
        out = rows @ weight.dequantize().T
    elif quads:
        out = rows @ weight.widen().T
    else:
        out = rows @ (widen_bf16(weight) if weight.dtype == np.uint16 else weight).T
    if bias is not None and out.dtype == np.float32 and out.shape[0] > MATVEC_MAX_ROWS:
        _add_to_rows(out, bias)  # in place, on every core: the product is a fresh array
    elif bias is not None:
        out += bias
    return out.reshape(lead + (weight.shape[0],))


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _add_to_rows(out, bias):  # [N, O] += [O]
    for n in prange(out.shape[0]):
        for o in range(out.shape[1]):
            out[n, o] += bias[o]


# ---------------------------------------------------------------------------- norm and GELU


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _layer_norm_rows(x, residual, w, b, eps, out):  # [N, C], [N | 1, C] -> [N, C]
    """out = layer_norm(x + residual) row by row. A one-row residual of zeros serves plain layer
    norm (adding 0.0 changes no value). Each pass re-adds the two rows instead of storing their sum,
    which keeps every loop free of aliasing, so all three vectorise."""
    N, C = x.shape
    step = 1 if residual.shape[0] > 1 else 0
    for n in prange(N):
        xn, rn = x[n], residual[n * step]
        mean = 0.0
        for c in range(C):
            mean += xn[c] + rn[c]
        mean /= C
        var = 0.0
        for c in range(C):
            d = (xn[c] + rn[c]) - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / C + eps)
        for c in range(C):
            out[n, c] = ((xn[c] + rn[c]) - mean) * inv * w[c] + b[c]


def layer_norm(x, weight, bias, eps):  # [..., C] -> [..., C]
    """Twin of ops.layer_norm (biased variance; bias None means no bias)."""
    return add_layer_norm(x, None, weight, bias, eps)


def add_layer_norm(x, residual, weight, bias, eps):  # [..., C], [..., C] or None -> [..., C]
    """Twin of ops.layer_norm(x + residual, ...): the residual add fused into the norm's first
    pass."""
    if (
        x.dtype != np.float32
        or x.ndim == 0  # no channel axis: the twin's own error
        or (residual is not None and (residual.dtype != np.float32 or residual.shape != x.shape))
    ):
        return ops.layer_norm(x if residual is None else x + residual, weight, bias, eps)
    C = x.shape[-1]
    weight = _fit_vector("layer_norm", "weight", weight, C)
    bias = _fit_vector("layer_norm", "bias", bias, C)
    rows = np.ascontiguousarray(x.reshape(math.prod(x.shape[:-1]), C))  # not -1: C may be 0
    extra = (
        np.zeros((1, C), np.float32)
        if residual is None
        else np.ascontiguousarray(residual.reshape(rows.shape))
    )
    out = np.empty_like(rows)
    _layer_norm_rows(
        rows, extra, weight, np.zeros(C, np.float32) if bias is None else bias, eps, out
    )
    return out.reshape(x.shape)


# erf(x) ~ x * P(x^2) / Q(x^2) on |x| <= ERF_CLAMP (beyond it erf is +-1 in float32): a rational fit
# made for this project (least squares on relative error, Sanathanan-Koerner iterations) with max
# abs error 3.7e-7 over the real line in float32. Unlike libm's erf it is plain arithmetic, so the
# GELU loop vectorises: about 5x faster on MPNet's [1024, 3072] activations.
ERF_CLAMP = np.float32(3.925)
ERF_P = tuple(
    np.float32(c)
    for c in (
        1.1283791609962266,
        0.18888793164166542,
        0.05254912332178045,
        0.003701472807569234,
        0.000283608879840589,
        2.0635138633012805e-06,
    )
)
ERF_Q = tuple(
    np.float32(c)
    for c in (
        1.0,
        0.5007305696365796,
        0.11348269112316459,
        0.014839813884853678,
        0.0011473479555544717,
        3.816526815181222e-05,
    )
)
P0, P1, P2, P3, P4, P5 = ERF_P
Q0, Q1, Q2, Q3, Q4, Q5 = ERF_Q


@njit(inline="always", fastmath=FASTMATH)
def erf32(x):  # float32 -> float32; twin: scipy.special.erf (ops._erf), within 3.7e-7
    x = min(max(x, -ERF_CLAMP), ERF_CLAMP)
    t = x * x
    p = ((((P5 * t + P4) * t + P3) * t + P2) * t + P1) * t + P0
    q = ((((Q5 * t + Q4) * t + Q3) * t + Q2) * t + Q1) * t + Q0
    return x * p / q


@njit(inline="always", fastmath=FASTMATH)
def _gelu1(v):  # float32 -> float32; twin: ops.gelu
    return np.float32(0.5) * v * (np.float32(1.0) + erf32(v * np.float32(0.7071067811865476)))


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gelu_flat(x, out):
    for i in prange(x.size):
        out[i] = _gelu1(x[i])


def gelu(x):  # [...] -> [...]
    """Twin of ops.gelu (exact erf GELU)."""
    if x.dtype != np.float32:
        return ops.gelu(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _gelu_flat(flat, out)
    return out.reshape(x.shape)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _add_bias_gelu(out, bias):  # [N, O] -> gelu([N, O] + [O]) in place
    for n in prange(out.shape[0]):
        for o in range(out.shape[1]):
            out[n, o] = _gelu1(out[n, o] + bias[o])


def linear_gelu(x, weight, bias):  # [..., I], [O, I], [O] -> [..., O]
    """Twin of ops.gelu(ops.linear(x, weight, bias)): ``linear`` without its bias, then the bias and
    the GELU in one pass over the fresh product."""
    if x.dtype != np.float32 or weight.dtype not in (np.float32, np.uint16) or bias is None:
        return gelu(linear(x, weight, bias))
    bias = _fit_vector("linear", "bias", bias, weight.shape[0])
    out = linear(x, weight)  # float32 for fp32 and bf16 weights
    rows = out.reshape(math.prod(out.shape[:-1]), weight.shape[0])  # a view of the fresh product
    _add_bias_gelu(rows, bias)  # in place
    return out


# -------------------------------------------------------------------------------- attention


# exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 split in two parts (Cody-Waite) so r is
# exact, exp(r) by its Taylor series to degree 7 on |r| <= ln(2)/2 (relative error below 1e-8
# there), 2^n built in the exponent bits. Plain float32 arithmetic, so softmax loops vectorise;
# libm's exp does not. Compiled without reassociation: with it LLVM may merge the two halves of ln 2
# into one float32 constant, and for x near -87 that alone costs 2.4e-7 of relative error.
LOG2E, LN2_HI, LN2_LO = (
    np.float32(1.4426950408889634),
    np.float32(0.693359375),
    np.float32(-2.12194440e-4),
)
EXP_MIN = np.float32(
    -87.0
)  # below this exp(x) < 1.7e-38 (the float32 normal range ends): returned as 0
INV_FACT = tuple(np.float32(1.0 / math.factorial(k)) for k in range(8))
F0, F1, F2, F3, F4, F5, F6, F7 = INV_FACT


@njit(fastmath={"contract"})
def exp32(x):  # float32 -> float32
    """Twin of np.exp: within 1e-7 relative for -87 <= x <= 0, 0 below, NaN for NaN."""
    xc = max(x, EXP_MIN)
    n = np.floor(
        xc * LOG2E + np.float32(0.5)
    )  # float32 (math.floor would give int64, which does not vectorise)
    r = (xc - n * LN2_HI) - n * LN2_LO
    p = ((((((F7 * r + F6) * r + F5) * r + F4) * r + F3) * r + F2) * r + F1) * r + F0
    scale = _bits_to_float32(np.uint32(np.int32(n) + np.int32(127)) << np.uint32(23))
    return np.float32(0.0) if x < EXP_MIN else p * scale


@njit(inline="always")
def _row_max(row, K):  # max of row[:K], eight lanes at a time (LLVM leaves a float max loop scalar)
    top = row[0]
    if K >= LANES:
        rows = row.reshape(1, row.size)
        lanes = load8(rows, 0, 0)
        for j in range(LANES, K - LANES + 1, LANES):
            lanes = max8(lanes, load8(rows, 0, j))
        top = hmax8(lanes)
    for j in range(K - K % LANES, K):
        top = max(top, row[j])
    return top


@njit(inline="always")
def _softmax_row(row, K):  # -> (the row's max, 1 / the sum of its exponentials)
    """row[:K] = softmax(row[:K]) in place (a row whose entries are all MASK_VALUE becomes
    uniform)."""
    top = _row_max(row, K)
    total = np.float32(0.0)
    for j in range(K):
        e = exp32(row[j] - top)
        row[j] = e
        total += e
    inv = np.float32(1.0) / total
    for j in range(K):
        row[j] *= inv
    return top, inv


@njit(fastmath=False)
def _scores_row(row, scale, bias, mask_add, hide, K):
    """row = row * scale + bias + mask_add, then MASK_VALUE where hide: one pass, in the twin's
    order. Compiled without fastmath, so the product and the bias are not fused into one rounding
    (said outright: left unset, it took _attention's FASTMATH, and 12-25% of the scores of a
    random row were one rounding off the twin's)."""
    for j in range(K):
        s = (row[j] * scale + bias[j]) + mask_add[j]
        row[j] = MASK_VALUE if hide[j] else s


@njit(inline="always")
def _finish_scores(row, scale, bias, mask_add, masked, b, h, i, Kb, K):
    """Scale the products for query i, add its bias and mask rows, replace masked keys, then softmax
    in place. bias [Hb, Sb, K], mask_add [Bm, Sm, K] and masked [Bk, Sk, K] broadcast over leading
    sizes of 1; an absent one is a single row of zeros (adding 0.0 changes no score) or of False.

    Only row[:Kb] holds products; keys Kb.. are masked for this query (_key_limits), and those up
    to K (the caller's: the row's length where the maps are kept, else Kb, and nothing is written)
    get what the full softmax gives a MASK_VALUE score: exp(MASK_VALUE - max) / sum, which is 0
    unless the row's max is itself within 87 of float32's lowest value (and NaN with a NaN max)."""
    _scores_row(
        row,
        scale,
        bias[min(h, bias.shape[0] - 1), min(i, bias.shape[1] - 1)],
        mask_add[min(b, mask_add.shape[0] - 1), min(i, mask_add.shape[1] - 1)],
        masked[min(b, masked.shape[0] - 1), min(i, masked.shape[1] - 1)],
        Kb,
    )
    top, inv = _softmax_row(row, Kb)
    hidden = exp32(MASK_VALUE - top) * inv
    for j in range(Kb, K):
        row[j] = hidden


# query rows per register tile: 12 accumulators + 2 loaded vectors + 1 broadcast = 15 of AVX2's 16
# registers
ROWS = 6


@njit(inline="always")
def _fma_pair(lo_acc, hi_acc, x, lo, hi):  # two vectors of acc += x * (lo, hi)
    xs = _tile_splat(x)
    return _tile_fma(lo_acc, xs, lo), _tile_fma(hi_acc, xs, hi)


@njit(inline="always")
def _store_pair(c, i, j, lo, hi):  # c[i, j : j + 2 TILE_LANES] = (lo, hi)
    _tile_store(c, i, j, lo)
    _tile_store(c, i, j + TILE_LANES, hi)


@njit(inline="always", fastmath=FASTMATH)
def _rows_times(a, ia, b, c, ic, n, N):  # a [Sa, T], b [T, >= N] -> c [Sc, N], six rows
    """c[ic + r, :N] = a[ia + r, :T] @ b[:, :N] for the six rows r < 6 from ia and ic; rows at or
    past n repeat the last one, n - 1 (same values, written twice).

    The rows of a, b and c each have unit stride (a head's rows inside the projections' [B, S, H,
    D] layout do). Two vectors of columns at a time (TILE_LANES each: 32 columns on AVX-512, 16
    on AVX2): each step of t loads two vectors of b's row t and adds a[i, t] times them into two
    registers per row, so every loaded value serves six rows and no partial sum leaves the
    registers until the block is done (a BLAS micro-kernel). Then one vector where that many
    columns are left, and the last N % TILE_LANES columns one dot product at a time.
    """
    T = b.shape[0]
    r1, r2, r3, r4, r5 = min(1, n - 1), min(2, n - 1), min(3, n - 1), min(4, n - 1), min(5, n - 1)
    L = TILE_LANES
    j = 0
    while j + 2 * L <= N:
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _tile_zero()
        for t in range(T):
            lo, hi = _tile_load(b, t, j), _tile_load(b, t, j + L)
            c00, c01 = _fma_pair(c00, c01, a[ia, t], lo, hi)
            c10, c11 = _fma_pair(c10, c11, a[ia + r1, t], lo, hi)
            c20, c21 = _fma_pair(c20, c21, a[ia + r2, t], lo, hi)
            c30, c31 = _fma_pair(c30, c31, a[ia + r3, t], lo, hi)
            c40, c41 = _fma_pair(c40, c41, a[ia + r4, t], lo, hi)
            c50, c51 = _fma_pair(c50, c51, a[ia + r5, t], lo, hi)
        _store_pair(c, ic, j, c00, c01)
        _store_pair(c, ic + r1, j, c10, c11)
        _store_pair(c, ic + r2, j, c20, c21)
        _store_pair(c, ic + r3, j, c30, c31)
        _store_pair(c, ic + r4, j, c40, c41)
        _store_pair(c, ic + r5, j, c50, c51)
        j += 2 * L
    if j + L <= N:
        c0 = c1 = c2 = c3 = c4 = c5 = _tile_zero()
        for t in range(T):
            w = _tile_load(b, t, j)
            c0 = _tile_fma(c0, _tile_splat(a[ia, t]), w)
            c1 = _tile_fma(c1, _tile_splat(a[ia + r1, t]), w)
            c2 = _tile_fma(c2, _tile_splat(a[ia + r2, t]), w)
            c3 = _tile_fma(c3, _tile_splat(a[ia + r3, t]), w)
            c4 = _tile_fma(c4, _tile_splat(a[ia + r4, t]), w)
            c5 = _tile_fma(c5, _tile_splat(a[ia + r5, t]), w)
        _tile_store(c, ic, j, c0)
        _tile_store(c, ic + r1, j, c1)
        _tile_store(c, ic + r2, j, c2)
        _tile_store(c, ic + r3, j, c3)
        _tile_store(c, ic + r4, j, c4)
        _tile_store(c, ic + r5, j, c5)
        j += L
    for r in range(min(n, ROWS)):
        for jj in range(j, N):
            total = np.float32(0.0)
            for t in range(T):
                total += a[ia + r, t] * b[t, jj]
            c[ic + r, jj] = total


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _attention(qs, ks, vs, scale, bias, mask_add, masked, limits, ctx, probs, keep):
    """qs, ks [B, S|K, H, D] and vs [B, K, H, Dv] (the projections' own layout); bias [Hb, Sb, K];
    mask_add [Bm, Sm, K]; masked [Bk, Sk, K] bool and its limits [Bk, Sk] (_key_limits). Leading
    sizes of 1 broadcast (so [1, 1, K] zeros stand for "absent"). Writes ctx [B, S, H, Dv] (its
    rows must have unit stride) and, where ``keep``, probs [B, H, S, K], which then also hold the
    scores as they are made; without it each task works in six rows of its own (a 1024-token
    prompt's maps are 50 MB a layer), and probs is not touched.

    One (batch, head) per task. The task first copies its head's keys transposed (32 KB at
    MPNet-base's shape, made on the task's own core), then goes down the queries six rows at a
    time: their scores by the register tile, bias, mask and softmax on those rows, then their
    context rows by the tile. The tile reads q and v rows where the projection left them (v's rows
    must have unit stride too; copying q and v next to each other as well cost 2-5% of the
    attention's time, Zen 4). Both products stop at the block's key limit, past which every key
    is masked for all six rows: under a causal mask that is the next query's position, so a
    prompt's attention does half the work. Leaving out those keys' zero probabilities changes the
    context only where a skipped value is not finite (0 * inf).
    """
    B, S, H, D = qs.shape
    K = ks.shape[1]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        q = qs[b, :, h]  # [S, D]
        kt = np.ascontiguousarray(ks[b, :, h].T)  # [D, K]: a score row runs along contiguous keys
        v = vs[b, :, h]  # [K, Dv]
        o = ctx[b, :, h]  # [S, Dv]
        own = np.empty((ROWS, K), np.float32)
        lim = limits[min(b, limits.shape[0] - 1)]
        for i0 in range(0, S, ROWS):
            n = min(ROWS, S - i0)
            p = probs[b, h, i0 : i0 + n] if keep else own[:n]  # [n, K]: these queries' rows
            Kb = 0
            for r in range(n):
                Kb = max(Kb, lim[min(i0 + r, lim.shape[0] - 1)])
            # scores q k^T of keys 0 .. Kb - 1, in whole vectors of columns where K allows (the
            # tile's one-column tail walks down kt's columns: a tail at every block made the
            # products of a causal 1024-token prompt slower than all of them)
            _rows_times(q, i0, kt, p, 0, n, min(K, -(-Kb // TILE_LANES) * TILE_LANES))
            for r in range(n):  # the hidden keys' probabilities are written only into kept maps
                _finish_scores(
                    p[r], scale, bias, mask_add, masked, b, h, i0 + r, Kb, K if keep else Kb
                )
            _rows_times(p, 0, v[:Kb], o, i0, n, v.shape[1])  # context probs v, same keys


def _as3(name, x, dtype, scores, kept):
    """bias, mask_add or masked as the kernel takes it: a contiguous 3-D array over (kept, S, K),
    where kept is the scores' head axis (1) for the bias and the batch axis (0) for the masks; an
    absent one becomes one row of K zeros (False for the boolean mask). None where the other of
    the two leading axes is not 1 (a per-batch bias, a per-head mask: the NumPy path computes
    those). A shape that does not broadcast to the scores' [B, H, S, K] is a ValueError, as it is
    in NumPy."""
    K = scores[3]
    if x is None:
        return np.zeros((1, 1, K), dtype)
    x = np.asarray(x)
    try:
        fits = x.ndim <= 4 and np.broadcast_shapes(x.shape, scores) == scores
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"attention: {name} of shape {x.shape} does not broadcast to the scores'"
            f" [B, H, S, K] = {list(scores)}"
        )
    x = x.reshape((1,) * (4 - x.ndim) + x.shape)
    if x.shape[1 - kept] != 1:
        return None
    x = x[:, 0] if kept == 0 else x[0]
    if x.shape[2] != K:
        x = np.broadcast_to(x, x.shape[:2] + (K,))
    # contiguous and writable, whatever the caller's was: one compiled type of the kernel's
    return np.require(x, dtype, ["C", "W"])


def _check_heads(q, k, v):  # -> whether the kernel takes q, k and v as they are
    """ValueError where q, k and v do not fit ops.attention's contract (q [B, H, S, D], k [B, H, K,
    D], v [B, H, K, Dv]; the contexts then have v's Dv); False where NumPy broadcasts them to
    another batch or head count than q's (its path computes that)."""
    if not q.ndim == k.ndim == v.ndim == 4:
        raise ValueError(
            f"attention: q, k and v must be [B, H, S|K, D] arrays, got shapes {q.shape},"
            f" {k.shape} and {v.shape}"
        )
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"attention: k's head size {k.shape[3]} is not q's {q.shape[3]}")
    if v.shape[2] != k.shape[2]:
        raise ValueError(f"attention: v has {v.shape[2]} keys' values, k has {k.shape[2]} keys")
    if k.shape[2] == 0:
        raise ValueError("attention: no keys (k has K = 0), and a softmax over none is undefined")
    try:
        heads = np.broadcast_shapes(q.shape[:2], k.shape[:2], v.shape[:2])
    except ValueError:
        raise ValueError(
            f"attention: the batch and head sizes of q {q.shape[:2]}, k {k.shape[:2]} and v"
            f" {v.shape[:2]} do not broadcast together"
        ) from None
    return heads == q.shape[:2]


def _key_limits(masked):  # [Bk, Sk, K] bool -> [Bk, Sk] int64
    """How many leading keys each query's scores need: one past its last key not masked, or all K
    where every key is masked (that row's softmax is uniform over all of them)."""
    K = masked.shape[-1]
    real = ~masked
    last = K - np.argmax(real[..., ::-1], axis=-1)
    return np.where(real.any(axis=-1), last, K).astype(np.int64)


def attention(
    q,
    k,
    v,
    scale,
    bias=None,
    mask_add=None,
    masked=None,
    dropout_p=0.0,
    rng=None,
    head_mask=None,
    want_probs=True,
):
    """Twin of ops.attention for inference (dropout and head masks take the NumPy path).

    One fused kernel: products, bias, mask, softmax and the weighted sum. The context is written in
    [B, S, H, D] memory order and returned as its [B, H, S, D] view, so merging the heads afterwards
    is a free reshape. With ``want_probs`` False the maps are neither kept nor returned (None).
    """
    q, k, v = (np.asarray(a) for a in (q, k, v))
    numpy_path = not _check_heads(q, k, v) or rng is not None or head_mask is not None
    numpy_path |= any(a.dtype != np.float32 for a in (q, k, v))
    B, H, S, D = q.shape
    K = k.shape[2]
    scores = (B, H, S, K)
    bias3 = _as3("bias", bias, np.float32, scores, kept=1)
    mask3 = _as3("mask_add", mask_add, np.float32, scores, kept=0)
    masked3 = _as3("masked", masked, np.bool_, scores, kept=0)
    if numpy_path or any(x is None for x in (bias3, mask3, masked3)):
        return ops.attention(q, k, v, scale, bias, mask_add, masked, dropout_p, rng, head_mask)
    # keys and values shared across the batch or the heads, copied out to [B, H] (a read-only
    # broadcast view would be a type of its own to Numba, compiled again for a rare case)
    k, v = (
        a
        if a.shape[:2] == (B, H)
        else np.ascontiguousarray(np.broadcast_to(a, (B, H) + a.shape[2:]))
        for a in (k, v)
    )
    if v.strides[-1] != v.itemsize:  # the kernel loads whole vectors along v's rows
        v = np.ascontiguousarray(v)
    ctx = np.empty((B, S, H, v.shape[3]), np.float32)
    probs = np.empty(scores if want_probs else (1, 1, 1, 1), np.float32)
    rows = lambda x: x.transpose(
        0, 2, 1, 3
    )  # [B, H, S, D] -> the projection's [B, S, H, D]; any strides
    _attention(
        rows(q),
        rows(k),
        rows(v),
        np.float32(scale),
        bias3,
        mask3,
        masked3,
        _key_limits(masked3),
        ctx,
        probs,
        want_probs,
    )
    return ctx.transpose(0, 2, 1, 3), probs if want_probs else None


NUMBA = Kernels("numba", linear, layer_norm, gelu, attention)


# ------------------------------------------------------------------- whole decode step


def _kv_load(a, i, j):
    """a[i, j : j + TILE_LANES] of a cache row block as float32 vectors: float32 loaded, bf16 bits
    (kv_cache "bf16") widened. Compiled per dtype."""


@overload(_kv_load, inline="always")
def _kv_load_impl(a, i, j):
    if a.dtype == types.uint16:
        if AVX512:
            return lambda a, i, j: load16_bf16(a, (i, j))
        return lambda a, i, j: load8_bf16(a, (i, j))
    return lambda a, i, j: _tile_load(a, i, j)


@njit(inline="always", fastmath=FASTMATH)
def _dot_key(x, n, start, keys, j):  # x[n, start : start + D] . keys[j], keys [T, D]
    """One key's product with the query: TILE_LANES columns at a time in a vector, then the D %
    TILE_LANES left one by one. Each key's sum is its own chain, so the keys overlap."""
    D = keys.shape[1]
    acc = _tile_zero()
    d = 0
    while d + TILE_LANES <= D:
        acc = _tile_fma(acc, _tile_load(x, n, start + d), _kv_load(keys, j, d))
        d += TILE_LANES
    s = _tile_hsum(acc)
    for i in range(d, D):
        s += x[n, start + i] * _widen(keys[j, i])
    return s


@njit(inline="always", fastmath=FASTMATH)
def _weighted_values(p, values, K, out, n, start):  # out[n, start : start + D] = p[:K] @ values[:K]
    """The context of one head: four vectors of columns at a time held in registers over all K
    values (then one vector at a time, then the last D % TILE_LANES columns one by one), each
    column summed over the keys in order. Written as arrays, LLVM kept the running sums in memory
    and summed each key's row across lanes; this reads the cache at the rate it streams (a layer's
    cache at t = 1000: 115 us against 182, cold in cache; Zen 4)."""
    D = values.shape[1]
    d = 0
    while d + 4 * TILE_LANES <= D:
        a0, a1, a2, a3 = _tile_zero(), _tile_zero(), _tile_zero(), _tile_zero()
        for j in range(K):
            pj = _tile_splat(p[j])
            a0 = _tile_fma(a0, pj, _kv_load(values, j, d))
            a1 = _tile_fma(a1, pj, _kv_load(values, j, d + TILE_LANES))
            a2 = _tile_fma(a2, pj, _kv_load(values, j, d + 2 * TILE_LANES))
            a3 = _tile_fma(a3, pj, _kv_load(values, j, d + 3 * TILE_LANES))
        _tile_store(out, n, start + d, a0)
        _tile_store(out, n, start + d + TILE_LANES, a1)
        _tile_store(out, n, start + d + 2 * TILE_LANES, a2)
        _tile_store(out, n, start + d + 3 * TILE_LANES, a3)
        d += 4 * TILE_LANES
    while d + TILE_LANES <= D:
        a0 = _tile_zero()
        for j in range(K):
            a0 = _tile_fma(a0, _tile_splat(p[j]), _kv_load(values, j, d))
        _tile_store(out, n, start + d, a0)
        d += TILE_LANES
    for i in range(d, D):
        s = np.float32(0.0)
        for j in range(K):
            s += p[j] * _widen(values[j, i])
        out[n, start + i] = s


@njit(inline="always", fastmath=FASTMATH)
def _norm_row(x, w, b, eps, out):  # [C] -> [C]; twin: ops.layer_norm on one row
    C = x.shape[0]
    mean = np.float32(0.0)
    for c in range(C):
        mean += x[c]
    mean /= C
    var = np.float32(0.0)
    for c in range(C):
        d = x[c] - mean
        var += d * d
    inv = np.float32(1.0) / np.float32(math.sqrt(var / C + eps))
    for c in range(C):
        out[c] = (x[c] - mean) * inv * w[c] + b[c]


STEP_PHASES = 5  # a decode layer's phases: the qkv matvec, the heads, out_proj, up, down
# (and after the last layer one more, the LM head's matvec)
AWAIT_PREFETCH_BYTES = 16384  # how much of its next span a waiting task asks for (_await_phase)


def _prefetch_group(w, g, ahead):
    """Asks for the cache line ahead bytes past the first weight of w's group g (the last group
    where g is past it). Compiled per weight layout."""


@overload(_prefetch_group, inline="always")
def _prefetch_group_impl(w, g, ahead):
    if _is_grouped_type(w):
        return lambda w, g, ahead: prefetch(w, (min(g, w.shape[0] - 1), 0, 0), ahead)
    return lambda w, g, ahead: prefetch(w, (_group_row(w, g, 0), 0), ahead)


@njit(inline="always")
def _arrive(done, p, computed):  # adds computed units to phase p's count -> the count's slot
    slot = p * CLAIM_STRIDE
    if computed:
        _add_word(done, slot, np.int64(computed))
    return slot


@njit(inline="always")
def _await_heads(done, p, computed, units, k, v, rows, layer, t, task, tasks):
    """_await_phase for the qkv matvec, whose next phase reads the cache, not a matrix: meanwhile
    it asks for the cached keys and values (slots 0..t) of the heads this task will take first
    (its own span of the attention's units), a line of each per look at the count, head after
    head. Whole bf16 steps at t = 100 0.990x and 0.994x the time of asking for out_proj's weights
    there instead (two runs of 200 alternating rounds; 0.980x in the memory's fast bursts), 0.989x
    at t = 300; fp32 0.982x (Zen 4)."""
    slot = _arrive(done, p, computed)
    B, H = rows.shape[0], k.shape[2]
    bh, end = _span_start(task, tasks, B * H), _span_start(task + 1, tasks, B * H)
    head_bytes = (t + 1) * k.shape[4] * k.itemsize
    line = 0
    while _load_word(done, slot) < units:
        if bh < end:
            prefetch(k[layer, rows[bh // H], bh % H], (0, 0), line)
            prefetch(v[layer, rows[bh // H], bh % H], (0, 0), line)
            line += 64
            if line >= head_bytes:
                bh, line = bh + 1, 0


@njit(inline="always")
def _await_phase(done, p, computed, units, w_next, task, tasks):
    """Adds this task's computed units to phase p's count, then waits until the count reaches
    units: every unit of the phase computed, and (the count's release and acquire) its results
    seen here. Meanwhile it asks for the first AWAIT_PREFETCH_BYTES of the span this task will
    stream first in the next matrix, w_next, a line per look at the count: the waiting time goes
    into that matrix's reads. A task only waits for units that a running task has claimed."""
    slot = _arrive(done, p, computed)
    first = _span_start(task, tasks, _row_groups(w_next))
    ahead = 0
    while _load_word(done, slot) < units:
        if ahead < AWAIT_PREFETCH_BYTES:
            _prefetch_group(w_next, first, ahead)
            ahead += 64


@njit(inline="always", fastmath=FASTMATH)
def _attend(qkv, k, v, rows, key_ok, slopes, scale, layer, b, hh, t, ctx, scores):
    """Head hh of row b's new tokens, n of them (rows b n .. b n + n - 1 of qkv and ctx, n =
    qkv's rows over the rows of the cache; 1 in a plain step), whose keys and values are the
    cache's row rows[b] (its key mask key_ok's row b): stores their keys and values in cache
    slots t .. t + n - 1, then for each, ctx[row, hh D : hh D + D] = its attention over the slots
    up to its own (scores: room for t + n of them). The one unit writes every new slot it reads,
    so no other task's write is waited for. 2-D views of the head's cache, read in explicit
    vectors (_dot_key, _weighted_values; indexing the 5-D cache inside the inner loops kept LLVM
    from vectorising them). Keys are stored like values, [T, D]: the live ones are one
    contiguous block for the prefetcher to stream, where [D, T] made D short rows of them (whole
    steps 1-1.5% faster, paired over t = 32 .. 158, fp32 and bf16)."""
    C, D, n = ctx.shape[1], k.shape[4], qkv.shape[0] // rows.shape[0]
    keys, values = k[layer, rows[b], hh], v[layer, rows[b], hh]  # [T, D], [T, D]
    for i in range(n):
        for d in range(D):
            keys[t + i, d] = _cached(k, qkv[b * n + i, C + hh * D + d])
            values[t + i, d] = _cached(v, qkv[b * n + i, 2 * C + hh * D + d])
    for i in range(n):
        row, K = b * n + i, t + i + 1  # its keys: slots 0 .. t + i
        for j in range(K):
            s = _dot_key(qkv, row, hh * D, keys, j) * scale + slopes[hh] * np.float32(j - (K - 1))
            scores[j] = s if key_ok[b, j] else MASK_VALUE
        _softmax_row(scores, K)
        _weighted_values(scores, values, K, ctx, row, hh * D)


@njit(fastmath=FASTMATH, cache=True)
def _step_task(
    x, t, norms, weights, cache, scale, eps, head, shared, units, spans, done, tiles, task, tasks
):
    """Task ``task``'s part of decode_step, every layer's five phases in order, then the head's
    (a function of its own, called once per task from the step's parallel loop: Numba compiled
    the step in half the time than with this as the loop's body). The step's arguments come
    grouped: norms (LN1's and LN2's weights and biases), weights (each matrix with its scales and
    bias, in the order of the phases), cache (k, v, key_ok, slopes), head (the final norm's
    weight and bias, the head's weight and scales, the logits), shared (the qkv, ctx and up rows
    every task reads)."""
    ln1_w, ln1_b, ln2_w, ln2_b = norms
    w_qkv, s_qkv, b_qkv, w_o, s_o, b_o, w_up, s_up, b_up, w_down, s_down, b_down = weights
    k, v, rows, key_ok, slopes = cache
    lnf_w, lnf_b, w_head, s_head, logits = head
    qkv, ctx, up = shared
    B, C = x.shape
    L, H = w_qkv.shape[0], k.shape[2]
    phase_words = tasks * CLAIM_STRIDE
    # this task's own arrays. It allocates only while it holds no claim (here, and the splits
    # between phases), so that running out of memory cannot leave the others waiting for a unit
    # it claimed
    h = np.empty((B, C), np.float32)  # the layer norm of x
    scores = np.empty(t + B // rows.shape[0], np.float32)  # one head's attention, the last row's
    th, tctx, tup = _tiles_of(tiles, h), _tiles_of(tiles, ctx), _tiles_of(tiles, up)  # or None
    for layer in range(L):
        p = layer * STEP_PHASES
        claims = spans[p * phase_words : (p + STEP_PHASES) * phase_words]
        claims = claims.reshape((STEP_PHASES, phase_words))
        for b in range(B):
            _norm_row(x[b], ln1_w[layer], ln1_b[layer], eps, h[b])
        wq, sq, bq = w_qkv[layer], s_qkv[layer], b_qkv[layer]
        n = _claim_rows(
            th, _split_for(wq, h), wq, sq, bq, qkv, False, False, claims[0], task, tasks
        )
        _await_heads(done, p, n, units[0], k, v, rows, layer, t, task, tasks)
        n = 0
        j = 0
        while j < tasks:
            lo, hi, j = _next_groups(claims[1], task, tasks, j)
            for bh in range(lo, hi):
                b, hh = bh // H, bh % H
                _attend(qkv, k, v, rows, key_ok, slopes, scale, layer, b, hh, t, ctx, scores)
            n += hi - lo
        _await_phase(done, p + 1, n, units[1], w_o[layer], task, tasks)
        wo, so, bo = w_o[layer], s_o[layer], b_o[layer]
        n = _claim_rows(
            tctx, _split_for(wo, ctx), wo, so, bo, x, True, False, claims[2], task, tasks
        )
        _await_phase(done, p + 2, n, units[2], w_up[layer], task, tasks)
        for b in range(B):
            _norm_row(x[b], ln2_w[layer], ln2_b[layer], eps, h[b])
        wu, su, bu = w_up[layer], s_up[layer], b_up[layer]
        n = _claim_rows(th, _split_for(wu, h), wu, su, bu, up, False, True, claims[3], task, tasks)
        _await_phase(done, p + 3, n, units[3], w_down[layer], task, tasks)
        wd, sd, bd = w_down[layer], s_down[layer], b_down[layer]
        n = _claim_rows(tup, _split_for(wd, up), wd, sd, bd, x, True, False, claims[4], task, tasks)
        if layer + 1 < L:  # the next matrix: the next layer's qkv, or the head after the last
            _await_phase(done, p + 4, n, units[4], w_qkv[layer + 1], task, tasks)
        else:
            _await_phase(done, p + 4, n, units[4], w_head, task, tasks)
    # the head: the final norm, then the logits (the region's end waits for its units)
    for b in range(B):
        _norm_row(x[b], lnf_w, lnf_b, eps, h[b])
    claims = spans[L * STEP_PHASES * phase_words : (L * STEP_PHASES + 1) * phase_words]
    xs = _split_for(w_head, h)
    _claim_rows(th, xs, w_head, s_head, _NO_BIAS, logits, False, False, claims, task, tasks)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def decode_step(
    x,
    t,
    ln1_w,
    ln1_b,
    w_qkv,
    s_qkv,
    b_qkv,
    w_o,
    s_o,
    b_o,
    ln2_w,
    ln2_b,
    w_up,
    s_up,
    b_up,
    w_down,
    s_down,
    b_down,
    k,
    v,
    rows,
    key_ok,
    slopes,
    scale,
    eps,
    lnf_w,
    lnf_b,
    w_head,
    s_head,
    logits,
    tiles,
    tasks,
):  # x [B, C] -> x after every block, in place; logits [B, V] written
    """One new token per row of the cache through all L blocks and the LM head in one call (twin:
    mpt.block with S = 1, as numba_stacks.DecoderStack.block runs it, for the hf feature set,
    then mpt.lm_logits after the final norm), or n of them, x's rows b n .. b n + n - 1 the
    tokens of cache row b at slots t .. t + n - 1 (a pass of several tokens over the cache,
    prompt lookup's, as mpt.block runs them with S = n): per layer LN1, the qkv matvec, the
    step's keys and values into cache slots t .. t + n - 1, each token's attention over the
    slots up to its own (key-only ALiBi, key_ok masking), out_proj + residual, LN2, up + GELU,
    down + residual; then the final LayerNorm (lnf_w, lnf_b) and logits [B, V] = norm_f(x)
    w_head^T, w_head [V, C] in any layout below but stacked, with its scales in s_head (q8; [1,
    1] unused otherwise). Weights are stacked over layers, [L, O, I]
    (float32, bf16 bits, or q8's int8 with its scales [L, O, I / 32] in the s_ argument after
    it; the other kinds pass [L, 1, 1] there, unused), or bf16 bits interleaved four rows at a
    time, [L, O / 4, I / 32, 128] (precision.interleave_quads), or q8 interleaved four rows by
    four blocks, uint8 [L, O / 4, I / 128, 512] with scales [L, O / 4, I / 128, 16]
    (precision.interleave_q8). Biases [L, O] (zeros where the
    checkpoint has none). The cache k, v [L, B', H, T, D] is float32, or bf16 bits (uint16) for
    kv_cache "bf16": the step's key and value are rounded as they are stored and every key is
    widened as it is read. rows [B] (int64, distinct): the cache row that holds each row's keys
    and values (beam search moves its beams by this map rather than by copying their caches);
    key_ok [B, T]: each row's key mask.

    The whole step is one parallel region of ``tasks`` tasks (the number of threads,
    numba.get_num_threads()), not a region per matvec: each layer is five phases (the qkv
    matvec, the attention heads, out_proj, up, down), and the LM head one more after the last
    layer. The tasks claim each phase's units (groups of four rows, or one head of one row) as
    _next_groups deals them (_claim_rows for the matvecs). A task that finds nothing left to
    claim in a phase adds what it computed to the phase's count and waits for the count to
    reach the phase's units (_await_phase), meanwhile asking for the first weights of its span
    of the next matrix (before the heads, for its heads' cached keys and values:
    _await_heads). It waits only for units another task has claimed and is computing, so the
    step finishes whatever the threads do: a task that never runs alongside the others (a
    nested region, a threading layer that runs them one after the other) leaves its units to
    be claimed by those that run. Each task computes the layer norms, and the split of the
    matvecs' inputs (_split_for), for all rows itself, into arrays of its own: a few
    microseconds of arithmetic that no task waits for. A task that falls a phase or more behind
    finds every unit claimed and passes through without writing anything shared: the inputs of
    a phase change only after all of its units are done. The head in the region, not a region
    of its own after it: bf16 steps 0.96x the time, q8 0.94x, fp32 unchanged (MPT-125M at
    t = 100, Zen 4).

    tiles: None, or True to compile and use _tile_rows for the fp32 and q8 matvecs where x has
    TILED_MIN_ROWS rows or more, and _bf16_row_tiles for interleaved bf16 ones (numba_stacks
    passes True for batches of four or more), which doubles the step's cold compile. Against a
    row at a time, MPT-125M steps at t = 100 took 0.93x the time at batch 4, 0.79x at 8 and
    0.70x at 16 for fp32 weights, 0.84x, 0.71x and 0.63x for q8, and 0.92-0.95x, 0.92x and
    0.94x for interleaved bf16 (Zen 4)."""
    B, C = x.shape
    L, H, W = w_qkv.shape[0], k.shape[2], out_rows(w_up[0])
    if B == 0 or B % rows.shape[0] or t + B // rows.shape[0] > k.shape[3]:
        raise ValueError(
            "decode_step's x must have n rows for each of rows' (n >= 1), their slots"
            " t .. t + n - 1 inside it"
        )
    used = np.zeros(k.shape[1], np.bool_)  # the kernels trust rows: they index the cache
    for b in range(rows.shape[0]):
        if rows[b] < 0 or rows[b] >= k.shape[1] or used[rows[b]] or key_ok.shape[0] != len(rows):
            raise ValueError(
                "decode_step's rows must be distinct rows of the cache, one for each of key_ok's"
            )
        used[rows[b]] = True
    qkv = np.empty((B, 3 * C), np.float32)
    ctx = np.empty((B, C), np.float32)
    up = np.empty((B, W), np.float32)
    units = (  # each phase's units, in the order of the phases
        _row_groups(w_qkv[0]),
        rows.shape[0] * H,  # a head of a row
        _row_groups(w_o[0]),
        _row_groups(w_up[0]),
        _row_groups(w_down[0]),
    )
    if logits.shape[0] != B or logits.shape[1] != out_rows(w_head):
        raise ValueError("decode_step's logits must be [B, V]: a row for each of x's, V the head's")
    phases = L * STEP_PHASES + 1  # the blocks' and the head's
    phase_words = max(tasks, 0) * CLAIM_STRIDE
    spans = np.zeros(phases * phase_words, np.int64)
    for p in range(phases):
        words = spans[p * phase_words : (p + 1) * phase_words]
        head_phase = p == phases - 1
        _open_spans_into(
            words, tasks, _row_groups(w_head) if head_phase else units[p % STEP_PHASES]
        )
    done = np.zeros(L * STEP_PHASES * CLAIM_STRIDE, np.int64)
    norms = (ln1_w, ln1_b, ln2_w, ln2_b)
    weights = (w_qkv, s_qkv, b_qkv, w_o, s_o, b_o, w_up, s_up, b_up, w_down, s_down, b_down)
    cache, shared = (k, v, rows, key_ok, slopes), (qkv, ctx, up)
    head = (lnf_w, lnf_b, w_head, s_head, logits)
    for task in prange(tasks):  # np.int64: the index is typed unsigned in the parallel lowering
        me = np.int64(task)
        _step_task(
            x,
            t,
            norms,
            weights,
            cache,
            scale,
            eps,
            head,
            shared,
            units,
            spans,
            done,
            tiles,
            me,
            tasks,
        )
