"""Each Numba kernel equals its NumPy twin on hypothesis-drawn shapes; the Numba models equal the
reference."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")
from conftest import assert_close, assert_within  # noqa: E402
from numba import get_num_threads, set_num_threads  # noqa: E402
from test_mpt_properties import tiny_mpt  # noqa: E402

import reference  # noqa: E402
from reference import ops  # noqa: E402
from reference.backends import numba_cpu as nb  # noqa: E402
from reference.backends.numba_bf16dot import BF16_DOT  # noqa: E402
from reference.backends.numba_vec16 import AVX512  # noqa: E402
from reference.checkpoint import bf16_to_float32 as widen_bf16  # noqa: E402
from reference.precision import round_to_bf16, split_bf16, to_bf16_bits  # noqa: E402

FAST = settings(max_examples=30, deadline=None)
dims = st.integers(1, 40)


def arrays(seed, *shape, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


row_counts = st.sampled_from([1, 2, 4, 5, 6, 7, 9, 31, 63, 64, 65, 80])  # every path's edges


@FAST
@given(row_counts, dims, dims, st.booleans(), st.integers(0, 2**31))
def test_linear_matches_numpy_for_matvec_and_gemm_sizes(rows, n_in, n_out, with_bias, seed):
    """numba_cpu.linear for each row count's path: the matvec (up to 4 rows), the 4 x 4 tiles (up
    to 64, ragged row and output counts, inputs not a multiple of 8) and BLAS."""
    x, w, b = arrays(seed, rows, n_in), arrays(seed + 1, n_out, n_in), arrays(seed + 2, n_out)
    assert_close(
        nb.linear(x, w, b if with_bias else None),
        ops.linear(x, w, b if with_bias else None),
        atol=1e-5,
        rtol=1e-5,
        what="linear",
    )


def accumulation_bound(x, w, b=None):
    """How far two float32 products x w^T (+ b) summed in different orders may differ: each within
    n 2^-24 of sum |x| |w| (+ |b|) of the exact one, n the roundings on the way (the bound for a
    float32 sum of n terms), so within n 2^-23 of each other; n = I + 2 leaves room for the bias
    and one more rounding (q8 scales each block's sum). A fixed tolerance is not a bound: at
    I = 198 and sums of |x| |w| near 166, NumPy's own float32 product was 2.2e-5 from the exact
    one (the kernel 6.8e-6)."""
    size = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T
    if b is not None:
        size = size + np.abs(b)
    return (x.shape[-1] + 2) * 2.0**-23 * size + 1e-30


def split_bound(x, w16):
    """The error bound of a bf16-weight product against the float32 one (widened weights, float32
    activations): 2^-16 of sum |w| |x| from splitting each activation into two bf16 values (where
    numba_bf16dot's dot products are used), plus float32 accumulation over I terms."""
    size = np.abs(x).astype(np.float64) @ np.abs(widen_bf16(w16)).astype(np.float64).T
    return (2.0**-16 + x.shape[-1] * 2.0**-23) * size + 1e-30


@FAST
@given(row_counts, st.integers(1, 200), dims, st.integers(0, 2**31))
@example(63, 198, 22, 2604)
def test_bf16_weights_give_the_fp32_product_of_the_rounded_weights(rows, n_in, n_out, seed):
    """A bf16-stored matrix gives the fp32 result of the same weights rounded to bf16: exactly
    widened where the matvec does not use AVX512-BF16 (within accumulation_bound of NumPy's
    product: both are float32 sums of up to 200 terms, in different orders), within split_bound
    where its activations are split into bf16 pairs (inputs up to 200: whole blocks of 64 and 32
    and the scalar tail). The @example is where a fixed 1e-5 failed: 2.3e-5 apart, the kernel
    the nearer of the two to the exact product."""
    x, w = arrays(seed, rows, n_in), arrays(seed + 1, n_out, n_in)
    w16 = to_bf16_bits(w)
    got, want = nb.linear(x, w16), ops.linear(x, round_to_bf16(w))
    if nb.SPLIT_DOTS and rows <= nb.MATVEC_MAX_ROWS:
        assert_within(got, want, split_bound(x, w16), what="bf16 linear (split activations)")
    else:
        bound = accumulation_bound(x, round_to_bf16(w))
        assert_within(got, want, bound, what="bf16 linear (widened)")


any_floats = st.floats(width=32, allow_subnormal=True)


@FAST
@given(st.lists(any_floats, min_size=1, max_size=64))
def test_split_bf16_equals_its_numpy_twin_and_sums_back_to_x(values):
    """numba_cpu.split_bf16 gives precision.split_bf16's bits, and hi + lo is x within 2^-16 |x|
    (2^-15 where hi is truncated to stay finite; subnormals within the smallest bf16 step).
    split_bf16_blocks gives the same bits per block of 32, hi then lo (two rows, the second
    reversed, zero-padded to whole blocks)."""
    x = np.array([values], np.float32)
    got = nb.split_bf16(x)
    hi, lo = split_bf16(x)
    assert np.array_equal(got[:, 0], hi) and np.array_equal(got[:, 1], lo), (x, got, hi, lo)
    padded = np.pad(x, ((0, 0), (0, -x.shape[1] % 32)))
    two = np.concatenate([padded, padded[:, ::-1]])
    h2, l2 = (half.reshape(2, -1, 1, 32) for half in split_bf16(two))
    want = np.concatenate([h2, l2], axis=2).reshape(2, -1, 32)  # block b: rows 2b (hi), 2b + 1
    assert np.array_equal(nb.split_bf16_blocks(two), want), (two, nb.split_bf16_blocks(two))
    finite = np.isfinite(x)
    back = widen_bf16(hi).astype(np.float64) + widen_bf16(lo)
    with np.errstate(invalid="ignore"):
        close = np.abs(back - x) <= 2.0**-15 * np.abs(x) + 2.0**-133
    assert np.all(close | ~finite), (x, back)
    keeps = np.isnan(x) == np.isnan(back)
    assert np.all(keeps) and np.all(np.where(np.isinf(x), back == x, True)), (x, back)


def test_split_bf16_equals_its_twin_over_every_top_half_and_rounding_case():
    """Every float32 whose top 16 bits are any of the 65536 patterns (each sign, exponent and bf16
    significand: zeros, subnormals, the largest finite values, inf, NaNs) and whose low half is each
    rounding case (exact, just under, at and just over the tie, the largest) or drawn: the branch-
    free split gives the twin's bits (checked once over all 2^32 patterns, 2026-12-06)."""
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    lows = np.concatenate([lows, np.random.default_rng(0).integers(0, 1 << 16, 10, np.uint32)])
    bits = (np.arange(1 << 16, dtype=np.uint32)[:, None] << 16) | lows
    x = bits.view(np.float32).reshape(-1, 1024)
    got = nb.split_bf16(x)
    with np.errstate(invalid="ignore"):
        hi, lo = split_bf16(x)
    assert np.array_equal(got[:, 0], hi), np.argwhere(got[:, 0] != hi)[:5]
    assert np.array_equal(got[:, 1], lo), np.argwhere(got[:, 1] != lo)[:5]


@pytest.mark.skipif(not nb.SPLIT_DOTS, reason="the bf16 matvec here widens (numba_bf16dot)")
@FAST
@given(st.integers(1, 4), st.integers(1, 300), dims, st.integers(0, 2**31))
def test_bf16_dot_products_equal_the_split_product_in_float64(rows, n_in, n_out, seed):
    """The AVX512-BF16 matvec's products are exact, so against widened weights times hi + lo in
    float64 only float32 accumulation is left: within I * 2^-23 of sum |w| |hi + lo|."""
    x, w16 = arrays(seed, rows, n_in, scale=3.0), to_bf16_bits(arrays(seed + 1, n_out, n_in))
    hi, lo = split_bf16(x)
    xs = widen_bf16(hi).astype(np.float64) + widen_bf16(lo)
    wf = widen_bf16(w16).astype(np.float64)
    bound = n_in * 2.0**-23 * (np.abs(xs) @ np.abs(wf).T) + 1e-30
    assert_within(nb.linear(x, w16), xs @ wf.T, bound, what="bf16 dot products")


def run_printing_ok(script, **env):
    """Runs script in a fresh interpreter with env added to this one's (Numba's CPU settings are
    read once per process) and checks that it printed ok."""
    import subprocess
    import sys

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def host_features_without(*prefixes):  # NUMBA_CPU_FEATURES: this host's, less those named so
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    for name in list(features):
        if name.startswith(prefixes):
            features[name] = False
    return features.flatten()


@pytest.mark.skipif(not BF16_DOT, reason="the CPU Numba compiles for lacks AVX512-BF16")
@pytest.mark.parametrize("cpu, split", [("znver4", True), ("znver5", False)])
def test_the_bf16_matvec_kernel_follows_the_cpu_name(cpu, split):
    """With the instruction present, NUMBA_CPU_NAME picks the kernel: split activations and
    vdpbf16ps on Zen 4 (within split_bound of the rounded weights' product, and its dot products
    within float32 accumulation of hi + lo in float64), widening on Zen 5 (within 1e-5). Each in
    a process of its own, so both run whatever this host is."""
    script = (
        "import numpy as np\nfrom reference.backends import numba_cpu as nb\n"
        "from reference.precision import to_bf16_bits, round_to_bf16, split_bf16\n"
        "from reference.checkpoint import bf16_to_float32 as widen\n"
        f"assert nb.SPLIT_DOTS is {split}, nb.SPLIT_DOTS\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(3, 203)).astype(np.float32)\n"
        "w = to_bf16_bits(rng.normal(size=(9, 203)))\n"
        "got = nb.linear(x, w).astype(np.float64)\nwf = widen(w).astype(np.float64)\n"
        "hi, lo = split_bf16(x)\nxs = widen(hi).astype(np.float64) + widen(lo)\n"
        f"want = xs @ wf.T if {split} else x.astype(np.float64) @ wf.T\n"
        "bound = 203 * 2.0**-23 * (np.abs(xs) @ np.abs(wf).T) + 1e-30\n"
        f"err = np.abs(got - want).max() if not {split} else (np.abs(got - want) / bound).max()\n"
        f"assert err < (1.0 if {split} else 1e-5), err\nprint('ok')\n"
    )
    run_printing_ok(script, NUMBA_CPU_NAME=cpu)


ASM_CHECK = r"""
import re
import numpy as np
from numba import njit
from reference.backends import numba_cpu as nb, numba_gemm as g
from reference.backends.numba_stacks import to_bf16

def count(pattern, f):  # instructions matching pattern in f's assembly (compiled here)
    return len(re.findall(pattern, f.inspect_asm(f.signatures[0])))

@njit
def one_block(x, panel, bias, out):  # numba_gemm's 8 x 48 register block
    g._block(x, 0, panel, 0, bias, out)

rng = np.random.default_rng(0)
x, panel, bias = (rng.normal(size=n).astype(np.float32) for n in ((8, 96), (96, 48), 48))
out = np.zeros((8, 48), np.float32)
one_block(x, panel, bias, out)
err = np.abs(out - (x.astype(np.float64) @ panel + bias)).max()
fma = r"vfmadd\w*ps\s[^\n]*"
zmm, ymm = count(fma + "zmm", one_block), count(fma + "ymm", one_block)
assert err < 1e-4 and zmm >= 24 and zmm % 24 == 0 and ymm == 0, (err, zmm, ymm)

@njit
def six_rows(a, b, c):  # the prompt attention's register tile: two vectors, then one
    nb._rows_times(a, 0, b, c, 0, 6, c.shape[1])

a, b = (rng.normal(size=n).astype(np.float32) for n in ((6, 40), (40, 48)))
c = np.zeros((6, 48), np.float32)
six_rows(a, b, c)
err = np.abs(c - a.astype(np.float64) @ b).max()
zmm = count(fma + "zmm", six_rows)
assert err < 1e-4 and zmm >= 18, (err, zmm)  # 6 x 2 in the pair's loop, 6 in the single's
if nb.SPLIT_DOTS:  # the interleaved bf16 decode kernel: dot products and prefetches
    w = to_bf16(rng.normal(size=(4, 96)))

    @njit
    def quad(w, s, x):
        return nb._dot4(w, s, 0, nb._split_for(w, x), 0)

    xq = rng.normal(size=(1, 96)).astype(np.float32)
    wf = w.widen().astype(np.float64)
    diff = np.abs(np.array(quad(w.packed, nb._NO_SCALES, xq)) - xq[0] @ wf.T)
    err = (diff / (2.0**-15 * np.abs(xq[0]) @ np.abs(wf).T)).max()  # of the split's bound
    dot = r"vdpbf16ps\s[^\n]*"
    zmm, ymm = count(dot + "zmm", quad), count(dot + "ymm", quad)
    assert err <= 1 and zmm > 0 and ymm == 0 and count("prefetcht1", quad) > 0, (err, zmm, ymm)
from reference.backends.numba_q8dot import Q8_DOT
if Q8_DOT:  # the interleaved q8 decode kernel: int8 dot products
    from reference.backends.numba_stacks import to_q8
    from reference.precision import split_q8

    w8 = to_q8(rng.normal(size=(4, 256)))

    @njit
    def quad8(w, s, x):
        return nb._dot4(w, s, 0, nb._split_for(w, x), 0)

    x8 = rng.normal(size=(1, 256)).astype(np.float32)
    q, s = split_q8(x8)
    want = w8.dequantize().astype(np.float64) @ (q[0] * np.repeat(s[0].astype(np.float64), 32))
    err = np.abs(np.array(quad8(w8.packed, w8.scales, x8)) - want).max()
    dot = r"vpdpbusd\s[^\n]*"
    zmm, ymm = count(dot + "zmm", quad8), count(dot + "ymm", quad8)
    assert err < 1e-4 and zmm >= 16 and ymm == 0, (err, zmm, ymm)
print("ok")
"""


@pytest.mark.skipif(not AVX512, reason="the CPU Numba compiles for lacks AVX-512")
@pytest.mark.parametrize("cpu", ["znver4", "sapphirerapids", "icelake-server"])
def test_under_each_cpus_tuning_the_512_bit_kernels_stay_512_bits_wide(cpu):
    """The kernels written in 16-lane vectors are compiled as zmm instructions whatever CPU LLVM
    tunes for: for Intel's server CPUs its vectorisers prefer 256-bit vectors, which must not split
    numba_gemm's 24 accumulators into 48 halves (more than the 32 registers) or the bf16 dot
    products. Each CPU name with this host's features, in a process of its own: the GEMM block's
    fused multiply-adds, the interleaved bf16 kernel's vdpbf16ps and the interleaved q8 kernel's
    vpdpbusd are all on zmm registers, the attention tile's multiply-adds are (its scalar tail is
    LLVM's to vectorise), and all still compute their products."""
    run_printing_ok(ASM_CHECK, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=host_features_without())


def test_without_avx512_bf16_the_bf16_matvec_widens_each_weight():
    """Under NUMBA_CPU_FEATURES without avx512bf16 (a CPU without the instruction, as Numba sees
    it), SPLIT_DOTS is off and the bf16 matvec is the exact widening one, within 1e-5; bf16
    matrices are not interleaved there, and one interleaved by hand is widened too."""
    features = host_features_without("avx512bf16")
    script = (
        "import numpy as np\nfrom reference.backends import numba_cpu as nb\n"
        "from reference.backends.numba_stacks import interleaves\n"
        "from reference.precision import InterleavedBf16, interleave_quads\n"
        "from reference.precision import to_bf16_bits, round_to_bf16\n"
        "assert not nb.SPLIT_DOTS and not interleaves((256, 64))\n"
        "rng = np.random.default_rng(0)\n"
        "x, w = rng.normal(size=(2, 192)).astype(np.float32), rng.normal(size=(8, 192))\n"
        "want = x @ round_to_bf16(w).T\n"
        "err = np.abs(nb.linear(x, to_bf16_bits(w)) - want).max()\n"
        "assert err < 1e-5, err\n"
        "quads = InterleavedBf16(interleave_quads(to_bf16_bits(w)))\n"
        "err = np.abs(nb.linear(x, quads) - want).max()\n"
        "assert err < 1e-5, err\nprint('ok')\n"
    )
    run_printing_ok(script, NUMBA_CPU_FEATURES=features)


def test_without_avx512_the_prompt_tiles_and_q8_dots_are_eight_lanes_wide_and_equal_numpy():
    """Under NUMBA_CPU_FEATURES without any AVX-512 feature (an AVX2 CPU, as Numba sees it),
    _rows_tiled runs on 8-lane vectors and still gives x @ w.T for fp32 and bf16 weights, with
    inputs not a multiple of either width; so do the 8-lane q8 matvec (an odd number of blocks,
    which the 16-lane one takes in pairs) and the q8 tiles' 8-lane dequantization."""
    features = host_features_without("avx512", "amx", "avx10")
    script = (
        "import numpy as np\nfrom reference.backends import numba_cpu as nb\n"
        "from reference.precision import to_bf16_bits, round_to_bf16\n"
        "assert not nb.AVX512 and nb.TILE_LANES == 8, nb.TILE_LANES\n"
        "rng = np.random.default_rng(0)\n"
        "x, w = rng.normal(size=(32, 203)).astype(np.float32), rng.normal(size=(9, 203))\n"
        "err32 = np.abs(nb.linear(x, w.astype(np.float32)) - x @ w.astype(np.float32).T).max()\n"
        "err16 = np.abs(nb.linear(x, to_bf16_bits(w)) - x @ round_to_bf16(w).T).max()\n"
        "from reference.precision import quantize_q8\n"
        "m = quantize_q8(rng.normal(size=(9, 224)))\n"
        "xq = rng.normal(size=(3, 224)).astype(np.float32)\n"
        "errq = np.abs(nb.linear(xq, m) - xq @ m.dequantize().T).max()\n"
        "xt = rng.normal(size=(32, 224)).astype(np.float32)\n"
        "errt = np.abs(nb.linear(xt, m) - xt @ m.dequantize().T).max()\n"
        "assert max(err32, err16, errq, errt) < 1e-4, (err32, err16, errq, errt)\nprint('ok')\n"
    )
    run_printing_ok(script, NUMBA_CPU_FEATURES=features)


def layer_norm_bound(x, w, want, eps=1e-5):
    """What two float32 LayerNorms may differ by: 1e-5 abs + rel, plus the mean's rounding (up to
    C + 2 units of 2^-24 of the row's largest |x|, summed in different orders) divided by the
    row's standard deviation and scaled by |w|. A row of nearly equal values has a deviation near
    sqrt(eps), where that term is the whole error (C = 2: 3.7e-5 seen)."""
    x64 = x.astype(np.float64)
    C = x.shape[-1]
    rounding = (C + 2) * 2.0**-24 * np.abs(x64).max(-1, keepdims=True)
    return (
        1e-5
        + 1e-5 * np.abs(want)
        + np.abs(w) * rounding / np.sqrt(x64.var(-1, keepdims=True) + eps)
    )


@FAST
@given(st.integers(1, 20), dims, st.booleans(), st.integers(0, 2**31))
def test_layer_norm_and_gelu_match_numpy(rows, C, with_bias, seed):
    x = arrays(seed, rows, C, scale=3.0) + 2.0
    w, b = arrays(seed + 1, C), arrays(seed + 2, C)
    want = ops.layer_norm(x, w, b if with_bias else None, 1e-5)
    got = nb.layer_norm(x, w, b if with_bias else None, 1e-5)
    assert_within(got, want, layer_norm_bound(x, w, want), what="layer_norm")
    assert_close(nb.gelu(x), ops.gelu(x), atol=1e-6, rtol=1e-6, what="gelu")


@FAST
@given(st.integers(1, 20), dims, dims, st.integers(0, 2**31))
def test_fused_compositions_match_numpy(rows, C, O, seed):
    """add_layer_norm = layer_norm(x + residual) and linear_gelu = gelu(linear(x)), on matvec and
    GEMM row counts."""
    x, r, w, b = (
        arrays(seed, rows, C, scale=3.0),
        arrays(seed + 1, rows, C),
        arrays(seed + 2, C),
        arrays(seed + 3, C),
    )
    want = ops.layer_norm(x + r, w, b, 1e-5)
    got = nb.add_layer_norm(x, r, w, b, 1e-5)
    assert_within(got, want, layer_norm_bound(x + r, w, want), what="add_layer_norm")
    wo, bo = arrays(seed + 4, O, C), arrays(seed + 5, O)
    assert_close(
        nb.linear_gelu(x, wo, bo),
        ops.gelu(ops.linear(x, wo, bo)),
        atol=2e-5,
        rtol=1e-5,
        what="linear_gelu",
    )


@FAST
@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 9),
    st.integers(0, 70),
    st.integers(1, 40),
    st.sampled_from(["none", "relative", "alibi"]),
    st.sampled_from(["none", "add", "replace"]),
    st.integers(0, 2**31),
)
def test_fused_attention_matches_numpy(B, H, S, P, D, bias_kind, mask_kind, seed):
    """Ragged sizes, S = 1, long keys (up to 79), head sizes on both sides of the 16-wide register
    tile, each bias form and each mask form (incl. fully masked rows)."""
    K = P + S
    rng = np.random.default_rng(seed)
    q, k, v = arrays(seed, B, H, S, D), arrays(seed + 1, B, H, K, D), arrays(seed + 2, B, H, K, D)
    bias = {
        "none": None,
        "relative": arrays(seed + 3, H, S, K),
        "alibi": arrays(seed + 3, H, 1, K),
    }[bias_kind]
    keep = rng.random((B, 1, S, K)) > 0.3
    keep[0, 0, 0] = False  # one fully masked row
    mask_add = (
        np.where(keep, 0.0, np.finfo(np.float32).min).astype(np.float32)
        if mask_kind == "add"
        else None
    )
    masked = ~keep if mask_kind == "replace" else None
    want = ops.attention(q, k, v, 0.3, bias, mask_add, masked)
    got = nb.attention(q, k, v, 0.3, bias, mask_add, masked)
    assert_close(got[0], want[0], atol=1e-5, rtol=1e-5, what="context")
    assert_close(got[1], want[1], atol=1e-6, rtol=1e-5, what="probs")


