"""A float32 matrix product for the encoder's projections on AVX-512 CPUs: x @ W.T + b, with GELU
optionally applied as the result is written. The same register blocks also run a long prompt's
products over the decoder's weights as stored (``stored_linear``: float32, bf16 or q8, each panel
packed per call on the core that uses it).

At MPNet-base's shapes (1024 rows of 768 or 3072 inputs) NumPy's OpenBLAS runs at 82-86% of the
FMA peak of this machine's two cores and then needs a second pass over the output for the bias
(and a third for GELU). Here the weights are laid out once, at load, for the inner loop, and the
bias and GELU are applied to each block of the output while it is still in registers and L1.

Layout (``PackedMatrix``): W [O, I] is cut into panels of NR = 48 output rows, each stored
input-major, ``panels[p, k, j] = W[p * NR + j, k]`` (rows past O are zeros). For one panel and
eight rows of x, the kernel holds the 8 x 48 block of the output in 24 vector registers of 16
lanes and walks k: three loads of the panel's row k (contiguous), eight broadcasts of x[i, k],
24 fused multiply-adds. The panel (I x 48 floats, 147 KB at I = 768) stays in the core's L2 while
the kernel goes down all rows of x; the panels are shared out between the threads. x is read in
place, so nothing is copied per call. Rows of x are taken in blocks of ROW_BLOCK so that the block
stays in the L3 while every panel passes over it.

Measured on the 2-vCPU AMD EPYC (Zen 4) at 1024 rows, alternating with ``x @ W.T + b`` in NumPy
2.4 (OpenBLAS 0.3.31): 768 -> 2304 202 vs 174 GFLOP/s, 768 -> 768 205 vs 172, 768 -> 3072 205
vs 168, 3072 -> 768 208 vs 183; the FMA peak of the two cores measures about 225.

Only on CPUs Numba compiles for with AVX-512 (numba_vec16.AVX512); without it the 24 accumulators
do not fit in the registers, and numba_stacks keeps the weights for BLAS instead. Twin: ops.linear
(then ops.gelu), within float32 rounding of a different summation order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_cpu import FASTMATH, _gelu1, _row_as_float32, out_rows
from .numba_vec16 import add16, fma16, load16, splat16, store16, zero16

MR, NR = 8, 48  # rows of x and output columns per register block
ROW_BLOCK = 512  # rows of x per pass of the panels (4096 rows x 3072 inputs would be 48 MB)


class PackedMatrix:
    """A float32 matrix [O, I] held as panels for numba_gemm (see the module docstring).

    ``shape`` and ``dtype`` answer as the matrix would; ``unpack()`` (or ``np.asarray``) gives a
    copy of it. ``panels`` may be a slice of a larger packed array (the q, k and v parts of one
    packed attention projection)."""

    __slots__ = ("panels", "rows")
    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, panels, rows):
        if panels.dtype != np.float32 or panels.ndim != 3 or panels.shape[2] != NR:
            raise ValueError(f"PackedMatrix needs float32 panels [P, I, {NR}], got {panels.shape}")
        if not panels.shape[0] * NR - NR < rows <= panels.shape[0] * NR:
            raise ValueError(f"{panels.shape[0]} panels of {NR} cannot hold {rows} rows")
        self.panels, self.rows = panels, rows

    @property
    def shape(self):
        return (self.rows, self.panels.shape[1])

    @property
    def columns(self):  # output columns the kernel writes: the rows rounded up to whole panels
        return self.panels.shape[0] * NR

    def unpack(self):  # -> float32 [O, I], a copy
        return self.panels.transpose(0, 2, 1).reshape(-1, self.shape[1])[: self.rows].copy()

    def __array__(self, dtype=None, copy=None):
        w = self.unpack()
        return w if dtype is None else w.astype(dtype)

    def __repr__(self):
        return f"PackedMatrix(shape={self.shape})"


def pack_side_by_side(matrices):  # [O_n, I] float32 each -> (PackedMatrix, [PackedMatrix], starts)
    """The matrices (all with I inputs) packed one after another into one array of panels, each
    starting on a panel of its own: one product computes them all, matrix n's output in columns
    starts[n] : starts[n] + O_n. Also each matrix as a PackedMatrix over its own panels (views)."""
    I = matrices[0].shape[1]
    counts = [-(-w.shape[0] // NR) for w in matrices]
    panels = np.zeros((sum(counts), I, NR), np.float32)
    parts, starts, p = [], [], 0
    for w, n in zip(matrices, counts):
        if w.ndim != 2 or w.shape[1] != I:
            raise ValueError(f"matrices packed side by side need {I} inputs each, got {w.shape}")
        block = panels[p : p + n]
        padded = np.zeros((n * NR, I), np.float32)
        padded[: w.shape[0]] = w
        block[:] = padded.reshape(n, NR, I).transpose(0, 2, 1)
        parts.append(PackedMatrix(block, w.shape[0]))
        starts.append(p * NR)
        p += n
    return PackedMatrix(panels, panels.shape[0] * NR), parts, starts


def pack(w):  # float32 [O, I] -> PackedMatrix
    return pack_side_by_side([np.asarray(w, np.float32)])[1][0]


def padded_bias(bias, columns, parts=None, starts=(0,)):  # -> float32 [columns]
    """Biases laid out as the kernel's output columns: bias n at starts[n], zeros elsewhere (and
    zeros throughout where there is none). A float32 bias already that long is used as it is."""
    if parts is None and bias is not None and len(bias) == columns and bias.dtype == np.float32:
        return np.ascontiguousarray(bias)
    out = np.zeros(columns, np.float32)
    for b, start in zip([bias] if parts is None else parts, starts):
        if b is not None:
            out[start : start + len(b)] = b
    return out


@njit(inline="always")
def _fma_row(c0, c1, c2, a, b0, b1, b2):  # one row of the block: (c0, c1, c2) += a * (b0, b1, b2)
    s = splat16(a)
    return fma16(c0, s, b0), fma16(c1, s, b1), fma16(c2, s, b2)


@njit(inline="always")
def _store_row(out, i, j, c0, c1, c2, v0, v1, v2):  # out[i, j : j + 48] = (c0, c1, c2) + bias
    store16(out, (i, j), add16(c0, v0))
    store16(out, (i, j + 16), add16(c1, v1))
    store16(out, (i, j + 32), add16(c2, v2))


@njit(inline="always", fastmath=FASTMATH)
def _block(x, i0, panel, j, bias, out):  # out[i0 : i0 + 8, j : j + 48]
    """Rows i0 .. i0 + 7 of x (those past the last repeat it, and are not written) times one panel
    [I, 48], whose columns are the output's j .. j + 47, plus the bias."""
    M, K = x.shape
    r1, r2, r3 = min(i0 + 1, M - 1), min(i0 + 2, M - 1), min(i0 + 3, M - 1)
    r4, r5, r6, r7 = min(i0 + 4, M - 1), min(i0 + 5, M - 1), min(i0 + 6, M - 1), min(i0 + 7, M - 1)
    c00 = c01 = c02 = c10 = c11 = c12 = c20 = c21 = c22 = c30 = c31 = c32 = zero16()
    c40 = c41 = c42 = c50 = c51 = c52 = c60 = c61 = c62 = c70 = c71 = c72 = zero16()
    for k in range(K):
        b0, b1, b2 = load16(panel, (k, 0)), load16(panel, (k, 16)), load16(panel, (k, 32))
        c00, c01, c02 = _fma_row(c00, c01, c02, x[i0, k], b0, b1, b2)
        c10, c11, c12 = _fma_row(c10, c11, c12, x[r1, k], b0, b1, b2)
        c20, c21, c22 = _fma_row(c20, c21, c22, x[r2, k], b0, b1, b2)
        c30, c31, c32 = _fma_row(c30, c31, c32, x[r3, k], b0, b1, b2)
        c40, c41, c42 = _fma_row(c40, c41, c42, x[r4, k], b0, b1, b2)
        c50, c51, c52 = _fma_row(c50, c51, c52, x[r5, k], b0, b1, b2)
        c60, c61, c62 = _fma_row(c60, c61, c62, x[r6, k], b0, b1, b2)
        c70, c71, c72 = _fma_row(c70, c71, c72, x[r7, k], b0, b1, b2)
    v0, v1, v2 = load16(bias, (j,)), load16(bias, (j + 16,)), load16(bias, (j + 32,))
    _store_row(out, i0, j, c00, c01, c02, v0, v1, v2)
    if i0 + 1 < M:
        _store_row(out, i0 + 1, j, c10, c11, c12, v0, v1, v2)
    if i0 + 2 < M:
        _store_row(out, i0 + 2, j, c20, c21, c22, v0, v1, v2)
    if i0 + 3 < M:
        _store_row(out, i0 + 3, j, c30, c31, c32, v0, v1, v2)
    if i0 + 4 < M:
        _store_row(out, i0 + 4, j, c40, c41, c42, v0, v1, v2)
    if i0 + 5 < M:
        _store_row(out, i0 + 5, j, c50, c51, c52, v0, v1, v2)
    if i0 + 6 < M:
        _store_row(out, i0 + 6, j, c60, c61, c62, v0, v1, v2)
    if i0 + 7 < M:
        _store_row(out, i0 + 7, j, c70, c71, c72, v0, v1, v2)


