"""Array comparison with the numbers a porter needs: max abs and rel error and where the worst is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Comparison:
    name: str
    ok: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst_index: Optional[tuple] = None
    problem: Optional[str] = None  # set when shapes differ, an output is missing, or NaNs disagree

    def describe(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        return (f"{self.name}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"
                + (f" at {self.worst_index}" if self.worst_index is not None else ""))


def compare(name, actual, expected, atol, rtol) -> Comparison:
    """Elementwise |a - e| <= atol + rtol |e|; NaN must meet NaN, +-inf must meet the same inf."""
    if actual is None:
        return Comparison(name, False, problem="missing from the implementation's outputs")
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return Comparison(name, False, problem=f"shape {actual.shape}, expected {expected.shape}")
    if actual.size == 0:
        return Comparison(name, True)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    if (nan_a != nan_e).any():
        idx = tuple(int(i) for i in np.argwhere(nan_a != nan_e)[0])
        return Comparison(name, False, np.inf, np.inf, idx,
                          problem=f"NaN mismatch at {idx}: got {actual[idx]}, expected {expected[idx]}")
    finite = ~nan_e
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(finite, np.abs(actual - expected), 0.0)
        diff = np.where(np.isnan(diff), 0.0, diff)  # inf - inf of the same sign
        rel = diff / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
        excess = diff - (atol + rtol * np.abs(np.where(finite, expected, 0.0)))
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    ok = bool((excess <= 0).all())
    worst_rel = float(np.max(np.where(diff > 0, rel, 0.0)))
    return Comparison(name, ok, float(diff.max()), worst_rel, tuple(int(i) for i in worst))
