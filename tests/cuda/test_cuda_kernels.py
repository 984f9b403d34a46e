"""CUDA kernels against their NumPy twins, under the CUDA simulator (or a real GPU).

Run in their own process (the simulator must be enabled before Numba is imported):
    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda
Shapes stay small: the simulator runs every GPU thread as a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest

cuda_ops = pytest.importorskip("reference.backends.cuda_ops")
cuda_kernels = pytest.importorskip("reference.backends.cuda_kernels")

from reference import ops  # noqa: E402
from reference.mpt import alibi_bias, alibi_slopes  # noqa: E402

RNG = np.random.default_rng(0)


def arr(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def close(got, want, atol, what):
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else got
    diff = np.abs(np.asarray(got, np.float64) - want)
    assert got.shape == want.shape and diff.max() <= atol, (
        f"{what}: max abs error {diff.max():.3g} (atol {atol})"
    )


@pytest.mark.parametrize("M, K, N", [(1, 20, 7), (3, 33, 18), (17, 9, 5), (19, 21, 18)])
def test_linear_tiled_and_matvec(M, K, N):
    x, w, b = arr(M, K), arr(N, K), arr(N)
    d = cuda_ops.to_device
    close(cuda_ops.linear(d(x), d(w), d(b)), ops.linear(x, w, b), 1e-5, f"linear {M}x{K}x{N}")
    close(cuda_ops.linear(d(x), d(w)), ops.linear(x, w), 1e-5, "linear without bias")


def test_layer_norm_gelu_add():
    x, w, b = arr(3, 37, scale=2.0) + 1, arr(37), arr(37)
    d = cuda_ops.to_device
    close(
        cuda_ops.layer_norm(d(x), d(w), d(b), 1e-5),
        ops.layer_norm(x, w, b, 1e-5),
        1e-5,
        "layer_norm",
    )
    close(
        cuda_ops.layer_norm(d(x), d(w), None, 1e-5),
        ops.layer_norm(x, w, None, 1e-5),
        1e-5,
        "layer_norm no bias",
    )
    close(cuda_ops.gelu(d(x)), ops.gelu(x), 1e-6, "gelu")
    close(cuda_ops.add(d(x), d(w[None].repeat(3, 0))), x + w, 0, "add")


def test_gather_rows_copies_whole_rows_of_axis_1():
    x, rows = arr(2, 3, 4, 5), np.array([2, 2, 0])
    out = cuda_ops.empty(x.shape)
    d_rows = cuda_ops.to_device(rows, np.int64)
    close(cuda_ops.gather_rows(cuda_ops.to_device(x), d_rows, out), x[:, rows], 0, "gather_rows")


def split(x, H, D, off):  # [B, S, n*C] -> [B, H, S, D] at a column offset
    B, S = x.shape[:2]
    return x[:, :, off : off + H * D].reshape(B, S, H, D).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("want_probs", [False, True])
@pytest.mark.parametrize("kind", ["relative+add", "alibi+causal"])
def test_attention_kernels_match_numpy(kind, want_probs):
    """Two query tiles and two key tiles (S = K = 40 > 32), bias and masks of both families, a fully
    masked row."""
    B, S, H, D = 1, 40, 2, 4
    C = H * D
    qkv = arr(B, S, 3 * C)
    if kind == "relative+add":
        bias, keep = arr(H, S, S), RNG.random((B, 1, 1, S)) > 0.3
        mask_add = np.where(keep, 0.0, -1e4).astype(np.float32)
        masked = None
        kw = dict(bias=bias, mask_add=mask_add[:, 0])
    else:
        bias = alibi_bias(alibi_slopes(H), S)
        masked = np.triu(np.ones((S, S), bool), 1)[None, None].copy()
        masked[0, 0, 5] = True  # a fully masked query row
        kw = dict(bias=bias, masked=masked[:, 0].astype(np.uint8))
        mask_add = None
    want_ctx, want_p = ops.attention(
        split(qkv, H, D, 0),
        split(qkv, H, D, C),
        split(qkv, H, D, 2 * C),
        0.5,
        bias,
        mask_add,
        masked,
    )
    d = cuda_ops.to_device
    dev = {key: d(v, np.uint8 if key == "masked" else np.float32) for key, v in kw.items()}
    dq = d(qkv)
    ctx, probs = cuda_ops.attention(
        dq, dq, dq, (0, C, 2 * C), H, D, 0.5, want_probs=want_probs, **dev
    )
    close(ctx, want_ctx.transpose(0, 2, 1, 3).reshape(B, S, C), 1e-5, "context")
    if want_probs:
        close(probs, want_p, 1e-6, "probabilities")


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("B, S, K, H, D", [(2, 9, 5, 1, 6), (1, 3, 21, 2, 3), (1, 4, 11, 2, 1)])
def test_flash_attention_groups_and_broadcasts(B, S, K, H, D):
    """Keys fewer than a tile (idle key groups merge nothing), keys spread over several tiles, head
    sizes off the 4-way product split, broadcast bias [H, 1, K] and mask_add [B, 1, K], an -inf bias
    entry (skipped) and a query row whose scores are all -inf (0 / 0 = NaN, as in the reference)."""
    q, kv = arr(B, S, H * D), arr(B, K, 2 * H * D)
    bias = arr(H, 1, K)
    bias[0, 0, [0, 4]] = -np.inf  # the first key of a group (4 keys per group in the simulator)
    mask_add = np.where(RNG.random((B, 1, K)) > 0.3, 0.0, -1e4).astype(np.float32)
    full = np.broadcast_to(bias, (H, S, K)).copy()
    full[0, S - 1] = -np.inf
    want, want_p = ops.attention(
        split(q, H, D, 0),
        split(kv, H, D, 0),
        split(kv, H, D, H * D),
        0.7,
        full[None],
        mask_add[:, None],
    )
    d = cuda_ops.to_device
    got, got_p = cuda_ops.attention(
        d(q),
        d(kv),
        d(kv),
        (0, 0, H * D),
        H,
        D,
        0.7,
        bias=d(full),
        mask_add=d(mask_add),
        want_probs=True,
    )
    want = want.transpose(0, 2, 1, 3).reshape(B, S, H * D)
    got, got_p = got.copy_to_host(), got_p.copy_to_host()
    assert np.isnan(got[:, S - 1, :D]).all() and np.isnan(want[:, S - 1, :D]).all()
    assert np.isnan(got_p[:, 0, S - 1]).all() and np.isnan(want_p[:, 0, S - 1]).all()
    keep = ~np.isnan(want)
    close(got[keep], want[keep], 1e-5, "context")
    keep = ~np.isnan(want_p)
    close(got_p[keep], want_p[keep], 1e-6, "probabilities")
    got_b, _ = cuda_ops.attention(
        d(q), d(kv), d(kv), (0, 0, H * D), H, D, 0.7, bias=d(bias), mask_add=d(mask_add)
    )
    want_b, _ = ops.attention(
        split(q, H, D, 0),
        split(kv, H, D, 0),
        split(kv, H, D, H * D),
        0.7,
        bias[None],
        mask_add[:, None],
    )
    close(
        got_b,
        want_b.transpose(0, 2, 1, 3).reshape(B, S, H * D),
        1e-5,
        "context with broadcast bias",
    )


@pytest.mark.parametrize("hide_first_chunk", [False, True])
def test_decode_attention_writes_the_step_into_the_cache_then_attends(hide_first_chunk):
    """37 cached keys: several chunks of DECODE_CHUNK (16 in the simulator); with every key of the
    first chunk masked, the later chunks must wipe out its contribution."""
    B, H, D, T, slots = 2, 2, 4, 37, 40
    C = H * D
    q, k_, v = arr(B, H, 1, D), arr(B, H, T, D), arr(B, H, T, D)
    key_ok = RNG.random((B, T)) > 0.2
    key_ok[:, -1] = True
    if hide_first_chunk:
        key_ok[:, : cuda_kernels.DECODE_CHUNK] = False
    slopes = alibi_slopes(H)
    want, _ = ops.attention(q, k_, v, 0.5, alibi_bias(slopes, T), masked=~key_ok[:, None, None, :])
    qkv = np.concatenate(
        [x[:, :, -1].reshape(B, C) for x in (q, k_, v)], axis=1
    )  # this step's projection
    kt_cache, v_cache = (
        np.zeros((B, H, D, slots), np.float32),
        np.zeros((B, H, slots, D), np.float32),
    )
    kt_cache[..., : T - 1] = k_[:, :, : T - 1].transpose(0, 1, 3, 2)  # slots 0 .. T-2 hold the past
    v_cache[:, :, : T - 1] = v[:, :, : T - 1]
    ok = np.zeros((B, slots), np.uint8)
    ok[:, :T] = key_ok
    d = cuda_ops.to_device
    kt_dev, v_dev = d(kt_cache), d(v_cache)
    got = cuda_ops.decode_attention(d(qkv), kt_dev, v_dev, T, 0.5, d(slopes), d(ok, np.uint8))
    close(got, want.reshape(B, C), 1e-5, "decode attention")
    close(kt_dev.copy_to_host()[..., T - 1], k_[:, :, -1], 0, "key written to the cache")
    close(v_dev.copy_to_host()[:, :, T - 1], v[:, :, -1], 0, "value written to the cache")


@pytest.mark.parametrize("M", [1, 2])
def test_fused_matvec_equals_norm_linear_gelu_residual(M):
    x, w, b, lw, lb, r = arr(M, 19, scale=2.0), arr(7, 19), arr(7), arr(19), arr(19), arr(M, 7)
    d = cuda_ops.to_device
    want = r + ops.gelu(ops.linear(ops.layer_norm(x, lw, lb, 1e-5), w, b))
    got = cuda_ops.fused_linear(
        d(x), d(w), d(b), ln=(d(lw), d(lb)), eps=1e-5, gelu=True, resid=d(r)
    )
    close(got, want, 2e-5, "fused norm + linear + gelu + residual")
    close(cuda_ops.fused_linear(d(x), d(w)), ops.linear(x, w), 1e-5, "plain fused linear")
