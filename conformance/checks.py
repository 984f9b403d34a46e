"""Golden checks: run one case through an implementation and judge every output it provides.

A golden case yields two checks: ``<case id>`` (the named outputs of a return_dict=True call) and
``<case id>::tuple`` (the order of the return_dict=False tuple). What is requested and compared
follows the implementation's declaration (conformance/capabilities.py): only the provided outputs
are asked for, every one of them is compared, and the result lists what was not checked.

Cases where upstream raised pass when the implementation rejects the input too: with a ValueError,
TypeError, IndexError or KeyError (Python's bad-argument errors, or an error.json naming one), or
with upstream's own error class; for upstream's generic RuntimeError the message must also match
upstream's message pattern (its text with every number a wildcard), so a port's own failure ("export
failed") is not taken for a rejection of the input.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field

from .capabilities import LABEL_INPUTS, Capabilities, capabilities_of, count_groups, output_group
from .compare import Comparison, compare
from .golden import group_members, tuple_leaves
from .protocol import Unsupported
from .suspects import explain
from .tolerances import tolerance_for

INPUT_ERRORS = ("ValueError", "TypeError", "IndexError", "KeyError", "LookupError")
GENERIC_ERRORS = ("Exception", "RuntimeError")


@dataclass
class CheckResult:
    id: str
    status: str  # "pass", "fail", "skip" (and "xfail", "xpass" after the xfails file)
    message: str = ""
    max_abs: float | None = None
    max_rel: float | None = None
    margin: float | None = None  # worst |err| / (atol + rtol |want|): at most 1 passes
    atol: float | None = None
    rtol: float | None = None
    diagnosis: str | None = None
    comparisons: list = field(default_factory=list)
    not_checked: list = field(
        default_factory=list
    )  # output names the implementation does not provide
    expected_error: dict | None = None  # {"type", "message"} that upstream raised
    raised: dict | None = None  # {"type", "message"} that the implementation raised

    @classmethod
    def of(cls, check_id, comparisons, summary="", **extra):
        """A pass/fail result summarising comparisons: the worst numbers (the tolerance shown is the
        worst comparison's) and the first divergence."""
        failed = [c for c in comparisons if not c.ok]
        rels = [c.max_rel for c in comparisons if c.max_rel is not None]
        worst = max(comparisons, key=lambda c: c.margin, default=Comparison("", True))
        return cls(
            check_id,
            "fail" if failed else "pass",
            message="; ".join(c.describe() for c in failed[:3]) if failed else summary,
            max_abs=max((c.max_abs for c in comparisons), default=0.0),
            max_rel=max(rels, default=None),
            margin=worst.margin,
            atol=worst.atol,
            rtol=worst.rtol,
            diagnosis=diagnose(comparisons),
            comparisons=comparisons,
            **extra,
        )


def forward_order(name):
    """Outputs in forward order: hidden_states.0, attentions.0, hidden_states.1, ..., then the
    heads."""
    m = re.fullmatch(r"(hidden_states|attentions)\.(\d+)", name)
    if m:
        return (0, int(m.group(2)), 0 if m.group(1) == "hidden_states" else 1)
    return (1, 0, name)


def where(name) -> str:
    """What an output is, in words: '(the output of layer 2)'."""
    m = re.fullmatch(r"(hidden_states|attentions)\.(\d+)", name)
    if not m:
        return ""
    index = int(m.group(2))
    if m.group(1) == "hidden_states":
        return " (the embedding output)" if index == 0 else f" (the output of layer {index})"
    return f" (the attention probabilities of layer {index + 1})"


def diagnose(comparisons: list[Comparison]) -> str | None:
    """Name the first compared output (in forward order) whose error exceeds the tolerance."""
    failing = sorted((c for c in comparisons if not c.ok), key=lambda c: forward_order(c.name))
    if not failing:
        return None
    return f"first divergence: {failing[0].describe()}{where(failing[0].name)}"


@dataclass
class Request:
    """What to send an implementation for one golden case, and what to compare."""

    inputs: dict
    options: dict
    compared: list
    not_checked: list


def request_for(case, caps: Capabilities):
    """The Request for a golden case under a declaration, or the reason (str) it cannot be
    checked."""
    refused = caps.refuses(case.task, case.profile)
    if refused:
        return refused
    inputs = case.inputs
    options = {**case.options, "profile": case.profile, "case_id": case.id}
    if not case.expect_error:
        dtype = case.meta.get("dtype", "fp32")
        if dtype != caps.compute_dtype:
            return (
                f"upstream computed this case in {dtype}; the implementation computes in"
                f" {caps.compute_dtype}, so its values are judged by the {caps.compute_dtype} cases"
            )
        if "loss" not in caps.outputs and "labels" not in caps.inputs:  # labels only feed the loss
            inputs = {k: v for k, v in inputs.items() if k not in LABEL_INPUTS}
    missing = caps.missing_inputs(inputs, options)
    if missing:
        return f"needs input(s) the implementation does not declare: {', '.join(missing)}"
    if case.expect_error:
        return Request(inputs, options, [], [])
    names = case.meta["outputs"]
    compared = [n for n in names if output_group(n) in caps.outputs]
    if not compared:
        return f"none of its outputs is provided (it has {count_groups(names)})"
    for flag, group in (
        ("output_hidden_states", "hidden_states"),
        ("output_attentions", "attentions"),
    ):
        if flag in options:
            options[flag] = bool(options[flag]) and group in caps.outputs
    if "use_cache" in options and "presents" not in caps.outputs:
        del options["use_cache"]
    return Request(inputs, options, compared, [n for n in names if n not in compared])


def case_check_ids(case) -> tuple:
    """The check ids a golden case yields: the case, and its tuple order when upstream has one."""
    if case.expect_error or "tuple_layout" not in case.meta:
        return (case.id,)
    return (case.id, case.id + "::tuple")


def _run(impl, case, options, inputs):
    return impl.run(case.family, case.task, case.config, case.weights, inputs, options)


def check_golden(impl, case, caps: Capabilities = None) -> list[CheckResult]:
    caps = caps or capabilities_of(impl)
    ids = case_check_ids(case)
    request = request_for(case, caps)
    if isinstance(request, str):
        return [CheckResult(i, "skip", request) for i in ids]
    if case.expect_error:
        return [_check_expected_error(impl, case, request)]
    try:
        actual = _run(impl, case, request.options, request.inputs)
    except Unsupported as e:
        return [CheckResult(i, "skip", f"unsupported: {e}") for i in ids]
    except Exception as e:  # noqa: BLE001 - any failure of the implementation is a result
        raised = _error(e)
        return [
            CheckResult(
                case.id,
                "fail",
                f"raised {raised['type']}: {e}",
                diagnosis=_traceback_end(e),
                raised=raised,
            )
        ] + [CheckResult(i, "skip", "the dict call failed") for i in ids[1:]]
    expected = case.expected
    comparisons = [
        compare(n, actual.get(n), expected[n], **tolerance_for(case.meta, n))
        for n in request.compared
    ]
    summary = f"{len(comparisons)} outputs" + (
        f"; not checked (not provided): {count_groups(request.not_checked)}"
        if request.not_checked
        else ""
    )
    result = CheckResult.of(case.id, comparisons, summary=summary, not_checked=request.not_checked)
    if result.status == "fail":  # which known porting variant, if any, the outputs are
        known = explain(case, request, actual, result.margin)
        if known:
            result.diagnosis = f"{result.diagnosis}; {known}" if result.diagnosis else known
    if len(ids) == 1:  # upstream has no tuple form for this case (generation, llm-foundry)
        return [result]
    if not caps.tuple:
        return [
            result,
            CheckResult(ids[1], "skip", "the implementation declares no return_dict=False tuples"),
        ]
    if request.not_checked:
        return [
            result,
            CheckResult(
                ids[1],
                "skip",
                "upstream's tuple holds outputs that are not provided: "
                + count_groups(request.not_checked),
            ),
        ]
    return [result, _check_tuple(impl, case, request, expected)]


def _error(e) -> dict:
    return {"type": getattr(e, "error_type", None) or type(e).__name__, "message": str(e)[:300]}


def message_pattern(message: str) -> str:
    """Upstream's message as a regular expression in which every number matches any number."""
    return "".join(
        r"\d+" if part.isdigit() else re.escape(part) for part in re.split(r"(\d+)", message)
    )


def rejects_input(raised: dict, error_classes, upstream: dict) -> bool:
    """Whether an error is the implementation rejecting the input (see the module docstring)."""
    if set(error_classes) & set(INPUT_ERRORS):
        return True
    if raised["type"] != upstream["type"]:
        return False
    return upstream["type"] not in GENERIC_ERRORS or bool(
        re.match(message_pattern(upstream["message"]), raised["message"])
    )


def _check_expected_error(impl, case, request) -> CheckResult:
    upstream = case.expect_error
    said = f"upstream raised {upstream['type']}: {upstream['message']}"
    try:
        _run(impl, case, request.options, request.inputs)
    except Unsupported as e:
        return CheckResult(case.id, "skip", f"unsupported: {e}", expected_error=upstream)
    except Exception as e:  # noqa: BLE001
        raised = _error(e)
        classes = [raised["type"]] + [c.__name__ for c in type(e).__mro__]
        ok = rejects_input(raised, classes, upstream)
        verdict = (
            ""
            if ok
            else (
                " - not a rejection of the input: raise ValueError or TypeError naming the "
                "problem (or upstream's own error)"
            )
        )
        return CheckResult(
            case.id,
            "pass" if ok else "fail",
            f"raised {raised['type']}: {raised['message'][:120]}{verdict} ({said})",
            expected_error=upstream,
            raised=raised,
        )
    return CheckResult(case.id, "fail", f"returned outputs, but {said}", expected_error=upstream)


def _check_tuple(impl, case, request, expected) -> CheckResult:
    cid = case.id + "::tuple"
    layout = case.meta["tuple_layout"]
    try:
        got = _run(impl, case, {**request.options, "return_tuple": True}, request.inputs)["tuple"]
    except Unsupported as e:
        return CheckResult(cid, "skip", f"unsupported: {e}")
    except Exception as e:  # noqa: BLE001
        return CheckResult(cid, "fail", f"raised {type(e).__name__}: {e}", raised=_error(e))
    if len(got) != len(layout):
        return CheckResult(
            cid, "fail", f"tuple has {len(got)} entries, upstream has {len(layout)}: {layout}"
        )
    comparisons = []
    for i, (entry, value) in enumerate(zip(layout, got)):
        if entry == "none":
            if value is not None:
                return CheckResult(
                    cid, "fail", f"entry {i} should be None (upstream layout {layout})"
                )
            continue
        parts = group_members(expected, entry)
        items = tuple_leaves(value)
        if value is None or len(items) != len(parts) or not parts:
            return CheckResult(
                cid, "fail", f"entry {i} should be {entry} (upstream layout {layout})"
            )
        comparisons += [
            compare(f"tuple[{i}]={name}", item, expected[name], **tolerance_for(case.meta, name))
            for name, item in zip(parts, items)
        ]
    result = CheckResult.of(cid, comparisons, summary=f"{len(layout)} entries in upstream order")
    if result.status == "fail":
        result.message = f"{result.message} (layout {layout})"
    return result


def _traceback_end(e) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    return f"at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
