"""Low-precision rounding emulated in NumPy, and the low-precision LayerNorm of MosaicML MPT.

NumPy has float16 but no bfloat16. bfloat16 is the top 16 bits of a float32, so rounding a float32
to bfloat16 is integer arithmetic on its bit pattern: add half of the dropped 16-bit range (minus
one, plus the lowest kept bit, which makes ties go to the even neighbour) and clear the low 16 bits.
The results are returned as float32 arrays holding exactly representable bf16/fp16 values.
"""

from __future__ import annotations

import numpy as np

from .checkpoint import bf16_to_float32
from .ops import layer_norm


def round_to_bf16(x):  # [...] float -> [...] float32 on the bf16 grid
    """Round-to-nearest-even float32 -> bfloat16, kept in float32. NaN stays NaN; overflow becomes
    inf."""
    with np.errstate(over="ignore"):  # float64 inputs beyond float32 range become inf, as in torch
        x32 = np.asarray(x, dtype=np.float32)
    bits = x32.view(np.uint32)
    # add just under half a bf16 step, plus one where the kept part is odd (ties to even), then
    # cut: 32 bits hold it, since only NaN patterns (above -inf's 0xFF800000) can carry out of the
    # top bit, and NaN is replaced below (all 2^32 patterns checked against a 64-bit sum; 7x
    # faster, which is what loading a model into bf16 storage spends its time on)
    lsb = (bits >> 16) & np.uint32(1)
    rounded = (bits + np.uint32(0x7FFF) + lsb) & np.uint32(0xFFFF0000)
    rounded = np.where(np.isnan(x32), bits | np.uint32(0x00400000), rounded)  # NaN stays quiet NaN
    return rounded.view(np.float32)


def round_to_fp16(x):  # [...] float -> [...] float32 on the fp16 grid
    """Round-to-nearest-even to IEEE half precision (NumPy's own conversion), kept in float32."""
    with np.errstate(over="ignore"):  # beyond 65504 rounds to inf, as in torch
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


ROUND = {"bf16": round_to_bf16, "fp16": round_to_fp16}


