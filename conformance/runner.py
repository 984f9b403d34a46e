"""Plan and run checks: golden, property and op tiers, with skips, xfails and worker processes."""

from __future__ import annotations

import fnmatch
import importlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from reference.progress import Progress

from .capabilities import Capabilities, capabilities_of
from .checks import CheckResult, case_check_ids, check_golden
from .golden import iter_cases
from .ops import check_op_case, op_cases
from .properties import property_checks, run_property
from .protocol import Unsupported

ADAPTERS = {
    "reference": "conformance.adapters.reference:implementation",
    "reference-numba": "conformance.adapters.reference:numba_implementation",
    "reference-cuda": "conformance.adapters.reference:cuda_implementation",
    "transformers": "conformance.adapters.transformers_pt:implementation",
    "transformers-bf16": "conformance.adapters.transformers_pt:bf16_implementation",
    "transformers-fp16": "conformance.adapters.transformers_pt:fp16_implementation",
    "transformers-tf": "conformance.adapters.transformers_tf:implementation",
    "outputs": "conformance.adapters.outputs:implementation",
    "onnxruntime": "conformance.adapters.onnx_runtime:implementation",
    "llama-cpp": "conformance.adapters.llama_cpp:implementation",
    "llama-cpp-bf16": "conformance.adapters.llama_cpp:bf16_implementation",
    "ctranslate2": "conformance.adapters.ct2:implementation",
}
TIERS = ("golden", "property", "op")


def load_implementation(spec: str):
    """An adapter name, or module:attribute naming an object with run()
    (conformance/protocol.py)."""
    target = ADAPTERS.get(spec, spec)
    if ":" not in target:
        raise ValueError(
            f"--impl must be an adapter name {sorted(ADAPTERS)} or module:attribute, got {spec!r}"
        )
    module_name, attr = target.split(":", 1)
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load implementation {target!r}: {e}") from None
    if not hasattr(obj, "run"):
        raise ValueError(f"{target!r} has no run() method (see conformance/protocol.py)")
    if hasattr(
        obj, "check_available"
    ):  # optional: say once, before the run, that it cannot run here
        obj.check_available()
    return obj


@dataclass(frozen=True)
class Unit:
    """One schedulable piece of work; ids are the check ids it produces."""

    tier: str
    key: str  # golden/op: case id; property: check id
    ids: tuple


def selected(check_id, patterns) -> bool:
    """-k selection: a check is kept when any pattern matches its id (fnmatch with * ? [, else a
    substring)."""
    return not patterns or any(
        fnmatch.fnmatchcase(check_id, p) if any(c in p for c in "*?[") else p in check_id
        for p in patterns
    )


@dataclass
class Plan:
    impl_spec: str
    family: str = None
    profile: str = None
    tiers: tuple = TIERS
    golden_dir: str = None
    max_examples: int = 20
    caps: Capabilities = None  # None: the implementation's own declaration (run_plan reads it)
    select: tuple = ()  # -k patterns
    tasks: tuple = ()  # --task: only golden cases and properties on models of these tasks

    def units(self):
        units = []
        if "golden" in self.tiers:
            for case in iter_cases(self.golden_dir, family=self.family, profile=self.profile):
                if not self.tasks or case.task in self.tasks:
                    units.append(Unit("golden", case.id, case_check_ids(case)))
        if "op" in self.tiers and not self.tasks:
            for case in op_cases(self.family, self.profile, self.golden_dir):
                units.append(Unit("op", case.id, (case.id,)))
        if "property" in self.tiers:
            caps = self.caps or Capabilities()
            for check_id, _, case in property_checks(
                self.family, self.profile, self.golden_dir, caps
            ):
                if not self.tasks or case.task in self.tasks:
                    units.append(Unit("property", check_id, (check_id,)))
        return [u for u in units if any(selected(i, self.select) for i in u.ids)]


