"""Fast backends and their registry. Only this subpackage imports Numba; the reference modules never do.

Imports go one way: a backend imports the reference (reference/ops.py for the twins it must equal,
reference/kernels.py for the Kernels record, the public functions of reference/mpt.py for its decode
session), and no reference module imports a backend. Loading (reference/loading.py) asks this
registry once, by name, and hands the model the kernel set it gets back.
"""

from __future__ import annotations

from dataclasses import replace

from ..kernels import NUMPY, Kernels

BACKENDS = ("numpy", "numba", "cuda")


def get_kernels(backend) -> Kernels:
    """The kernel set of a backend name (a Kernels object passes through); a clear ValueError when its
    optional dependency or its device is missing."""
    if isinstance(backend, Kernels):
        return backend
    if backend == "numpy":
        return NUMPY
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: {list(BACKENDS)}")
    if backend == "cuda":
        try:
            from . import cuda_ops
        except ImportError as e:
            raise ValueError(f"backend='cuda' needs numba-cuda: pip install 'mpnet-mpt-reference[cuda]' ({e})") from None
        cuda_ops.require_cuda()
    return _load(backend)


def _load(backend) -> Kernels:
    """The backend's kernel set with its decode session (imported here, so nothing else need be)."""
    if backend == "numba":
        try:
            from . import numba_decode
            from .numba_cpu import NUMBA
        except ImportError as e:
            raise ValueError(f"backend='numba' needs Numba: pip install 'mpnet-mpt-reference[numba]' ({e})") from None
        return replace(NUMBA, decode_session=numba_decode.open_session)
    from .cuda_backend import CUDA, open_session

    return replace(CUDA, decode_session=open_session)
