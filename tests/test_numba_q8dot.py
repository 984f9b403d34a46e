"""q8 weights interleaved for the AVX512-VNNI int8 dot products (precision.interleave_q8,
numba_q8dot.py): the layout keeps every weight, the activations' 16-bit grid equals its NumPy twin
bit for bit and stays within its bound, and the kernels and the decode step equal the dequantized
float32 arithmetic within stated bounds (whole models: test_numba_kernels.py's q8 generation
test)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")
from conftest import assert_close, assert_within  # noqa: E402
from test_mpt_properties import CONFIG, tiny_mpt  # noqa: E402
from test_numba_kernels import (  # noqa: E402
    accumulation_bound,
    arrays,
    host_features_without,
    one_layer_step,
    row_counts,
    run_printing_ok,
)

import reference  # noqa: E402
from reference import ops  # noqa: E402
from reference.backends import numba_cpu as nb  # noqa: E402
from reference.backends.numba_q8dot import Q8_DOT  # noqa: E402
from reference.backends.numba_stacks import interleaves_q8, to_q8  # noqa: E402
from reference.precision import (  # noqa: E402
    Q8_SPLIT_MAX,
    InterleavedQ8,
    Q8Matrix,
    interleave_q8,
    quantize_q8,
    split_q8,
)

FAST = settings(max_examples=30, deadline=None)
needs_vnni = pytest.mark.skipif(not Q8_DOT, reason="the CPU Numba compiles for lacks AVX512-VNNI")


def interleaved(O, I, seed, scale=0.2):  # -> (InterleavedQ8, the same values as a Q8Matrix)
    m = quantize_q8(arrays(seed, O, I, scale=scale))
    return InterleavedQ8(*interleave_q8(m.q, m.scales)), m


def on_the_grid(x):  # x as the int8 kernel multiplies it: split_q8's q s, in float64
    q, s = split_q8(x)
    return q * np.repeat(s.astype(np.float64), 32, axis=-1)


def grid_bound(x, w):
    """How far x w^T may move when x goes on split_q8's grid: each activation by up to 0.51 of its
    block's scale, times |w|."""
    _, s = split_q8(x)
    return np.repeat(0.51 * s.astype(np.float64), 32, axis=-1) @ np.abs(w).astype(np.float64).T


# ------------------------------------------------------------------------------------ layout


@FAST
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**31))
def test_interleaved_q8_holds_every_weight_and_scale(groups, chunks, seed):
    """interleave_q8 and InterleavedQ8: every row, taken by slice, by index or by an array of ids
    (negative ones too), has the plain Q8Matrix's int8 values and scales, and dequantize() its
    float32 values; to_q8 a few rows at a time makes the same arrays."""
    O, I = 4 * groups, 128 * chunks
    m8, m = interleaved(O, I, seed)
    assert m8.shape == (O, I) and m8.dtype == np.float32 and m8.ndim == 2
    q, s = m8.q8()
    np.testing.assert_array_equal(q, m.q)
    np.testing.assert_array_equal(s, m.scales)
    np.testing.assert_array_equal(m8.dequantize(slice(1, None, 2)), m.dequantize(slice(1, None, 2)))
    ids = np.random.default_rng(seed).integers(-O, O, (2, 3))
    np.testing.assert_array_equal(m8.q8(ids)[0], m.q[ids])
    np.testing.assert_array_equal(m8.dequantize(ids), m.dequantize(ids))
    np.testing.assert_array_equal(m8.dequantize(O - 1), m.dequantize(O - 1))
    if interleaves_q8((O, I)):
        again = to_q8(m.dequantize(), chunk=I)  # four rows at a time
        assert isinstance(again, InterleavedQ8)
        np.testing.assert_array_equal(again.packed, m8.packed)
        np.testing.assert_array_equal(again.scales, m8.scales)