@FAST
@given(st.integers(1, 20), st.integers(1, 50), st.integers(1, 70), st.integers(0, 2**31))
def test_register_tile_product_matches_numpy(S, T, N, seed):
    """c = a @ b six rows at a time, written three rows down: two-vector tiles, a one-vector tile,
    the column tail, and a last block of fewer than six rows; a, b and c as rows of wider arrays
    (a head's rows inside the projections' layout) and contiguous, the vector tiles' columns the
    same bits either way (the tail's loop is LLVM's to vectorise, and it may by layout)."""
    wide_a, wide_b = arrays(seed, S, T + 5), arrays(seed + 1, T, N + 7)
    a, b = wide_a[:, 2 : T + 2], wide_b[:, 3 : N + 3]
    c = np.full((S + 3, N + 4), np.nan, np.float32)
    dense = np.full((S + 3, N), np.nan, np.float32)
    for i0 in range(0, S, nb.ROWS):
        nb._rows_times(a, i0, b, c, i0 + 3, min(nb.ROWS, S - i0), N)
        nb._rows_times(a.copy(), i0, b.copy(), dense, i0 + 3, min(nb.ROWS, S - i0), N)
    assert np.isnan(c[:3]).all() and np.isnan(c[:, N:]).all(), "written outside c[3:, :N]"
    assert_close(c[3:, :N], a @ b, atol=1e-5, rtol=1e-5, what="tile product")
    tiles = N - N % nb.TILE_LANES
    np.testing.assert_array_equal(c[:, :tiles], dense[:, :tiles])


@FAST
@given(st.integers(1, 70), st.integers(0, 2**31))
def test_row_max_and_softmax_row_match_numpy(K, seed):
    """The eight-lane max (with its scalar tail) and the softmax built on it; a NaN score makes the
    row NaN, as in NumPy."""
    row = arrays(seed, K, scale=30.0)
    assert nb._row_max(row, K) == row.max()
    got = row.copy()
    nb._softmax_row(got, K)
    assert_close(got, ops.softmax(row.astype(np.float64)), atol=1e-7, rtol=1e-5, what="softmax row")
    row[seed % K] = np.nan
    nb._softmax_row(row, K)
    assert np.isnan(row).all(), "a NaN score must not vanish"


@settings(max_examples=5, deadline=None)
@given(
    st.integers(110, 140),
    st.integers(0, 40),
    st.sampled_from(["relative", "alibi"]),
    st.sampled_from([16, 64]),
    st.integers(0, 2**31),
)
def test_long_attention_matches_numpy(S, P, bias_kind, D, seed):
    """Prefill sizes (over a hundred queries and keys), with a relative or ALiBi-shaped bias and a
    random mask, the queries as heads of one [B, S, 3 H D] projection (as the kernel reads them)."""
    B, H, K = 2, 4, P + S
    q = arrays(seed, B, S, 3 * H * D)[..., : H * D].reshape(B, S, H, D).transpose(0, 2, 1, 3)
    k, v = arrays(seed + 1, B, H, K, D), arrays(seed + 2, B, H, K, D)
    bias = arrays(seed + 3, H, S, K) if bias_kind == "relative" else arrays(seed + 3, H, 1, K)
    masked = np.random.default_rng(seed).random((B, 1, S, K)) < 0.2
    want, got = (
        ops.attention(q, k, v, 0.2, bias, None, masked),
        nb.attention(q, k, v, 0.2, bias, None, masked),
    )
    assert_close(got[0], want[0], atol=1e-5, rtol=1e-5, what="context")
    assert_close(got[1], want[1], atol=1e-6, rtol=1e-5, what="probs")


