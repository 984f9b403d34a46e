"""Low-precision rounding emulated in NumPy, and the low-precision LayerNorm of MosaicML MPT.

NumPy has float16 but no bfloat16. bfloat16 is the top 16 bits of a float32, so rounding a float32
to bfloat16 is integer arithmetic on its bit pattern: add half of the dropped 16-bit range (minus
one,
plus the lowest kept bit, which makes ties go to the even neighbour) and clear the low 16 bits.
The results are returned as float32 arrays holding exactly representable bf16/fp16 values.
"""

from __future__ import annotations

import numpy as np

from .ops import layer_norm


def round_to_bf16(x):  # [...] float -> [...] float32 on the bf16 grid
    """Round-to-nearest-even float32 -> bfloat16, kept in float32. NaN stays NaN; overflow
    becomes inf."""
    with np.errstate(over="ignore"):  # float64 inputs beyond float32 range become inf, as in torch
        x32 = np.asarray(x, dtype=np.float32)
    bits = x32.view(np.uint32).astype(np.uint64)  # room for the carry out of the top bit
    lsb = (bits >> 16) & 1
    rounded = ((bits + 0x7FFF + lsb) & 0xFFFF0000).astype(np.uint32)
    rounded = np.where(
        np.isnan(x32), x32.view(np.uint32) | np.uint32(0x00400000), rounded
    )  # NaN stays (quiet) NaN
    return rounded.view(np.float32)


def round_to_fp16(x):  # [...] float -> [...] float32 on the fp16 grid
    """Round-to-nearest-even to IEEE half precision (NumPy's own conversion), kept in float32."""
    with np.errstate(over="ignore"):  # beyond 65504 rounds to inf, as in torch
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


ROUND = {"bf16": round_to_bf16, "fp16": round_to_fp16}


def to_bf16_bits(x, chunk=1 << 20):  # [...] float -> [...] uint16
    """The bf16 bit patterns (upper halves) of round_to_bf16(x), converted a chunk at a time so
    that a
    large matrix needs no full-size temporaries."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, np.uint16)
    for start in range(0, flat.size, chunk):
        out[start : start + chunk] = (
            round_to_bf16(flat[start : start + chunk]).view(np.uint32) >> 16
        )
    return out.reshape(np.shape(x))


def low_precision_layer_norm(x, weight, bias, eps, precision=None):  # [..., C] -> [..., C]
    """MosaicML's LPLayerNorm (SPEC 2.5).

    precision None (fp32, or autocast off): exactly LayerNorm.
    precision "bf16" / "fp16" (autocast on): x, weight and bias are rounded to that type, LayerNorm
    runs
    with autocast disabled on those low-precision tensors (PyTorch's CPU kernel accumulates the mean
    and
    variance in float32 and normalises in float32), and the result is rounded to the low-precision
    type.
    """
    if precision is None:
        return layer_norm(x, weight, bias, eps)
    if precision not in ROUND:
        raise ValueError(f"unknown precision {precision!r}; accepted: None, {list(ROUND)}")
    rnd = ROUND[precision]
    x32 = rnd(x)
    y = layer_norm(x32, rnd(weight), None if bias is None else rnd(bias), eps)
    return rnd(y)