@njit(inline="always")
def _panels_over_rows(x, panels, bias, out, gelu):
    """Each block of ROW_BLOCK rows of x times every panel, the panels shared out between the
    threads; with ``gelu``, GELU over each panel's columns of the block once they are written (in
    the core's L2 by then)."""
    M = x.shape[0]
    for m0 in range(0, M, ROW_BLOCK):
        m1 = min(m0 + ROW_BLOCK, M)
        for p in prange(panels.shape[0]):
            for i0 in range(m0, m1, MR):
                _block(x, i0, panels[p], p * NR, bias, out)
            if gelu:
                for i in range(m0, m1):
                    row = out[i, p * NR : p * NR + NR]
                    for j in range(NR):
                        row[j] = _gelu1(row[j])


# Two kernels, so that ``gelu`` is a constant in each: GELU inside the block's code, even behind a
# branch not taken, cost the inner loop its registers and two thirds of its speed.
@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gemm(x, panels, bias, out):  # x [M, I] C-contiguous, panels [P, I, 48] -> out [M, 48 P]
    _panels_over_rows(x, panels, bias, out, False)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gemm_gelu(x, panels, bias, out):  # the same, then GELU
    _panels_over_rows(x, panels, bias, out, True)


def packed_product(x, weight, bias, gelu=False):  # [..., I] -> [..., weight.columns]
    """x @ W.T + bias (then GELU) over all of the weight's panels; ``bias`` already laid out as the
    columns (padded_bias). The columns past the weight's rows hold the padding's results."""
    I = weight.shape[1]
    if x.shape[-1] != I:
        raise ValueError(f"linear: x has {x.shape[-1]} features, the weight takes {I}")
    rows = np.ascontiguousarray(x.reshape(-1, I), dtype=np.float32)
    out = np.empty((rows.shape[0], weight.columns), np.float32)
    if rows.shape[0]:
        (_gemm_gelu if gelu else _gemm)(rows, weight.panels, bias, out)
    return out.reshape(x.shape[:-1] + (weight.columns,))


