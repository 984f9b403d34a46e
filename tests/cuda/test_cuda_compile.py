"""Compile every CUDA kernel to PTX: the real type check that the simulator does not do.

Needs NVVM (numba-cuda[cu13], or a CUDA toolkit, as on a GPU machine); skipped where it is absent,
including under the simulator. CI does not install the ~450 MB NVVM wheel: the simulator tests run
there, and this check runs on every machine with a GPU (see README, CUDA section).
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the simulator cannot compile PTX", allow_module_level=True)

from numba import cuda, types  # noqa: E402

from reference.backends import cuda_kernels as k  # noqa: E402

f32, u8, i64 = types.float32, types.uint8, types.int64
A1, A2, A3, A4, A5 = (types.Array(f32, n, "C") for n in (1, 2, 3, 4, 5))
U3, U2 = types.Array(u8, 3, "C"), types.Array(u8, 2, "C")
V2 = types.Array(f32, 2, "A")  # a column slice of a fused projection
I1 = types.Array(i64, 1, "C")

SIGNATURES = {
    "matmul_bt": (A2, A2, A1, A2), "matvec": (A2, A2, A1, A2), "layer_norm_rows": (A2, A1, A1, f32, A2),
    "gelu": (A1, A1), "add": (A1, A1, A1),
    "flash_attention": (A3, A3, A3, i64, i64, i64, i64, i64, f32, A3, A3, U3, A3),
    "attention_probs": (A3, A3, A3, i64, i64, i64, i64, i64, f32, A3, A3, U3, A3, A4),
    "decode_attention": (V2, A4, A4, i64, f32, A1, U2, A2),
    "embed": (I1, A2, A2), "cache_write": (A3, A4, A4, i64, i64), "set_column": (U2, i64, i64),
}


def nvvm_available():
    try:
        cuda.compile_ptx(k.gelu.py_func, SIGNATURES["gelu"], cc=(8, 0))
    except Exception:  # noqa: BLE001 - no NVVM here
        return False
    return True


@pytest.mark.skipif(not nvvm_available(), reason="NVVM is not installed (pip install 'numba-cuda[cu13]')")
@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_kernel_compiles_to_ptx(name):
    ptx, _ = cuda.compile_ptx(getattr(k, name).py_func, SIGNATURES[name], cc=(8, 0))
    assert ".entry" in ptx
