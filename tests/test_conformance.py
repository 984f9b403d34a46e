"""The conformance suite itself: it must fail broken implementations, skip unsupported ones, and say
where."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance import __main__ as cli
from conformance.adapters.reference import ReferenceImplementation
from conformance.capabilities import Capabilities
from conformance.checks import check_golden
from conformance.golden import iter_cases
from conformance.properties import cross_entropy
from conformance.protocol import Unsupported
from conformance.report import SCHEMA, validate
from conformance.runner import Plan, run_plan
from conformance.selection import Selection
from reference.backends import get_kernels

ROOT = Path(__file__).resolve().parents[1]
CASES = {c.id: c for c in iter_cases()}


class Perturbed(ReferenceImplementation):
    """The reference with an error injected after layer 1 (it propagates to everything
    downstream)."""

    name = "perturbed"

    def run(self, family, task, config, weights, inputs, options):
        out = super().run(family, task, config, weights, inputs, options)
        if "tuple" in out:
            return out
        return {
            k: (
                v + 1e-3
                if k.startswith(
                    (
                        "hidden_states.1",
                        "hidden_states.2",
                        "last_hidden_state",
                        "logits",
                        "attentions.1",
                    )
                )
                else v
            )
            for k, v in out.items()
        }


class Refuses(ReferenceImplementation):
    def run(self, *args):
        raise Unsupported("nothing implemented yet")


class Crashes(ReferenceImplementation):
    def run(self, *args):
        raise RuntimeError("segfault avoided")


class DropsLogits(ReferenceImplementation):
    def run(self, *args):
        return {k: v for k, v in super().run(*args).items() if k != "logits"}


perturbed, refuses, crashes, drops_logits = Perturbed(), Refuses(), Crashes(), DropsLogits()


def test_a_divergence_is_located_at_the_first_layer_that_exceeds_tolerance():
    result = check_golden(perturbed, CASES["mpnet/pt/base-right-padding"])[0]
    assert result.status == "fail"
    assert "hidden_states.1" in result.diagnosis and "output of layer 1" in result.diagnosis
    assert "max abs 0.001" in result.diagnosis and " at (" in result.diagnosis


def test_unsupported_is_a_skip_and_other_errors_or_missing_outputs_are_failures():
    case = CASES["mpnet/pt/masked-lm"]
    assert {r.status for r in check_golden(refuses, case)} == {"skip"}
    crashed = check_golden(crashes, case)[0]
    assert crashed.status == "fail" and "RuntimeError: segfault avoided" in crashed.message
    missing = check_golden(drops_logits, case)[0]
    assert missing.status == "fail" and "logits: missing" in missing.message


def test_properties_fail_an_implementation_that_breaks_an_invariant():
    plan = Plan(
        "tests.test_conformance:perturbed",
        family="mpnet",
        profile="pt",
        tiers=("property",),
        max_examples=5,
    )
    results = {
        r.id: r for r in run_plan(plan, Selection.load(None), Selection.load(None), impl=perturbed)
    }
    assert (
        results["property/mpnet/pt/inputs-embeds"].status == "pass"
    )  # both paths carry the same injected error
    assert (
        results["property/mpnet/pt/tuple-order"].status == "fail"
    )  # the tuple is not perturbed, the dict is
    assert "rows sum to 1" in results["property/mpnet/pt/bookkeeping"].message


class MptPortBug(ReferenceImplementation):
    """The reference as an MPT port with one mistake ports make (the names below)."""

    def __init__(self, bug):
        super().__init__()
        self.bug, self.name = bug, f"a port whose {bug}"

    def run(self, family, task, config, weights, inputs, options):
        if self.bug == "cache ignored":  # the new tokens attend only to themselves
            inputs = {k: v for k, v in inputs.items() if not k.startswith("past.")}
        if self.bug == "mask ignored":  # padding attended to as if it were text
            inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
        if self.bug == "generation config ignored":  # generate() on config.json alone
            options = {k: v for k, v in options.items() if k != "generation_config"}
        if self.bug == "given cache dropped" and "generate" in options and "past.0.key" in inputs:
            P = inputs["past.0.key"].shape[2]  # generate() on the tokens after the cache alone
            inputs = {k: v[:, P:] for k, v in inputs.items() if not k.startswith("past.")}
        out = super().run(family, task, config, weights, inputs, options)
        if self.bug == "next token leaks" and "logits" in out:  # a look at position j + 1
            logits = np.array(out["logits"])
            logits[:, :-1] += 0.01 * logits[:, 1:]
            out = {**out, "logits": logits}
        if self.bug == "labels not shifted" and "loss" in out and "labels" in inputs:
            logits, labels = np.asarray(out["logits"], np.float64), inputs["labels"]
            keep = labels != -100
            out = {**out, "loss": cross_entropy(logits[keep], labels[keep]).mean()}
        return out


@pytest.mark.parametrize(
    "bug, property_id, profiles",
    [
        ("cache ignored", "cache-equivalence", ("hf", "mosaic")),
        ("next token leaks", "causality", ("hf", "mosaic")),
        ("mask ignored", "left-padding", ("hf", "mosaic")),
        ("labels not shifted", "loss-rule", ("hf", "mosaic")),
        ("given cache dropped", "generate-cache", ("hf",)),
    ],
)
def test_each_mpt_property_fails_a_port_with_the_mistake_it_guards_against(
    bug, property_id, profiles
):
    """Each MPT property on a port that makes the mistake the property exists for: that property
    fails, on each profile it has, where the reference passes it (generate-cache: a port whose
    generate() runs only the tokens after a given cache, without it)."""
    for profile in profiles:
        plan = Plan(
            "tests.test_conformance:MptPortBug",
            family="mpt",
            profile=profile,
            tiers=("property",),
            max_examples=5,
            select=(f"*{property_id}",),
        )
        check_id = f"property/mpt/{profile}/{property_id}"
        for impl, want in ((MptPortBug(bug), "fail"), (ReferenceImplementation(), "pass")):
            results = run_plan(plan, Selection.load(None), Selection.load(None), impl=impl)
            result = next(r for r in results if r.id == check_id)
            assert result.status == want, f"{check_id} with {impl.name} ({bug}): {result.message}"


def test_the_generation_config_cases_fail_a_port_that_ignores_generation_config_json():
    """A port that runs generate() from config.json alone fails the cases whose checkpoint's
    generation_config.json changes the tokens (eos ids, pad, max_new_tokens, penalties, suppressed
    tokens), and passes the one where transformers ignores the file; the reference passes all."""
    ids = [
        "mpt/hf/generate-generation-config-derived",
        "mpt/hf/generate-generation-config",
        "mpt/hf/generate-generation-config-marked-derived",
        "mpt/hf/generate-penalties",
        "mpt/hf/generate-suppress-tokens",
        "mpt/hf/generate-bad-words-forced-eos",
        "mpt/hf/generate-length-penalty-decay",
        "mpt/hf/generate-forced-bos",
        "mpt/hf/generate-beam-search-eos",
        "mpt/hf/generate-beam-search-early-stopping",
        "mpt/hf/generate-beam-search-never",
        "mpt/hf/generate-contrastive-file",
        "mpt/hf/generate-group-beam-search",
        "mpt/hf/generate-encoder-repetition-penalty-beams",
        "mpt/hf/generate-guidance-cache-file",
        "mpt/hf/generate-forced-decoder-ids",
    ]
    port = MptPortBug("generation config ignored")
    got = {i: check_golden(port, CASES[i])[0].status for i in ids}
    assert got == {i: "pass" if i == ids[0] else "fail" for i in ids}, got
    for i in ids:
        result = check_golden(ReferenceImplementation(), CASES[i])[0]
        assert result.status == "pass", f"{i}: {result.message}"
    # a port that says it takes its settings from the caller alone is not asked
    caller_only = Capabilities(inputs=frozenset({"attention_mask"}))
    for i in ids:
        result = check_golden(port, CASES[i], caller_only)[0]
        assert result.status == "skip" and "generation_config" in result.message, result.message
    assert check_golden(port, CASES["mpt/hf/generate-greedy-eos"], caller_only)[0].status == "pass"


def test_skips_and_xfails_files_and_stale_entries(tmp_path):
    skips = tmp_path / "skips.txt"
    skips.write_text("# comment\nmpnet/pt/base-s1*   # not wired\nmpnet/pt/no-such-case  # stale\n")
    xfails = tmp_path / "xfails.txt"
    xfails.write_text(
        "mpnet/pt/base-right-padding   # known divergence\nmpnet/pt/base-left-padding # fixed"
        " already\n"
    )
    plan = Plan("tests.test_conformance:perturbed", family="mpnet", profile="pt", tiers=("golden",))
    skip_sel, xfail_sel = Selection.load(skips), Selection.load(xfails)
    results = {r.id: r for r in run_plan(plan, skip_sel, xfail_sel, impl=perturbed)}
    assert (
        results["mpnet/pt/base-s1"].status == "skip"
        and "not wired" in results["mpnet/pt/base-s1"].message
    )
    assert results["mpnet/pt/base-right-padding"].status == "xfail"
    assert skip_sel.stale() == ["mpnet/pt/no-such-case"]


def test_cli_report_is_valid_and_exit_status_reflects_failures(tmp_path, monkeypatch, capsys):
    report = tmp_path / "report.json"
    assert (
        cli.main(
            [
                "run",
                "--family",
                "mpnet",
                "--profile",
                "tf",
                "--report",
                str(report),
                "--max-examples",
                "3",
            ]
        )
        == 0
    )
    data = json.loads(report.read_text())
    validate(data)
    assert data["implementation"]["name"] == "reference[numpy]" and data["target"]["kind"] == "cpu"
    assert {c["tier"] for c in data["checks"]} == {"golden", "property", "op"}
    monkeypatch.setenv("CONFORMANCE_IMPL", "tests.test_conformance:perturbed")
    assert cli.main(["run", "--family", "mpnet", "--profile", "pt", "--tier", "golden"]) == 1
    assert "first divergence" in capsys.readouterr().out


def test_report_validator_rejects_malformed_reports():
    good = {
        "suite_version": "1",
        "created": "now",
        "implementation": {"name": "x", "version": None},
        "profile": None,
        "capabilities": Capabilities().to_dict(),
        "family": None,
        "tiers": ["golden"],
        "platform": {"python": "3", "system": "L", "machine": "m"},
        "target": {"kind": "cpu", "device": "d"},
        "summary": dict.fromkeys(["pass", "fail", "skip", "xfail", "xpass"], 0),
        "coverage": {
            "executed": 0,
            "per_tier": {},
            "outputs_compared": 0,
            "errors_checked": 0,
            "outputs_not_checked": {},
            "skip_reasons": {},
        },
        "checks": [],
    }
    validate(good, SCHEMA)
    for broken, message in (
        (dict(good, target={"kind": "tpu", "device": "d"}), "not one of"),
        ({k: v for k, v in good.items() if k != "checks"}, "missing 'checks'"),
        (
            dict(
                good,
                checks=[
                    {
                        "id": 1,
                        "tier": "golden",
                        "status": "pass",
                        "message": "",
                        "max_abs": 0,
                        "max_rel": 0,
                        "margin": 0,
                        "atol": None,
                        "rtol": None,
                        "diagnosis": None,
                        "not_checked": [],
                        "expected_error": None,
                        "raised": None,
                        "comparisons": [],
                    }
                ],
            ),
            "expected string",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            validate(broken, SCHEMA)


def test_parallel_run_matches_serial():
    plan = Plan("reference", family="mpt", profile="hf", tiers=("golden",))
    serial = [
        (r.id, r.status, r.max_abs)
        for r in run_plan(plan, Selection.load(None), Selection.load(None))
    ]
    parallel = [
        (r.id, r.status, r.max_abs)
        for r in run_plan(plan, Selection.load(None), Selection.load(None), jobs=2)
    ]
    assert serial == parallel


def test_outputs_folder_written_by_an_external_program_is_checked(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "write_outputs_example.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    code = cli.main(
        [
            "run",
            "--impl",
            "outputs",
            "--outputs-dir",
            str(tmp_path),
            "--tier",
            "golden",
            "--family",
            "mpnet",
        ]
    )
    assert code == 0
    np.testing.assert_array_equal((tmp_path / "mpnet/pt/base-too-long/error.json").is_file(), True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--impl", "nonexistent:thing"], "cannot load implementation 'nonexistent:thing'"),
        (["--golden-dir", "/nonexistent"], "no manifest.json there"),
        (["--skips-file", "/nonexistent"], "No such file"),
        (["--report", "/nonexistent/report.json"], "its folder does not exist"),
    ],
)
def test_cli_bad_arguments_give_one_line_errors(capsys, args, message):
    assert cli.main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_refuses_the_cuda_kernels_up_front_without_a_gpu_or_simulator(capsys):
    try:
        get_kernels("cuda")
    except ValueError:
        pass  # the same refusal the runner must now report once
    else:
        pytest.skip("a GPU or the simulator is here: the cuda kernels can run")
    assert cli.main(["run", "--impl", "reference-cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "backend='cuda' needs" in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["--max-examples", "-1"], ["-j", "-2"], ["--max-examples", "x"]])
def test_cli_bad_counts_are_usage_errors(capsys, args):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and ("must be at least" in err or "is not an integer" in err), err


def test_under_python_O_the_property_tier_fails_and_says_why():
    """python -O removes assert statements, the property checks among them: every property would
    pass. Each fails instead, naming the cause."""
    run = subprocess.run(
        [sys.executable, "-O", "-m", "conformance", "run", "--tier", "property"]
        + ["--family", "mpt", "--profile", "hf", "-k", "*causality"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode != 0, run.stdout
    assert "run the conformance suite without -O" in run.stdout, run.stdout
