"""The JSON report: its schema (JSON Schema, draft 2020-12 subset) and a dependency-free validator.

Top level: suite_version, created (ISO 8601 UTC), implementation {name, version}, capabilities (the
declaration the run followed: conformance/capabilities.py), profile, family, tiers, platform
{python, system, machine, processor} (the checker's machine), target {kind: cpu|gpu, device} (where
the implementation ran, as it declares), summary (counts per status), coverage {executed, per_tier,
outputs_compared, errors_checked, outputs_not_checked, skip_reasons} and checks, each {id, tier,
status, message, max_abs, max_rel, margin, atol, rtol, diagnosis, not_checked, expected_error,
raised, comparisons}; a comparison is {name, ok, max_abs, max_rel, margin, worst_index, problem,
atol, rtol}. margin is the worst |err| / (atol + rtol |want|) (at most 1 passes); max_rel is null
where no expected value is large enough for a relative error to mean anything
(conformance/compare.py). Statuses: pass, fail, skip, xfail (failed as the xfails file expected),
xpass (passed although listed as expected to fail). Floats may be NaN or Infinity (JSON extensions
Python writes).
"""

from __future__ import annotations

import datetime
import platform

STATUSES = ["pass", "fail", "skip", "xfail", "xpass"]
NUMBER = {"type": ["number", "null"]}
STRING = {"type": ["string", "null"]}
ERROR = {
    "type": ["object", "null"],
    "required": ["type", "message"],
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
}
COMPARISON = {
    "type": "object",
    "required": ["name", "ok", "max_abs", "max_rel", "margin", "worst_index", "problem"],
    "properties": {
        "name": {"type": "string"},
        "ok": {"type": "boolean"},
        "max_abs": NUMBER,
        "max_rel": NUMBER,
        "margin": NUMBER,
        "worst_index": {"type": ["array", "null"]},
        "problem": STRING,
        "atol": NUMBER,
        "rtol": NUMBER,
    },
}
COUNTS = {"type": "object"}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "conformance report",
    "type": "object",
    "required": [
        "suite_version",
        "created",
        "implementation",
        "capabilities",
        "profile",
        "family",
        "tiers",
        "platform",
        "target",
        "summary",
        "coverage",
        "checks",
    ],
    "properties": {
        "suite_version": {"type": "string"},
        "created": {"type": "string"},
        "implementation": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": STRING},
        },
        "capabilities": {
            "type": "object",
            "required": ["outputs", "tasks", "profiles", "inputs", "compute_dtype", "tuple"],
        },
        "profile": STRING,
        "family": STRING,
        "tiers": {
            "type": "array",
            "items": {"type": "string", "enum": ["golden", "property", "op"]},
        },
        "platform": {
            "type": "object",
            "required": ["python", "system", "machine"],
            "properties": {
                "python": {"type": "string"},
                "system": {"type": "string"},
                "machine": {"type": "string"},
                "processor": STRING,
            },
        },
        "target": {
            "type": "object",
            "required": ["kind", "device"],
            "properties": {
                "kind": {"type": "string", "enum": ["cpu", "gpu"]},
                "device": {"type": "string"},
            },
        },
        "summary": {
            "type": "object",
            "required": STATUSES,
            "properties": {s: {"type": "integer"} for s in STATUSES},
        },
        "coverage": {
            "type": "object",
            "required": [
                "executed",
                "per_tier",
                "outputs_compared",
                "errors_checked",
                "outputs_not_checked",
                "skip_reasons",
            ],
            "properties": {
                "executed": {"type": "integer"},
                "per_tier": COUNTS,
                "outputs_compared": {"type": "integer"},
                "errors_checked": {"type": "integer"},
                "outputs_not_checked": COUNTS,
                "skip_reasons": COUNTS,
            },
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "tier",
                    "status",
                    "message",
                    "max_abs",
                    "max_rel",
                    "margin",
                    "atol",
                    "rtol",
                    "diagnosis",
                    "not_checked",
                    "expected_error",
                    "raised",
                    "comparisons",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "tier": {"type": "string", "enum": ["golden", "property", "op"]},
                    "status": {"type": "string", "enum": STATUSES},
                    "message": {"type": "string"},
                    "max_abs": NUMBER,
                    "max_rel": NUMBER,
                    "margin": NUMBER,
                    "atol": NUMBER,
                    "rtol": NUMBER,
                    "diagnosis": STRING,
                    "not_checked": {"type": "array", "items": {"type": "string"}},
                    "expected_error": ERROR,
                    "raised": ERROR,
                    "comparisons": {"type": "array", "items": COMPARISON},
                },
            },
        },
    },
}

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "null": type(None),
    "boolean": bool,
}


def validate(value, schema=SCHEMA, path="report"):
    """Raise ValueError at the first place value breaks schema (type, required, enum, items,
    properties)."""
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        ok = any(
            isinstance(value, _TYPES[t])
            and not (t in ("integer", "number") and isinstance(value, bool))
            for t in names
        )
        if not ok:
            raise ValueError(f"{path}: expected {' or '.join(names)}, got {type(value).__name__}")
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise ValueError(f"{path}: missing {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                validate(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{path}[{i}]")


def tier_of(check_id):
    return (
        "property"
        if check_id.startswith("property/")
        else ("op" if "/op-" in check_id else "golden")
    )


def build(impl, impl_spec, args, results, counts, suite_version, caps, coverage):
    """The report of one run; the implementation's declared name, version and target win over
    defaults."""
    target = (
        caps.target
        or getattr(impl, "target", None)
        or {"kind": "cpu", "device": platform.processor() or platform.machine()}
    )
    return {
        "suite_version": suite_version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "implementation": {
            "name": caps.name or getattr(impl, "name", impl_spec),
            "version": caps.version or getattr(impl, "version", None),
        },
        "capabilities": caps.to_dict(),
        "profile": args.profile,
        "family": args.family,
        "tiers": list(args.tiers),
        "platform": {
            "python": platform.python_version(),
            "system": platform.system(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
        },
        "target": target,
        "summary": counts,
        "coverage": coverage,
        "checks": [
            {
                "id": r.id,
                "tier": tier_of(r.id),
                "status": r.status,
                "message": r.message,
                "max_abs": r.max_abs,
                "max_rel": r.max_rel,
                "margin": r.margin,
                "atol": r.atol,
                "rtol": r.rtol,
                "diagnosis": r.diagnosis,
                "not_checked": list(r.not_checked),
                "expected_error": r.expected_error,
                "raised": r.raised,
                "comparisons": [c.to_dict() for c in r.comparisons],
            }
            for r in results
        ],
    }
