"""Command line: ``python -m conformance run`` checks an implementation and says where it diverges.

    python -m conformance run                                  # the NumPy reference, every tier
    python -m conformance run --impl mypkg.port:impl --family mpnet --profile pt --tier golden
    python -m conformance run --impl outputs --report out.json # outputs written by an external program

--impl is an adapter name (reference, transformers, transformers-tf, outputs) or module:attribute
naming an object that follows conformance/protocol.py; $CONFORMANCE_IMPL is its twin. The exit
status is 0 only when no check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

from . import __version__
from .golden import golden_root
from .report import build, validate
from .runner import ADAPTERS, TIERS, Plan, default_jobs, load_implementation, run_plan
from .selection import Selection

STATUSES = ("pass", "fail", "skip", "xfail", "xpass")


def run(args) -> int:
    try:
        impl = load_implementation(args.impl)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.golden_dir:
        if not os.path.isfile(os.path.join(args.golden_dir, "manifest.json")):
            print(f"error: --golden-dir {args.golden_dir}: no manifest.json there", file=sys.stderr)
            return 2
        os.environ["CONFORMANCE_GOLDEN_DIR"] = args.golden_dir  # worker processes read it too
    if args.impl == "outputs" and args.outputs_dir:
        os.environ["CONFORMANCE_OUTPUTS_DIR"] = args.outputs_dir
    args.tiers = TIERS if args.tier == "all" else (args.tier,)
    if args.report and not os.path.isdir(os.path.dirname(os.path.abspath(args.report))):
        print(f"error: --report {args.report}: its folder does not exist", file=sys.stderr)  # say so before the run
        return 2
    try:
        skips, xfails = Selection.load(args.skips_file), Selection.load(args.xfails_file)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    plan = Plan(args.impl, args.family, args.profile, args.tiers, args.golden_dir, args.max_examples)
    started = time.time()
    results = run_plan(plan, skips, xfails, jobs=default_jobs(args.jobs), impl=impl)
    for sel, kind in ((skips, "skips"), (xfails, "xfails")):
        for pattern in sel.stale():
            warnings.warn(f"{sel.path}: {kind} entry {pattern!r} matches no check (stale)", stacklevel=1)
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    print_table(results, verbose=args.verbose)
    print(f"\n{getattr(impl, 'name', args.impl)}: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s] or s in ("pass", "fail"))
          + f" in {time.time() - started:.1f}s (tiers: {', '.join(args.tiers)}; goldens: {golden_root(args.golden_dir)})")
    if args.report:
        report = build(impl, args.impl, args, results, counts, __version__)
        validate(report)
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if counts["fail"] or not results else 0


def print_table(results, verbose=False):
    width = max((len(r.id) for r in results), default=10)
    print(f"{'check':<{width}}  {'result':<6}  {'max abs':>9}  {'max rel':>9}  {'atol/rtol':>13}")
    for r in results:
        tol = f"{r.atol:.0e}/{r.rtol:.0e}" if r.atol is not None else ""
        print(f"{r.id:<{width}}  {r.status:<6}  {r.max_abs:>9.2e}  {r.max_rel:>9.2e}  {tol:>13}")
        if r.status in ("fail", "xpass") or (verbose and r.message):
            print(f"    {r.message}")
            if r.diagnosis:
                print(f"    {r.diagnosis}")


def count(minimum):
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="check an implementation")
    p.add_argument("--impl", default=os.environ.get("CONFORMANCE_IMPL", "reference"),
                   help=f"adapter {sorted(ADAPTERS)} or module:attribute (default: $CONFORMANCE_IMPL or reference)")
    p.add_argument("--family", choices=["mpnet", "mpt"], help="only this model family")
    p.add_argument("--profile", choices=["pt", "tf", "hf", "mosaic"], help="only this profile")
    p.add_argument("--tier", choices=TIERS + ("all",), default="all", help="which checks (default: all)")
    p.add_argument("--max-examples", type=count(1), default=20, help="hypothesis examples per property (default 20)")
    p.add_argument("--skips-file", help="check ids (or patterns) not to run, each with a reason")
    p.add_argument("--xfails-file", help="check ids (or patterns) expected to fail, each with a reason")
    p.add_argument("--report", help="write the JSON report here (schema: conformance/report.py)")
    p.add_argument("-j", "--jobs", type=count(0), default=1, help="worker processes (0: one per CPU)")
    p.add_argument("--golden-dir", help="golden directory (default: $CONFORMANCE_GOLDEN_DIR or the repository's)")
    p.add_argument("--outputs-dir", help="for --impl outputs: the folder of outputs (or $CONFORMANCE_OUTPUTS_DIR)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every check's message")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
