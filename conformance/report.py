"""The JSON report: its schema (JSON Schema, draft 2020-12 subset) and a dependency-free validator.

Top level: suite_version, created (ISO 8601 UTC), implementation {name, version}, profile, family,
tiers, platform {python, system, machine, processor}, target {kind: cpu|gpu, device}, summary
(counts per status) and checks, each {id, tier, status, message, max_abs, max_rel, atol, rtol,
diagnosis}. Statuses: pass, fail, skip, xfail (failed as the xfails file expected), xpass (passed
although listed as expected to fail). Floats may be NaN or Infinity (JSON extensions Python writes).
"""

from __future__ import annotations

import datetime
import platform

STATUSES = ["pass", "fail", "skip", "xfail", "xpass"]
NUMBER = {"type": ["number", "null"]}
STRING = {"type": ["string", "null"]}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "conformance report",
    "type": "object",
    "required": ["suite_version", "created", "implementation", "profile", "family", "tiers", "platform", "target",
                 "summary", "checks"],
    "properties": {
        "suite_version": {"type": "string"},
        "created": {"type": "string"},
        "implementation": {"type": "object", "required": ["name", "version"],
                           "properties": {"name": {"type": "string"}, "version": STRING}},
        "profile": STRING,
        "family": STRING,
        "tiers": {"type": "array", "items": {"type": "string", "enum": ["golden", "property", "op"]}},
        "platform": {"type": "object", "required": ["python", "system", "machine"],
                     "properties": {"python": {"type": "string"}, "system": {"type": "string"},
                                    "machine": {"type": "string"}, "processor": STRING}},
        "target": {"type": "object", "required": ["kind", "device"],
                   "properties": {"kind": {"type": "string", "enum": ["cpu", "gpu"]}, "device": {"type": "string"}}},
        "summary": {"type": "object", "required": STATUSES,
                    "properties": {s: {"type": "integer"} for s in STATUSES}},
        "checks": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "tier", "status", "message", "max_abs", "max_rel", "atol", "rtol", "diagnosis"],
            "properties": {"id": {"type": "string"}, "tier": {"type": "string", "enum": ["golden", "property", "op"]},
                           "status": {"type": "string", "enum": STATUSES}, "message": {"type": "string"},
                           "max_abs": NUMBER, "max_rel": NUMBER, "atol": NUMBER, "rtol": NUMBER, "diagnosis": STRING},
        }},
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "null": type(None)}


def validate(value, schema=SCHEMA, path="report"):
    """Raise ValueError at the first place value breaks schema (type, required, enum, items, properties)."""
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in names)
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
    return "property" if check_id.startswith("property/") else ("op" if "/op-" in check_id else "golden")


def build(impl, impl_spec, args, results, counts, suite_version):
    target = getattr(impl, "target", None) or {"kind": "cpu", "device": platform.processor() or platform.machine()}
    return {
        "suite_version": suite_version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "implementation": {"name": getattr(impl, "name", impl_spec), "version": getattr(impl, "version", None)},
        "profile": args.profile, "family": args.family, "tiers": list(args.tiers),
        "platform": {"python": platform.python_version(), "system": platform.system(), "machine": platform.machine(),
                     "processor": platform.processor() or None},
        "target": target,
        "summary": counts,
        "checks": [{"id": r.id, "tier": tier_of(r.id), "status": r.status, "message": r.message,
                    "max_abs": r.max_abs, "max_rel": r.max_rel, "atol": r.atol, "rtol": r.rtol,
                    "diagnosis": r.diagnosis} for r in results],
    }
