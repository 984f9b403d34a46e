"""Compile every CUDA kernel to PTX and assemble it for sm_90: the real type and resource check that
the simulator does not do (reference/backends/cuda_static.py).

Runs in the main test process wherever NVVM is installed (the test extra installs
``numba-cuda[cu13]`` on Linux and Windows), with or without a GPU; skipped under the simulator,
which cannot compile.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the simulator cannot compile PTX", allow_module_level=True)

pytest.importorskip("numba.cuda")
from reference.backends import cuda_static  # noqa: E402

needs_nvvm = pytest.mark.skipif(
    not cuda_static.nvvm_available(),
    reason="NVVM is not installed (pip install 'numba-cuda[cu13]')",
)


def test_every_kernel_has_a_signature():
    assert cuda_static.kernel_names() == sorted(cuda_static.SIGNATURES), (
        "cuda_static.SIGNATURES is out of date"
    )


@needs_nvvm
@pytest.mark.parametrize("name", sorted(cuda_static.SIGNATURES))
def test_kernel_compiles_to_ptx(name):
    ptx = cuda_static.compile_ptx(name, cc=(8, 0))
    assert ".entry" in ptx


@needs_nvvm
@pytest.mark.parametrize("name", cuda_static.HOT)
def test_hot_kernel_keeps_its_data_in_registers(name):
    """No stack frame and no spills on an H100/H200 (sm_90): local memory in an inner loop costs far
    more than the arithmetic around it."""
    report = cuda_static.resources(name, cc=(9, 0))
    assert report["stack"] == 0 and report["spill_stores"] == 0 and report["spill_loads"] == 0, (
        f"{name}: {report}"
    )