def packed_linear(x, weight, bias=None, gelu=False):  # [..., I], PackedMatrix [O, I] -> [..., O]
    """Twin of ops.linear (and of ops.gelu after it, where ``gelu``) for a PackedMatrix."""
    out = packed_product(x, weight, padded_bias(bias, weight.columns), gelu)
    return out if weight.rows == weight.columns else out[..., : weight.rows]


@njit(inline="always")
def _pack_stored_panel(w, scales, p, rows, panel):  # -> panel [I, 48] of weight rows 48 p ..
    """panel[k, j] = row 48 p + j of the stored weights as float32 (zeros past the last row): the
    rows are widened or dequantized into ``rows`` [48, I] first (numba_cpu._row_as_float32, in
    vectors), then transposed. ``rows`` is a view of a buffer whose rows are 16 floats longer than
    I: at I = 3072 rows 12 KB apart fell on one L1 set, and the transposing copy, which reads down
    all 48 rows at once, took longer than the product at 65 rows of x."""
    O = out_rows(w)
    for j in range(NR):
        if p * NR + j < O:
            _row_as_float32(w, scales, p * NR + j, rows, j)
        else:
            rows[j, :] = 0.0
    for k in range(panel.shape[0]):
        for j in range(NR):
            panel[k, j] = rows[j, k]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gemm_stored(x, w, scales, bias, out):  # x [M, I], w [O, I] as stored -> out [M, 48 P]
    """The product over weights kept in their stored form, [O, I] float32, bf16 bits (or them
    interleaved, [O / 4, I / 32, 128]) or q8 (int8 and its scales [O, I / 32]): each task packs its
    panel into a buffer of its own core, as wide float32, then runs the register blocks down all of
    x's rows, so the weights are read once per call and never held as float32."""
    M, I = x.shape
    for p in prange(-(-out_rows(w) // NR)):
        rows, panel = np.empty((NR, I + 16), np.float32), np.empty((I, NR), np.float32)
        _pack_stored_panel(w, scales, p, rows[:, :I], panel)
        for i0 in range(0, M, MR):
            _block(x, i0, panel, p * NR, bias, out)


def stored_linear(rows, w, scales, bias):  # [M, I] float32, [O, I] stored -> [M, O]
    """Twin of ops.linear for a long prompt's rows on weights as stored (numba_cpu.linear's
    path past its tiles, on AVX-512): float32, bf16 bits (uint16, plain or an
    InterleavedBf16's packed array), or q8's int8 with its scales."""
    O = out_rows(w)
    columns = -(-O // NR) * NR
    out = np.empty((rows.shape[0], columns), np.float32)
    _gemm_stored(np.ascontiguousarray(rows), w, scales, padded_bias(bias, columns), out)
    return out if columns == O else np.ascontiguousarray(out[:, :O])
