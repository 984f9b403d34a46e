"""Compile the CUDA kernels without a GPU, and read what the real compiler says about them.

The simulator runs kernels as Python, so it never type-checks them and says nothing about how they
would run. Where NVVM is installed (``pip install 'numba-cuda[cu13]'``, about 450 MB) this module:

* ``compile_ptx(name)`` compiles one kernel of cuda_kernels.py to PTX, with the argument types it is
  launched with (``SIGNATURES``); this is the type check the simulator does not do;
* ``resources(name)`` hands that PTX to nvJitLink (the assembler the driver itself uses) for one GPU
  architecture and returns its report: registers per thread, stack frame (local memory: arrays the
  compiler could not keep in registers), spill stores and loads, static shared memory.

``python tools/cuda_resources.py`` prints the table for every kernel;
tests/cuda/test_cuda_compile.py compiles every kernel and holds the hot ones to no stack frame and
no spills.

Without a GPU numba-cuda asks the (absent) current device for its compute capability when a kernel
calls a device function; ``compile_ptx`` answers for it with the capability being compiled for.
"""

from __future__ import annotations

import contextlib
import re
import types as pytypes

from numba import cuda, types

from . import cuda_kernels as k

f32, u8, i64 = types.float32, types.uint8, types.int64
A1, A2, A3, A4 = (types.Array(f32, n, "C") for n in (1, 2, 3, 4))
U2, U3 = types.Array(u8, 2, "C"), types.Array(u8, 3, "C")
I1 = types.Array(i64, 1, "C")

# The argument types each kernel is launched with by cuda_ops.py (scalars: Python ints are int64,
# the float arguments are passed as np.float32).
SIGNATURES = {
    "matmul_bt": (A2, A2, A1, A2),
    "matvec": (A2, A2, A1, A2),
    "fused_matvec": (A2, A1, A1, f32, A2, A1, i64, A2, A2),
    "layer_norm_rows": (A2, A1, A1, f32, A2),
    "gelu": (A1, A1),
    "add": (A1, A1, A1),
    "flash_attention/32": (A3, A3, A3, i64, i64, i64, i64, f32, A3, A3, U3, A3, A4),
    "flash_attention/64": (A3, A3, A3, i64, i64, i64, i64, f32, A3, A3, U3, A3, A4),
    "flash_attention/128": (A3, A3, A3, i64, i64, i64, i64, f32, A3, A3, U3, A3, A4),
    "flash_attention/64+probs": (A3, A3, A3, i64, i64, i64, i64, f32, A3, A3, U3, A3, A4),
    "decode_attention": (A2, A4, A4, i64, f32, A1, U2, A2),
    "embed": (I1, A2, A2),
    "cache_write": (A3, A4, A4, i64, i64),
    "set_column": (U2, i64, i64),
    "gather_rows": (A3, I1, A3),  # also launched on uint8 (the key mask); the same code
}

# Kernels that do the heavy lifting: they must keep their working set in registers and shared
# memory.
# (At head size 128 the attention kernel's query row and accumulator need more registers than a
# thread may have; its spills are reported by tools/cuda_resources.py, not held to zero.)
HOT = (
    "matmul_bt",
    "matvec",
    "fused_matvec",
    "layer_norm_rows",
    "decode_attention",
    "flash_attention/32",
    "flash_attention/64",
    "flash_attention/64+probs",
)


def kernel_names():
    """Every kernel (not device function) defined in cuda_kernels.py; a kernel made per head size
    (``flash_attention(D, with_probs)``) is listed as ``name/D`` or ``name/D+probs`` for the
    variants in SIGNATURES."""
    module_level = [
        name
        for name, obj in vars(k).items()
        if hasattr(obj, "py_func") and not getattr(obj, "targetoptions", {}).get("device", False)
    ]
    per_head_size = [name for name in SIGNATURES if "/" in name]
    return sorted(module_level + per_head_size)


def kernel(name):
    """The dispatcher behind a name of kernel_names() (``name/D`` or ``name/D+probs``)."""
    base, _, variant = name.partition("/")
    if not variant:
        return getattr(k, base)
    head_size, _, probs = variant.partition("+")
    return getattr(k, base)(int(head_size), with_probs=probs == "probs")


@contextlib.contextmanager
def _capability(cc):
    """Let numba-cuda compile device functions for ``cc`` when no GPU is there to ask."""
    from numba.cuda import dispatcher

    if cuda.is_available():
        yield
        return
    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = saved


def compile_ptx(name, cc=(9, 0)):
    """PTX text of kernel ``name`` for compute capability ``cc``."""
    with _capability(cc):
        ptx, _ = cuda.compile_ptx(kernel(name).py_func, SIGNATURES[name], cc=cc)
    return ptx


def nvvm_available():
    try:
        cuda.compile_ptx(k.add.py_func, SIGNATURES["add"], cc=(8, 0))
    except Exception:  # noqa: BLE001 - no NVVM here
        return False
    return True


_FIELDS = {
    "registers": r"Used (\d+) registers",
    "stack": r"(\d+) bytes stack frame",
    "spill_stores": r"(\d+) bytes spill stores",
    "spill_loads": r"(\d+) bytes spill loads",
    "shared": r"(\d+) bytes smem",
}


def resources(name, cc=(9, 0)):
    """nvJitLink's report for kernel ``name`` on sm_<cc>: {registers, stack, spill_stores,
    spill_loads, shared} (stack, spills and shared memory in bytes)."""
    from cuda.bindings import nvjitlink

    ptx = compile_ptx(name, cc).encode()
    options = [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"]
    handle = nvjitlink.create(len(options), options)
    try:
        nvjitlink.add_data(handle, nvjitlink.InputType.PTX, ptx, len(ptx), name)
        nvjitlink.complete(handle)
        log = bytearray(nvjitlink.get_info_log_size(handle))
        nvjitlink.get_info_log(handle, log)
    finally:
        nvjitlink.destroy(handle)
    text = log.decode(errors="replace")
    report = {}
    for field, pattern in _FIELDS.items():
        found = re.search(pattern, text)
        if found is None:
            raise RuntimeError(f"nvJitLink's report for {name} has no {field!r}:\n{text}")
        report[field] = int(found.group(1))
    return report