def test_attention_takes_values_of_any_strides_and_other_dtypes():
    """The kernel reads v's rows in whole vectors where they lie: v with every other element of
    a wider array (its rows not unit stride) or in Fortran order gives the contiguous result bit
    for bit; a float64 key or value takes the NumPy path (ops.attention) rather than failing."""
    B, H, S, D = 2, 3, 20, 24
    q, k, v = (arrays(seed, B, H, S, D) for seed in range(3))
    bias = arrays(3, H, S, S)
    want = nb.attention(q, k, v, 0.2, bias)
    for other in (arrays(2, B, H, S, 2 * D)[..., ::2], np.asfortranarray(v)):
        other[...] = v
        got = nb.attention(q, k, other, 0.2, bias)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    for k64, v64 in ((k.astype(np.float64), v), (k, v.astype(np.float64))):
        got = nb.attention(q, k64, v64, 0.2, bias)
        ref = ops.attention(q, k64, v64, 0.2, bias)
        np.testing.assert_array_equal(got[0], ref[0])


def _qkv(B, H, S, K, D, Bk=None, Hk=None, Dv=None):
    Bk, Hk, Dv = Bk or B, Hk or H, Dv or D
    return arrays(0, B, H, S, D), arrays(1, Bk, Hk, K, D), arrays(2, Bk, Hk, K, Dv)


SHAPES_NUMPY_TAKES = {  # (q, k, v), bias, mask_add, masked
    "values wider than the keys": (_qkv(2, 3, 7, 9, 8, Dv=20), arrays(3, 3, 7, 9), None, None),
    "one head of keys for all": (_qkv(2, 3, 7, 9, 8, Hk=1), None, None, None),
    "one batch of keys for all": (_qkv(2, 3, 7, 9, 8, Bk=1), None, None, None),
    "a bias per batch": (_qkv(2, 3, 7, 9, 8), arrays(3, 2, 3, 7, 9), None, None),
    "a bias the same for every key": (_qkv(2, 3, 7, 9, 8), arrays(3, 3, 7, 1), None, None),
    "a bias with no head axis": (_qkv(2, 3, 7, 9, 8), arrays(3, 7, 9), None, None),
    "an additive mask per head": (_qkv(2, 3, 7, 9, 8), None, arrays(4, 2, 3, 7, 9), None),
    "an additive mask over [S, K]": (_qkv(2, 3, 7, 9, 8), None, arrays(4, 7, 9), None),
    "a boolean mask per head": (
        _qkv(2, 3, 7, 9, 8),
        None,
        None,
        np.random.default_rng(5).random((2, 3, 7, 9)) < 0.3,
    ),
}


@pytest.mark.parametrize("case", SHAPES_NUMPY_TAKES)
def test_attention_of_every_shape_numpy_takes_equals_numpy(case):
    """Shapes within ops.attention's broadcasting that the fused kernel does not take as they are:
    keys and values shared across batch or heads are copied out to [B, H]; a per-batch bias or
    per-head mask goes through the NumPy path; a value head size other than the keys' gives
    contexts of that size."""
    (q, k, v), bias, mask_add, masked = SHAPES_NUMPY_TAKES[case]
    want = ops.attention(q, k, v, 0.3, bias, mask_add, masked)
    got = nb.attention(q, k, v, 0.3, bias, mask_add, masked)
    assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
    assert_close(got[0], want[0], atol=1e-5, rtol=1e-5, what=f"context, {case}")
    assert_close(got[1], want[1], atol=1e-6, rtol=1e-5, what=f"probs, {case}")


SHAPES_NUMPY_REFUSES = {  # (q, k, v), bias, mask_add, what the error names
    "keys of another head size": (
        (arrays(0, 1, 2, 5, 8), arrays(1, 1, 2, 5, 4), arrays(2, 1, 2, 5, 8)),
        None,
        None,
        "k's head size 4 is not q's 8",
    ),
    "values for fewer keys": (
        _qkv(1, 2, 5, 5, 8)[:2] + (arrays(2, 1, 2, 3, 8),),
        None,
        None,
        "v has 3",
    ),
    "no keys": (_qkv(1, 2, 5, 0, 8), None, None, "no keys"),
    "a bias over fewer keys": (
        _qkv(1, 2, 5, 7, 8),
        arrays(3, 2, 5, 3),
        None,
        "bias of shape (2, 5, 3)",
    ),
    "a bias for three heads of two": (
        _qkv(1, 2, 5, 5, 8),
        arrays(3, 3, 5, 5),
        None,
        "bias of shape",
    ),
    "a mask for another batch": (
        _qkv(2, 2, 5, 5, 8),
        None,
        arrays(4, 3, 1, 1, 5),
        "mask_add of shape",
    ),
    "queries without a head axis": (
        (arrays(0, 2, 5, 8), arrays(1, 2, 5, 8), arrays(2, 2, 5, 8)),
        None,
        None,
        "must be [B, H, S|K, D] arrays",
    ),
    "batches that do not broadcast": (_qkv(2, 2, 5, 5, 8, Bk=3), None, None, "do not broadcast"),
}


@pytest.mark.parametrize("case", SHAPES_NUMPY_REFUSES)
def test_attention_refuses_what_numpy_refuses_and_names_it(case):
    """Shapes ops.attention cannot compute: a ValueError naming the mismatch, where the kernel
    had read past the arrays and returned numbers."""
    (q, k, v), bias, mask_add, what = SHAPES_NUMPY_REFUSES[case]
    with pytest.raises(ValueError):
        ops.attention(q, k, v, 0.3, bias, mask_add)
    with pytest.raises(ValueError, match="attention: ") as error:
        nb.attention(q, k, v, 0.3, bias, mask_add)
    assert what in str(error.value), error.value


@pytest.mark.parametrize("rows", [3, 5, 70])  # the matvec, the tiles, numba_gemm or BLAS
def test_biases_and_norm_weights_of_other_shapes_are_broadcast_or_refused(rows):
    """A bias or norm weight of shape [1] is repeated, as NumPy broadcasts it, and gives NumPy's
    result; one of another length is a ValueError naming its shape, where the kernels had read
    past it and returned numbers. A weight that is not [O, I] is refused by name."""
    x, w, b = arrays(0, rows, 8), arrays(1, 6, 8), arrays(2, 6)
    one, short = np.full(1, 1.5, np.float32), arrays(3, 4)
    calls = {
        "linear": (lambda bias: nb.linear(x, w, bias), lambda bias: ops.linear(x, w, bias)),
        "linear_gelu": (
            lambda bias: nb.linear_gelu(x, w, bias),
            lambda bias: ops.gelu(ops.linear(x, w, bias)),
        ),
        "layer_norm weight": (
            lambda v: nb.layer_norm(x, v, b[:1].repeat(8), 1e-5),
            lambda v: ops.layer_norm(x, v, b[:1].repeat(8), 1e-5),
        ),
        "layer_norm bias": (
            lambda v: nb.layer_norm(x, b[:1].repeat(8) + 1, v, 1e-5),
            lambda v: ops.layer_norm(x, b[:1].repeat(8) + 1, v, 1e-5),
        ),
    }
    for what, (fast, twin) in calls.items():
        assert_close(fast(one), twin(one), atol=1e-5, rtol=1e-5, what=f"{what}, a [1] vector")
        with pytest.raises(ValueError, match=r"has shape \(4,\), where \[\d\] is wanted"):
            fast(short)
    with pytest.raises(ValueError, match=r"weight \[O, I\]"):
        nb.linear(x, w[0])


@pytest.mark.parametrize("rows", [0, 1, 5, 70])
def test_no_features_or_no_outputs_give_what_numpy_gives(rows):
    """x with no features (I = 0: the product is the bias alone), a weight with no rows (O = 0)
    and a norm over no channels, each of every row count's path, as NumPy computes them; the
    reshapes had failed on I = 0 with "cannot reshape array of size 0"."""
    b = arrays(1, 6)
    np.testing.assert_array_equal(
        nb.linear(arrays(0, rows, 0), arrays(2, 6, 0), b),
        ops.linear(arrays(0, rows, 0), arrays(2, 6, 0), b),
    )
    assert nb.linear(arrays(0, rows, 8), arrays(2, 0, 8)).shape == (rows, 0)
    assert nb.linear_gelu(arrays(0, rows, 0), arrays(2, 6, 0), b).shape == (rows, 6)
    assert nb.layer_norm(arrays(0, rows, 0), arrays(3, 0), arrays(4, 0), 1e-5).shape == (rows, 0)


def test_a_norm_of_a_scalar_is_the_error_numpy_gives():
    """x with no axis at all has no channels to normalise: NumPy's own error (an AxisError, which
    is a ValueError), where the kernel's wrapper had failed with "tuple index out of range"."""
    x, w = np.float32(1.0), arrays(0, 1)
    with pytest.raises(np.exceptions.AxisError) as numpy_error:
        ops.layer_norm(x, w, None, 1e-5)
    with pytest.raises(np.exceptions.AxisError) as error:
        nb.layer_norm(x, w, None, 1e-5)
    assert str(error.value) == str(numpy_error.value)


def broadcast_forms(scores):  # a strategy: shapes that broadcast to scores, or None
    """Each axis kept or made 1, then 0 to 4 leading axes dropped (NumPy's rules)."""
    kept = st.tuples(*(st.sampled_from([n, 1]) for n in scores))
    return st.one_of(
        st.none(), st.builds(lambda shape, drop: shape[drop:], kept, st.integers(0, 3))
    )


@FAST
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 20)),
    st.data(),
)
def test_attention_over_any_broadcast_of_bias_and_masks_equals_numpy(sizes, data):
    """Every way NumPy broadcasts a bias, an additive mask and a boolean mask to the scores [B, H,
    S, K] (any axis 1, leading axes left out) and keys and values to the queries' [B, H]: the
    same context and maps as ops.attention, within float32 reordering."""
    B, H, S, K = sizes
    forms = broadcast_forms((B, H, S, K))
    bias_shape, add_shape, hide_shape = (data.draw(forms) for _ in range(3))
    kv_heads = data.draw(st.tuples(st.sampled_from([B, 1]), st.sampled_from([H, 1])))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    q = arrays(seed, B, H, S, 8)
    k, v = (arrays(seed + i, *kv_heads, K, 8) for i in (1, 2))
    bias = None if bias_shape is None else arrays(seed + 3, *bias_shape)
    add = None if add_shape is None else arrays(seed + 4, *add_shape)
    hide = None if hide_shape is None else rng.random(hide_shape) < 0.3
    want = ops.attention(q, k, v, 0.3, bias, add, hide)
    got = nb.attention(q, k, v, 0.3, bias, add, hide)
    assert_close(got[0], want[0], atol=1e-5, rtol=1e-5, what="context")
    assert_close(got[1], want[1], atol=1e-6, rtol=1e-5, what="probs")


def test_key_limits_by_hand():
    """One past each query's last visible key; a query that sees no key needs them all."""
    masked = np.array([[[False, True, True, True], [False, False, True, False], [True] * 4]])
    assert nb._key_limits(masked).tolist() == [[1, 4, 4]]


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 140), st.integers(0, 20), st.integers(0, 5), st.integers(0, 2**31))
def test_causal_attention_skips_hidden_keys_exactly(S, P, pad, seed):
    """A causal mask over P cached keys and S new ones, with `pad` left-padded keys in row 0 (whose
    first queries then see no key at all and go uniform): the products stop at each block's last
    visible key, and the result is NumPy's, hidden keys' probabilities exactly 0 as there. Without
    the maps (want_probs=False, the scores in each task's own rows) the context is the same."""
    B, H, D, K = 2, 3, 64, P + S
    q, k, v = arrays(seed, B, H, S, D), arrays(seed + 1, B, H, K, D), arrays(seed + 2, B, H, K, D)
    masked = np.triu(np.ones((S, K), bool), P + 1)[None, None].repeat(B, 0)
    masked[0, :, :, : min(pad, K)] = True
    bias = arrays(seed + 3, H, 1, K)
    want = ops.attention(q, k, v, 0.125, bias, None, masked)
    got = nb.attention(q, k, v, 0.125, bias, None, masked)
    assert_close(got[0], want[0], atol=1e-5, rtol=1e-5, what="context")
    assert_close(got[1], want[1], atol=1e-6, rtol=1e-5, what="probs")
    hidden = np.broadcast_to(masked & ~masked.all(-1, keepdims=True), got[1].shape)
    assert (got[1][hidden] == 0).all(), "a hidden key's probability must be exactly 0"
    ctx, probs = nb.attention(q, k, v, 0.125, bias, None, masked, want_probs=False)
    assert probs is None
    np.testing.assert_array_equal(ctx, got[0], "without the maps: the same context, bit for bit")


