"""Low-precision ports are judged against upstream's own bf16 and fp16 runs, with tolerances that
are twice upstream's measured fp32-vs-low-precision spread (conformance/tolerances.py)."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.adapters.reference import ReferenceImplementation
from conformance.capabilities import Capabilities, output_group
from conformance.checks import check_golden
from conformance.compare import compare
from conformance.golden import iter_cases
from conformance.runner import Plan, run_plan
from conformance.selection import Selection
from conformance.tolerances import BY_GROUP, TOLERANCES, tolerance_for
from reference.precision import round_to_bf16, round_to_fp16

LOW = [c for c in iter_cases() if c.meta.get("dtype") in ("bf16", "fp16")]
ROUND = {"bf16": round_to_bf16, "fp16": round_to_fp16}
NONE = Selection.load(None)


def test_the_low_precision_cases_come_from_upstream_in_that_dtype():
    assert {c.meta["dtype"] for c in LOW} == {"bf16", "fp16"} and len(LOW) == 14
    for case in LOW:
        prov = case.meta["provenance"]
        assert (
            prov["library"] == "transformers"
            and prov["generator"] == "tools/golden/make_low_precision.py"
        )
        for (
            name,
            w,
        ) in case.weights.items():  # stored widened, every value on the low-precision grid
            np.testing.assert_array_equal(
                ROUND[case.meta["dtype"]](w), w, err_msg=f"{case.id}: {name}"
            )


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_the_table_covers_twice_upstreams_own_spread_and_no_more_than_four_times(dtype):
    """Margin of upstream's fp32 run against its low-precision run, at the table's tolerance: at
    most
    0.5 everywhere (2x headroom), and at least 0.25 in each group's worst case (the table is not
    looser
    than the measurement warrants)."""
    worst = {}
    for case in (c for c in LOW if c.meta["dtype"] == dtype):
        expected = case.expected
        for name in case.meta["outputs"]:
            c = compare(
                name, expected[f"fp32.{name}"], expected[name], **tolerance_for(case.meta, name)
            )
            group = output_group(name)
            worst[group] = max(worst.get(group, (0.0, "")), (c.margin, f"{case.id} {name}"))
    assert set(worst) == {"attentions", "hidden_states", "final", "loss"}
    for group, (margin, where) in worst.items():
        assert margin <= 0.5, (
            f"{dtype} {group}: upstream's own spread is {margin:.3g}x the tolerance at {where}"
        )
    for group in ("attentions", "hidden_states", "final"):
        assert worst[group][0] >= 0.25, (
            f"{dtype} {group}: tolerance is over 4x the spread ({worst[group]})"
        )
    assert TOLERANCES[dtype] == BY_GROUP[dtype]["hidden_states"]


class LowPrecisionReference(ReferenceImplementation):
    """A port that stores its weights in bf16 or fp16 and rounds every output to that format (the
    arithmetic in between is the fp32 reference): what a bf16-weights CPU port does."""

    def __init__(self, dtype, ignore_mask=False):
        super().__init__()
        self.dtype, self.ignore_mask = dtype, ignore_mask
        self.capabilities = Capabilities(compute_dtype=dtype)

    def run(self, family, task, config, weights, inputs, options):
        rnd = ROUND[self.dtype]
        weights = {k: rnd(v) for k, v in weights.items()}
        if self.ignore_mask:
            inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
        out = super().run(family, task, config, weights, inputs, options)
        return (
            out
            if "tuple" in out
            else {
                k: rnd(v) if np.issubdtype(np.asarray(v).dtype, np.floating) else v
                for k, v in out.items()
            }
        )


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_a_low_precision_port_is_judged_against_upstreams_low_precision_run(dtype):
    port = LowPrecisionReference(dtype)
    plan = Plan("reference", tiers=("golden",), caps=port.capabilities)
    results = {r.id: r for r in run_plan(plan, NONE, NONE, impl=port)}
    judged = [r for r in results.values() if r.status != "skip" and r.expected_error is None]
    assert sorted(r.id for r in judged) == sorted(c.id for c in LOW if c.meta["dtype"] == dtype)
    for r in judged:
        assert r.status == "pass", f"{r.id}: {r.message}"
        worst = max(r.comparisons, key=lambda c: c.margin)
        assert (
            r.margin <= 1 and r.atol == BY_GROUP[dtype][output_group(worst.name)]["atol"]
        )  # the worst's own
    skipped = results["mpnet/pt/base-s1"]
    assert (
        skipped.status == "skip" and f"the implementation computes in {dtype}" in skipped.message
    ), skipped.message
    assert (
        results["mpnet/pt/base-too-long"].status == "pass"
    )  # input rejections do not depend on the dtype


def test_the_fp32_tolerance_would_wrongly_fail_a_correct_bf16_port():
    case = next(c for c in LOW if c.id == "mpnet/pt/base-right-padding-bf16")
    port = LowPrecisionReference("bf16")
    out = port.run(
        case.family,
        case.task,
        case.config,
        case.weights,
        case.inputs,
        {**case.options, "profile": "pt"},
    )
    fp32 = TOLERANCES["fp32"]
    assert not compare("h", out["last_hidden_state"], case.expected["last_hidden_state"], **fp32).ok
    assert check_golden(port, case)[0].status == "pass"


def test_a_planted_mask_bug_fails_a_bf16_port():
    buggy = LowPrecisionReference("bf16", ignore_mask=True)
    for case_id in ("mpnet/pt/base-right-padding-bf16", "mpt/hf/causal-lm-left-padding-bf16"):
        result = check_golden(buggy, next(c for c in LOW if c.id == case_id))[0]
        assert result.status == "fail", case_id
        assert result.diagnosis.startswith("first divergence: attentions.0"), result.diagnosis


def test_an_fp32_implementation_skips_the_low_precision_cases():
    results = check_golden(ReferenceImplementation(), LOW[0])
    assert {r.status for r in results} == {"skip"} and "computes in fp32" in results[0].message
