"""Op tier: single operations checked against upstream's own functions, for implementations that
expose them.

An implementation exposes ops through an ``ops`` mapping (name -> callable):

* ``relative_position_bucket(relative_position [N] int, num_buckets) -> [N] int`` (MPNet,
  max_distance 128)
* ``alibi_bias(n_heads, key_len) -> [H, 1, K]`` (MPT, alibi_bias_max 8)
* ``low_precision_layer_norm(x [N, C], weight [C], bias [C] or None, eps, precision) -> [N, C]``
  with precision None, "bf16" or "fp16", returning float32 values on that grid
* ``logits_warper(scores [B, V] float32, temperature, top_k, top_p, typical_p, epsilon_cutoff,
  eta_cutoff[, min_tokens_to_keep]) -> [B, V]``: generate()'s sampling filters in transformers'
  order, removed tokens at -inf (judged exactly: the same tokens removed; the rest within the
  case's tolerance). min_tokens_to_keep (1 where absent) is beam sampling's: each filter keeps
  at least that many tokens (the case mpt/hf/op-logits-warpers-beams passes it)

A missing op is a skip, never a pass.
"""

from __future__ import annotations

import numpy as np

from .compare import compare
from .golden import iter_cases
from .protocol import Unsupported

ULP_BITS = {"bf16": 7, "fp16": 10}


def _ulp_excess(got, expected, precision):
    """How many low-precision ulps apart, beyond a 1e-6 float32-noise allowance (see
    tests/test_precision.py)."""
    finer = np.minimum(np.abs(got), np.abs(expected))
    spacing = 2.0 ** (np.floor(np.log2(np.maximum(finer, 2.0**-126))) - ULP_BITS[precision])
    if precision == "fp16":
        spacing = np.maximum(spacing, 2.0**-24)
    return np.maximum(np.abs(got.astype(np.float64) - expected) - 1e-6, 0) / spacing


def _op(impl, name):
    ops = getattr(impl, "ops", None) or {}
    if name not in ops:
        raise Unsupported(f"the implementation exposes no {name!r} op")
    return ops[name]


def check_op_case(impl, case):
    """Returns (ok, message, max_abs)."""
    op = _op(impl, case.meta["op"])
    inputs, worst = case.inputs, 0.0
    for name, expected in case.expected.items():
        if case.meta["op"] == "relative_position_bucket":
            got = np.asarray(op(inputs["relative_position"], int(name.split(".")[1])))
            if not np.array_equal(got, expected):
                bad = np.flatnonzero(got != expected)[0]
                return (
                    False,
                    (
                        f"{name}: distance {inputs['relative_position'][bad]} -> {got[bad]},"
                        f" upstream {expected[bad]}"
                    ),
                    1.0,
                )
        elif case.meta["op"] == "alibi_bias":
            got = np.asarray(op(int(name.split(".")[1]), int(inputs["key_len"])))
            c = compare(name, got, expected, 0.0, 1e-6)
            if not c.ok:
                return False, c.describe(), c.max_abs
            worst = max(worst, c.max_abs)
        elif case.meta["op"] == "logits_warper":
            settings = case.meta["settings"][int(name.split(".")[1])]
            got = np.asarray(op(inputs["scores"], **settings), np.float64)
            removed, upstream = np.isneginf(got), np.isneginf(expected)
            if not np.array_equal(removed, upstream):
                row, col = np.argwhere(removed != upstream)[0]
                return (
                    False,
                    (
                        f"{name} ({settings}): token {col} of row {row} is"
                        f" {'removed' if removed[row, col] else 'kept'}, upstream"
                        f" {'removed' if upstream[row, col] else 'kept'} it"
                    ),
                    float("inf"),
                )
            tol = case.tolerance["fp32"]
            c = compare(name, got[~removed], expected[~upstream], tol["atol"], tol["rtol"])
            if not c.ok:
                return False, c.describe(), c.max_abs
            worst = max(worst, c.max_abs)
        elif case.meta["op"] == "low_precision_layer_norm":
            precision = name.split(".")[1]
            bias = None if name.startswith("y_no_bias") else inputs["bias"]
            got = np.asarray(
                op(
                    inputs["x"],
                    inputs["weight"],
                    bias,
                    case.meta["eps"],
                    None if precision == "fp32" else precision,
                ),
                np.float32,
            )
            if precision == "fp32":
                c = compare(name, got, expected, 2e-6, 1e-5)
                if not c.ok:
                    return False, c.describe(), c.max_abs
            else:
                ulps = _ulp_excess(got, expected, precision)
                exact = float(np.mean(got == expected))
                if ulps.max() > 1 or exact < 0.99:
                    return (
                        False,
                        f"{name}: {ulps.max():.2f} ulp apart at worst, {exact:.2%} bit-identical",
                        0.0,
                    )
            worst = max(worst, float(np.abs(got.astype(np.float64) - expected).max()))
    return True, f"{len(case.expected)} outputs", worst


def op_cases(family=None, profile=None, golden_dir=None):
    return list(iter_cases(golden_dir, family=family, profile=profile, tier="op"))