@pytest.mark.parametrize("shape", [(8, 256), (12, 128), (6, 96), (5, 64)])
def test_q8_conversion_kernels_equal_the_numpy_twins_bit_for_bit(shape):
    """to_q8 (numba_cpu.quantize_q8_into and quantize_q8_quads_into) makes what
    precision.quantize_q8 makes, then interleave_q8 where the shape is interleaved, byte for byte:
    with a block of zeros, a block of exact ties (k + 1/2 scales, rounded to even), a block
    holding the largest float32 and one of subnormals; several chunks of rows. A block with inf
    or NaN is refused by name."""
    O, I = shape
    rng = np.random.default_rng(O * I)
    w = (rng.standard_normal(shape) * 0.02).astype(np.float32)
    w[0, :32] = 0.0
    s = np.float32(0.01)
    w[1, :32] = (np.arange(32) - 16 + 0.5).astype(np.float32) * s
    w[1, 0] = np.float32(127) * s  # this block's scale is exactly s
    w[2, :32] = np.float32(np.finfo(np.float32).max) * rng.uniform(-1, 1, 32).astype(np.float32)
    w[-1, -32:] = rng.uniform(-1, 1, 32).astype(np.float32) * np.float32(1e-40)
    ref = quantize_q8(w)
    got = to_q8(w, chunk=4 * I)  # four rows a chunk
    if interleaves_q8(shape):
        packed, scales = interleave_q8(ref.q, ref.scales)
        np.testing.assert_array_equal(got.packed, packed)
        np.testing.assert_array_equal(got.scales, scales)
    else:
        assert isinstance(got, Q8Matrix)
        np.testing.assert_array_equal(got.q, ref.q)
        np.testing.assert_array_equal(got.scales, ref.scales)
    for bad in (np.inf, -np.inf, np.nan):
        w2 = w.copy()
        w2[O - 1, 3] = bad
        with pytest.raises(ValueError, match=rf"a matrix of shape \({O}, {I}\) holds inf or NaN"):
            to_q8(w2)


def test_interleaved_q8_rejects_what_it_cannot_hold():
    with pytest.raises(ValueError, match="multiple of 4, columns of 128"):
        interleave_q8(np.zeros((6, 128), np.int8), np.zeros((6, 4), np.float32))
    with pytest.raises(ValueError, match="multiple of 4, columns of 128"):
        interleave_q8(np.zeros((4, 96), np.int8), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="multiple of 4, columns of 128"):
        interleave_q8(np.zeros((4, 128), np.int8), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="InterleavedQ8 needs uint8"):
        InterleavedQ8(np.zeros((1, 1, 512), np.int8), np.zeros((1, 1, 16), np.float32))
    with pytest.raises(ValueError, match="InterleavedQ8 needs uint8"):
        InterleavedQ8(np.zeros((1, 1, 512), np.uint8), np.zeros((1, 2, 16), np.float32))
    m = InterleavedQ8(*interleave_q8(np.zeros((4, 128), np.int8), np.zeros((4, 4), np.float32)))
    with pytest.raises(ValueError, match="out of range for 4 rows"):
        m.dequantize(np.array([4]))
    with pytest.raises(TypeError, match="integers or a slice"):
        m.dequantize(np.array([0.5]))
    with pytest.raises(ValueError, match="multiple of 32 columns"):
        split_q8(np.zeros((1, 40), np.float32))


# -------------------------------------------------------------------------- the 16-bit grid


def unpack_parts(parts):  # split_q8_chunks' parts [N, 2C, 128] -> q [N, 128 C] in column order
    N, C = parts.shape[0], parts.shape[1] // 2

    def columns(half):  # [N, C, 128] in (k, b, m) order -> [N, 128 C] in (b, k, m) order
        return half.astype(np.int32).reshape(N, C, 8, 4, 4).transpose(0, 1, 3, 2, 4)

    return (256 * columns(parts[:, 0::2]) + columns(parts[:, 1::2])).reshape(N, 128 * C)


