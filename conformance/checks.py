"""Golden checks: run one case through an implementation and judge every output.

A golden case yields two checks: ``<case id>`` (the named outputs of a return_dict=True call) and
``<case id>::tuple`` (the order of the return_dict=False tuple). Cases where upstream raised pass
when the implementation raises too.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field
from typing import Optional

from .compare import Comparison, compare
from .golden import group_members, tuple_leaves
from .protocol import Unsupported
from .tolerances import tolerance_for


@dataclass
class CheckResult:
    id: str
    status: str  # "pass", "fail", "skip"
    message: str = ""
    max_abs: float = 0.0
    max_rel: float = 0.0
    atol: Optional[float] = None
    rtol: Optional[float] = None
    diagnosis: Optional[str] = None
    comparisons: list = field(default_factory=list)


def _order_key(name):
    """Outputs in forward order: hidden_states.0, attentions.0, hidden_states.1, ..., then the heads."""
    m = re.fullmatch(r"(hidden_states|attentions)\.(\d+)", name)
    if m:
        return (0, int(m.group(2)), 0 if m.group(1) == "hidden_states" else 1)
    return (1, 0, name)


def diagnose(comparisons: list[Comparison]) -> Optional[str]:
    """Name the first output (in forward order) whose error exceeds the tolerance."""
    failing = sorted((c for c in comparisons if not c.ok), key=lambda c: _order_key(c.name))
    if not failing:
        return None
    first = failing[0]
    m = re.fullmatch(r"(hidden_states|attentions)\.(\d+)", first.name)
    where = ""
    if m:
        index = int(m.group(2))
        if m.group(1) == "hidden_states":
            where = " (the embedding output)" if index == 0 else f" (the output of layer {index})"
        else:
            where = f" (the attention probabilities of layer {index + 1})"
    return f"first divergence: {first.describe()}{where}"


def _run(impl, case, options, inputs):
    return impl.run(case.family, case.task, case.config, case.weights, inputs, options)


def case_check_ids(case) -> tuple:
    """The check ids a golden case yields: the case, and its tuple order when upstream has one."""
    if case.expect_error or "tuple_layout" not in case.meta:
        return (case.id,)
    return (case.id, case.id + "::tuple")


def check_golden(impl, case) -> list[CheckResult]:
    tol = tolerance_for(case.meta)
    options = {**case.options, "profile": case.profile, "case_id": case.id}
    inputs = case.inputs
    if case.expect_error:
        return [_check_expected_error(impl, case, options, inputs)]
    try:
        actual = _run(impl, case, options, inputs)
    except Unsupported as e:
        return [CheckResult(i, "skip", f"unsupported: {e}") for i in case_check_ids(case)]
    except Exception as e:  # noqa: BLE001 - any failure of the implementation is a result
        return [CheckResult(case.id, "fail", f"raised {type(e).__name__}: {e}", diagnosis=_where(e))] + [
            CheckResult(i, "skip", "the dict call failed") for i in case_check_ids(case)[1:]]
    expected = case.expected
    names = [n for n in case.meta["outputs"]]
    comparisons = [compare(n, actual.get(n), expected[n], tol["atol"], tol["rtol"]) for n in names]
    failed = [c for c in comparisons if not c.ok]
    result = CheckResult(
        case.id, "fail" if failed else "pass",
        message="; ".join(c.describe() for c in failed[:3]) if failed else f"{len(comparisons)} outputs",
        max_abs=max((c.max_abs for c in comparisons), default=0.0),
        max_rel=max((c.max_rel for c in comparisons), default=0.0),
        atol=tol["atol"], rtol=tol["rtol"], diagnosis=diagnose(comparisons), comparisons=comparisons,
    )
    if "tuple_layout" not in case.meta:  # upstream has no tuple form for this case (generation, llm-foundry)
        return [result]
    return [result, _check_tuple(impl, case, options, inputs, expected, tol)]


def _check_expected_error(impl, case, options, inputs) -> CheckResult:
    upstream = f"upstream raised {case.expect_error['type']}"
    try:
        _run(impl, case, options, inputs)
    except Unsupported as e:
        return CheckResult(case.id, "skip", f"unsupported: {e}")
    except Exception as e:  # noqa: BLE001
        return CheckResult(case.id, "pass", f"raised {type(e).__name__}: {str(e)[:120]} ({upstream})")
    return CheckResult(case.id, "fail", f"returned outputs, but {upstream}: {case.expect_error['message']}")


def _check_tuple(impl, case, options, inputs, expected, tol) -> CheckResult:
    cid = case.id + "::tuple"
    layout = case.meta.get("tuple_layout")
    if layout is None:
        return CheckResult(cid, "skip", "case records no tuple layout")
    try:
        got = _run(impl, case, {**options, "return_tuple": True}, inputs)["tuple"]
    except Unsupported as e:
        return CheckResult(cid, "skip", f"unsupported: {e}")
    except Exception as e:  # noqa: BLE001
        return CheckResult(cid, "fail", f"raised {type(e).__name__}: {e}")
    if len(got) != len(layout):
        return CheckResult(cid, "fail", f"tuple has {len(got)} entries, upstream has {len(layout)}: {layout}")
    worst = Comparison(cid, True)
    for i, (entry, value) in enumerate(zip(layout, got)):
        if entry == "none":
            if value is not None:
                return CheckResult(cid, "fail", f"entry {i} should be None (upstream layout {layout})")
            continue
        parts = group_members(expected, entry)
        items = tuple_leaves(value)
        if value is None or len(items) != len(parts) or not parts:
            return CheckResult(cid, "fail", f"entry {i} should be {entry} (upstream layout {layout})")
        for name, item in zip(parts, items):
            c = compare(f"tuple[{i}]={name}", item, expected[name], tol["atol"], tol["rtol"])
            if not c.ok:
                return CheckResult(cid, "fail", f"entry {i} should be {entry}: {c.describe()} (layout {layout})")
            worst = c if c.max_abs >= worst.max_abs else worst
    return CheckResult(cid, "pass", f"{len(layout)} entries in upstream order", worst.max_abs, worst.max_rel,
                       tol["atol"], tol["rtol"])


def _where(e) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    return f"at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
