"""CUDA kernels against their NumPy twins, under the CUDA simulator (or a real GPU).

Run in their own process (the simulator must be enabled before Numba is imported):
    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda
Shapes stay small: the simulator runs every GPU thread as a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest

cuda_ops = pytest.importorskip("reference.backends.cuda_ops")

from reference import ops  # noqa: E402
from reference.mpt import alibi_bias, alibi_slopes  # noqa: E402

RNG = np.random.default_rng(0)


def arr(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def close(got, want, atol, what):
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else got
    diff = np.abs(np.asarray(got, np.float64) - want)
    assert got.shape == want.shape and diff.max() <= atol, f"{what}: max abs error {diff.max():.3g} (atol {atol})"


@pytest.mark.parametrize("M, K, N", [(1, 20, 7), (3, 33, 18), (17, 9, 5)])
def test_linear_tiled_and_matvec(M, K, N):
    x, w, b = arr(M, K), arr(N, K), arr(N)
    d = cuda_ops.to_device
    close(cuda_ops.linear(d(x), d(w), d(b)), ops.linear(x, w, b), 1e-5, f"linear {M}x{K}x{N}")
    close(cuda_ops.linear(d(x), d(w)), ops.linear(x, w), 1e-5, "linear without bias")


def test_layer_norm_gelu_add():
    x, w, b = arr(3, 37, scale=2.0) + 1, arr(37), arr(37)
    d = cuda_ops.to_device
    close(cuda_ops.layer_norm(d(x), d(w), d(b), 1e-5), ops.layer_norm(x, w, b, 1e-5), 1e-5, "layer_norm")
    close(cuda_ops.layer_norm(d(x), d(w), None, 1e-5), ops.layer_norm(x, w, None, 1e-5), 1e-5, "layer_norm no bias")
    close(cuda_ops.gelu(d(x)), ops.gelu(x), 1e-6, "gelu")
    close(cuda_ops.add(d(x), d(w[None].repeat(3, 0))), x + w, 0, "add")


def split(x, H, D, off):  # [B, S, n*C] -> [B, H, S, D] at a column offset
    B, S = x.shape[:2]
    return x[:, :, off:off + H * D].reshape(B, S, H, D).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("want_probs", [False, True])
@pytest.mark.parametrize("kind", ["relative+add", "alibi+causal"])
def test_attention_kernels_match_numpy(kind, want_probs):
    """Two query tiles and two key tiles (S = K = 40 > 32), bias and masks of both families, a fully masked row."""
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
    want_ctx, want_p = ops.attention(split(qkv, H, D, 0), split(qkv, H, D, C), split(qkv, H, D, 2 * C), 0.5,
                                     bias, mask_add, masked)
    d = cuda_ops.to_device
    dev = {key: d(v, np.uint8 if key == "masked" else np.float32) for key, v in kw.items()}
    dq = d(qkv)
    ctx, probs = cuda_ops.attention(dq, dq, dq, (0, C, 2 * C), H, D, 0.5, want_probs=want_probs, **dev)
    close(ctx, want_ctx.transpose(0, 2, 1, 3).reshape(B, S, C), 1e-5, "context")
    if want_probs:
        close(probs, want_p, 1e-6, "probabilities")


def test_decode_attention_over_transposed_cache():
    B, H, D, T = 2, 2, 4, 37
    q, k_, v = arr(B, H, 1, D), arr(B, H, T, D), arr(B, H, T, D)
    key_ok = RNG.random((B, T)) > 0.2
    slopes = alibi_slopes(H)
    want, _ = ops.attention(q, k_, v, 0.5, alibi_bias(slopes, T), masked=~key_ok[:, None, None, :])
    d = cuda_ops.to_device
    got = cuda_ops.decode_attention(d(q.reshape(B, H * D)), d(k_.transpose(0, 1, 3, 2)), d(v), T, 0.5, d(slopes),
                                    d(key_ok, np.uint8))
    close(got, want.reshape(B, H * D), 1e-5, "decode attention")


@pytest.mark.parametrize("M", [1, 2])
def test_fused_matvec_equals_norm_linear_gelu_residual(M):
    x, w, b, lw, lb, r = arr(M, 19, scale=2.0), arr(7, 19), arr(7), arr(19), arr(19), arr(M, 7)
    d = cuda_ops.to_device
    want = r + ops.gelu(ops.linear(ops.layer_norm(x, lw, lb, 1e-5), w, b))
    got = cuda_ops.fused_linear(d(x), d(w), d(b), ln=(d(lw), d(lb)), eps=1e-5, gelu=True, resid=d(r))
    close(got, want, 2e-5, "fused norm + linear + gelu + residual")
    close(cuda_ops.fused_linear(d(x), d(w)), ops.linear(x, w), 1e-5, "plain fused linear")