@FAST
@given(st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))
def test_round_to_bf16_in_place_equals_precision_round_to_bf16(dtype, seed):
    """numba_cpu.round_to_bf16_in_place on a strided view (the keys' columns of a qkv product, as
    DecoderStack passes them), with NaN, inf and a value that overflows bf16, against
    precision.round_to_bf16 element for element; the columns outside the view untouched."""
    x = (arrays(seed, 2, 5, 48, scale=3.0) * 10.0 ** np.arange(-20, 28)).astype(dtype)
    x[0, 0, 16:19] = [np.nan, -np.inf, 3.4e38]
    want = x.copy()
    want[:, :, 16:32] = round_to_bf16(x[:, :, 16:32])
    nb.round_to_bf16_in_place(x[:, :, 16:32])
    np.testing.assert_array_equal(x, want)


# head sizes through every path of the step's attention in 16 lanes and in 8: the scalar tail
# alone, whole vectors, four-vector blocks, and all three (83 = 64 + 16 + 3)
HEAD_SIZES = [1, 3, 8, 12, 16, 21, 40, 64, 83]


@FAST
@given(
    st.integers(1, 6),  # from 4 rows on the fp32 and q8 matvecs take four at a time
    st.integers(1, 4),
    st.integers(1, 70),
    st.sampled_from(HEAD_SIZES),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**31),
    st.integers(1, 5),
    st.sampled_from([1, 1, 2, 3, 5]),
)
def test_decode_step_equals_the_numpy_block_over_the_cache(
    B, H, T, D, bias, bf16_cache, seed, tasks, n
):
    """Any number of matvec tasks (the thread count in use, or more or fewer) gives the step;
    n tokens a row of the cache (a pass over it, prompt lookup's) give the block over S = n."""
    assert_decode_step_equals_numpy(B, H, T + n - 1, D, bias, bf16_cache, seed, tasks, n)


