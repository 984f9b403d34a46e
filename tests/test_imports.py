"""Imports go one way: backends import the reference, never the reverse, and no import cycle
exists."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = sorted(p for p in (ROOT / "reference").glob("*.py"))
# Modules that load without a GPU; cuda_backend and cuda_kernels also need numba-cuda.
MODULES = [
    "reference.mpnet",
    "reference.mpt",
    "reference.mpnet_model",
    "reference.mpt_model",
    "reference.kernels",
    "reference.loading",
    "reference.generation",
    "reference.backends",
    "reference.backends.numba_cpu",
    "reference.backends.numba_stacks",
    "reference.backends.cuda_backend",
]


def imported_modules(path: Path) -> set:
    """Every module a file imports, anywhere in it (inside functions too), as written."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
            names.update(
                "." * node.level + (node.module + "." if node.module else "") + a.name
                for a in node.names
            )
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", [p for p in REFERENCE if p.name != "cli.py"], ids=lambda p: p.name)
def test_no_reference_model_module_imports_a_backend(path):
    """reference/loading.py hands the model its backend from the registry; the command line may tune
    the numba backend; every other reference module imports nothing from reference/backends/."""
    allowed = {"loading.py": {".backends", ".backends.BACKENDS", ".backends.get_backend"}}.get(
        path.name, set()
    )
    backends = {
        n
        for n in imported_modules(path)
        if "backends" in n or n.split(".")[0] in ("numba", "numba_cuda")
    }
    assert backends <= allowed, f"{path.name} imports {sorted(backends - allowed)}"


@pytest.mark.parametrize("first", MODULES)
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_modules_import_in_any_order_in_a_fresh_interpreter(first, order):
    """Each module imported first, in a fresh interpreter, then all the others in one order or the
    other: a cycle would fail (a partially initialised module) for some first module and order."""
    pytest.importorskip("numba")
    if "cuda" in first:
        pytest.importorskip("numba.cuda")
    rest = [m for m in (MODULES if order == "forward" else MODULES[::-1]) if m != first]
    code = "; ".join(f"import {m}" for m in [first] + rest)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, f"{code}:\n{out.stderr[-2000:]}"


@pytest.mark.parametrize("name", ["mpnet.py", "mpt.py"])
def test_the_math_modules_import_only_numpy_and_the_primitives(name):
    """mpnet.py and mpt.py are the forward pass alone: NumPy, the shared primitives (ops.py) and,
    for MPT, inputs.py (its mask checks) and precision.py (the bf16 KV cache's rounding); no calling
    convention, no output classes, no backend."""
    allowed = {"__future__", "__future__.annotations", "math", "numpy", ".ops", ".inputs"}
    allowed |= {".precision"} if name == "mpt.py" else set()
    modules = {n for n in imported_modules(ROOT / "reference" / name)}
    stray = {n for n in modules if not any(n == a or n.startswith(a + ".") for a in allowed)}
    assert not stray, f"{name} imports {sorted(stray)}"