def run_unit(plan: Plan, unit: Unit, impl=None) -> list[CheckResult]:
    impl = impl or load_implementation(plan.impl_spec)
    with np.errstate(all="ignore"):  # NaN losses are legitimate outputs of some cases
        if unit.tier == "golden":
            case = next(c for c in iter_cases(plan.golden_dir, verify=False) if c.id == unit.key)
            return [r for r in check_golden(impl, case, plan.caps) if selected(r.id, plan.select)]
        if unit.tier == "op":
            case = next(
                c for c in iter_cases(plan.golden_dir, verify=False, tier="op") if c.id == unit.key
            )
            refused = plan.caps.refuses(profile=case.profile)
            if refused:
                return [CheckResult(unit.key, "skip", refused)]
            try:
                ok, message, worst = check_op_case(impl, case)
            except Unsupported as e:
                return [CheckResult(unit.key, "skip", str(e))]
            except Exception as e:  # noqa: BLE001
                return [CheckResult(unit.key, "fail", f"raised {type(e).__name__}: {e}")]
            return [CheckResult(unit.key, "pass" if ok else "fail", message, max_abs=worst)]
        _, prop, case = next(
            t
            for t in property_checks(plan.family, plan.profile, plan.golden_dir, plan.caps)
            if t[0] == unit.key
        )
        unmet = plan.caps.refuses(case.task, case.profile) or prop.unmet(plan.caps)
        if unmet:
            return [CheckResult(unit.key, "skip", unmet)]
        try:
            run_property(impl, prop, case, plan.max_examples, plan.caps)
        except Unsupported as e:
            return [CheckResult(unit.key, "skip", f"unsupported: {e}")]
        except Exception as e:  # noqa: BLE001 - hypothesis re-raises the falsifying example's error
            notes = "; ".join(getattr(e, "__notes__", []))
            return [
                CheckResult(
                    unit.key, "fail", f"{prop.statement}: {type(e).__name__}: {e} {notes}".strip()
                )
            ]
        return [CheckResult(unit.key, "pass", f"{prop.statement} ({plan.max_examples} examples)")]


def _worker(args):
    plan, unit = args
    return run_unit(plan, unit)


def run_plan(plan: Plan, skips, xfails, jobs=1, impl=None, units=None) -> list[CheckResult]:
    """Run every unit not skipped; xfail entries turn fail into xfail and pass into xpass. units:
    the plan's units when the caller has them already (plan.units() reads and hashes every golden
    file).
    """
    if plan.caps is None:
        impl = impl or load_implementation(plan.impl_spec)
        plan = replace(plan, caps=capabilities_of(impl))
    todo, results = [], []
    units = plan.units() if units is None else units
    for unit in units:
        reasons = [skips.match(i) for i in unit.ids]
        if all(reasons):
            results.extend(
                CheckResult(i, "skip", f"skips file: {r}")
                for i, r in zip(unit.ids, reasons)
                if selected(i, plan.select)
            )
        else:
            todo.append(unit)
    bar = Progress(len(todo), "checks")
    if jobs > 1 and todo:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            batches = []
            for batch in pool.map(_worker, [(plan, u) for u in todo]):
                batches.append(batch)
                bar.update()
    else:
        impl = impl or load_implementation(plan.impl_spec)
        batches = []
        for u in todo:
            batches.append(run_unit(plan, u, impl))
            bar.update()
    bar.close()
    for batch in batches:
        for r in batch:
            reason = skips.match(r.id)
            if reason:
                r = replace(r, status="skip", message=f"skips file: {reason}")
            elif (reason := xfails.match(r.id)) is not None:
                r = replace(
                    r,
                    status={"fail": "xfail", "pass": "xpass"}.get(r.status, r.status),
                    message=f"{r.message} (xfails file: {reason})",
                )
            results.append(r)
    order = {i: n for n, u in enumerate(units) for i in u.ids}
    return sorted(results, key=lambda r: order.get(r.id, 0))


def default_jobs(value):
    return os.cpu_count() or 1 if value == 0 else value