def test_decode_step_gives_the_same_bits_for_any_tasks_even_run_one_after_another():
    """Every unit of the step (a group of rows, a head, a group of the LM head's rows) is computed
    by whichever task claims it, with the same arithmetic: three layers and the LM head give the
    same bits for 1 to 5 tasks. With one thread
    the tasks run one after another: the first claims everything and the others pass through,
    so the step still finishes, with the same bits (a task never waits for one that is not
    running)."""
    L, B, H, D, T = 3, 2, 2, 16, 9
    C, W, t = H * D, 4 * H * D, T - 1
    rng = np.random.default_rng(7)

    def rand(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    unused = np.zeros((L, 1, 1), np.float32)
    norms = [1 + rand(L, C, scale=0.1), rand(L, C)]
    args = norms + [rand(L, 3 * C, C), unused, rand(L, 3 * C), rand(L, C, C), unused, rand(L, C)]
    args += norms + [rand(L, W, C), unused, rand(L, W), rand(L, C, W), unused, rand(L, C)]
    k, v = rand(L, B, H, T, D, scale=1.0), rand(L, B, H, T, D, scale=1.0)
    key_ok = np.ones((B, T), bool)
    x = rand(B, C, scale=1.0)
    slopes = np.array([0.5, 0.25], np.float32)
    V = 37  # the head's rows: nine groups of four and one short
    head = [1 + rand(C, scale=0.1), rand(C), rand(V, C), unused[0]]

    def step(tasks):
        got, kk, vv = x.copy(), k.copy(), v.copy()
        logits = np.full((B, V), np.nan, np.float32)
        consts = (np.float32(0.25), np.float32(1e-5))
        rows = np.arange(B)
        nb.decode_step(
            got, t, *args, kk, vv, rows, key_ok, slopes, *consts, *head, logits, None, tasks
        )
        assert not np.isnan(logits).any(), "every logit written"
        return got, kk, vv, logits

    results = {}  # each run's (x, k, v, logits); the runs go in a thread of their own, which a
    # step that never finishes leaves spinning instead of hanging the suite

    def runs():
        for tasks in range(1, 6):
            results[tasks] = step(tasks)
        set_num_threads(1)  # the thread count is per thread: this one's only
        results["one thread"] = step(3)

    runner = threading.Thread(target=runs, daemon=True)
    runner.start()
    runner.join(timeout=300)
    assert not runner.is_alive(), f"a step never finished (done: {list(results)})"
    for tasks, got in results.items():
        assert all(np.array_equal(a, b) for a, b in zip(got, results[1])), tasks
    consts = (np.float32(0.25), np.float32(1e-5))
    for shape in [(B, V - 1), (B + 1, V)]:  # a logit row or column short or too many
        with pytest.raises(ValueError, match=r"logits must be \[B, V\]"):
            nb.decode_step(
                x.copy(),
                t,
                *args,
                k,
                v,
                np.arange(B),
                key_ok,
                slopes,
                *consts,
                *head,
                np.zeros(shape, np.float32),
                None,
                2,
            )
    # x's rows: n for each of the cache's, their slots inside it (the step's t = T - 1 leaves
    # room for one each)
    for rows, at in [(B + 1, t), (2 * B, t), (0, 0)]:
        with pytest.raises(ValueError, match="x must have n rows for each of rows'"):
            nb.decode_step(
                rand(rows, C),
                at,
                *args,
                k,
                v,
                np.arange(B),
                key_ok,
                slopes,
                *consts,
                *head,
                np.zeros((rows, V), np.float32),
                None,
                2,
            )
    for rows in ([0, 0], [0, B], [-1, 0]):  # a row twice, past the cache, negative
        with pytest.raises(ValueError, match="rows must be distinct rows of the cache"):
            nb.decode_step(
                x.copy(),
                t,
                *args,
                k,
                v,
                np.array(rows, np.int64),
                key_ok,
                slopes,
                *consts,
                *head,
                np.zeros((B, V), np.float32),
                None,
                2,
            )


@FAST
@given(st.integers(1, 6), st.integers(0, 300), st.lists(st.integers(0, 5), max_size=300))
def test_row_claims_give_each_group_out_once_in_any_interleaving(tasks, groups, order):
    """numba_cpu._next_groups, as _matvec_into shares a matvec's groups of rows between threads,
    driven one claim at a time by tasks in a drawn order, then each task until it finds nothing:
    every group is given out exactly once, an owner's claims run through its own span from the
    front in order and everyone else's from the back, and a task that finds nothing left leaves
    nothing anywhere."""
    spans = nb._open_spans(tasks, groups)
    k = [0] * tasks  # how far each task has moved on from its own span
    claims = []  # (task, span, lo, hi) in the order given

    def claim(task):
        lo, hi, k[task] = nb._next_groups(spans, task, tasks, k[task])
        if lo < hi:
            claims.append((task, (task + k[task]) % tasks, lo, hi))
        return lo < hi

    for task in order:
        if k[task % tasks] < tasks:
            claim(task % tasks)
    for task in range(tasks):
        while claim(task):
            pass
        assert k[task] == tasks
    given_out = np.zeros(groups, np.int64)
    for _, _, lo, hi in claims:
        given_out[lo:hi] += 1
    assert (given_out == 1).all(), np.flatnonzero(given_out != 1)
    for s in range(tasks):
        first, end = s * groups // tasks, (s + 1) * groups // tasks
        front = [(lo, hi) for task, span, lo, hi in claims if span == s and task == s]
        back = [(lo, hi) for task, span, lo, hi in claims if span == s and task != s]
        assert all(first <= lo and hi <= end for lo, hi in front + back)
        assert [lo for lo, _ in front] == ([first] + [hi for _, hi in front[:-1]])[: len(front)]
        assert [hi for _, hi in back] == ([end] + [lo for lo, _ in back[:-1]])[: len(back)]
        assert all(hi - lo <= nb.CLAIM_GROUPS for lo, hi in back)


def matrices_of_each_kind(O, I, seed):  # {kind: (weight as the kernels take it, scales)}
    from reference.precision import interleave_quads, quantize_q8

    w = arrays(seed, O, I, scale=I**-0.5)
    q8 = quantize_q8(w)
    kinds = {"fp32": (w, nb._NO_SCALES), "bf16": (to_bf16_bits(w), nb._NO_SCALES)}
    kinds["q8"] = (q8.q, q8.scales)
    if O % 4 == 0:
        kinds["bf16 interleaved"] = (interleave_quads(to_bf16_bits(w)), nb._NO_SCALES)
    return kinds


@pytest.mark.parametrize("N", [3, 6])
@pytest.mark.parametrize("O", [1, 6, 37, 100, 260])
def test_shared_matvec_gives_the_same_rows_for_any_task_count(O, N):
    """numba_cpu._matvec_into over each kind of weight, its rows shared by 1 to 9 tasks (more tasks
    than groups of rows included): bit for bit the product one task gives, every row written
    (the output starts as NaN), and added to the output exactly once where it accumulates (x +
    (w y + b), as decode_step's residuals are), against NumPy within float32 accumulation. Six
    rows of x take the fp32 and q8 weights four at a time (_tile_rows), the last four short."""
    I = 96
    x, y, b = arrays(O, N, O), arrays(O + 1, N, I), arrays(O + 2, O, scale=0.1)
    kinds = matrices_of_each_kind(O, I, O)
    for kind, (w, scales) in kinds.items():
        one = np.full((N, O), np.nan, np.float32)
        nb._split_matvec(y, w, scales, one, 1)
        assert not np.isnan(one).any(), kind
        for tasks in range(2, 10):
            got = np.full((N, O), np.nan, np.float32)
            nb._split_matvec(y, w, scales, got, tasks)
            assert np.array_equal(got, one), (kind, tasks, np.abs(got - one).max())
        if kind not in ("fp32", "q8"):
            continue
        # x given: four rows of it at a time (_tile_rows) where N >= TILED_MIN_ROWS
        tiled = np.full((N, O), np.nan, np.float32)
        nb._matvec_into(y, y, w, scales, nb._NO_BIAS, tiled, False, 1)
        for tasks in range(2, 10):
            got = np.full((N, O), np.nan, np.float32)
            nb._matvec_into(y, y, w, scales, nb._NO_BIAS, got, False, tasks)
            assert np.array_equal(got, tiled), (kind, tasks, np.abs(got - tiled).max())
        # the int8 weights times their block's scale, in NumPy
        dense = w if kind == "fp32" else w.astype(np.float32) * np.repeat(scales, 32, axis=1)
        want = ops.linear(y, dense)
        for what, got in [("a row at a time", one), ("x given", tiled)]:
            assert_close(got, want, atol=2e-5, rtol=1e-5, what=f"{kind} matvec, {N} rows, {what}")
    w = kinds["fp32"][0]
    with pytest.raises(ValueError, match="at least one task"):
        nb._split_matvec(y, w, nb._NO_SCALES, np.zeros((N, O), np.float32), 0)
    want = x + (ops.linear(y, w) + b)
    for tasks in (1, 2, 3, 9):
        got = x.copy()
        nb._matvec_into(y, y, w, nb._NO_SCALES, b, got, True, tasks)
        assert_close(got, want, atol=2e-5, rtol=1e-5, what=f"x + (w y + b), {tasks} tasks")


def test_without_avx512_the_attention_is_eight_lanes_wide_and_equals_numpy():
    """The step's attention reads the cache in TILE_LANES vectors (numba_cpu._dot_key,
    _weighted_values), and the prompt's attention tile (_rows_times) takes two of them at a time,
    then one; without AVX-512 those are 8 lanes, and a bf16 cache goes through load8_bf16. The
    tile is checked on its own (the whole prompt attention compiles for 20 s more)."""
    features = host_features_without("avx512", "amx", "avx10")
    script = (
        f"import sys\nsys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "from reference.backends import numba_cpu as nb\n"
        "from test_numba_kernels import assert_decode_step_equals_numpy\n"
        "assert not nb.AVX512 and nb.TILE_LANES == 8, nb.TILE_LANES\n"
        "import numpy as np\nfrom numba import njit\n"
        "tile = njit(lambda a, b, c, n: nb._rows_times(a, 0, b, c, 0, n, c.shape[1]))\n"
        "rng = np.random.default_rng(0)\n"
        "for n, N in ((6, 29), (4, 13), (6, 7)):  # two vectors, one, the tail; short blocks\n"
        "    a, b = rng.normal(size=(n, 40)), rng.normal(size=(40, N))\n"
        "    a, b, c = a.astype(np.float32), b.astype(np.float32), np.zeros((n, N), np.float32)\n"
        "    tile(a, b, c, n)\n"
        "    assert np.abs(c - a.astype(np.float64) @ b).max() < 1e-4, (n, N)\n"
        "for D in (5, 8, 40, 83):\n"
        "    for bf16_cache in (False, True):\n"
        "        assert_decode_step_equals_numpy(2, 2, 9, D, True, bf16_cache, D)\n"
        "print('ok')\n"
    )
    run_printing_ok(script, NUMBA_CPU_FEATURES=features)


def assert_decode_step_equals_numpy(B, H, T, D, bias, bf16_cache, seed, tasks=None, n=1):
    """numba_cpu.decode_step for one layer against ops: LN1, qkv, attention of the new tokens (n
    a row of the cache) over T - n cached keys and those up to their own (key-only ALiBi, padding
    keys masked), out_proj + residual, LN2, GELU MLP + residual, then the final LN and the LM
    head (V = 7 rows: a group of four and a short one); the step's keys and values must land in
    cache slots T - n .. T - 1. A bf16 cache (uint16 bits) holds the same past rounded, and the
    step's keys and values are rounded to nearest as they are stored and before the attention
    reads them (twin: mpt.attention, kv_cache bf16)."""
    from reference.mpt import alibi_bias, alibi_slopes

    C, W, t = H * D, 4 * H * D, T - n
    rng = np.random.default_rng(seed)
    x = arrays(seed, B * n, C)  # row b n + i: cache row b's token at slot t + i
    # weights scaled as a trained model's are, by 1 / sqrt(fan-in) (0.3 at most), so that wide
    # heads keep the activations near 1 and the tolerances below mean the same at every size
    w = [
        arrays(seed + i, *shape, scale=min(0.3, shape[1] ** -0.5))
        for i, shape in enumerate([(3 * C, C), (C, C), (W, C), (C, W)], 1)
    ]
    b = [
        arrays(seed + 9 + i, n, scale=0.1 if bias else 0.0) for i, n in enumerate([3 * C, C, W, C])
    ]
    g = [1 + arrays(seed + 20 + i, C, scale=0.1) for i in range(2)]
    nrm = [arrays(seed + 30 + i, C, scale=0.1) for i in range(2)]
    k = np.zeros((1, B, H, T, D), np.float32)
    k[..., :t, :] = arrays(seed + 40, B, H, t, D) if t else 0
    v = np.zeros((1, B, H, T, D), np.float32)
    v[..., :t, :] = arrays(seed + 41, B, H, t, D) if t else 0
    key_ok = rng.random((B, T)) > 0.2
    key_ok[:, t:] = True
    slopes = alibi_slopes(H)
    if bf16_cache:
        k, v = to_bf16_bits(k), to_bf16_bits(v)
    cached = widen_bf16 if bf16_cache else (lambda a: a)  # the cache's values as float32
    unused = np.zeros((1, 1, 1), np.float32)  # fp32 weights take no scales
    stacked = [
        a[None] if a is not unused else a
        for a in (g[0], nrm[0], w[0], unused, b[0], w[1], unused, b[1], g[1], nrm[1])
        + (w[2], unused, b[2], w[3], unused, b[3])
    ]
    V = 7
    head = [1 + arrays(seed + 50, C, scale=0.1), arrays(seed + 51, C, scale=0.1)]
    head += [arrays(seed + 52, V, C, scale=min(0.3, C**-0.5)), unused[0]]
    got, logits = x.copy(), np.full((B * n, V), np.nan, np.float32)
    tasks = get_num_threads() if tasks is None else tasks
    consts = (np.float32(0.25), np.float32(1e-5))
    tiles = True if B * n >= nb.TILED_MIN_ROWS else None  # as numba_stacks passes it
    # the rows' caches in cache rows of a drawn order (beam search's map), one spare row
    rows = rng.permutation(B + 1)[:B]
    k_rows, v_rows = (
        np.zeros_like(k[:, :1]).repeat(B + 1, 1),
        np.zeros_like(v[:, :1]).repeat(B + 1, 1),
    )
    k_rows[:, rows], v_rows[:, rows] = k, v
    nb.decode_step(
        got, t, *stacked, k_rows, v_rows, rows, key_ok, slopes, *consts, *head, logits, tiles, tasks
    )
    k, v = k_rows[:, rows], v_rows[:, rows]  # each row's cache, as the step left it
    # the step's key and value in slot t against NumPy's: float32 sums of C products, in another
    # order, so within (C + 8) units of their size; a bf16 cache rounds them, and near a tie the
    # two sums may round apart by one bf16 step, up to 2^-7 of the value
    h = ops.layer_norm(x, g[0], nrm[0], 1e-5)
    qkv = ops.linear(h, w[0], b[0])
    q, k_new, v_new = (  # [B, H, n, D]
        qkv[:, i * C : (i + 1) * C].reshape(B, n, H, D).transpose(0, 2, 1, 3) for i in range(3)
    )
    if bf16_cache:
        k_new, v_new = round_to_bf16(k_new), round_to_bf16(v_new)
    size = (np.abs(h) @ np.abs(w[0]).T + np.abs(b[0]))[:, C:].reshape(B, n, 2, H, D)
    for i, (cache, new, what) in enumerate([(k, k_new, "key"), (v, v_new, "value")]):
        bound = (C + 8) * 2.0**-24 * size[:, :, i].transpose(0, 2, 1, 3) + 1e-6
        if bf16_cache:
            bound = bound + 2.0**-7 * np.abs(new)
        assert_within(cached(cache[0, :, :, t:]), new, bound, what=f"{what} in slots t..")
    # the rest of the NumPy block, over the cache as the step left it (slot t as it was stored:
    # a bf16 step apart from NumPy's at a near tie moves a sharp softmax by more than the
    # tolerance, which is about the attention and the rest, not the rounding)
    keys, values = cached(k[0]), cached(v[0])  # [B, H, T, D]
    later = np.arange(T)[None, :] > t + np.arange(n)[:, None]  # [n, T]: keys after a query's own
    masked = ~key_ok[:, None, None, :] | later[None, None]
    ctx, _ = ops.attention(q, keys, values, 0.25, alibi_bias(slopes, T), masked=masked)
    want = x + ops.linear(ctx.transpose(0, 2, 1, 3).reshape(B * n, C), w[1], b[1])
    want = want + ops.linear(
        ops.gelu(ops.linear(ops.layer_norm(want, g[1], nrm[1], 1e-5), w[2], b[2])), w[3], b[3]
    )
    assert_close(got, want, atol=2e-4, rtol=1e-4, what="decode step")
    want_logits = ops.linear(ops.layer_norm(want, head[0], head[1], 1e-5), head[2])
    assert_close(logits, want_logits, atol=2e-4, rtol=1e-4, what="the step's logits")


def test_numba_generation_equals_numpy_generation_with_left_padding_and_eos():
    ids = np.array([[5, 6, 7, 8, 9], [0, 0, 3, 4, 5]])
    mask = (ids != 0).astype(np.int64)
    numpy_model, numba_model = tiny_mpt(), tiny_mpt(backend="numba")
    want = numpy_model.generate(
        ids, attention_mask=mask, max_new_tokens=12, eos_token_id=7, pad_token_id=0
    )
    got = numba_model.generate(
        ids, attention_mask=mask, max_new_tokens=12, eos_token_id=7, pad_token_id=0
    )
    np.testing.assert_array_equal(got, want)


def test_numba_beam_search_reorders_its_session_and_equals_numpy_beam_search(monkeypatch):
    """Beam search on numba runs in the decode session, its cache rows copied with the beams
    (DecodeSession.reorder), and picks the NumPy model's sequences; a left-padded row, an eos and
    two sequences a prompt keep the masks and the pool in play."""
    from reference.backends.numba_stacks import DecodeSession

    ids = np.array([[5, 6, 7, 8, 9], [0, 0, 3, 4, 5]])
    mask = (ids != 0).astype(np.int64)
    kwargs = dict(
        attention_mask=mask,
        max_new_tokens=8,
        num_beams=3,
        num_return_sequences=2,
        eos_token_id=7,
        pad_token_id=0,
    )
    reorders = []
    real = DecodeSession.reorder
    monkeypatch.setattr(
        DecodeSession, "reorder", lambda self, rows: (reorders.append(rows), real(self, rows))
    )
    got = tiny_mpt(backend="numba").generate(ids, **kwargs)
    np.testing.assert_array_equal(got, tiny_mpt().generate(ids, **kwargs))
    assert reorders and all(len(rows) == 6 for rows in reorders)


def test_outputs_without_the_maps_are_the_outputs_with_them():
    """Both numba stacks skip the attention maps (and the hidden states) when neither is asked for;
    what they return is then the same, bit for bit. A padded row keeps the masks in play."""
    from conftest import tiny_model

    ids = np.array([[5, 6, 7, 8, 9, 10, 11], [0, 0, 3, 4, 5, 6, 7]])
    mask = (ids != 0).astype(np.int64)
    for model, field in (
        (tiny_model(backend="numba"), "last_hidden_state"),
        (tiny_mpt(backend="numba"), "logits"),
    ):
        bare = model(ids, attention_mask=mask)
        full = model(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
        assert bare.attentions is None and len(full.attentions) == len(full.hidden_states) - 1
        np.testing.assert_array_equal(getattr(bare, field), getattr(full, field), field)


def test_bf16_storage_needs_the_numba_backend_and_halves_matrix_bytes():
    """bf16 weight storage tier: logits within 0.05 abs + 2% rel of fp32 (weights rounded to 8
    significant bits)."""
    from test_mpt_properties import CONFIG

    model = tiny_mpt()
    weights = {"transformer." + k: v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="needs backend='numba'"):
        reference.build(CONFIG, weights, task="causal-lm", weight_storage="bf16")
    small = reference.build(
        CONFIG, weights, task="causal-lm", backend="numba", weight_storage="bf16"
    )
    assert small.params["blocks"][0]["attn"]["Wqkv"]["weight"].dtype == np.uint16
    assert small.params["wte"]["weight"].dtype == np.uint16
    assert small.params["blocks"][0]["norm_1"]["weight"].dtype == np.float32, "vectors stay float32"
    logits = small(np.array([[1, 2, 3]])).logits
    assert_close(
        logits,
        model(np.array([[1, 2, 3]])).logits,
        atol=0.05,
        rtol=0.02,
        what="bf16 vs fp32 logits",
    )


def test_unknown_backend_and_missing_numba_are_clear(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        reference.backends.get_backend("tpu")
    import sys

    monkeypatch.setitem(sys.modules, "reference.backends.numba_stacks", None)
    with pytest.raises(ValueError, match="needs Numba"):
        reference.backends.get_backend("numba")


def test_decode_session_vets_tokens_and_capacity_before_any_kernel():
    """A session is public (model.decode_session): bad ids, a wrong batch or a full cache are
    errors, never an out-of-bounds write or a silently wrapped negative index."""
    model = tiny_mpt(backend="numba")
    session = model.decode_session(2, 6)
    with pytest.raises(ValueError, match="holds 2 rows, got 3"):
        session.prefill(np.zeros((3, 4), np.int64), np.ones((3, 4)))
    session.prefill(np.zeros((2, 4), np.int64), np.ones((2, 4)))
    with pytest.raises(ValueError, match="token contains -1, outside the vocabulary"):
        session.step(np.array([-1, 0]))
    with pytest.raises(TypeError, match="token must be integers"):
        session.step(np.array([0.5, 1.0]))
    session.step(np.array([1, 2]))
    session.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="holds 6 positions: 6 are used, 1 more do not fit"):
        session.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="total_len 99 is over max_seq_len"):
        model.decode_session(1, 99)


def test_exp32_and_erf32_match_numpy_to_the_stated_accuracy():
    """The vectorisable exp (softmax) and erf (GELU) against float64 NumPy/SciPy over their
    ranges."""
    from numba import njit

    exp_all = njit(lambda x: np.array([nb.exp32(v) for v in x], np.float32))
    erf_all = njit(lambda x: np.array([nb.erf32(v) for v in x], np.float32))
    x = np.linspace(-87, 0, 200001).astype(np.float32)  # softmax arguments: score - max <= 0
    want = np.exp(x.astype(np.float64))
    rel = np.abs(exp_all(x) - want) / want
    assert rel.max() < 1e-7, f"exp32 max rel error {rel.max():.3g}"
    floor = np.array([-88.0, -1e30, np.finfo(np.float32).min, -np.inf], np.float32)
    assert exp_all(floor).max() == 0.0, "below the normal range: exactly 0"
    assert np.isnan(exp_all(np.array([np.nan], np.float32))[0]), "NaN in, NaN out (as np.exp)"
    x = np.linspace(-6, 6, 200001).astype(np.float32)
    err = np.abs(erf_all(x) - ops._erf(x.astype(np.float64)))
    assert err.max() < 4e-7, f"erf32 max abs error {err.max():.3g}"


@pytest.fixture(params=[True, False], ids=["packed", "blas-layout"])
def encoder_layout(request, monkeypatch):
    """Both layouts of the numba encoder stack, whatever this CPU is: packed for numba_gemm (what
    AVX-512 CPUs get) and laid out for BLAS (what the others get)."""
    from reference.backends import numba_stacks

    monkeypatch.setattr(numba_stacks, "AVX512", request.param)
    return request.param


def test_mpnet_stores_q_k_v_as_one_block_with_the_same_values(encoder_layout):
    """The numba encoder stack packs each layer's q, k and v into one block (one product) and lays
    out every dense weight for its product (numba_gemm panels, or input-major for BLAS); the
    model's params then hold views of those with the checkpoint's values at the checkpoint's
    shapes, and state_dict gives the checkpoint's arrays back."""
    from conftest import TINY, random_params

    from reference.backends.numba_gemm import PackedMatrix

    params = random_params(TINY, "base")
    model = reference.build(TINY, params, backend="numba")
    assert model.stack.packed is encoder_layout
    layer = model.params["encoder"]["layer"][0]
    attn = layer["attention"]["attn"]
    fused, bias, starts = model.stack.qkv[0]
    for n, start in zip("qkv", starts):
        w = attn[n]["weight"]
        if encoder_layout:
            assert isinstance(w, PackedMatrix) and w.panels.base is fused.panels, n
        else:
            assert fused.T.flags.c_contiguous and w.base is fused.base, n
            assert attn[n]["bias"].base is bias, n
        want_w = params[f"encoder.layer.0.attention.attn.{n}.weight"]
        want_b = params[f"encoder.layer.0.attention.attn.{n}.bias"]
        np.testing.assert_array_equal(np.asarray(w), want_w)
        np.testing.assert_array_equal(bias[start : start + len(want_b)], want_b)
    dense = {
        "attention.attn.o": attn["o"],
        "intermediate.dense": layer["intermediate"]["dense"],
        "output.dense": layer["output"]["dense"],
    }
    for name, d in dense.items():
        want = params[f"encoder.layer.0.{name}.weight"]
        w = d["weight"]
        assert w.shape == want.shape, name
        assert isinstance(w, PackedMatrix) if encoder_layout else w.T.flags.c_contiguous, name
        np.testing.assert_array_equal(np.asarray(w), want)
    state = model.state_dict()
    assert sorted(state) == sorted(params)
    for name, want in params.items():
        assert isinstance(state[name], np.ndarray), name
        np.testing.assert_array_equal(state[name], want, err_msg=name)
    if not encoder_layout:
        x = np.random.default_rng(0).standard_normal((3, TINY["hidden_size"]), dtype=np.float32)
        for rows in (1, 3):  # the matvec path (few rows) and the GEMM path both take this layout
            got = nb.linear(x[:rows], **attn["o"])
            want = ops.linear(
                x[:rows],
                params["encoder.layer.0.attention.attn.o.weight"],
                params["encoder.layer.0.attention.attn.o.bias"],
            )
            err = np.abs(got - want).max()
            assert err < 1e-5, (
                f"linear over the transposed layout, {rows} rows: max abs error {err:.3g}"
            )


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_numba_encoder_stack_equals_mpnet_encoder_layer_by_layer(act, encoder_layout):
    """Every hidden state and attention map of the numba stack equals mpnet.encoder's, with
    padding, in either layout."""
    from conftest import TINY, random_params

    from reference import mpnet

    config = {**TINY, "hidden_act": act}
    params = random_params(config, "base")
    ref, fast = reference.build(config, params), reference.build(config, params, backend="numba")
    ids = np.array([[0, 5, 6, 7, 2, 1, 1], [0, 8, 9, 10, 11, 12, 2]])
    mask = (ids != 1).astype(np.int64)
    want = ref(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    got = fast(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    for name, w in want.to_dict().items():
        assert_close(got.to_dict()[name], w, atol=2e-5, rtol=1e-5, what=f"numba stack {name}")
    assert fast.stack is not None and mpnet.encoder is not fast.stack


def test_numba_decoder_stack_equals_mpt_decoder_with_a_past_and_padding():
    """Every present, hidden state and attention map of the numba MPT stack equals mpt.decoder's,
    for a prompt with left padding and then two tokens on its cache."""
    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4]])
    mask = (ids != 0).astype(np.int64)
    ref, fast = tiny_mpt(), tiny_mpt(backend="numba")
    outs = []
    for model in (ref, fast):
        first = model(ids, attention_mask=mask, use_cache=True)
        mask2 = np.concatenate([mask, np.ones((2, 2), np.int64)], axis=1)
        outs.append(
            model(
                np.array([[9, 10], [11, 12]]),
                past_key_values=first.past_key_values,
                attention_mask=mask2,
                use_cache=True,
                output_hidden_states=True,
                output_attentions=True,
            ).to_dict()
        )
    for name, w in outs[0].items():
        assert_close(outs[1][name], w, atol=2e-5, rtol=1e-5, what=f"numba stack {name}")


