"""Command line: ``python -m conformance run`` checks an implementation and says where it diverges.

    python -m conformance run                                  # the NumPy reference, every tier
    python -m conformance run --impl mypkg.port:impl --family mpnet --profile pt --tier golden
    python -m conformance run --impl outputs --outputs-dir DIR --report out.json  # an external
    program's outputs
    python -m conformance run --impl onnxruntime --require golden=25               # ONNX Runtime on
    torch.onnx exports
    python -m conformance run --list --task token-classification -k 'mpnet/pt/*'  # what would run
    python -m conformance run --impl mypkg.port:impl --plot divergence.png         # error per layer
    of failing cases

--impl is an adapter name (reference, reference-numba, reference-cuda, transformers,
transformers-bf16,
transformers-fp16, transformers-tf, outputs, onnxruntime, llama-cpp, llama-cpp-bf16,
ctranslate2) or module:attribute naming an object that
follows conformance/protocol.py; $CONFORMANCE_IMPL is its twin. The implementation's declared
capabilities (conformance/capabilities.py; capabilities.json beside an outputs folder) decide what
is
requested and compared. The exit status is 0 only when no check failed, at least one check executed
and every --require holds; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
import warnings

from . import __version__
from .capabilities import TASKS, capabilities_of, output_group
from .golden import golden_root
from .plot import plot_failures
from .report import build, tier_of, validate
from .runner import ADAPTERS, TIERS, Plan, default_jobs, load_implementation, run_plan, selected
from .selection import Selection

STATUSES = ("pass", "fail", "skip", "xfail", "xpass")


def run(args) -> int:
    if (
        args.golden_dir
    ):  # before the implementation loads: an adapter may read files beside the goldens
        if not os.path.isfile(os.path.join(args.golden_dir, "manifest.json")):
            print(f"error: --golden-dir {args.golden_dir}: no manifest.json there", file=sys.stderr)
            return 2
        os.environ["CONFORMANCE_GOLDEN_DIR"] = args.golden_dir  # worker processes read it too
    try:
        if args.impl == "outputs" and args.outputs_dir:
            os.environ["CONFORMANCE_OUTPUTS_DIR"] = args.outputs_dir
        impl = load_implementation(args.impl)
        caps = capabilities_of(impl)
        requirements = [parse_requirement(r) for r in args.require]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.tiers = TIERS if args.tier == "all" else (args.tier,)
    if args.report and not os.path.isdir(os.path.dirname(os.path.abspath(args.report))):
        print(
            f"error: --report {args.report}: its folder does not exist", file=sys.stderr
        )  # say so before the run
        return 2
    try:
        skips, xfails = Selection.load(args.skips_file), Selection.load(args.xfails_file)
        plan = Plan(
            args.impl,
            args.family,
            args.profile,
            args.tiers,
            args.golden_dir,
            args.max_examples,
            caps,
            tuple(args.k),
            tuple(args.task),
        )
        units = plan.units()  # reads every case, checking the manifest's SHA-256 sums
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for unit in units:
            for check_id in unit.ids:
                if selected(check_id, plan.select):
                    print(f"{tier_of(check_id):<8}  {check_id}")
        return 0
    started = time.time()
    results = run_plan(plan, skips, xfails, jobs=default_jobs(args.jobs), impl=impl, units=units)
    for sel, kind in ((skips, "skips"), (xfails, "xfails")):
        for pattern in sel.stale():
            warnings.warn(
                f"{sel.path}: {kind} entry {pattern!r} matches no check (stale)", stacklevel=1
            )
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    print_table(results, verbose=args.verbose)
    coverage = coverage_of(results)
    print_summary(coverage)
    shown = [f"{counts[s]} {s}" for s in STATUSES if counts[s] or s in ("pass", "fail")]
    print(
        f"\n{getattr(impl, 'name', args.impl)}: "
        + ", ".join(shown)
        + f" in {time.time() - started:.1f}s (tiers: {', '.join(args.tiers)}; compute dtype:"
        f" {caps.compute_dtype}; goldens: {golden_root(args.golden_dir)})"
    )
    if args.report:
        report = build(impl, args.impl, args, results, counts, __version__, caps, coverage)
        validate(report)
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        try:
            print(plot_failures(results, args.plot))
        except ImportError:
            print(
                "error: --plot needs matplotlib (pip install 'mpnet-mpt-reference[plot]')",
                file=sys.stderr,
            )
            return 2
    unmet = [
        message for message in (check_requirement(r, results) for r in requirements) if message
    ]
    if not coverage["executed"]:
        unmet.insert(
            0,
            f"no check executed ({len(results)} skipped): nothing was compared, so nothing passed",
        )
    for message in unmet:
        print(f"error: {message}", file=sys.stderr)
    return 1 if counts["fail"] or unmet else 0


EXECUTED = ("pass", "fail", "xfail", "xpass")


def coverage_of(results) -> dict:
    """How many checks ran (per tier), how many outputs were compared, what went unchecked and
    why."""
    ran = [r for r in results if r.status in EXECUTED]
    skipped = {}
    for r in results:
        if r.status == "skip":
            skipped[r.message] = skipped.get(r.message, 0) + 1
    not_checked = {}
    for r in ran:
        for group in {output_group(name) for name in r.not_checked}:
            not_checked[group] = not_checked.get(group, 0) + 1
    return {
        "executed": len(ran),
        "per_tier": {t: sum(tier_of(r.id) == t for r in ran) for t in TIERS},
        "outputs_compared": sum(len(r.comparisons) for r in ran),
        "errors_checked": sum(r.expected_error is not None for r in ran),
        "outputs_not_checked": not_checked,
        "skip_reasons": dict(sorted(skipped.items(), key=lambda kv: -kv[1])),
    }


def print_summary(coverage):
    tiers = ", ".join(f"{n} {t}" for t, n in coverage["per_tier"].items() if n)
    print(
        f"\nexecuted {coverage['executed']} checks ({tiers or 'none'}):"
        f" {coverage['outputs_compared']} outputs compared, {coverage['errors_checked']} expected"
        " errors checked"
    )
    if coverage["outputs_not_checked"]:
        print(
            "outputs not provided, so not checked: "
            + ", ".join(
                f"{g} ({n} cases)" for g, n in sorted(coverage["outputs_not_checked"].items())
            )
        )
    if coverage["skip_reasons"]:
        print(f"skipped {sum(coverage['skip_reasons'].values())}:")
        for reason, n in coverage["skip_reasons"].items():
            print(f"  {n:>4}  {reason}")


def parse_requirement(text):
    """--require N | GROUP | GROUP=N, GROUP being a tier (golden, property, op) or a check-id
    glob."""
    group, _, number = text.rpartition("=") if "=" in text else (text, "", "1")
    if text.isdigit():
        group, number = None, text
    if not number.isdigit() or group == "":
        raise ValueError(
            f"--require {text!r}: expected N, GROUP or GROUP=N (GROUP: a tier or a check-id glob)"
        )
    return group, int(number)


def check_requirement(requirement, results):
    """None when enough checks of the group executed, else what is missing."""
    group, minimum = requirement
    ran = [
        r
        for r in results
        if r.status in EXECUTED
        and (group is None or tier_of(r.id) == group or fnmatch.fnmatchcase(r.id, group))
    ]
    if len(ran) >= minimum:
        return None
    what = "checks" if group is None else f"checks of {group!r}"
    return f"--require: {len(ran)} {what} executed, at least {minimum} required"


def print_table(results, verbose=False):
    width = max((len(r.id) for r in results), default=10)
    number = lambda x, fmt: f"{x:{fmt}}" if x is not None else f"{'-':>{fmt[1:].split('.')[0]}}"  # noqa: E731
    print(
        f"{'check':<{width}}  {'result':<6}  {'max abs':>9}  {'max rel':>9}  {'margin':>8} "
        f" {'atol/rtol':>13}"
    )
    for r in results:
        tol = f"{r.atol:.0e}/{r.rtol:.0e}" if r.atol is not None else ""
        print(
            f"{r.id:<{width}}  {r.status:<6}  {number(r.max_abs, '>9.2e')} "
            f" {number(r.max_rel, '>9.2e')}  {number(r.margin, '>8.3g')}  {tol:>13}"
        )
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
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "run",
        help="check an implementation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--impl",
        default=os.environ.get("CONFORMANCE_IMPL", "reference"),
        help=(
            f"adapter {sorted(ADAPTERS)} or module:attribute (default: $CONFORMANCE_IMPL or"
            " reference)"
        ),
    )
    p.add_argument("--family", choices=["mpnet", "mpt"], help="only this model family")
    p.add_argument("--profile", choices=["pt", "tf", "hf", "mosaic"], help="only this profile")
    p.add_argument(
        "--tier", choices=TIERS + ("all",), default="all", help="which checks (default: all)"
    )
    p.add_argument(
        "--task",
        action="append",
        default=[],
        choices=TASKS,
        help="only golden cases and properties on models of this task (repeatable)",
    )
    p.add_argument(
        "-k",
        action="append",
        default=[],
        metavar="PATTERN",
        help=(
            "only checks whose id matches: a glob (mpnet/pt/base-*) or a substring (repeatable:"
            " any)"
        ),
    )
    p.add_argument(
        "--list", action="store_true", help="list the selected check ids and exit without running"
    )
    p.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="N|GROUP|GROUP=N",
        help=(
            "fail unless at least N checks (of a tier or check-id glob) executed; a run that "
            "executes none always fails"
        ),
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw each failing case's error per layer against its tolerance (needs matplotlib)",
    )
    p.add_argument(
        "--max-examples",
        type=count(1),
        default=20,
        help="hypothesis examples per property (default 20)",
    )
    p.add_argument("--skips-file", help="check ids (or patterns) not to run, each with a reason")
    p.add_argument(
        "--xfails-file", help="check ids (or patterns) expected to fail, each with a reason"
    )
    p.add_argument("--report", help="write the JSON report here (schema: conformance/report.py)")
    p.add_argument(
        "-j", "--jobs", type=count(0), default=1, help="worker processes (0: one per CPU)"
    )
    p.add_argument(
        "--golden-dir",
        help="golden directory (default: $CONFORMANCE_GOLDEN_DIR or the repository's)",
    )
    p.add_argument(
        "--outputs-dir",
        help="for --impl outputs: the folder of outputs (or $CONFORMANCE_OUTPUTS_DIR)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every check's message")
    saved = {k: os.environ.get(k) for k in ("CONFORMANCE_OUTPUTS_DIR", "CONFORMANCE_GOLDEN_DIR")}
    try:
        return run(parser.parse_args(argv))
    # run() hands folders to worker processes through the environment; a caller's stays as it was
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    sys.exit(main())