@FAST
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(-130, 40),
    st.sampled_from(["", "zeros", "inf", "nan", "tiny", "huge"]),
    st.integers(0, 2**31),
)
def test_the_numba_split_is_its_numpy_twin_and_keeps_the_grid_bound(N, chunks, exp, special, seed):
    """numba_cpu.split_q8_chunks against precision.split_q8, bit for bit (the integers, unpacked
    from the kernel's order, the scales, NaN included, and 128 times each block's sum), over
    magnitudes from 2^-130 to 2^40 and blocks of zeros, inf, NaN, subnormals and float32's
    largest values; on every block with a usable scale |q| <= 32639 and |x - q s| <= 0.51 s."""
    x = arrays(seed, N, 128 * chunks) * np.float32(2.0**exp)
    special_values = {"zeros": 0.0, "inf": np.inf, "nan": np.nan, "tiny": 1e-44, "huge": 3e38}
    if special:
        x[0, 32:64:3] = special_values[special]
    parts, bias, scales = nb.split_q8_chunks(x)
    q, s = split_q8(x)
    np.testing.assert_array_equal(unpack_parts(parts), q)
    np.testing.assert_array_equal(scales, s)  # NaN where the twin has NaN
    np.testing.assert_array_equal(bias, 128 * q.reshape(N, -1, 32).sum(-1))
    assert np.abs(q).max() <= Q8_SPLIT_MAX
    usable = np.isfinite(s) & (s >= np.finfo(np.float32).tiny)
    blocks = x.reshape(N, -1, 32).astype(np.float64)
    err = np.abs(blocks - q.reshape(N, -1, 32) * s[..., None].astype(np.float64)).max(-1)
    assert (err[usable] <= 0.51 * s[usable]).all(), (err / s)[usable].max()
    assert (np.isnan(s) == ~np.isfinite(blocks).all(-1)).all()


# -------------------------------------------------------------------------------- the kernels


@needs_vnni
@FAST
@given(row_counts, st.integers(1, 3), st.integers(1, 12), st.booleans(), st.integers(0, 2**31))
def test_linear_on_interleaved_q8_weights(rows, chunks, groups, with_bias, seed):
    """numba_cpu.linear over an InterleavedQ8: up to 4 rows (the int8 dot products) within float32
    accumulation of the exact product of the dequantized weights and x on the 16-bit grid, and so
    within the grid's bound of the float32 x's; more rows (the tiles, numba_gemm) bit for bit
    what the same values give as a plain Q8Matrix."""
    O, I = 4 * groups, 128 * chunks
    m8, m = interleaved(O, I, seed + 1)
    x = arrays(seed, rows, I)
    b = arrays(seed + 2, O) if with_bias else None
    w = m.dequantize().astype(np.float64)
    got = nb.linear(x, m8, b)
    if rows <= nb.MATVEC_MAX_ROWS:
        grid = on_the_grid(x)
        want = grid @ w.T + (0 if b is None else b)
        assert_within(got, want, accumulation_bound(grid, w, b), what="int8 dots, grid x")
        want = x.astype(np.float64) @ w.T + (0 if b is None else b)
        bound = accumulation_bound(x, w, b) + grid_bound(x, w)
        assert_within(got, want, bound, what="int8 dots, float32 x")
    else:
        np.testing.assert_array_equal(got, nb.linear(x, m, b))


@needs_vnni
@pytest.mark.parametrize("N", [1, 3, 6])
@pytest.mark.parametrize("O", [4, 36, 260])
def test_interleaved_q8_matvec_gives_the_same_rows_for_any_task_count(O, N):
    """numba_cpu._matvec_into over interleaved q8 weights, its groups of rows shared by 1 to 9
    tasks: bit for bit what one task gives, every row written (the output starts as NaN)."""
    m8, _ = interleaved(O, 256, O)
    y = arrays(O + 1, N, 256)
    one = np.full((N, O), np.nan, np.float32)
    nb._split_matvec(y, m8.packed, m8.scales, one, 1)
    assert not np.isnan(one).any()
    for tasks in range(2, 10):
        got = np.full((N, O), np.nan, np.float32)
        nb._split_matvec(y, m8.packed, m8.scales, got, tasks)
        assert np.array_equal(got, one), (tasks, np.abs(got - one).max())


