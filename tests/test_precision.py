"""bf16/fp16 rounding emulation and the low-precision LayerNorm against torch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.golden import iter_cases
from reference.ops import layer_norm
from reference.precision import low_precision_layer_norm, round_to_bf16, round_to_fp16

MANTISSA_BITS = {"bf16": 7, "fp16": 10}


def ulp(values, precision):
    """Spacing of the low-precision grid at each value (fp16 subnormals bottom out at 2^-24)."""
    exponent = np.floor(np.log2(np.maximum(np.abs(values), 2.0**-126)))
    spacing = 2.0 ** (exponent - MANTISSA_BITS[precision])
    return np.maximum(spacing, 2.0**-24) if precision == "fp16" else spacing


def test_bf16_rounding_ties_to_even_and_keeps_specials():
    x = np.array(
        [1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5e-3, np.inf, -np.inf, 3.4e38],
        np.float32,
    )
    want = np.array(
        [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -0.0025024414, np.inf, -np.inf, np.inf], np.float32
    )
    np.testing.assert_array_equal(round_to_bf16(x), want)
    assert np.isnan(round_to_bf16(np.array([np.nan], np.float32)))[0]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.floats(
            -3.0000000054977558e38,
            3.0000000054977558e38,
            allow_nan=False,
            allow_infinity=False,
            width=32,
            allow_subnormal=False,
        ),
        min_size=1,
        max_size=64,
    )
)
def test_bf16_rounding_is_nearest_on_the_grid(values):
    """The result has 7 mantissa bits and is at most half a bf16 ulp from the input."""
    x = np.array(values, np.float32)
    r = round_to_bf16(x)
    assert np.all(r.view(np.uint32) & 0xFFFF == 0)
    assert np.all(np.abs(r.astype(np.float64) - x) <= ulp(x, "bf16") / 2 * (1 + 1e-12))


def test_bf16_rounding_at_the_top_of_the_range_and_for_every_nan():
    """Every float32 pattern from the largest powers of two through inf and all NaNs, of both signs
    (where a 32-bit sum of the rounding could carry out of the top bit): finite values go to the
    nearer of the two bf16 neighbours (the even one on a tie, inf past the largest), computed
    here in float64; inf stays; a NaN stays a quiet NaN of the same sign."""
    top = np.arange(0x7F000000, 0x80000000, dtype=np.uint64)
    bits = np.concatenate([top, top | 0x80000000]).astype(np.uint32)
    x = bits.view(np.float32)
    got = round_to_bf16(x).view(np.uint32)
    nan = np.isnan(x)
    assert np.all(np.isnan(got[nan].view(np.float32)))
    assert np.all((got[nan] & 0x00400000) != 0) and np.all((got[nan] >> 31) == (bits[nan] >> 31))
    finite = ~nan & ~np.isinf(x)
    b, v = bits[finite], np.abs(x[finite].astype(np.float64))
    cut = b & 0xFFFF0000  # the bf16 at or below |x| (same sign), and one bf16 step above it
    below = np.abs(cut.view(np.float32).astype(np.float64))
    above = below + 2.0 ** (((b >> 23) & 0xFF).astype(np.float64) - 127 - 7)  # 2^128 past the top
    nearer_below = (v - below < above - v) | ((v - below == above - v) & ((b >> 16) & 1 == 0))
    np.testing.assert_array_equal(got[finite], np.where(nearer_below, cut, cut + 0x10000))
    assert np.all(got[np.isinf(x)] == bits[np.isinf(x)])


def test_fp32_mode_is_plain_layer_norm():
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.normal(size=(3, 8)).astype(np.float32),
        rng.normal(size=8).astype(np.float32),
        None,
    )
    np.testing.assert_array_equal(
        low_precision_layer_norm(x, w, b, 1e-5), layer_norm(x, w, b, 1e-5)
    )


CASES = [
    c for c in iter_cases(tier="op", family="mpt") if c.meta["op"] == "low_precision_layer_norm"
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_low_precision_layer_norm_matches_torch(case):
    """Within one low-precision ulp of torch (plus 1e-6 absolute where the output cancels to near
    zero, which is float32 noise), and bit-identical on at least 99% of elements: float32 reduction
    order differs from torch's kernel, so a rare element rounds the other way."""
    x, w, b = case.inputs["x"], case.inputs["weight"], case.inputs["bias"]
    for name, expected in case.expected.items():
        precision = name.split(".")[1]
        got = low_precision_layer_norm(
            x,
            w,
            None if name.startswith("y_no_bias") else b,
            case.meta["eps"],
            None if precision == "fp32" else precision,
        )
        diff = np.abs(got.astype(np.float64) - expected)
        if precision == "fp32":
            assert diff.max() <= 2e-6 + 1e-5 * np.abs(expected).max(), (
                f"{name}: max abs error {diff.max():.3g}"
            )
            continue
        spacing = ulp(
            np.minimum(np.abs(got), np.abs(expected)), precision
        )  # the finer spacing at a binade edge
        ulps = np.maximum(diff - 1e-6, 0) / spacing
        exact = np.mean(diff == 0)
        assert ulps.max() <= 1 and exact >= 0.99, (
            f"{name}: max {ulps.max():.2f} ulp, {exact:.2%} bit-identical"
        )


def test_fp16_rounding_matches_numpy_half():
    x = np.float32([1 + 2**-11, 1 + 3 * 2**-11, 65504.0, 65520.0, 6e-8])
    np.testing.assert_array_equal(
        round_to_fp16(x), np.float32([1.0, 1 + 2**-9, 65504.0, np.inf, 2**-24])
    )
