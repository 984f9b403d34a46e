"""A 16-wide float32 vector value for Numba kernels on AVX-512 CPUs: one zmm register.

numba_vec8's ``f32x8`` is what every x86-64 CPU has since AVX2. AVX-512 doubles the lanes and the
register file (32 of them), which lets a matrix product keep an 8 x 48 block of its output in 24
registers while it walks the shared axis (numba_gemm.py), and gives the bf16 dot product
(numba_bf16dot.py) its accumulators. On a CPU without AVX-512, LLVM splits each value in two and
runs out of registers, so the kernels built on these ask ``AVX512`` first and take another path.

| function                  | result                                                        |
|---------------------------|---------------------------------------------------------------|
| ``zero16()``              | sixteen zeros                                                 |
| ``splat16(x)``            | the float32 x in all sixteen lanes                            |
| ``load16(a, (i, j, ..))`` | a[i, j, .., k : k + 16] of a float32 array, any number of axes |
| ``load16_i8(a, (..))``    | 16 int8 values of a[.., k : k + 16], widened to float32       |
| ``load16_bf16(a, (..))``  | 16 bf16 bit patterns (uint16) of a[.., k : k + 16], widened   |
| ``load8_bf16(a, (..))``   | the same for 8 of them, as numba_vec8's ``f32x8``             |
| ``store16(a, (..), v)``   | a[.., k : k + 16] = v                                         |
| ``fma16(acc, x, y)``      | acc + x * y lane by lane, fused                               |
| ``add16(x, y)``           | x + y lane by lane                                            |
| ``hsum16(x)``             | the sum of x's sixteen lanes (halves folded), as a float32    |
| ``prefetch(a, (..), n)``  | a hint: the cache line n bytes past a[..] into L2 (no value)  |

The index is a tuple with one integer per axis, the last one the first of the sixteen lanes. The
loads and stores trust the caller, as numba_vec8's do: unit stride along the last axis and the
sixteen lanes within it. ``prefetch`` needs no such care: a prefetch never faults, so its address
may lie past the array's end (it is then a wasted hint, nothing more).

``AVX512`` and ``target_features()`` read the setting Numba compiles for (NUMBA_CPU_FEATURES where
set, otherwise the host's features), ``target_cpu()`` the CPU name (NUMBA_CPU_NAME, otherwise the
host's); both are part of the key of Numba's on-disk cache, so a kernel cached under one answer is
never loaded under another.

Numba's on-disk cache of a kernel is keyed on the file that defines the kernel, not on this one:
after editing this file, touch the kernels' files (or delete their __pycache__) so they recompile.
"""

from __future__ import annotations

from llvmlite import binding, ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic, models, register_model

from .numba_vec8 import element_pointer, f32x8, vector_ops


def target_features():  # the feature string Numba's JIT compiles for
    if config.CPU_FEATURES is not None:
        return config.CPU_FEATURES
    return binding.get_host_cpu_features().flatten()


def target_cpu():  # the LLVM CPU name Numba's JIT compiles for ("znver4", "sapphirerapids", ..)
    if config.CPU_NAME is not None and config.CPU_NAME != "host":
        return config.CPU_NAME
    return binding.get_host_cpu_name()


AVX512 = "+avx512f" in target_features().split(",")

F16 = ir.VectorType(ir.FloatType(), 16)
I8X16 = ir.VectorType(ir.IntType(8), 16)
U16X16 = ir.VectorType(ir.IntType(16), 16)


class Float32x16(types.Type):
    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = Float32x16()


@register_model(Float32x16)
class _Float32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, F16)


zero16, splat16, add16, fma16, hsum16 = vector_ops(f32x16, F16)


def _indexes(a, index, dtype=types.float32):  # an array of dtype and one integer per axis
    return (
        isinstance(a, types.Array)
        and a.dtype == dtype
        and isinstance(index, types.BaseTuple)
        and len(index) == a.ndim
        and all(isinstance(t, types.Integer) for t in index)
    )


def _pointer(context, builder, signature, args, vector=F16):  # -> vector* at args[0][args[1]]
    index = [
        context.cast(builder, value, kind, types.intp)
        for value, kind in zip(cgutils.unpack_tuple(builder, args[1]), signature.args[1])
    ]
    return element_pointer(context, builder, signature.args[0], args[0], *index, vector=vector)


@intrinsic
def load16(typingctx, a, index):
    if not _indexes(a, index):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_pointer(context, builder, signature, args), align=4)

    return f32x16(a, index), codegen


def _widening_load(dtype, vector, align, widen, result=f32x16):
    """An intrinsic: len(vector) values of dtype at a[index], widened to the float vector type
    ``result`` (16 lanes, or numba_vec8's 8)."""

    @intrinsic
    def load(typingctx, a, index):
        if not _indexes(a, index, dtype):
            return None

        def codegen(context, builder, signature, args):
            packed = builder.load(_pointer(context, builder, signature, args, vector), align=align)
            return widen(builder, packed)

        return result(a, index), codegen

    return load


def _bf16_bits_to_float(builder, bits):  # <n x i16> bf16 patterns -> <n x float>
    n = bits.type.count
    wide = builder.shl(
        builder.zext(bits, ir.VectorType(ir.IntType(32), n)),
        ir.Constant(ir.VectorType(ir.IntType(32), n), [16] * n),
    )
    return builder.bitcast(wide, ir.VectorType(ir.FloatType(), n))


load16_i8 = _widening_load(types.int8, I8X16, 1, lambda builder, v: builder.sitofp(v, F16))
load16_bf16 = _widening_load(types.uint16, U16X16, 2, _bf16_bits_to_float)
# the same in numba_vec8's eight lanes, for the kernels that take eight where AVX-512 is missing
load8_bf16 = _widening_load(
    types.uint16, ir.VectorType(ir.IntType(16), 8), 2, _bf16_bits_to_float, result=f32x8
)


@intrinsic
def store16(typingctx, a, index, v):
    if not (_indexes(a, index) and v == f32x16):
        return None

    def codegen(context, builder, signature, args):
        builder.store(args[2], _pointer(context, builder, signature, args), align=4)
        return context.get_dummy_value()

    return types.none(a, index, v), codegen


@intrinsic
def prefetch(typingctx, a, index, ahead):
    """Hint that the cache line ``ahead`` bytes past a[index] will be read soon: LLVM's prefetch
    with locality 2, which x86 compiles to prefetcht1 (into L2 and the levels above it). Any
    element type; it returns nothing and changes nothing."""
    if not (
        isinstance(a, types.Array)
        and _indexes(a, index, a.dtype)
        and isinstance(ahead, types.Integer)
    ):
        return None

    def codegen(context, builder, signature, args):
        start = _pointer(context, builder, signature, args, ir.IntType(8))  # an i8*
        byte = start.type
        target = builder.gep(start, [context.cast(builder, args[2], signature.args[2], types.intp)])
        hint = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte, ir.IntType(32), ir.IntType(32), ir.IntType(32)]),
            "llvm.prefetch.p0i8",
        )
        # read (0), locality 2 (prefetcht1), data cache (1)
        i32 = ir.IntType(32)
        builder.call(hint, [target, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(a, index, ahead), codegen