@needs_vnni
def test_nan_and_inf_activations_make_nan_products():
    """A block of x holding inf or NaN makes every product it enters NaN (the scale NaN), the
    other rows of x untouched."""
    m8, m = interleaved(8, 256, 3)
    x = arrays(4, 3, 256)
    x[0, 40], x[1, 200] = np.inf, np.nan
    got = nb.linear(x, m8)
    assert np.isnan(got[:2]).all()
    assert_within(got[2:], on_the_grid(x[2:]) @ m.dequantize().T.astype(np.float64), 1e-4)


@needs_vnni
@FAST
@given(st.integers(1, 6), st.sampled_from([(4, 32), (2, 64)]), st.integers(1, 40))
def test_decode_step_on_interleaved_q8_weights_equals_the_dequantized_fp32_step(B, heads, T):
    """decode_step with interleaved q8 matrices (C = 128, so every matrix and the 36-row LM head
    is interleaved) against the same step with the dequantized float32 matrices, within 1e-3 of
    each output's largest magnitude: the 16-bit grid moves each product by at most 0.51 / 32639
    of sum |w| max |x| of a block (split_q8), up to 1e-3 of the product's own size at these
    widths (I = 128 .. 512), and the step runs five matvecs in a row. Measured over 24 cases:
    at most 1.4e-4 of the largest magnitude (the new x), 1.3e-4 (the logits), 2.3e-5 (keys)."""
    H, D = heads
    C, W, seed = H * D, 4 * H * D, 7 * B + T
    mats = [
        interleaved(*shape, seed + i, scale=0.3)
        for i, shape in enumerate([(3 * C, C), (C, C), (W, C), (C, W), (36, C)], 1)
    ]
    unused = np.zeros((1, 1, 1), np.float32)
    kinds = {
        "fp32": [(m.dequantize()[None], unused) for _, m in mats],
        "q8": [(m8.packed[None], m8.scales[None]) for m8, _ in mats],
    }
    outs = {
        kind: one_layer_step(B, heads, T, seed, matrices, 36) for kind, matrices in kinds.items()
    }
    for what, got, want in zip(("decode step", "head", "keys written"), outs["q8"], outs["fp32"]):
        scale = np.abs(want).max()
        assert_within(got, want, 1e-3 * scale, what=f"interleaved q8 {what} (of {scale:.3g})")


# ------------------------------------------------------------------------------ whole models


def test_without_avx512_vnni_q8_stays_plain_and_an_interleaved_one_is_widened():
    """Under NUMBA_CPU_FEATURES without avx512vnni (a CPU without the instruction, as Numba sees
    it), Q8_DOT is off and q8 matrices are not interleaved; one interleaved by hand takes the
    widening kernel, whose matvec equals the dequantized float32 product (float32 x, no grid)
    within float32 accumulation."""
    features = host_features_without("avx512vnni")
    script = (
        "import numpy as np\nfrom reference.backends import numba_cpu as nb\n"
        "from reference.backends.numba_q8dot import Q8_DOT\n"
        "from reference.backends.numba_stacks import interleaves_q8, to_q8\n"
        "from reference.precision import InterleavedQ8, Q8Matrix, interleave_q8, quantize_q8\n"
        "assert not Q8_DOT and not interleaves_q8((256, 256))\n"
        "rng = np.random.default_rng(0)\n"
        "x, w = rng.normal(size=(3, 256)).astype(np.float32), rng.normal(size=(8, 256))\n"
        "assert isinstance(to_q8(w), Q8Matrix)\n"
        "m = quantize_q8(w)\nm8 = InterleavedQ8(*interleave_q8(m.q, m.scales))\n"
        "wd = m.dequantize().astype(np.float64)\n"
        "bound = 258 * 2.0**-23 * (np.abs(x).astype(np.float64) @ np.abs(wd).T)\n"
        "err = (np.abs(nb.linear(x, m8) - x.astype(np.float64) @ wd.T) / bound).max()\n"
        "assert err <= 1, err\nprint('ok')\n"
    )
    run_printing_ok(script, NUMBA_CPU_FEATURES=features)


