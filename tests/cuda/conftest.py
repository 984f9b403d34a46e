"""CUDA tests need a GPU or the simulator, enabled for the whole process before Numba is imported:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda
"""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    try:
        from numba import cuda

        usable = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or cuda.is_available()
    except Exception:  # noqa: BLE001 - no numba-cuda, or no driver
        usable = False
    if not usable:
        skip = pytest.mark.skip(reason="no CUDA GPU; run with NUMBA_ENABLE_CUDASIM=1 for the simulator")
        for item in items:
            if "tests/cuda" in str(item.fspath):
                item.add_marker(skip)