@pytest.mark.parametrize(
    "workload, spin", [("encode", "100000" if AVX512 else "1000"), ("decode", "100000")]
)
def test_importing_the_numba_backend_changes_no_process_state_until_tune_process_is_called(
    workload, spin
):
    """Process-wide tuning is an explicit call (the CLI and tools/bench.py make it), not an import
    side effect; the OpenMP spin count follows the workload named, and only the first call
    counts."""
    import subprocess
    import sys

    script = (
        "import os, sys\nimport reference.backends.numba_cpu as nc\n"
        "assert 'GOMP_SPINCOUNT' not in os.environ and 'OPENBLAS_THREAD_TIMEOUT' not in os.environ,"
        " 'import changed it'\n"
        f"nc.tune_process({workload!r}); nc.tune_process('encode'); nc.tune_process('decode')\n"
        "if sys.platform.startswith('linux'):\n"
        f"    assert os.environ['GOMP_SPINCOUNT'] == {spin!r}, os.environ.get('GOMP_SPINCOUNT')\n"
        "print('ok')\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")
    }
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_tune_process_names_the_workloads_it_knows():
    with pytest.raises(ValueError, match="unknown workload 'train'"):
        nb.tune_process("train")


def assert_decode_steps_match(fast, ref, ids, mask, steps=4, tol=1e-4):
    """The fast model's decode session against the NumPy model over its cache: the prefill's and
    each greedy step's last logits, within tol (abs and rel)."""
    session = fast.decode_session(ids.shape[0], ids.shape[1] + steps)
    logits = session.prefill(ids, mask)
    out = ref(ids, attention_mask=mask, use_cache=True)
    for step in range(steps):
        assert_close(logits, out.logits[:, -1], atol=tol, rtol=tol, what=f"step {step} logits")
        token = np.argmax(logits, axis=-1)
        mask = np.concatenate([mask, np.ones((ids.shape[0], 1), np.int64)], axis=1)
        logits = session.step(token)
        out = ref(
            token[:, None], past_key_values=out.past_key_values, attention_mask=mask, use_cache=True
        )


@pytest.mark.parametrize("storage", ["fp32", "q8", "bf16"])
def test_a_session_of_five_rows_decodes_in_tiles_as_the_numpy_model(storage, monkeypatch):
    """A decode session of five rows, two of them left-padded: numba_stacks compiles the step
    with tiles (TILED_MIN_ROWS), so the fp32 and q8 matvecs take the first four rows together
    and the fifth alone, as do the interleaved bf16 ones where the CPU has the bf16 dot
    product (_bf16_row_tiles); the logits step by step against the NumPy model (q8: on the
    dequantized weights, kept plain, as Q8Matrix, which the tiles take: interleaved q8 goes a
    row at a time, tests/test_numba_q8dot.py; bf16: on the rounded weights)."""
    from test_mpt_properties import CONFIG

    from reference.backends import numba_stacks
    from reference.precision import quantize_q8, round_to_bf16

    monkeypatch.setattr(numba_stacks, "Q8_DOT", False)

    config = {**CONFIG, "d_model": 64, "n_heads": 4}
    weights = {"transformer." + k: v for k, v in tiny_mpt(**config).state_dict().items()}
    fast = reference.build(
        config, weights, task="causal-lm", backend="numba", weight_storage=storage
    )
    if storage == "q8":
        weights = {k: quantize_q8(v).dequantize() if v.ndim == 2 else v for k, v in weights.items()}
    if storage == "bf16":  # interleaved (so tiled) where the CPU has the bf16 dot product
        assert numba_stacks.interleaves((4 * 64, 64)) == nb.SPLIT_DOTS
        weights = {k: round_to_bf16(v) if v.ndim == 2 else v for k, v in weights.items()}
    ref = reference.build(config, weights, task="causal-lm")
    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4], [9, 10, 11, 12], [0, 1, 2, 3], [7, 7, 7, 7]])
    assert ids.shape[0] > nb.TILED_MIN_ROWS
    assert_decode_steps_match(fast, ref, ids, (ids != 0).astype(np.int64))


@pytest.mark.parametrize("kv_cache", ["fp32", "bf16"])
@pytest.mark.parametrize("storage", ["fp32", "bf16"])
def test_fused_decode_step_logits_equal_the_numpy_model_step_by_step(storage, kv_cache):
    """numba_cpu.decode_step (all blocks of a step in one call) against mpt.decoder over the cache:
    the logits of each of four steps after a left-padded prompt. bf16 storage: the NumPy model runs
    on the same bf16-rounded weights; bf16 cache: both round keys and values as they are cached."""
    from test_mpt_properties import CONFIG

    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4]])
    mask = (ids != 0).astype(np.int64)
    weights = {"transformer." + k: v for k, v in tiny_mpt().state_dict().items()}
    fast = reference.build(
        CONFIG,
        weights,
        task="causal-lm",
        backend="numba",
        weight_storage=storage,
        kv_cache=kv_cache,
    )
    if storage == "bf16":
        weights = {k: round_to_bf16(v) if v.ndim == 2 else v for k, v in weights.items()}
    ref = reference.build(CONFIG, weights, task="causal-lm", kv_cache=kv_cache)
    assert_decode_steps_match(fast, ref, ids, mask)


def test_bf16_kv_cache_rounds_what_is_cached_and_stays_near_fp32():
    """kv_cache="bf16": every present the model returns is on the bf16 grid; numba and NumPy
    generate the same greedy tokens with it; its logits are within 0.02 abs + 2% rel of the fp32
    cache's (keys and values rounded to 8 significant bits); numba's session keeps 2 bytes a
    value."""
    from test_mpt_properties import CONFIG

    ids = np.array([[5, 6, 7, 8, 9], [0, 0, 3, 4, 5]])
    mask = (ids != 0).astype(np.int64)
    weights = {"transformer." + k: v for k, v in tiny_mpt().state_dict().items()}
    models = {
        (backend, cache): reference.build(
            CONFIG, weights, task="causal-lm", backend=backend, kv_cache=cache
        )
        for backend in ("numpy", "numba")
        for cache in ("fp32", "bf16")
    }
    for backend in ("numpy", "numba"):
        out = models[backend, "bf16"](ids, attention_mask=mask, use_cache=True)
        for layer, (k, v) in enumerate(out.past_key_values):
            for name, t in (("key", k), ("value", v)):
                assert t.dtype == np.float32, (backend, name, t.dtype)
                np.testing.assert_array_equal(
                    round_to_bf16(t), t, f"{backend} layer {layer} {name}s off the bf16 grid"
                )
        assert_close(
            out.logits,
            models[backend, "fp32"](ids, attention_mask=mask).logits,
            atol=0.02,
            rtol=0.02,
            what=f"{backend}: bf16-cache vs fp32-cache logits",
        )
    kwargs = dict(attention_mask=mask, max_new_tokens=10, pad_token_id=0)
    np.testing.assert_array_equal(
        models["numba", "bf16"].generate(ids, **kwargs),
        models["numpy", "bf16"].generate(ids, **kwargs),
    )
    session = models["numba", "bf16"].decode_session(2, 16)
    assert session.k.dtype == np.uint16 and session.v.dtype == np.uint16


