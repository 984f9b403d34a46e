"""Array comparison with the numbers a porter needs: max abs and rel error, margin and where the
worst is.

An element passes when |actual - expected| <= atol + rtol * |expected|. The margin is the largest
|actual - expected| / (atol + rtol * |expected|) over the array: at most 1 passes, so a passing row
never looks failing even when its relative error is large next to rtol (where |expected| is small,
atol carries the allowance). The relative error is reported only over elements whose expected value
is at least atol / rtol, where the relative term is the larger allowance; elsewhere a relative error
says nothing (|expected| ~ 0 gives 1e+307), so it is None when no element qualifies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Comparison:
    name: str
    ok: bool
    max_abs: float = 0.0
    max_rel: float | None = None
    margin: float = 0.0
    worst_index: tuple | None = None
    problem: str | None = None  # set when shapes differ, an output is missing, or NaNs disagree
    atol: float | None = None
    rtol: float | None = None

    def describe(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        rel = f", max rel {self.max_rel:.3g}" if self.max_rel is not None else ""
        return f"{self.name}: max abs {self.max_abs:.3g}{rel}, {self.margin:.3g}x the tolerance" + (
            f" at {self.worst_index}" if self.worst_index is not None else ""
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["worst_index"] = None if self.worst_index is None else list(self.worst_index)
        return out


def compare(name, actual, expected, atol, rtol) -> Comparison:
    """Elementwise |a - e| <= atol + rtol |e|; NaN must meet NaN, +-inf must meet the same inf."""
    tol = {"atol": atol, "rtol": rtol}
    if actual is None:
        return Comparison(name, False, problem="missing from the implementation's outputs", **tol)
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return Comparison(
            name, False, problem=f"shape {actual.shape}, expected {expected.shape}", **tol
        )
    if actual.size == 0:
        return Comparison(name, True, **tol)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    if (nan_a != nan_e).any():
        idx = tuple(int(i) for i in np.argwhere(nan_a != nan_e)[0])
        return Comparison(
            name,
            False,
            np.inf,
            None,
            np.inf,
            idx,
            problem=f"NaN mismatch at {idx}: got {actual[idx]}, expected {expected[idx]}",
            **tol,
        )
    finite = ~nan_e
    want = np.abs(np.where(finite, expected, 0.0))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.where(finite, np.abs(actual - expected), 0.0)
        diff = np.where(np.isnan(diff), 0.0, diff)  # inf - inf of the same sign
        allowed = atol + rtol * want
        ratio = np.where(
            diff > allowed,
            np.where(allowed > 0, diff / allowed, np.inf),
            diff / np.maximum(allowed, 1e-300),
        )
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    ok = bool((diff <= allowed).all())
    meaningful = (
        (want >= atol / rtol) & (want > 0) & np.isfinite(want)
        if rtol > 0
        else np.zeros_like(want, bool)
    )
    max_rel = float(np.max(diff[meaningful] / want[meaningful])) if meaningful.any() else None
    return Comparison(
        name,
        ok,
        float(diff.max()),
        max_rel,
        float(ratio[worst]),
        tuple(int(i) for i in worst),
        **tol,
    )
