"""AVX512-VNNI int8 dot products for Numba kernels: q8 weights times activations on a 16-bit
integer grid, 64 byte products per instruction.

A q8 weight (precision.Q8Matrix) is an int8 times its block's float32 scale. Widening each one to
float32 before a fused multiply-add (numba_cpu._dot_q8_16) costs a sign extension and a
conversion per 16 weights besides the multiply, and that made the q8 matvec compute-bound: on
the Zen 4 VM it went through MPT-125M's block matrices at 22 GB/s on one core with them in
cache, and at about 30 GB/s on two from memory, under the memory's ~35. CPUs with AVX512-VNNI
(Intel Ice Lake server and later, AMD Zen 4 and later) have ``vpdpbusd``: for 16 int32 lanes,
acc += u[4l] s[4l] + .. + u[4l + 3] s[4l + 3] over 64 pairs of an unsigned and a signed byte,
exactly, in integers.

The activations are float32. Rounding them to int8 per block (as llama.cpp's q8_0 does) would
move each by up to 2^-8 of its block's largest magnitude; instead precision.split_q8 puts each
on a 16-bit grid per block of 32 (x ~ q s within 0.51 s, where s is 1 / 32639 of the block's
largest magnitude), and q = 256 hi + lo with hi and lo signed bytes: two instructions per 64
weights, one for each half. The weights are the unsigned side, stored plus 128
(precision.interleave_q8); each block's product then carries 128 times the sum of that block's
q, one integer per block of x that the caller subtracts (``scale_into``'s ``bias``). Beside the
q8 weights' own rounding (up to half a block's scale per weight, 2^-8 of the block's largest
weight), this moves a product by at most 0.51 / 32639 of sum |w| max|x_block| more, plus
float32 accumulation of two terms per chunk of four blocks.

The weights are interleaved four rows by four blocks (precision.interleave_q8), so that each of
the sixteen int32 lanes belongs to one (row, block) pair and eight instructions sum a whole
block into it: a block's scale then multiplies a lane, with no sum across lanes until each of
the four rows' last one.

| function                      | result                                                        |
|-------------------------------|---------------------------------------------------------------|
| ``zero_i32()``                | sixteen int32 zeros                                           |
| ``load64_u8(a, (..))``        | 64 bytes of a uint8 array at a[.., k : k + 64], as 16 lanes   |
| ``repeat16_i8(a, (..))``      | 16 bytes of an int8 array, repeated in each quarter of 64     |
| ``repeat4_i32(a, (..))``      | 4 int32, repeated in each quarter of 16 lanes                 |
| ``repeat4_f32(a, (..))``      | 4 float32, repeated in each quarter, as numba_vec16's f32x16  |
| ``repeat_each4(a, (..))``     | 4 float32, each repeated in four lanes in a row               |
| ``dot64(acc, u, s)``          | ``vpdpbusd``: acc + the sums of four byte products, per lane  |
| ``add_i32(a, b)``             | a + b, lane by lane                                           |
| ``scale_into(acc, hi, lo, bias, ws, xs)`` | acc + float(256 hi + lo - bias) * (ws * xs)        |
| ``load16_u8_centred(a, (..))`` | 16 bytes of a uint8 array less 128, as float32 lanes       |
| ``store_quarters(a, (i, j), v)`` | v's four quarters at a[i, j + 32 q : j + 32 q + 4]        |
| ``quarter_sums(v)``           | the four sums of lanes 4r .. 4r + 3 of a f32x16, a 4-tuple     |

``Q8_DOT`` says whether the CPU Numba compiles for has the instruction (with AVX-512's
registers), read from the same setting Numba uses (NUMBA_CPU_FEATURES where set, otherwise the
host's), which is part of the key of Numba's on-disk cache. Where it is False, ``dot64`` refuses
to compile, and numba_stacks keeps q8 matrices in Q8Matrix's plain layout, which the widening
kernels take. The loads trust the caller, as numba_vec16's do: unit stride along the last axis
and the bytes within it.

Numba's on-disk cache of a kernel is keyed on the file that defines the kernel, not on this one:
after editing this file, touch numba_cpu.py (or delete its __pycache__) so the kernels recompile.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from .numba_vec16 import (
    AVX512,
    F16,
    I8X16,
    _indexes,
    _pointer,
    _widening_load,
    f32x16,
    target_features,
)

Q8_DOT = AVX512 and "+avx512vnni" in target_features().split(",")

_I32 = ir.IntType(32)
_I32X16 = ir.VectorType(_I32, 16)
_I32X4 = ir.VectorType(_I32, 4)
_F32X4 = ir.VectorType(ir.FloatType(), 4)
_QUARTERS = ir.Constant(_I32X16, [0, 1, 2, 3] * 4)  # a 4-lane vector's lanes, four times over


class Int32x16(types.Type):  # sixteen int32 lanes: one zmm register (also 64 bytes as loaded)
    def __init__(self):
        super().__init__(name="i32x16")


i32x16 = Int32x16()


@register_model(Int32x16)
class _Int32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _I32X16)


@intrinsic
def zero_i32(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_I32X16, [0] * 16)

    return i32x16(), codegen


@intrinsic
def load64_u8(typingctx, a, index):
    if not _indexes(a, index, types.uint8):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_pointer(context, builder, signature, args, _I32X16), align=1)

    return i32x16(a, index), codegen


def _repeating_load(dtype, vector, align, result, order=_QUARTERS):
    """An intrinsic: the 4-lane ``vector`` of dtype at a[index], repeated in each quarter of a
    16-lane value of type ``result`` (one broadcast instruction, vbroadcasti32x4 / f32x4), or
    its lanes in another ``order``."""

    @intrinsic
    def load(typingctx, a, index):
        if not _indexes(a, index, dtype):
            return None

        def codegen(context, builder, signature, args):
            four = builder.load(_pointer(context, builder, signature, args, vector), align=align)
            return builder.shuffle_vector(four, four, order)

        return result(a, index), codegen

    return load


repeat16_i8 = _repeating_load(types.int8, _I32X4, 1, i32x16)  # 16 bytes = 4 lanes of 32 bits
repeat4_i32 = _repeating_load(types.int32, _I32X4, 4, i32x16)
repeat4_f32 = _repeating_load(types.float32, _F32X4, 4, f32x16)
# 4 float32, each in four lanes in a row: a row's block scales where a vector of the interleaved
# layout holds four weights of each block
repeat_each4 = _repeating_load(
    types.float32, _F32X4, 4, f32x16, ir.Constant(_I32X16, [i for i in range(4) for _ in range(4)])
)


def _centred_to_float(builder, packed):  # <16 x i8> unsigned bytes -> <16 x float> less 128
    wide = builder.zext(packed, _I32X16)
    return builder.sitofp(builder.sub(wide, ir.Constant(_I32X16, [128] * 16)), F16)


# 16 bytes of a uint8 array, less 128, as float32: a row's weights of the interleaved layout
load16_u8_centred = _widening_load(types.uint8, I8X16, 1, _centred_to_float)


@intrinsic
def store_quarters(typingctx, a, index, v):
    """a[i, j + 32 q : j + 32 q + 4] = lanes 4q .. 4q + 3 of v for q = 0 .. 3 (a 2D float32
    array): one vector of the interleaved q8 layout's row back in its columns, a block apart."""
    if not (_indexes(a, index) and a.ndim == 2 and v == f32x16):
        return None

    def codegen(context, builder, signature, args):
        start = _pointer(context, builder, signature, args, ir.FloatType())  # a float*
        for q in range(4):
            quarter = builder.shuffle_vector(
                args[2], args[2], ir.Constant(_I32X4, [4 * q + i for i in range(4)])
            )
            at = builder.gep(start, [ir.Constant(ir.IntType(64), 32 * q)])
            builder.store(quarter, builder.bitcast(at, _F32X4.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(a, index, v), codegen


@intrinsic
def add_i32(typingctx, a, b):  # a + b lane by lane (wrapping, as the instruction's sums do)
    if not (a == b == i32x16):
        return None

    def codegen(context, builder, signature, args):
        return builder.add(args[0], args[1])

    return i32x16(a, b), codegen


@intrinsic
def dot64(typingctx, acc, u, s):
    if not (acc == u == s == i32x16):
        return None
    if not Q8_DOT:
        raise RuntimeError("dot64 needs AVX512-VNNI, which the target CPU does not have")

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(_I32X16, [_I32X16, _I32X16, _I32X16]),
            "llvm.x86.avx512.vpdpbusd.512",
        )
        return builder.call(fn, list(args))

    return i32x16(acc, u, s), codegen


@intrinsic
def scale_into(typingctx, acc, hi, lo, bias, w_scale, x_scale):
    """acc + float32(256 hi + lo - bias) * (w_scale * x_scale), lane by lane: the integer sums of
    a chunk's blocks (exact in int32: 256 hi + lo is at most 2^29 in magnitude) made float32 and
    scaled, the product's rounding then the add's (no contraction, so it reads as written)."""
    if not (hi == lo == bias == i32x16 and acc == w_scale == x_scale == f32x16):
        return None

    def codegen(context, builder, signature, args):
        acc, hi, lo, bias, w_scale, x_scale = args
        shifted = builder.shl(hi, ir.Constant(_I32X16, [8] * 16))
        total = builder.sub(builder.add(shifted, lo), bias)
        scale = builder.fmul(w_scale, x_scale)
        return builder.fadd(acc, builder.fmul(builder.sitofp(total, F16), scale))

    return f32x16(acc, hi, lo, bias, w_scale, x_scale), codegen


@intrinsic
def quarter_sums(typingctx, v):
    if v != f32x16:
        return None
    four = types.UniTuple(types.float32, 4)

    def codegen(context, builder, signature, args):
        v = args[0]
        for swap in ((2, 3, 0, 1), (1, 0, 3, 2)):  # lanes 4q + i and 4q + swap[i] added
            order = ir.Constant(_I32X16, [4 * q + i for q in range(4) for i in swap])
            v = builder.fadd(v, builder.shuffle_vector(v, v, order))
        sums = [builder.extract_element(v, ir.Constant(_I32, 4 * r)) for r in range(4)]
        return context.make_tuple(builder, four, sums)

    return four(v), codegen