def test_kv_cache_names_are_checked():
    from test_mpt_properties import CONFIG

    weights = {"transformer." + k: v for k, v in tiny_mpt().state_dict().items()}
    with pytest.raises(ValueError, match="unknown kv_cache 'fp8'; accepted"):
        reference.build(CONFIG, weights, task="causal-lm", kv_cache="fp8")


# ----------------------------------------------------------------------------------- q8


@FAST
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**31))
def test_q8_rounding_is_within_half_a_block_scale(n_out, n_blocks, seed):
    """quantize_q8: per block of 32 along the input axis the scale is the largest magnitude over
    127, every weight comes back within half its block's scale, and a block's largest weight exactly
    (up to float32 rounding of the scale)."""
    from reference.precision import Q8_BLOCK, quantize_q8

    w = arrays(seed, n_out, n_blocks * Q8_BLOCK, scale=0.05)
    w[0, :Q8_BLOCK] = 0.0  # an all-zero block: scale 0, weights 0
    m = quantize_q8(w)
    blocks = np.abs(w).reshape(n_out, n_blocks, Q8_BLOCK)
    assert_close(m.scales, blocks.max(-1) / 127, atol=0, rtol=1e-6, what="scales")
    err = np.abs(m.dequantize() - w).reshape(n_out, n_blocks, Q8_BLOCK).max(-1)
    assert (err <= m.scales * 0.5 * (1 + 1e-5) + 1e-12).all(), f"max error {err.max():.3g}"
    assert not m.dequantize()[0, :Q8_BLOCK].any(), "a zero block stays zero"
    rows = np.array([n_out - 1, 0])
    np.testing.assert_array_equal(m.dequantize(rows), m.dequantize()[rows])


def test_q8_rejects_shapes_and_values_it_cannot_hold():
    from reference.precision import Q8Matrix, quantize_q8

    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q8(np.ones((4, 48), np.float32))
    with pytest.raises(ValueError, match="inf or NaN"):
        quantize_q8(np.full((2, 32), np.inf, np.float32))
    with pytest.raises(ValueError, match="scales of shape"):
        Q8Matrix(np.zeros((2, 64), np.int8), np.zeros((2, 3), np.float32))
    from test_mpt_properties import CONFIG

    weights = {
        "transformer." + k: v for k, v in tiny_mpt(backend="numpy").state_dict().items()
    }  # d_model 24: not a multiple of 32
    with pytest.raises(ValueError, match="multiple of 32"):
        reference.build(CONFIG, weights, task="causal-lm", backend="numba", weight_storage="q8")
    with pytest.raises(ValueError, match="needs backend='numba'"):
        reference.build(CONFIG, weights, task="causal-lm", weight_storage="q8")


@FAST
@given(row_counts, st.integers(1, 3), st.integers(1, 40), st.booleans(), st.integers(0, 2**31))
def test_linear_on_q8_weights_equals_numpy_on_the_dequantized_matrix(
    rows, n_blocks, n_out, with_bias, seed
):
    """numba_cpu.linear over a Q8Matrix (the Numba q8 matvec for few rows, BLAS on the dequantized
    matrix for more) against ops.linear on Q8Matrix.dequantize(), within float32 accumulation."""
    from reference.precision import quantize_q8

    x = arrays(seed, rows, n_blocks * 32)
    m = quantize_q8(arrays(seed + 1, n_out, n_blocks * 32, scale=0.2))
    b = arrays(seed + 2, n_out) if with_bias else None
    w = m.dequantize()
    bound = accumulation_bound(x, w, b)
    assert_within(nb.linear(x, m, b), ops.linear(x, w, b), bound, what="q8")


def one_layer_step(B, heads, T, seed, matrices, V):
    """decode_step over one layer and the LM head at slot T - 1 for B rows: x, the biases, the
    norms and T - 1 cached positions drawn from seed, the matrices given as (weight, scales)
    stacked over one layer, in the order qkv, out_proj, up, down, then the head's (V rows)
    -> (x after the step, logits [B, V], the keys cached)."""
    from reference.mpt import alibi_slopes

    H, D = heads
    C, W, t = H * D, 4 * H * D, T - 1
    x = arrays(seed, B, C)
    b = [arrays(seed + 9 + i, n, scale=0.1) for i, n in enumerate([3 * C, C, W, C])]
    g = [1 + arrays(seed + 20 + i, C, scale=0.1) for i in range(3)]
    n = [arrays(seed + 30 + i, C, scale=0.1) for i in range(3)]
    key_ok = np.ones((B, T), np.bool_)
    k = np.zeros((1, B, H, T, D), np.float32)
    k[..., :t, :] = arrays(seed + 40, B, H, t, D) if t else 0
    v = np.zeros((1, B, H, T, D), np.float32)
    v[..., :t, :] = arrays(seed + 41, B, H, t, D) if t else 0
    (wq, sq), (wo, so), (wu, su), (wd, sd), (wh, sh) = matrices
    out, logits = x.copy(), np.full((B, V), np.nan, np.float32)
    stacked = (g[0], n[0], wq, sq, b[0], wo, so, b[1], g[1], n[1], wu, su, b[2], wd, sd, b[3])
    args = [a[None] if a.ndim == 1 else a for a in stacked]  # one layer: [1, ...]
    slopes, scale, eps = alibi_slopes(H), np.float32(0.25), np.float32(1e-5)
    head_args = (g[2], n[2], wh[0], sh[0], logits)
    tiles = True if B >= nb.TILED_MIN_ROWS else None  # as numba_stacks passes it
    rows = np.arange(B)
    nb.decode_step(
        out, t, *args, k, v, rows, key_ok, slopes, scale, eps, *head_args, tiles, get_num_threads()
    )
    return out, logits, k


@FAST
@given(st.integers(1, 6), st.sampled_from([(1, 32), (2, 16), (4, 16), (2, 32)]), st.integers(1, 40))
def test_decode_step_on_q8_weights_equals_the_dequantized_fp32_step(B, heads, T):
    """decode_step with q8 matrices (int8 stacks and their scales, and a q8 LM head of 37 rows)
    against the same step with the dequantized float32 matrices: one q8 kernel path, the rest
    shared."""
    from reference.precision import quantize_q8

    H, D = heads
    C, W, seed = H * D, 4 * H * D, 7 * B + T
    mats = [
        quantize_q8(arrays(seed + i, *shape, scale=0.3))
        for i, shape in enumerate([(3 * C, C), (C, C), (W, C), (C, W)], 1)
    ]
    head = quantize_q8(arrays(seed + 50, 37, C, scale=0.3))
    unused = np.zeros((1, 1, 1), np.float32)
    fp32 = [(m.dequantize()[None], unused) for m in mats + [head]]
    q8 = [(m.q[None], m.scales[None]) for m in mats + [head]]
    want, want_logits, want_k = one_layer_step(B, heads, T, seed, fp32, 37)
    got, logits, k = one_layer_step(B, heads, T, seed, q8, 37)
    assert_close(got, want, atol=1e-4, rtol=1e-4, what="q8 decode step")
    assert_close(logits, want_logits, atol=1e-4, rtol=1e-4, what="q8 head")
    assert_close(k, want_k, atol=1e-5, what="keys written")


@pytest.mark.parametrize("layout", ["plain", "interleaved"])
def test_q8_generation_matches_the_numpy_model_on_dequantized_weights(layout, monkeypatch):
    """A q8 model (numba, weight_storage="q8") runs as the NumPy reference does on the dequantized
    weights: prefill and four steps' logits, a full forward, and greedy tokens. "plain": d_model
    64, its matrices kept as Q8Matrix, as on CPUs without AVX512-VNNI, within 1e-4.
    "interleaved" (AVX512-VNNI): d_model 128, every block matrix and the tied head
    InterleavedQ8, whose matvecs put x on a 16-bit grid, within 1e-3 (as the decode step's test
    in tests/test_numba_q8dot.py)."""
    from test_mpt_properties import CONFIG

    from reference.backends import numba_stacks
    from reference.backends.numba_q8dot import Q8_DOT
    from reference.precision import quantize_q8

    if layout == "plain":
        monkeypatch.setattr(numba_stacks, "Q8_DOT", False)
    elif not Q8_DOT:
        pytest.skip("the CPU Numba compiles for lacks AVX512-VNNI")
    config = {**CONFIG, "d_model": 64 if layout == "plain" else 128, "n_heads": 4}
    weights = {"transformer." + k: v for k, v in tiny_mpt(**config).state_dict().items()}
    fast = reference.build(config, weights, task="causal-lm", backend="numba", weight_storage="q8")
    ref = reference.build(
        config,
        {k: quantize_q8(v).dequantize() if v.ndim == 2 else v for k, v in weights.items()},
        task="causal-lm",
    )
    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4]])
    assert_runs_as_the_reference(
        fast, ref, ids, f"q8, {layout}", 1e-4 if layout == "plain" else 1e-3
    )


def assert_runs_as_the_reference(fast, ref, ids, what, tol=1e-4):
    """A fast model against the NumPy one: the decode session's prefill and four steps' logits
    after a left-padded prompt, a full forward of 7 rows each (the tiles), and 5 greedy tokens;
    logits within tol (abs and rel)."""
    mask = (ids != 0).astype(np.int64)
    assert_decode_steps_match(fast, ref, ids, mask, tol=tol)
    full = np.array([[5, 6, 7, 8, 9, 10, 11], [1, 2, 3, 4, 5, 6, 7]])
    assert_close(fast(full).logits, ref(full).logits, atol=tol, rtol=tol, what=what)
    got = fast.generate(ids, max_new_tokens=5, attention_mask=mask)
    want = ref.generate(ids, max_new_tokens=5, attention_mask=mask)
    assert got.shape == (ids.shape[0], ids.shape[1] + 5)
    np.testing.assert_array_equal(got, want)


