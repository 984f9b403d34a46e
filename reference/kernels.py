"""A backend's single operations: ``linear``, ``layer_norm``, ``gelu`` and ``attention`` with the
signatures of the NumPy functions in reference/ops.py, which they must equal.

The models never call these through a record: they call reference/ops.py directly, and a fast
backend replaces whole stacks (reference/backends/__init__.py). This record is how the conformance
op tier and tests/test_numba_kernels.py reach each backend's operations one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import ops


@dataclass(frozen=True)
class Kernels:
    name: str
    linear: Callable
    layer_norm: Callable
    gelu: Callable
    attention: Callable


NUMPY = Kernels("numpy", ops.linear, ops.layer_norm, ops.gelu, ops.attention)