def to_bf16_bits(x, chunk=1 << 20):  # [...] float -> [...] uint16
    """The bf16 bit patterns (upper halves) of round_to_bf16(x), converted a chunk at a time so that
    a large matrix needs no full-size temporaries."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, np.uint16)
    for start in range(0, flat.size, chunk):
        out[start : start + chunk] = (
            round_to_bf16(flat[start : start + chunk]).view(np.uint32) >> 16
        )
    return out.reshape(np.shape(x))


def split_bf16(x):  # [...] float -> ([...] uint16, [...] uint16)
    """A float32 as the sum of two bf16 values, as bit patterns (hi, lo): hi = round_to_bf16(x), lo
    = the exact remainder x - hi rounded to bf16, so |x - hi - lo| <= 2^-16 |x| for normal x (the
    remainder is at most half a bf16 step, 2^-8 of x's power of two, and rounding it to bf16's 8
    significant bits errs by at most 2^-8 of that). Where x is finite but hi would round to +-inf,
    hi is x truncated instead (then within 2^-15 |x|). inf and NaN give hi = round_to_bf16(x) and
    lo = 0. The twin of numba_cpu.split_bf16, which prepares activations for the AVX512-BF16 dot
    products (numba_bf16dot)."""
    x32 = np.asarray(x, dtype=np.float32)
    finite = np.isfinite(x32)
    hi = to_bf16_bits(x32)
    overflow = finite & ((hi & 0x7F80) == 0x7F80)
    hi = np.where(overflow, (x32.view(np.uint32) >> 16).astype(np.uint16), hi)
    hi_f32 = (hi.astype(np.uint32) << 16).view(np.float32)
    rest = np.where(finite, x32 - np.where(finite, hi_f32, 0), 0).astype(np.float32)
    return hi, to_bf16_bits(rest)


def low_precision_layer_norm(x, weight, bias, eps, precision=None):  # [..., C] -> [..., C]
    """MosaicML's LPLayerNorm (SPEC 2.5).

    precision None (fp32, or autocast off): exactly LayerNorm.

    precision "bf16" / "fp16" (autocast on): x, weight and bias are rounded to that type, LayerNorm
    runs with autocast disabled on those low-precision tensors (PyTorch's CPU kernel accumulates the
    mean and variance in float32 and normalises in float32), and the result is rounded to the
    low-precision type.
    """
    if precision is None:
        return layer_norm(x, weight, bias, eps)
    if precision not in ROUND:
        raise ValueError(f"unknown precision {precision!r}; accepted: None, {list(ROUND)}")
    rnd = ROUND[precision]
    x32 = rnd(x)
    y = layer_norm(x32, rnd(weight), None if bias is None else rnd(bias), eps)
    return rnd(y)


# ----------------------------------------------------------------------------- q8 weights

Q8_BLOCK = 32  # weights per scale, along the input axis (llama.cpp's q8_0 uses the same block)


class Q8Matrix:
    """A matrix [O, I] stored as int8 in blocks of 32 along I, one float32 scale per block:
    ``w[o, i] ~= q[o, i] * scales[o, i // 32]``, the scale being the block's largest magnitude over
    127 and q the nearest integer (ties to even), so each weight is off by at most half its block's
    scale. About 1.1 bytes per weight instead of 4. In this layout the kernels multiply the
    dequantized weights by float32 activations (llama.cpp's q8_0 also rounds the activations to
    int8); on CPUs with AVX512-VNNI the numba backend keeps the same values as InterleavedQ8,
    whose matvecs put the activations on a 16-bit grid per block (split_q8).

    ``q`` and ``scales`` may be views into larger stacked arrays; ``shape`` and ``dtype`` answer as
    the matrix they stand for would, with float32 values."""

    __slots__ = ("q", "scales")
    dtype = np.dtype(np.float32)

    def __init__(self, q, scales):
        if q.dtype != np.int8 or scales.dtype != np.float32 or q.ndim != 2:
            raise ValueError("Q8Matrix needs int8 q [O, I] and float32 scales [O, I // 32]")
        if q.shape[1] % Q8_BLOCK or scales.shape != (q.shape[0], q.shape[1] // Q8_BLOCK):
            raise ValueError(
                f"Q8Matrix: q {q.shape} needs I a multiple of {Q8_BLOCK} and scales of shape"
                f" {(q.shape[0], q.shape[1] // Q8_BLOCK)}, got {scales.shape}"
            )
        self.q, self.scales = q, scales

    @property
    def shape(self):
        return self.q.shape

    @property
    def ndim(self):
        return 2

    def dequantize(self, rows=slice(None)):  # -> float32 [O, I] (or the rows asked for)
        q, s = self.q[rows], self.scales[rows]
        return (q.reshape(q.shape[:-1] + (-1, Q8_BLOCK)) * s[..., None]).reshape(q.shape)

    def __repr__(self):
        return f"Q8Matrix(shape={self.shape})"


def quantize_q8(w, q_out=None, s_out=None, chunk=1 << 20):  # float [O, I] -> Q8Matrix
    """Round a float matrix to q8 blocks (see Q8Matrix); into ``q_out`` / ``s_out`` where given
    (slots of stacked arrays), so a stack is filled without a second copy of the weights. Rows go a
    chunk (about ``chunk`` weights) at a time, so a large matrix (an embedding) needs no full-size
    float temporaries."""
    w = np.asarray(w)
    O, I = w.shape
    if I % Q8_BLOCK:
        raise ValueError(
            f"weight_storage='q8' needs every matrix's input size to be a multiple of {Q8_BLOCK};"
            f" a matrix of shape {w.shape} is not"
        )
    q = np.empty((O, I), np.int8) if q_out is None else q_out
    scales = np.empty((O, I // Q8_BLOCK), np.float32) if s_out is None else s_out
    rows = max(1, chunk // I)
    for start in range(0, O, rows):
        part = np.asarray(w[start : start + rows], np.float32)
        if not np.isfinite(part).all():
            raise ValueError(f"weight_storage='q8': a matrix of shape {w.shape} holds inf or NaN")
        blocks = part.reshape(part.shape[0], I // Q8_BLOCK, Q8_BLOCK)
        s = np.abs(blocks).max(axis=-1) / np.float32(127)  # [rows, I / 32]
        safe = np.where(s > 0, s, np.float32(1))
        q[start : start + rows] = np.clip(np.round(blocks / safe[..., None]), -127, 127).reshape(
            part.shape
        )
        scales[start : start + rows] = s
    return Q8Matrix(q, scales)


# ------------------------------------------------------------- bf16 weights, rows interleaved

QUAD_ROWS, QUAD_BLOCK = 4, 32  # rows per group, and weights per block of one row within it


def interleaved_shape(shape):  # [O, I] -> the shape interleave_quads gives it
    return (shape[0] // QUAD_ROWS, shape[1] // QUAD_BLOCK, QUAD_ROWS * QUAD_BLOCK)


def interleave_quads(bits, out=None):  # uint16 [O, I] -> uint16 [O / 4, I / 32, 128]
    """bf16 weight rows stored four at a time: for rows 4g .. 4g + 3, block b of 32 columns of each
    row, one after another (128 values), then block b + 1. ``out[g, b, 32 r + k] = bits[4 g + r,
    32 b + k]``. A dot kernel that multiplies four rows by one vector then reads the matrix as one
    sequential stream while each activation it loads serves four rows, where with the rows in order
    it either loads each activation once per row or reads four streams a row apart, which this
    machine's prefetchers served 1.6x slower (docs/performance.md). Needs O a multiple of 4 and I
    of 32; ``out`` (a slot of a stacked array) is filled where given."""
    O, I = bits.shape
    if O % QUAD_ROWS or I % QUAD_BLOCK:
        raise ValueError(
            f"interleaving needs rows a multiple of {QUAD_ROWS} and columns of {QUAD_BLOCK};"
            f" got a matrix of shape {bits.shape}"
        )
    shape = interleaved_shape(bits.shape)
    out = np.empty(shape, np.uint16) if out is None else out
    G, NB, _ = shape
    out.reshape(G, NB, QUAD_ROWS, QUAD_BLOCK)[...] = bits.reshape(
        G, QUAD_ROWS, NB, QUAD_BLOCK
    ).transpose(0, 2, 1, 3)
    return out


class InterleavedBf16:
    """A bf16 matrix [O, I] (bit patterns) kept as interleave_quads lays it out, for the numba
    backend's bf16 matvec on AVX512-BF16 CPUs. ``packed`` may be a view into a stacked array;
    ``shape`` and ``dtype`` answer as the uint16 matrix it stands for; ``bits(rows)`` gives that
    matrix (or the rows asked for: an int, a slice or an integer array), ``widen(rows)`` the same
    as float32."""

    __slots__ = ("packed",)
    dtype = np.dtype(np.uint16)
    ndim = 2

    def __init__(self, packed):
        if (
            packed.dtype != np.uint16
            or packed.ndim != 3
            or packed.shape[2] != QUAD_ROWS * QUAD_BLOCK
        ):
            raise ValueError(
                "InterleavedBf16 needs uint16 [O / 4, I / 32, 128] (interleave_quads), got"
                f" {packed.dtype} {packed.shape}"
            )
        self.packed = packed

    @property
    def shape(self):
        G, NB, _ = self.packed.shape
        return (G * QUAD_ROWS, NB * QUAD_BLOCK)

    def bits(self, rows=slice(None)):  # -> uint16 [O, I] (or rows.shape + (I,))
        G, NB, _ = self.packed.shape
        quads = self.packed.reshape(G, NB, QUAD_ROWS, QUAD_BLOCK)
        if isinstance(rows, slice):
            whole = quads.transpose(0, 2, 1, 3).reshape(self.shape)
            return whole[rows]
        rows = np.asarray(rows)
        if rows.dtype.kind not in "iu":
            raise TypeError(f"rows must be integers or a slice, got {rows.dtype}")
        O = self.shape[0]
        if rows.size and (rows.min() < -O or rows.max() >= O):
            raise ValueError(f"a row index is out of range for {O} rows")
        rows = rows % O
        picked = quads[rows // QUAD_ROWS, :, rows % QUAD_ROWS]  # rows.shape + (NB, 32)
        return picked.reshape(rows.shape + (self.shape[1],))

    def widen(self, rows=slice(None)):  # -> float32 [O, I] (or the rows asked for)
        return bf16_to_float32(self.bits(rows))

    def __repr__(self):
        return f"InterleavedBf16(shape={self.shape})"


# ------------------------------------------------- q8 weights, rows interleaved for int8 dots

# Four rows by four blocks of 32: the unit the numba backend's int8 dot-product kernel reads as
# eight 64-byte vectors, one int32 lane per (row, block) pair (numba_q8dot.py)
Q8_CHUNK = 4 * Q8_BLOCK  # columns per chunk
Q8_SPLIT_MAX = 127 * 256 + 127  # the largest |activation| on the 16-bit grid: two int8 halves


def q8_interleaves(shape):  # whether interleave_q8 takes a matrix of this shape
    return shape[0] % QUAD_ROWS == 0 and shape[1] % Q8_CHUNK == 0


def interleave_q8(q, scales, out=None, s_out=None):  # int8 [O, I], [O, I / 32] -> packed, scales
    """q8 rows (a Q8Matrix's q and scales) laid out for the int8 dot-product kernel: for rows 4g ..
    4g + 3 and chunk c of 128 columns, eight vectors of 64 bytes, vector k holding for each row r
    and block b of the chunk the four weights 4k .. 4k + 3 of that block, plus 128 (so that they
    are unsigned bytes, which the instruction wants on one side):
    ``packed[g, c, 64 k + 16 r + 4 b + m] = q[4 g + r, 128 c + 32 b + 4 k + m] + 128``, and
    ``pscales[g, c, 4 r + b] = scales[4 g + r, 4 c + b]``. Each 32-bit lane of a vector then
    belongs to one (row, block) pair, and eight instructions sum a whole block into it, so a
    block's scale is applied to a lane, never after a sum across lanes. Needs O a multiple of 4
    and I of 128 (q8_interleaves); ``out`` and ``s_out`` (slots of stacked arrays) are filled where
    given."""
    O, I = q.shape
    if not q8_interleaves(q.shape) or scales.shape != (O, I // Q8_BLOCK):
        raise ValueError(
            f"interleave_q8 needs rows a multiple of {QUAD_ROWS}, columns of {Q8_CHUNK} and"
            f" scales [O, I / {Q8_BLOCK}]; got q {q.shape}, scales {scales.shape}"
        )
    G, C = O // QUAD_ROWS, I // Q8_CHUNK
    packed = np.empty((G, C, QUAD_ROWS * Q8_CHUNK), np.uint8) if out is None else out
    pscales = np.empty((G, C, 16), np.float32) if s_out is None else s_out
    # q[4g + r, 128c + 32b + 4k + m] -> [g, c, k, r, b, m], the four m of a (k, r, b) moved as one
    # 32-bit word (4.5x faster than byte by byte), each byte + 128 by flipping its top bit
    words = np.ascontiguousarray(q).view(np.uint32)  # [O, I / 4]
    by_lane = words.reshape(G, QUAD_ROWS, C, 4, 8).transpose(0, 2, 4, 1, 3)
    lanes = packed.view(np.uint32).reshape(G, C, 8, QUAD_ROWS, 4)
    np.bitwise_xor(by_lane, np.uint32(0x80808080), out=lanes)
    pscales.reshape(G, C, QUAD_ROWS, 4)[...] = scales.reshape(G, QUAD_ROWS, C, 4).transpose(
        0, 2, 1, 3
    )
    return packed, pscales


class InterleavedQ8:
    """A q8 matrix [O, I] (Q8Matrix's values) kept as interleave_q8 lays it out, for the numba
    backend's int8 dot-product matvec on AVX512-VNNI CPUs. ``packed`` and ``scales`` may be views
    into stacked arrays; ``shape`` and ``dtype`` answer as the float32 matrix it stands for;
    ``q8(rows)`` gives the int8 values and the scales of those rows (all of them by default:
    Q8Matrix's q and scales), ``dequantize(rows)`` them as float32, as Q8Matrix.dequantize
    does."""

    __slots__ = ("packed", "scales")
    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, packed, scales):
        if (
            packed.dtype != np.uint8
            or packed.ndim != 3
            or packed.shape[2] != QUAD_ROWS * Q8_CHUNK
            or scales.dtype != np.float32
            or scales.shape != packed.shape[:2] + (16,)
        ):
            raise ValueError(
                "InterleavedQ8 needs uint8 [O / 4, I / 128, 512] and float32 scales"
                f" [O / 4, I / 128, 16] (interleave_q8), got {packed.dtype} {packed.shape} and"
                f" {scales.dtype} {scales.shape}"
            )
        self.packed, self.scales = packed, scales

    @property
    def shape(self):
        G, C, _ = self.packed.shape
        return (G * QUAD_ROWS, C * Q8_CHUNK)

    def q8(self, rows=slice(None)):  # -> (int8 [..., I], float32 [..., I / 32]) of the rows
        G, C, _ = self.packed.shape
        O, I = self.shape
        by_lane = self.packed.reshape(G, C, 8, QUAD_ROWS, 4, 4)  # g c k r b m
        scales = self.scales.reshape(G, C, QUAD_ROWS, 4)  # g c r b
        if isinstance(rows, slice):
            q = (by_lane ^ np.uint8(0x80)).view(np.int8).transpose(0, 3, 1, 4, 2, 5)
            s = scales.transpose(0, 2, 1, 3).reshape(O, I // Q8_BLOCK)
            return q.reshape(O, I)[rows], s[rows]
        rows = np.asarray(rows)
        if rows.dtype.kind not in "iu":
            raise TypeError(f"rows must be integers or a slice, got {rows.dtype}")
        if rows.size and (rows.min() < -O or rows.max() >= O):
            raise ValueError(f"a row index is out of range for {O} rows")
        rows = rows % O
        g, r = rows // QUAD_ROWS, rows % QUAD_ROWS
        picked = by_lane[g, :, :, r]  # rows.shape + (C, k, b, m)
        q = (picked ^ np.uint8(0x80)).view(np.int8).swapaxes(-3, -2)  # (C, b, k, m)
        s = scales[g, :, r]  # rows.shape + (C, b)
        return q.reshape(rows.shape + (I,)), s.reshape(rows.shape + (I // Q8_BLOCK,))

    def dequantize(self, rows=slice(None)):  # -> float32 [O, I] (or the rows asked for)
        q, s = self.q8(rows)
        blocks = q.reshape(q.shape[:-1] + (-1, Q8_BLOCK)) * s[..., None]
        return blocks.reshape(q.shape)

    def __repr__(self):
        return f"InterleavedQ8(shape={self.shape})"


def split_q8(x):  # float32 [N, I] -> (int32 [N, I], float32 [N, I / 32])
    """Activations on the 16-bit grid the int8 dot-product kernel multiplies: per block of 32, a
    scale s = max |x| / 32639 and integers q = x * (1 / s) rounded to nearest even (all in
    float32), |q| <= 32639, so that x ~ q s within 0.51 s (s / 2 and the rounding of the
    reciprocal's product: 2^-16 of the block's largest magnitude) and q = 256 hi + lo with hi and
    lo both int8. A block holding inf or NaN gets the scale NaN (every product it enters is NaN);
    a block whose scale is under float32's smallest normal (max |x| under 3.8e-34) counts as
    zeros. The twin of numba_cpu.split_q8_chunks, which lays the same integers out for the
    kernel."""
    x = np.asarray(x, np.float32)
    N, I = x.shape
    if I % Q8_BLOCK:
        raise ValueError(f"split_q8 needs a multiple of {Q8_BLOCK} columns, got {I}")
    blocks = x.reshape(N, I // Q8_BLOCK, Q8_BLOCK)
    with np.errstate(invalid="ignore", over="ignore"):
        top = np.abs(blocks).max(axis=-1)
        s = top / np.float32(Q8_SPLIT_MAX)
        usable = np.isfinite(top) & (s >= np.finfo(np.float32).tiny)
        inv = np.float32(1) / np.where(usable, s, np.float32(1))
        q = np.clip(np.rint(blocks * inv[..., None]), -Q8_SPLIT_MAX, Q8_SPLIT_MAX)
    q = np.where(usable[..., None], q, 0).astype(np.int32)
    s = np.where(np.isfinite(top), s, np.float32(np.nan)).astype(np.float32)
    return q.reshape(N, I), s
