"""numba_gemm's packed product equals ops.linear (and ops.gelu after it) within float32 summation
error, on every edge of its blocking; the packed layout keeps the weights' values exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from conftest import assert_within  # noqa: E402

from reference import ops  # noqa: E402
from reference.backends import numba_gemm as gemm  # noqa: E402

FAST = settings(max_examples=25, deadline=None)


def arrays(seed, *shape, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def sum_bound(x, w):
    """float32 accumulation of I products against the exact sum: I 2^-23 sum |x| |w|."""
    size = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T
    return x.shape[-1] * 2.0**-23 * size + 1e-30


def exact(x, w, b):  # float64 x @ w.T + b
    out = x.astype(np.float64) @ w.astype(np.float64).T
    return out if b is None else out + b


# rows: one block of 8 and its edges, and past ROW_BLOCK; outputs: one panel of 48 and its edges
rows = st.sampled_from([1, 3, 7, 8, 9, 17, gemm.ROW_BLOCK - 1, gemm.ROW_BLOCK + 9])
outputs = st.sampled_from([1, 5, 47, 48, 49, 96, 100])


@FAST
@given(rows, st.integers(1, 80), outputs, st.booleans(), st.integers(0, 2**31))
def test_packed_linear_matches_the_exact_product(M, n_in, n_out, with_bias, seed):
    x, w, b = arrays(seed, M, n_in), arrays(seed + 1, n_out, n_in), arrays(seed + 2, n_out)
    b = b if with_bias else None
    got = gemm.packed_linear(x, gemm.pack(w), b)
    assert got.shape == (M, n_out)
    assert_within(got, exact(x, w, b), sum_bound(x, w) + 2.0**-24 * np.abs(exact(x, w, b)))


@FAST
@given(rows, st.integers(1, 80), outputs, st.integers(0, 2**31))
def test_packed_linear_with_gelu_matches_gelu_of_the_numpy_linear(M, n_in, n_out, seed):
    """GELU applied as the product is written: ops.gelu(ops.linear(...)) within the product's
    error (GELU's slope is at most 1.13) and erf32's own 3.7e-7."""
    x, w, b = arrays(seed, M, n_in), arrays(seed + 1, n_out, n_in), arrays(seed + 2, n_out)
    got = gemm.packed_linear(x, gemm.pack(w), b, gelu=True)
    want = ops.gelu(ops.linear(x, w, b))
    bound = 1.13 * 2 * (sum_bound(x, w) + 2.0**-24 * np.abs(exact(x, w, b))) + 1e-6 * (
        1 + np.abs(want)
    )
    assert_within(got, want, bound, what="packed linear + gelu")


@FAST
@given(
    st.sampled_from([1, 7, 8, 9, 65, 130]),
    st.sampled_from([7, 32, 33, 64, 96]),
    outputs,
    st.sampled_from(["fp32", "bf16", "q8"]),
    st.booleans(),
    st.integers(0, 2**31),
)
def test_stored_linear_matches_the_exact_product_in_every_storage(
    M, n_in, n_out, storage, with_bias, seed
):
    """A long prompt's product over weights as stored (panels packed per call, bf16 widened and q8
    dequantized as they are packed) against the exact product of the float32 matrix those stand
    for."""
    from reference.checkpoint import bf16_to_float32
    from reference.precision import quantize_q8, to_bf16_bits

    if storage == "q8":
        n_in = max(32, n_in // 32 * 32)  # q8 blocks are 32 inputs long
    x, w, b = arrays(seed, M, n_in), arrays(seed + 1, n_out, n_in), arrays(seed + 2, n_out)
    b = b if with_bias else None
    no_scales = np.zeros((1, 1), np.float32)
    if storage == "fp32":
        stored, scales, dense = w, no_scales, w
    elif storage == "bf16":
        stored = to_bf16_bits(w)
        scales, dense = no_scales, bf16_to_float32(stored)
    else:
        q8 = quantize_q8(w)
        stored, scales, dense = q8.q, q8.scales, q8.dequantize()
    got = gemm.stored_linear(x, stored, scales, b)
    assert got.shape == (M, n_out) and got.flags.c_contiguous
    want = exact(x, dense, b)
    assert_within(got, want, sum_bound(x, dense) + 2.0**-24 * np.abs(want), what=storage)


def test_packed_linear_keeps_leading_axes_and_matches_at_mpnet_shapes():
    """[B, S, C] in, [B, S, O] out, at MPNet-base's widths (several panels, 768 and 3072 inputs)."""
    for n_in, n_out in ((768, 2304), (3072, 768)):
        x, w, b = arrays(0, 2, 20, n_in), arrays(1, n_out, n_in, scale=0.05), arrays(2, n_out)
        got = gemm.packed_linear(x, gemm.pack(w), b)
        assert got.shape == (2, 20, n_out)
        want = exact(x.reshape(-1, n_in), w, b).reshape(2, 20, n_out)
        assert_within(got, want, sum_bound(x, w) + 2.0**-24 * np.abs(want))


def test_pack_keeps_the_values_and_pads_with_zeros():
    w = arrays(3, 50, 7)
    packed = gemm.pack(w)
    assert packed.shape == (50, 7) and packed.dtype == np.float32 and packed.columns == 96
    np.testing.assert_array_equal(packed.unpack(), w)
    np.testing.assert_array_equal(np.asarray(packed), w)
    assert packed.panels.shape == (2, 7, gemm.NR)
    assert not packed.panels[1, :, 50 - gemm.NR :].any(), "the rows past O are zeros"
    np.testing.assert_array_equal(packed.panels[0], w[: gemm.NR].T)


def test_side_by_side_parts_are_views_at_their_starts():
    """q, k and v (here of 50, 48 and 3 rows) each start on a panel of their own; the product of the
    whole holds each part's product at its start, and each part is a view of the whole."""
    parts_w = [arrays(4, 50, 9), arrays(5, 48, 9), arrays(6, 3, 9)]
    biases = [arrays(7, 50), None, arrays(8, 3)]
    fused, parts, starts = gemm.pack_side_by_side(parts_w)
    assert starts == [0, 96, 144] and fused.columns == 192
    x = arrays(9, 5, 9)
    out = gemm.packed_product(x, fused, gemm.padded_bias(None, fused.columns, biases, starts))
    for w, b, part, start in zip(parts_w, biases, parts, starts):
        assert part.panels.base is fused.panels
        np.testing.assert_array_equal(np.asarray(part), w)
        want = exact(x, w, b)
        assert_within(out[:, start : start + len(w)], want, sum_bound(x, w) + 2.0**-24 * abs(want))
        assert_within(gemm.packed_linear(x, part, b), want, sum_bound(x, w) + 2.0**-24 * abs(want))


def test_bad_inputs_are_refused_with_the_problem_named():
    with pytest.raises(ValueError, match="x has 5 features, the weight takes 7"):
        gemm.packed_linear(arrays(0, 2, 5), gemm.pack(arrays(1, 3, 7)))
    with pytest.raises(ValueError, match="need 7 inputs each"):
        gemm.pack_side_by_side([arrays(0, 3, 7), arrays(1, 3, 6)])
    with pytest.raises(ValueError, match="panels"):
        gemm.PackedMatrix(np.zeros((2, 7, 16), np.float32), 20)
    with pytest.raises(ValueError, match="cannot hold 200 rows"):
        gemm.PackedMatrix(np.zeros((2, 7, gemm.NR), np.float32), 200)


def test_no_rows_give_no_rows():
    assert gemm.packed_linear(np.zeros((0, 7), np.float32), gemm.pack(arrays(1, 3, 7))).shape == (
        0,
        3,
    )
