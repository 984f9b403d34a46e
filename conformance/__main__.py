"""Command line: ``python -m conformance run`` checks an implementation against the golden cases.

    python -m conformance run                      # the NumPy reference against every golden case
    python -m conformance run --impl mypkg.port:impl --family mpnet --profile pt --report out.json

The implementation is ``--impl module:attribute`` (or $CONFORMANCE_IMPL), an object following
conformance.protocol.Implementation; "reference" names the project's own. Exit status 0 means no
check failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time

import numpy as np

from . import __version__
from .checks import check_golden
from .golden import golden_root, iter_cases

ADAPTERS = {"reference": "conformance.adapters.reference:implementation"}


def load_implementation(spec: str):
    target = ADAPTERS.get(spec, spec)
    if ":" not in target:
        raise SystemExit(f"--impl must be an adapter name {sorted(ADAPTERS)} or module:attribute, got {spec!r}")
    module_name, attr = target.split(":", 1)
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"cannot load implementation {target!r}: {e}") from None
    if not hasattr(obj, "run"):
        raise SystemExit(f"{target!r} has no run() method (see conformance/protocol.py)")
    return obj


def run(args) -> int:
    impl = load_implementation(args.impl)
    started = time.time()
    results = []
    with np.errstate(all="ignore"):  # NaN losses are legitimate outputs in some cases
        for case in iter_cases(args.golden_dir, family=args.family, profile=args.profile):
            results.extend(check_golden(impl, case))
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    print_table(results, verbose=args.verbose)
    print(f"\n{getattr(impl, 'name', args.impl)}: {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['skip']} skipped in {time.time() - started:.1f}s (golden cases from {golden_root(args.golden_dir)})")
    if args.report:
        write_report(args.report, impl, args, results, counts)
    return 1 if counts["fail"] or not results else 0


def print_table(results, verbose=False):
    width = max((len(r.id) for r in results), default=10)
    print(f"{'check':<{width}}  {'result':<6}  {'max abs':>9}  {'max rel':>9}  {'atol/rtol':>13}")
    for r in results:
        tol = f"{r.atol:.0e}/{r.rtol:.0e}" if r.atol is not None else ""
        print(f"{r.id:<{width}}  {r.status:<6}  {r.max_abs:>9.2e}  {r.max_rel:>9.2e}  {tol:>13}")
        if r.status == "fail" or (verbose and r.message):
            print(f"    {r.message}")
            if r.diagnosis:
                print(f"    {r.diagnosis}")


def write_report(path, impl, args, results, counts):
    report = {
        "suite_version": __version__,
        "implementation": {"name": getattr(impl, "name", args.impl), "version": getattr(impl, "version", None)},
        "profile": args.profile, "family": args.family,
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system()},
        "target": getattr(impl, "target", {"kind": "cpu", "device": platform.processor() or platform.machine()}),
        "summary": counts,
        "checks": [{"id": r.id, "status": r.status, "message": r.message, "max_abs": r.max_abs, "max_rel": r.max_rel,
                    "atol": r.atol, "rtol": r.rtol, "diagnosis": r.diagnosis} for r in results],
    }
    with open(path, "w") as f:
        json.dump(report, f, indent=1, allow_nan=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="check an implementation against the golden cases")
    p.add_argument("--impl", default=os.environ.get("CONFORMANCE_IMPL", "reference"),
                   help="adapter name or module:attribute (default: $CONFORMANCE_IMPL or reference)")
    p.add_argument("--family", choices=["mpnet", "mpt"], help="only this model family")
    p.add_argument("--profile", help="only cases of this profile (pt, tf, hf, mosaic)")
    p.add_argument("--golden-dir", help="golden directory (default: $CONFORMANCE_GOLDEN_DIR or the repository's)")
    p.add_argument("--report", help="write a JSON report here")
    p.add_argument("-v", "--verbose", action="store_true", help="print every check's message")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