@needs_vnni
def test_a_q8_model_keeps_its_matrices_interleaved_where_their_shape_allows():
    """numba_stacks with weight_storage="q8": block matrices whose rows are a multiple of 4 and
    columns of 128 become InterleavedQ8 (their stacks uint8), the tied head of 50 rows stays a
    Q8Matrix; the embedding looks up its dequantized rows, as a plain one does."""
    config = {**CONFIG, "d_model": 128, "n_heads": 4, "vocab_size": 50}
    weights = {"transformer." + k: v for k, v in tiny_mpt(**config).state_dict().items()}
    fast = reference.build(config, weights, task="causal-lm", backend="numba", weight_storage="q8")
    block = fast.params["blocks"][1]
    for name in (("attn", "Wqkv"), ("attn", "out_proj"), ("ffn", "up_proj"), ("ffn", "down_proj")):
        weight = block[name[0]][name[1]]["weight"]
        assert isinstance(weight, InterleavedQ8), (name, type(weight))
        assert weight.packed.base is not None, "a view of the blocks' stack"
    wte = fast.params["wte"]["weight"]
    assert isinstance(wte, Q8Matrix), type(wte)
    ids = np.array([[3, 49, 0]])
    plain = quantize_q8(weights["transformer.wte.weight"])
    np.testing.assert_array_equal(wte.dequantize(ids), plain.dequantize(ids))


def test_the_interleaved_layout_is_not_a_q8matrix_for_callers_that_check():
    """InterleavedQ8 and Q8Matrix are separate kinds, and past the tiles (the GEMM over the stored
    weights, or BLAS) numba_cpu.linear gives the same bits over either."""
    m8, m = interleaved(4, 128, 0)
    assert not isinstance(m8, Q8Matrix) and not isinstance(m, InterleavedQ8)
    x = arrays(1, 70, 128)
    np.testing.assert_array_equal(nb.linear(x, m8), nb.linear(x, m))
    assert_close(nb.linear(x, m), ops.linear(x, m.dequantize()), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rows", [1, 10, 100])
def test_linear_refuses_x_of_another_width_than_the_weights(rows):
    """numba_cpu.linear checks x's features against the weight's columns before any kernel reads
    them (each path would read past x's rows): for every path (the matvec, the tiles, the GEMM
    or BLAS) and every kind of weight."""
    m8, m = interleaved(4, 256, 0)
    x = arrays(1, rows, 128)
    for weight in (m8, m, m.dequantize()):
        with pytest.raises(ValueError, match="x has 128 features, the weight takes 256"):
            nb.linear(x, weight)


def test_q8_weights_whose_rows_are_not_consecutive_in_memory_take_the_numpy_product():
    """A Q8Matrix (or InterleavedQ8) over views whose last axis is not consecutive in memory (a
    column-major copy, a strided slice) is multiplied on its dequantized values, as NumPy does,
    not read by the kernels as if it were row-major (they gave numbers 23 off before)."""
    m8, m = interleaved(64, 128, 5)
    x = arrays(6, 3, 128)
    want = ops.linear(x, m.dequantize())
    column_major = Q8Matrix(np.asfortranarray(m.q), np.asfortranarray(m.scales))
    assert_close(nb.linear(x, column_major), want, atol=1e-4, rtol=1e-4, what="column-major q8")
    wide = np.zeros(m8.packed.shape[:2] + (1024,), np.uint8)
    wide[..., ::2] = m8.packed
    strided = InterleavedQ8(wide[..., ::2], m8.scales)
    assert strided.packed.strides[-1] == 2
    assert_close(nb.linear(x, strided), want, atol=1e-4, rtol=1e-4, what="strided interleaved")
