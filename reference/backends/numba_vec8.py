"""An 8-wide float32 vector value for Numba kernels: the register tile of a small matrix product.

LLVM vectorises a loop when the loop's own iterations can run side by side, but it will not keep a
block of a matrix product's outputs in registers while it walks the shared axis: written as arrays,
the accumulators go to memory on every step, and the product becomes a stream of stores. A value of
type ``f32x8`` is an LLVM ``<8 x float>``: a local variable of that type stays in one vector
register (one AVX ymm register; two SSE or NEON registers elsewhere), so a kernel can hold a 6 x 16
output block in twelve of them, as a BLAS micro-kernel does.

The operations are the few such a kernel needs; each is a Numba intrinsic of a line or two of IR:

| function                  | result                                                  |
|---------------------------|---------------------------------------------------------|
| ``zero8()``               | eight zeros                                             |
| ``splat8(x)``             | the float32 x in all eight lanes                        |
| ``load8(a, i, j)``        | a[i, j : j + 8] of a 2D float32 array                   |
| ``load8_i8(a, i, j)``     | a[i, j : j + 8] of a 2D int8 array, as float32          |
| ``store8(a, i, j, v)``    | a[i, j : j + 8] = v                                     |
| ``fma8(acc, x, y)``       | acc + x * y lane by lane (fused where the CPU has FMA)  |
| ``max8(x, y)``            | the larger of x and y lane by lane (y where unordered)  |
| ``hmax8(x)``              | the largest of x's eight lanes, as a float32            |
| ``add8(x, y)``            | x + y lane by lane                                      |
| ``hsum8(x)``              | the sum of x's eight lanes (halves folded) as a float32 |

``load8``, ``load8_i8`` and ``store8`` trust the caller: the row's last axis must have unit stride
and j + 8 must not pass its end; the kernels that use them only ever pass such rows and columns.

Numba's on-disk cache of a kernel is keyed on the file that defines the kernel, not on this one:
after editing this file, touch numba_cpu.py (or delete its __pycache__) so the kernels recompile.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8
_V8 = ir.VectorType(ir.FloatType(), LANES)


class Float32x8(types.Type):
    def __init__(self):
        super().__init__(name="f32x8")


f32x8 = Float32x8()


@register_model(Float32x8)
class _Float32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V8)


def element_pointer(context, builder, array_type, array, *indices, vector=_V8):
    """A pointer to array[indices] (any number of axes), typed as a pointer to ``vector``."""
    a = context.make_array(array_type)(context, builder, array)
    ptr = cgutils.get_item_pointer(
        context, builder, array_type, a, list(indices), wraparound=False, boundscheck=False
    )
    return builder.bitcast(ptr, vector.as_pointer())


def fold_lanes(builder, vector, combine):  # a vector's lanes folded into one by combine
    """The upper half of the lanes combined with the lower half, again and again down to one lane
    (lane i meets lane i + n / 2 first): a shuffle and one vector operation per halving, log2(n) in
    all, where combining lane by lane would take n - 1 scalar steps after n extractions."""
    count = vector.type.count
    while count > 1:
        count //= 2
        lo, hi = (
            builder.shuffle_vector(
                vector,
                vector,
                ir.Constant(
                    ir.VectorType(ir.IntType(32), count), list(range(start, start + count))
                ),
            )
            for start in (0, count)
        )
        vector = combine(lo, hi)
    return builder.extract_element(vector, ir.Constant(ir.IntType(32), 0))


def _is_2d_float32(a):
    return isinstance(a, types.Array) and a.ndim == 2 and a.dtype == types.float32


@intrinsic
def load8(typingctx, a, i, j):
    if not _is_2d_float32(a):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(
            element_pointer(context, builder, signature.args[0], args[0], args[1], args[2]),
            align=4,
        )

    return f32x8(a, i, j), codegen


@intrinsic
def load8_i8(typingctx, a, i, j):
    if not (isinstance(a, types.Array) and a.ndim == 2 and a.dtype == types.int8):
        return None

    def codegen(context, builder, signature, args):
        i8x8 = ir.VectorType(ir.IntType(8), LANES)
        ptr = element_pointer(
            context, builder, signature.args[0], args[0], args[1], args[2], vector=i8x8
        )
        packed = builder.load(ptr, align=1)
        return builder.sitofp(packed, _V8)

    return f32x8(a, i, j), codegen


@intrinsic
def store8(typingctx, a, i, j, v):
    if not _is_2d_float32(a) or v != f32x8:
        return None

    def codegen(context, builder, signature, args):
        builder.store(
            args[3],
            element_pointer(context, builder, signature.args[0], args[0], args[1], args[2]),
            align=4,
        )
        return context.get_dummy_value()

    return types.none(a, i, j, v), codegen


@intrinsic
def max8(typingctx, x, y):
    if not (x == y == f32x8):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])

    return f32x8(x, y), codegen


@intrinsic
def hmax8(typingctx, x):
    if x != f32x8:
        return None

    def codegen(context, builder, signature, args):
        return fold_lanes(
            builder, args[0], lambda a, b: builder.select(builder.fcmp_ordered(">", a, b), a, b)
        )

    return types.float32(x), codegen


def vector_ops(vector_type, llvm_type):
    """zero, splat, add, fma and hsum for a Numba float32 vector type over the LLVM vector
    llvm_type: numba_vec8 makes its 8-lane ones here, numba_vec16 its 16-lane ones."""
    lanes = llvm_type.count

    @intrinsic
    def zero(typingctx):
        def codegen(context, builder, signature, args):
            return ir.Constant(llvm_type, [0.0] * lanes)

        return vector_type(), codegen

    @intrinsic
    def splat(typingctx, x):
        if x != types.float32:
            return None

        def codegen(context, builder, signature, args):
            one = builder.insert_element(
                ir.Constant(llvm_type, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0)
            )
            return builder.shuffle_vector(
                one,
                ir.Constant(llvm_type, ir.Undefined),
                ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes),
            )

        return vector_type(x), codegen

    @intrinsic
    def add(typingctx, x, y):
        if not (x == y == vector_type):
            return None

        def codegen(context, builder, signature, args):
            return builder.fadd(args[0], args[1])

        return vector_type(x, y), codegen

    @intrinsic
    def fma(typingctx, acc, x, y):
        if not (acc == x == y == vector_type):
            return None

        def codegen(context, builder, signature, args):
            fmuladd = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(llvm_type, [llvm_type] * 3),
                f"llvm.fmuladd.v{lanes}f32",
            )
            return builder.call(fmuladd, [args[1], args[2], args[0]])

        return vector_type(acc, x, y), codegen

    @intrinsic
    def hsum(typingctx, x):
        if x != vector_type:
            return None

        def codegen(context, builder, signature, args):
            return fold_lanes(builder, args[0], builder.fadd)

        return types.float32(x), codegen

    return zero, splat, add, fma, hsum


zero8, splat8, add8, fma8, hsum8 = vector_ops(f32x8, _V8)
