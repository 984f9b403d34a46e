"""Host-side launchers for the CUDA kernels: device arrays in, device arrays out.

Every function here takes and returns numba device arrays (nothing is copied to the host), so a
model built from them keeps its weights, activations and KV cache on the device between layers and
steps. ``require_cuda`` gives the clear error when neither a GPU nor the simulator is present.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import cuda_kernels as k

_EMPTY: dict = {}


def absent(ndim, dtype=np.float32):
    """A zero-size device array standing for "no bias / no mask", uploaded once."""
    key = (ndim, np.dtype(dtype).str)
    if key not in _EMPTY:
        _EMPTY[key] = cuda.to_device(np.zeros((0,) * ndim, dtype))
    return _EMPTY[key]


def require_cuda():
    """Fail clearly unless a CUDA GPU or the simulator (NUMBA_ENABLE_CUDASIM=1) is available."""
    try:
        available = cuda.is_available()
    except Exception as e:  # noqa: BLE001 - driver libraries missing or broken
        raise ValueError(f"backend='cuda' needs a CUDA GPU and driver ({e})") from None
    if not available:
        raise ValueError(
            "backend='cuda' needs a CUDA GPU (none found); for testing without one, set "
            "NUMBA_ENABLE_CUDASIM=1 before Python starts to run the kernels in the CUDA simulator"
        )


def to_device(x, dtype=np.float32):
    return cuda.to_device(np.ascontiguousarray(x, dtype=dtype))


def empty(shape, dtype=np.float32):
    return cuda.device_array(shape, dtype)


def linear(x, w, b=None, out=None):  # [M, K], [N, K], [N] -> [M, N] (into out when given)
    M, N = x.shape[0], w.shape[0]
    out = empty((M, N)) if out is None else out
    bias = b if b is not None else absent(1)
    if M <= 4:
        k.matvec[(N, M), k.ROW_THREADS](x, w, bias, out)
    else:
        k.matmul_bt[(math.ceil(N / k.TILE), math.ceil(M / k.TILE)), (k.SIDE, k.SIDE)](
            x, w, bias, out
        )
    return out


def fused_linear(x, w, b=None, ln=None, eps=1e-5, gelu=False, resid=None, out=None):
    """resid + act(LN(x) W^T + b) in one launch, for few rows (decode steps); ln = (weight, bias or
    None)."""
    M, N = x.shape[0], w.shape[0]
    out = empty((M, N)) if out is None else out
    ln_w, ln_b = ln if ln is not None else (absent(1), None)
    k.fused_matvec[(N, M), k.ROW_THREADS](
        x,
        ln_w,
        ln_b if ln_b is not None else absent(1),
        np.float32(eps),
        w,
        b if b is not None else absent(1),
        1 if gelu else 0,
        resid if resid is not None else absent(2),
        out,
    )
    return out


def layer_norm(x, w, b, eps, out=None):  # [N, C] -> [N, C]
    out = empty(x.shape) if out is None else out
    k.layer_norm_rows[x.shape[0], k.ROW_THREADS](x, w, b if b is not None else absent(1), eps, out)
    return out


def _flat_launch(kernel, *arrays):
    n = arrays[0].shape[0]
    kernel[math.ceil(n / 256), 256](*arrays)


def gelu(x, out=None):
    out = empty(x.shape) if out is None else out
    _flat_launch(k.gelu, x.reshape(x.size), out.reshape(out.size))
    return out


def add(x, y, out=None):
    out = empty(x.shape) if out is None else out
    _flat_launch(k.add, x.reshape(x.size), y.reshape(y.size), out.reshape(out.size))
    return out


def gather_rows(
    x, rows, out
):  # [L, B, ...], rows [B] int64 on the device -> out[:, b] = x[:, rows[b]]
    """Copies whole rows of axis 1 (beam search's cache reorder); x and out are C-contiguous and
    of one shape."""
    L, B = x.shape[0], x.shape[1]
    flat = x.reshape(L, B, x.size // (L * B))
    n = x.size
    k.gather_rows[math.ceil(n / 256), 256](flat, rows, out.reshape(flat.shape))
    return out


def _check_head_size(D):
    if D > k.MAX_HEAD:
        raise ValueError(f"head size {D} exceeds the CUDA kernels' limit of {k.MAX_HEAD}")


def attention(
    q, k_src, v_src, offsets, H, D, scale, bias=None, mask_add=None, masked=None, want_probs=False
):
    """q [B, S, *], k_src and v_src [B, K, *] (all three may be one fused buffer), offsets = the (q,
    k, v) column offsets. Returns ctx [B, S, H * D] and, when asked, probs [B, H, S, K]."""
    _check_head_size(D)
    B, S, K = q.shape[0], q.shape[1], k_src.shape[1]
    ctx = empty((B, S, H * D))
    probs = empty((B, H, S, K)) if want_probs else absent(4)
    k.flash_attention(D, want_probs)[(B * H, math.ceil(S / k.ROWS)), k.ROWS * k.SPLIT](
        q,
        k_src,
        v_src,
        *offsets,
        H,
        np.float32(scale),
        bias if bias is not None else absent(3),
        mask_add if mask_add is not None else absent(3),
        masked if masked is not None else absent(3, np.uint8),
        ctx,
        probs,
    )
    return ctx, (probs if want_probs else None)


def embed(ids, table, out=None):  # ids [N] int64 on the device, table [V, C] -> [N, C]
    out = empty((ids.shape[0], table.shape[1])) if out is None else out
    k.embed[(math.ceil(ids.shape[0] / 8), math.ceil(table.shape[1] / 32)), (8, 32)](ids, table, out)
    return out


def cache_write(qkv, kt, v, start):  # qkv [B, S, 3C] -> cache slots start .. start + S - 1
    B, S, C3 = qkv.shape
    C = C3 // 3
    k.cache_write[(B, S, math.ceil(C / 64)), (1, 1, 64)](qkv, kt, v, start, C)


def set_column(x, column, value):
    k.set_column[math.ceil(x.shape[0] / 32), 32](x, column, value)


def decode_attention(qkv, kt, v, length, scale, slopes, key_ok, out=None):
    """qkv [B, 3 * H * D] -> context [B, H * D]; this step's key and value go to cache slot length -
    1."""
    B, H, D = kt.shape[0], kt.shape[1], kt.shape[2]
    _check_head_size(D)
    ctx = empty((B, H * D)) if out is None else out
    k.decode_attention[B * H, k.ROW_THREADS](
        qkv, kt, v, length, np.float32(scale), slopes, key_ok, ctx
    )
    return ctx
