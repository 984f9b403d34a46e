"""AVX512-BF16 dot products for Numba kernels: bf16 weights times float32 activations, 32 pairs of
products per instruction.

A bf16 weight row is 16 bits per value; widening it to float32 before each multiply (what
numba_cpu._dot does everywhere else) costs a shift and a conversion per value, work that a decode
step, where every weight is read once per token, does not hide behind the memory. CPUs with
AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake, Sapphire Rapids and later) have ``vdpbf16ps``:
for 16 float32 lanes, acc += a[2k] * b[2k] + a[2k + 1] * b[2k + 1] over 32 bf16 pairs. Each
product is exact in float32 (8-bit by 8-bit significands), the sums are rounded to nearest even,
and subnormal inputs and results are flushed to zero.

Both operands must be bf16, and the activations are float32. Rounding them to bf16 (as llama.cpp
does) would move each by up to 2^-8 of itself; instead numba_cpu.split_bf16 writes each activation
as the sum of two bf16 values, x = hi + lo within 2^-16 |x| (precision.split_bf16 is the NumPy
twin), and the dot product is w . hi + w . lo: two instructions per 32 weights. Against the widened
product the result moves by at most 2^-16 of sum |w| |x| beyond float32 accumulation, 256 times
less than storing the weights as bf16 moved it (2^-8 of each weight).

| function                   | result                                                          |
|----------------------------|-----------------------------------------------------------------|
| ``load32(a, i, j)``        | the 32 bf16 bit patterns a[i, j : j + 32] of a 2D uint16 array  |
| ``load32_part(a, n, p, j)``| a[n, p, j : j + 32] of a 3D uint16 array (a split activation)   |
| ``dot32(acc, a, b)``       | ``vdpbf16ps``: acc + the pairwise products of a and b, per lane |

The float32 accumulators are numba_vec16's ``f32x16`` values (``zero16``, ``add16``, ``hsum16``).

``BF16_DOT`` says whether the CPU Numba compiles for has the instruction. It reads the same setting
Numba does (NUMBA_CPU_FEATURES where set, otherwise the host's features), which is also part of the
key of Numba's on-disk cache, so a kernel cached with one answer is never loaded under the other.
Where it is False, ``dot32`` refuses to compile (LLVM would otherwise stop with a selection error),
and the kernels never call it. ``SPLIT_DOTS`` says whether numba_cpu's bf16 matvec uses it: where
the instruction exists and the CPU Numba compiles for is not one of ``WIDENING_FASTER``, those on
which widening each weight was measured faster in a decode step (NUMBA_CPU_NAME names the CPU, and
so picks the kernel, for a process); where it holds, numba_stacks also keeps bf16 matrices four
rows interleaved (precision.InterleavedBf16), which that kernel streams faster. The loads trust the
caller as numba_vec8's do: unit stride along the last axis and j + 32 within it.

Numba's on-disk cache of a kernel is keyed on the file that defines the kernel, not on this one:
after editing this file, touch numba_cpu.py (or delete its __pycache__) so the kernels recompile.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from .numba_vec8 import element_pointer
from .numba_vec16 import F16, f32x16, target_cpu, target_features

BF16_DOT = "+avx512bf16" in target_features().split(",")

# CPUs (LLVM's names) that have the instruction but where a decode step's bf16 matvecs run faster
# widening each weight: on the 2-vCPU AMD EPYC Zen 5 VM (lscpu family 26, model 2) decode_step at
# t = 100 took 0.85x / 0.96x / 0.86x the time of the split-activation kernel (three runs of 40
# alternating rounds, 2026-12-03), whole generations 0.82x (tools/bench.py --workload bf16), while
# on Zen 4 the split kernel streamed the matrices 4-20% faster than widening. That was the split
# kernel one row at a time; since 2026-12-06 it takes four interleaved rows a task
# (numba_cpu._dot_bf16_quad): on Zen 4 0.93-0.94x the row-by-row step time, and level with
# widening (1.00x) while the memory runs slow, 0.94x while it runs fast. Zen 5 has not been
# measured with it. Unmeasured CPUs (Intel's included) take the split kernel; that workload
# settles a new one.
WIDENING_FASTER = frozenset({"znver5"})

SPLIT_DOTS = BF16_DOT and target_cpu() not in WIDENING_FASTER  # what numba_cpu's bf16 matvec uses

_I16X32 = ir.VectorType(ir.IntType(16), 32)


class _BFloat(ir.Type):
    """LLVM's ``bfloat`` scalar type, which llvmlite does not name: the dot instruction's operand
    lanes. Only ever used inside dot32's code, on values bitcast from 16-bit integers."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash(_BFloat)


_BF16X32 = ir.VectorType(_BFloat(), 32)


class Bf16x32(types.Type):  # held as 32 x i16; bitcast to bfloat lanes only for the instruction
    def __init__(self):
        super().__init__(name="bf16x32")


bf16x32 = Bf16x32()


@register_model(Bf16x32)
class _Bf16x32Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _I16X32)


def _load(context, builder, signature, args):  # 32 uint16 at args[0][args[1:]]
    ptr = element_pointer(context, builder, signature.args[0], *args, vector=_I16X32)
    return builder.load(ptr, align=2)


def _is_uint16(a, ndim):
    return isinstance(a, types.Array) and a.ndim == ndim and a.dtype == types.uint16


@intrinsic
def load32(typingctx, a, i, j):
    if not _is_uint16(a, 2):
        return None

    def codegen(context, builder, signature, args):
        return _load(context, builder, signature, args)

    return bf16x32(a, i, j), codegen


@intrinsic
def load32_part(typingctx, a, n, p, j):
    if not _is_uint16(a, 3):
        return None

    def codegen(context, builder, signature, args):
        return _load(context, builder, signature, args)

    return bf16x32(a, n, p, j), codegen


@intrinsic
def dot32(typingctx, acc, a, b):
    if not (acc == f32x16 and a == b == bf16x32):
        return None
    if not BF16_DOT:
        raise RuntimeError("dot32 needs AVX512-BF16, which the target CPU does not have")

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(F16, [F16, _BF16X32, _BF16X32]),
            "llvm.x86.avx512bf16.dpbf16ps.512",
        )
        return builder.call(
            fn, [args[0], builder.bitcast(args[1], _BF16X32), builder.bitcast(args[2], _BF16X32)]
        )

    return f32x16(acc, a, b), codegen