def test_q8_accuracy_tool_measures_a_checkpoint(tmp_path):
    """tools/q8_accuracy.py on a checkpoint directory: one row per variant, with a finite max
    logit error, an agreement in [0, 1] and, for this tiny model, more than half the greedy
    tokens equal to fp32's under teacher forcing."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import write_checkpoint
    from test_mpt_properties import CONFIG

    config = {**CONFIG, "d_model": 64, "n_heads": 4, "vocab_size": 64, "max_seq_len": 128}
    weights = {"transformer." + k: v for k, v in tiny_mpt(**config).state_dict().items()}
    path = write_checkpoint(tmp_path / "mpt", config, weights)
    tool = Path(__file__).resolve().parents[1] / "tools" / "q8_accuracy.py"
    out = subprocess.run(
        [sys.executable, str(tool), str(path), "--storages", "bf16", "q8", "fp32+kvbf16"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:]}
    assert set(rows) == {"bf16", "q8", "fp32+kvbf16"}, out.stdout
    for storage, (err, rel, top1, free) in rows.items():
        assert np.isfinite(float(err)) and 0 <= float(err) < 1 and float(rel) >= 0, (
            storage,
            out.stdout,
        )
        assert 0.5 < float(top1.rstrip("%")) / 100 <= 1, (storage, out.stdout)
        assert 0 <= float(free.rstrip("%")) / 100 <= 1, (storage, out.stdout)


@FAST
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31))
def test_interleaved_bf16_holds_the_bits_of_the_plain_matrix(groups, blocks, seed):
    """precision.interleave_quads and InterleavedBf16: every row, taken by slice, by index or by an
    array of ids (negative ones too), has the plain matrix's bits, and widen() its float32
    values."""
    from reference.precision import InterleavedBf16, interleave_quads

    O, I = 4 * groups, 32 * blocks
    bits = to_bf16_bits(arrays(seed, O, I))
    m = InterleavedBf16(interleave_quads(bits))
    assert m.shape == (O, I) and m.dtype == np.uint16
    np.testing.assert_array_equal(m.bits(), bits)
    np.testing.assert_array_equal(m.bits(slice(1, None, 2)), bits[1::2])
    ids = np.random.default_rng(seed).integers(-O, O, (2, 3))
    np.testing.assert_array_equal(m.bits(ids), bits[ids])
    np.testing.assert_array_equal(m.bits(O - 1), bits[O - 1])
    np.testing.assert_array_equal(m.widen(ids), widen_bf16(bits[ids]))


def test_interleaved_bf16_rejects_what_it_cannot_hold():
    from reference.precision import InterleavedBf16, interleave_quads

    with pytest.raises(ValueError, match="multiple of 4"):
        interleave_quads(np.zeros((6, 32), np.uint16))
    with pytest.raises(ValueError, match="multiple of 4 and columns of 32"):
        interleave_quads(np.zeros((4, 48), np.uint16))
    with pytest.raises(ValueError, match="InterleavedBf16 needs uint16"):
        InterleavedBf16(np.zeros((4, 32), np.uint16))
    m = InterleavedBf16(interleave_quads(np.zeros((4, 32), np.uint16)))
    with pytest.raises(ValueError, match="out of range for 4 rows"):
        m.bits(np.array([4]))
    with pytest.raises(TypeError, match="integers or a slice"):
        m.bits(np.array([0.5]))


@FAST
@given(row_counts, st.integers(1, 9), st.integers(1, 12), st.integers(0, 2**31))
def test_linear_on_interleaved_bf16_equals_the_plain_bf16_matrix(rows, blocks, groups, seed):
    """numba_cpu.linear over InterleavedBf16: up to 4 rows the four-row dot kernel, within float32
    accumulation of the float64 product of the widened weights and the split activations (or,
    where the matvec widens each weight, of NumPy's float32 product of the same weights); above,
    the tiles and register blocks read the same float32 rows as from the plain matrix, so the
    results equal those bit for bit."""
    from reference.precision import InterleavedBf16, interleave_quads

    O, I = 4 * groups, 32 * blocks
    x, w16 = arrays(seed, rows, I, scale=3.0), to_bf16_bits(arrays(seed + 1, O, I))
    b = arrays(seed + 2, O)
    got = nb.linear(x, InterleavedBf16(interleave_quads(w16)), b)
    assert got.shape == (rows, O)
    if rows > nb.MATVEC_MAX_ROWS:
        np.testing.assert_array_equal(got, nb.linear(x, w16, b))
    elif nb.SPLIT_DOTS:
        hi, lo = split_bf16(x)
        xs = widen_bf16(hi).astype(np.float64) + widen_bf16(lo)
        wf = widen_bf16(w16).astype(np.float64)
        bound = (I + 1) * 2.0**-23 * (np.abs(xs) @ np.abs(wf).T + np.abs(b)) + 1e-30
        assert_within(got, xs @ wf.T + b, bound, what="interleaved bf16 dot products")
    else:  # two float32 sums of I products and the bias, in different orders
        wf = widen_bf16(w16)
        bound = accumulation_bound(x, wf, b)
        assert_within(got, ops.linear(x, wf, b), bound, what="interleaved bf16, widened")


def test_bf16_model_with_interleaved_matrices_runs_as_numpy_on_the_rounded_weights():
    """A bf16 model whose matrices interleave (d_model 64, vocab a multiple of 4) keeps them as
    InterleavedBf16 where the bf16 matvec uses AVX512-BF16, and runs as the NumPy reference does on
    the weights rounded to bf16: prefill and four steps' logits, a full forward through the tiles,
    and greedy tokens."""
    from test_mpt_properties import CONFIG

    from reference.backends.numba_stacks import interleaves
    from reference.precision import InterleavedBf16

    config = {**CONFIG, "d_model": 64, "n_heads": 4, "vocab_size": 52}
    weights = {"transformer." + k: v for k, v in tiny_mpt(**config).state_dict().items()}
    fast = reference.build(
        config, weights, task="causal-lm", backend="numba", weight_storage="bf16"
    )
    assert interleaves((256, 64)) == nb.SPLIT_DOTS
    for p in (fast.params["blocks"][1]["ffn"]["down_proj"], fast.params["wte"]):
        assert isinstance(p["weight"], InterleavedBf16) == nb.SPLIT_DOTS, type(p["weight"])
    ref = reference.build(
        config,
        {k: round_to_bf16(v) if v.ndim == 2 else v for k, v in weights.items()},
        task="causal-lm",
    )
    assert_runs_as_the_reference(fast, ref, np.array([[5, 6, 7, 8], [0, 0, 3, 51]]), "bf16")


@pytest.mark.parametrize("chunk", [64, 600, 1 << 20])
def test_to_bf16_gives_the_rounded_bits_whatever_the_chunk(chunk):
    """numba_stacks.to_bf16, chunk by chunk (4 rows a chunk; 8, the last one short; the whole
    matrix in one), into a fresh array and into a given slot: the bf16 bits of the matrix,
    interleaved where ``interleaves`` says so (rows a multiple of 4, columns of 32, SPLIT_DOTS),
    else plain."""
    from reference.backends.numba_stacks import interleaves, to_bf16
    from reference.precision import InterleavedBf16, interleaved_shape

    for shape in [(36, 64), (36, 40), (6, 32)]:
        w = arrays(7, *shape)
        want = to_bf16_bits(w)
        got = to_bf16(w, chunk=chunk)
        assert isinstance(got, InterleavedBf16) == interleaves(shape), (shape, type(got))
        np.testing.assert_array_equal(got.bits() if interleaves(shape) else got, want)
        slot = np.empty(interleaved_shape(shape) if interleaves(shape) else shape, np.uint16)
        into = to_bf16(w, slot, chunk=chunk)
        assert (into.packed if interleaves(shape) else into) is slot
        np.testing.assert_array_equal(into.bits() if interleaves(shape) else into, want)


def test_prefetch_is_only_a_hint_and_never_faults_past_an_arrays_end():
    """numba_vec16.prefetch, which the interleaved bf16 kernel issues PREFETCH_AHEAD bytes past the
    block it reads (past the last matrix's end at the end of a step): addresses inside the array,
    just past it and a gigabyte past it (unmapped) neither fault nor change what the loop
    computes."""
    from numba import njit

    from reference.backends.numba_vec16 import prefetch

    @njit
    def total(a, ahead, hint):
        s = 0.0
        for i in range(a.shape[0]):
            if hint:
                prefetch(a, (i, 0), ahead)
            for j in range(a.shape[1]):
                s += a[i, j]
        return s

    a = arrays(3, 8, 40)
    want = total(a, 0, False)
    assert np.isclose(want, float(a.astype(np.float64).sum()), rtol=1e-5)
    for ahead in (0, 64, a.nbytes, 1 << 30, -(1 << 20)):
        assert total(a, ahead, True) == want, ahead


# ------------------------------------------------------------------ fastmath, set by each kernel


def test_every_kernel_that_is_not_inlined_sets_its_own_fastmath():
    """Numba passes a caller's fastmath on to a callee that does not set it (and caches that
    compilation), so each kernel compiled on its own says its flags outright: FASTMATH, False or
    a set of its own. Inlined ones are the caller's code and take its flags."""
    from numba.core.registry import CPUDispatcher

    from reference.backends import numba_gemm, numba_stacks

    unset = [
        f"{module.__name__}.{name}"
        for module in (nb, numba_gemm, numba_stacks)
        for name, f in vars(module).items()
        if isinstance(f, CPUDispatcher)
        and f.py_func.__module__ == module.__name__
        and f.targetoptions.get("inline") != "always"
        and "fastmath" not in f.targetoptions
    ]
    assert not unset, unset


FAST_MATH_FIRST = """
import sys
import numpy as np
from numba import njit
from reference.backends import numba_cpu as nb
from reference import precision

lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
bits = (np.arange(1 << 16, dtype=np.uint32)[:, None] << 16) | lows  # every bf16 case (above)
x = bits.view(np.float32).reshape(-1, 768)
rng = np.random.default_rng(0)
xq = (rng.normal(size=(4, 512)) * 10.0 ** rng.integers(-30, 30, (4, 1))).astype(np.float32)
row = (rng.normal(size=4096) * 30).astype(np.float32)
bias, add = (rng.normal(size=(2, 4096)) * 7).astype(np.float32)
hide = rng.random(4096) < 0.1
scale = np.float32(0.1375)

if sys.argv[-1] == "first":  # each compiled first inside a caller with every fast-math flag
    @njit(fastmath=True)
    def split_bf16(x):
        return nb.split_bf16(x)

    @njit(fastmath=True)
    def split_bf16_blocks(x):
        return nb.split_bf16_blocks(x)

    @njit(fastmath=True)
    def split_q8_chunks(x):
        return nb.split_q8_chunks(x)

    @njit(fastmath=True)
    def round_to_bf16_in_place(x):
        nb.round_to_bf16_in_place(x)

    @njit(fastmath=True)
    def scores_row(row, scale, bias, add, hide, K):
        nb._scores_row(row, scale, bias, add, hide, K)
else:  # from the cache the first run wrote
    split_bf16, split_bf16_blocks = nb.split_bf16, nb.split_bf16_blocks
    split_q8_chunks, round_to_bf16_in_place = nb.split_q8_chunks, nb.round_to_bf16_in_place
    scores_row = nb._scores_row

with np.errstate(invalid="ignore"):
    hi, lo = precision.split_bf16(x)
    got = split_bf16(x)
    assert np.array_equal(got[:, 0], hi) and np.array_equal(got[:, 1], lo), "split_bf16"
    blocks = split_bf16_blocks(x).reshape(x.shape[0], -1, 2, 32)
    assert np.array_equal(blocks[:, :, 0].reshape(x.shape), hi), "split_bf16_blocks hi"
    assert np.array_equal(blocks[:, :, 1].reshape(x.shape), lo), "split_bf16_blocks lo"
    assert np.array_equal(split_q8_chunks(xq)[2], precision.split_q8(xq)[1]), "split_q8_chunks"
    x3 = x.reshape(4, -1, 768).copy()
    round_to_bf16_in_place(x3)
    np.testing.assert_array_equal(x3, precision.round_to_bf16(x.reshape(x3.shape)))
    want = np.where(hide, nb.MASK_VALUE, (row * scale + bias) + add)
    scores_row(row, scale, bias, add, hide, row.size)
    assert np.array_equal(row, want), ("_scores_row", int((row != want).sum()))
print("ok")
"""


def test_exact_kernels_keep_their_arithmetic_when_first_compiled_inside_a_fast_math_caller(
    tmp_path,
):
    """In a fresh process and Numba cache, the kernels that equal their twins bit for bit (the
    bf16 and q8 splits, the bf16 rounding, the score row) compiled first as callees of fast-math
    functions (as the decode step and the attention call them) still do, then and from the cache
    in a second process. Before each set fastmath=False: the q8 split's division became a
    multiplication by a rounded reciprocal (scales one bit off); an eighth of a random score row
    was one rounding off (product and bias fused); and under nnan the bf16 rounding took NaNs
    for numbers, 12 of these became inf or -0."""
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for run in ("first", "cached"):
        out = subprocess.run(
            [sys.executable, "-c", FAST_MATH_FIRST, run], capture_output=True, text=True, env=env
        )
        assert out.returncode == 0 and out.stdout.strip() == "ok", (run, out.stderr[-2000:])


@pytest.mark.parametrize("kv_cache", ["fp32", "bf16"])
def test_reorder_moves_rows_by_their_map_and_copies_only_shared_caches(kv_cache):
    """DecodeSession.reorder keeps a map from rows to cache rows, copying a cache only where
    several rows go on from one: after reorders that repeat, drop and swap rows, with steps
    between, every step's logits and the cache itself equal the model's own forward, whose cache
    rows are gathered (ModelSession)."""
    from reference.generation import ModelSession

    numpy_model = tiny_mpt(kv_cache=kv_cache)
    session = tiny_mpt(backend="numba", kv_cache=kv_cache).decode_session(4, 12)
    plain = ModelSession(numpy_model)
    ids = np.array([[5, 6, 7], [8, 9, 10], [0, 11, 12], [13, 14, 15]])
    mask = (ids != 0).astype(np.int64)
    assert_close(session.prefill(ids, mask), plain.prefill(ids, mask), atol=1e-4, what="prompt")
    for i, rows in enumerate([[0, 0, 1, 2], [3, 3, 3, 0], [1, 0, 3, 2], [2, 2, 2, 2]]):
        session.reorder(np.array(rows))
        plain.reorder(np.array(rows))
        assert len(set(session.rows.tolist())) == 4, session.rows  # each row its own cache row
        token = np.array([20 + i, 30 + i, 40 + i, 45 - i])
        assert_close(session.step(token), plain.step(token), atol=1e-4, what=f"step {i}")
        for (k, v), (k_ref, v_ref) in zip(session.cache(), plain.cache()):
            assert_close(k, k_ref, atol=1e-4, what=f"keys after reorder {i}")
            assert_close(v, v_ref, atol=1e-4, what=f"values after reorder {i}")
    with pytest.raises(ValueError, match=r"reorder takes 4 row indices in \[0, 4\)"):
        session.reorder(np.array([0, 1, 2, 4]))
