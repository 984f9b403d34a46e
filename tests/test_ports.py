"""The suite as real ports meet it: declared capabilities, final-only outputs, coverage that cannot
pass by skipping, expected errors judged by what was raised, and the ONNX Runtime port."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import reference
from conformance import __main__ as cli
from conformance.adapters.reference import ReferenceImplementation
from conformance.capabilities import Capabilities, input_features
from conformance.checks import check_golden
from conformance.compare import compare
from conformance.golden import iter_cases
from conformance.runner import Plan, run_plan
from conformance.selection import Selection

ROOT = Path(__file__).resolve().parents[1]
CASES = {c.id: c for c in iter_cases()}
NONE = Selection.load(None)
FINAL_ONLY = Capabilities(
    outputs=frozenset({"final"}), inputs=frozenset({"attention_mask"}), tuple=False
)


def run_cli(capsys, *args):
    code = cli.main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def minimal_outputs(tmp_path_factory):
    """What an ONNX export or a serving runtime gives: final outputs only, written by an external
    program."""
    folder = tmp_path_factory.mktemp("minimal")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "write_outputs_example.py"),
            "--final-only",
            str(folder),
        ],
        check=True,
        capture_output=True,
    )
    return folder


def plant_mask_bug(folder: Path) -> list:
    """Rewrite every case that carries an attention mask as a port that ignores the mask would."""
    planted = []
    for case in CASES.values():
        out = folder / case.id / "outputs.safetensors"
        inputs = case.inputs
        if (
            "attention_mask" not in inputs
            or not out.is_file()
            or "generate" in case.options
            or "past.0.key" in inputs
        ):
            continue
        model = reference.build(case.config, case.weights, task=case.task, profile=case.profile)
        kept = {k: v for k, v in inputs.items() if k in ("input_ids", "position_ids")}
        with np.errstate(all="ignore"):
            got = model(**kept).to_dict()
        save_file({k: np.array(got[k]) for k in load_file(str(out))}, str(out))
        planted.append(case.id)
    return planted


def test_the_full_example_passes_every_case_it_writes(tmp_path, capsys):
    """Everything upstream gives, generate()'s scores, attention maps and caches among it, named
    as the suite names them (conformance.golden.generate_outputs)."""
    folder = tmp_path / "full"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "write_outputs_example.py"), str(folder)],
        check=True,
        capture_output=True,
    )
    code, out, _ = run_cli(
        capsys, "--impl", "outputs", "--outputs-dir", str(folder), "--tier", "golden"
    )
    assert code == 0, out[-3000:]
    summary = out.strip().splitlines()[-1]
    assert " 0 fail" in summary and "outputs not provided" not in out, summary


def test_a_final_only_port_gets_real_passes(minimal_outputs, capsys):
    code, out, _ = run_cli(
        capsys,
        "--impl",
        "outputs",
        "--outputs-dir",
        str(minimal_outputs),
        "--tier",
        "golden",
        "--require",
        "golden=90",
    )
    assert code == 0, out[-3000:]
    assert "outputs not provided, so not checked: attentions" in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("write_outputs_example: ") and " 0 fail" in summary, summary


def test_a_planted_mask_bug_fails_the_cases_that_carry_a_mask(minimal_outputs, tmp_path, capsys):
    buggy = tmp_path / "buggy"
    shutil.copytree(minimal_outputs, buggy)
    planted = plant_mask_bug(buggy)
    assert "mpnet/pt/base-right-padding" in planted and "mpt/hf/causal-lm-left-padding" in planted
    report = tmp_path / "report.json"
    code, out, _ = run_cli(
        capsys,
        "--impl",
        "outputs",
        "--outputs-dir",
        str(buggy),
        "--tier",
        "golden",
        "--report",
        str(report),
    )
    assert code == 1
    checks = {c["id"]: c for c in json.loads(report.read_text())["checks"]}
    for case_id in (
        "mpnet/pt/base-right-padding",
        "mpnet/pt/masked-lm",
        "mpt/hf/causal-lm-left-padding",
    ):
        assert checks[case_id]["status"] == "fail", case_id
    assert checks["mpnet/pt/base-right-padding"]["diagnosis"].startswith(
        "first divergence: last_hidden_state"
    )
    assert checks["mpt/hf/causal-lm-left-padding"]["diagnosis"].startswith(
        "first divergence: logits"
    )
    assert checks["mpnet/pt/base-s1"]["status"] == "pass"  # no mask, nothing planted
    worst = next(c for c in checks["mpnet/pt/base-right-padding"]["comparisons"] if not c["ok"])
    assert worst["margin"] > 1 and worst["worst_index"] is not None and worst["atol"] == 2e-5


def test_runs_that_execute_nothing_fail(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(
        capsys, "--impl", "outputs", "--outputs-dir", str(empty), "--tier", "golden"
    )
    assert code == 1 and "error: no check executed" in err
    code, _, err = run_cli(capsys, "--impl", "outputs", "--outputs-dir", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(
        capsys, "--impl", "tests.test_ports:refuses_all", "--family", "mpnet", "--tier", "golden"
    )
    assert code == 1 and "no check executed" in err


def test_require_fails_a_run_with_too_few_checks(capsys):
    code, _, err = run_cli(capsys, "-k", "mpnet/pt/base-s1", "--require", "golden=3")
    assert code == 1 and "--require: 2 checks of 'golden' executed, at least 3 required" in err
    code, _, err = run_cli(capsys, "-k", "mpnet/pt/base-s1", "--require", "property")
    assert code == 1 and "of 'property'" in err
    assert (
        run_cli(capsys, "-k", "mpnet/pt/base-s1", "--require", "2", "--require", "mpnet/pt/*=2")[0]
        == 0
    )
    code, _, err = run_cli(capsys, "--require", "golden=x")
    assert code == 2 and "expected N, GROUP or GROUP=N" in err


class RefusesAll(ReferenceImplementation):
    def run(self, *args):
        from conformance.protocol import Unsupported

        raise Unsupported("nothing yet")


class ExportFails(ReferenceImplementation):
    """A port that fails for its own reasons on every call: not a rejection of the input."""

    def run(self, *args):
        raise RuntimeError("export failed")


class ValidatesInputs(ReferenceImplementation):
    """A port that rejects bad input with a ValueError of its own wording."""

    def run(self, *args):
        try:
            return super().run(*args)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"my port says no: {e}") from None


refuses_all, export_fails, validates_inputs = RefusesAll(), ExportFails(), ValidatesInputs()


def test_expected_errors_are_judged_by_what_the_port_raised():
    for case_id in ("mpnet/pt/base-too-long", "mpt/hf/too-long", "mpt/hf/mask-4d-wrong-shape"):
        failed = check_golden(export_fails, CASES[case_id])[0]
        assert failed.status == "fail" and "not a rejection of the input" in failed.message, (
            failed.message
        )
        assert failed.raised == {"type": "RuntimeError", "message": "export failed"}
        assert failed.expected_error == CASES[case_id].expect_error
        passed = check_golden(validates_inputs, CASES[case_id])[0]
        assert passed.status == "pass" and passed.raised["type"] == "ValueError", passed.message
        assert f"upstream raised {CASES[case_id].expect_error['type']}" in passed.message


def test_upstreams_own_generic_error_must_match_its_message_pattern():
    from conformance.checks import rejects_input

    upstream = CASES[
        "mpt/hf/too-long"
    ].expect_error  # RuntimeError: The size of tensor a (17) must match ...
    same = {"type": "RuntimeError", "message": upstream["message"].replace("17", "33")}
    assert rejects_input(same, ["RuntimeError"], upstream)
    assert not rejects_input(
        {"type": "RuntimeError", "message": "export failed"}, ["RuntimeError"], upstream
    )
    assert rejects_input(
        {"type": "InvalidArgumentError", "message": "x"},
        ["InvalidArgumentError"],
        {"type": "InvalidArgumentError", "message": "y"},
    )


def test_capabilities_files_are_validated_with_one_line_errors(tmp_path, capsys):
    (tmp_path / "capabilities.json").write_text(json.dumps({"outputs": ["final", "logits"]}))
    code, _, err = run_cli(capsys, "--impl", "outputs", "--outputs-dir", str(tmp_path))
    assert code == 2 and "'outputs': unknown name(s) ['logits']" in err and "Traceback" not in err
    (tmp_path / "capabilities.json").write_text(json.dumps({"compute_dtype": "int4"}))
    assert (
        "'compute_dtype' must be one of"
        in run_cli(capsys, "--impl", "outputs", "--outputs-dir", str(tmp_path))[2]
    )
    (tmp_path / "capabilities.json").write_text("{not json")
    assert (
        "not valid JSON" in run_cli(capsys, "--impl", "outputs", "--outputs-dir", str(tmp_path))[2]
    )


def test_the_report_carries_the_ports_own_name_version_and_target(
    minimal_outputs, tmp_path, capsys
):
    report = tmp_path / "r.json"
    run_cli(
        capsys,
        "--impl",
        "outputs",
        "--outputs-dir",
        str(minimal_outputs),
        "-k",
        "mpnet/pt/base-*",
        "--report",
        str(report),
    )
    data = json.loads(report.read_text())
    assert data["implementation"]["name"] == "write_outputs_example"
    assert data["implementation"]["version"] == reference.__version__
    assert data["target"] == {"kind": "cpu", "device": "NumPy reference"}
    assert data["capabilities"]["outputs"] == ["final", "sequences"]
    assert data["coverage"]["executed"] > 0 and data["coverage"]["skip_reasons"]


def test_a_declared_implementation_is_asked_only_for_what_it_provides():
    seen = []

    class Minimal(ReferenceImplementation):
        capabilities = FINAL_ONLY

        def run(self, family, task, config, weights, inputs, options):
            seen.append(
                (
                    options.get("output_hidden_states"),
                    options.get("output_attentions"),
                    sorted(inputs),
                )
            )
            out = super().run(family, task, config, weights, inputs, options)
            return {
                k: v
                for k, v in out.items()
                if not k.startswith(("hidden_states", "attentions", "loss"))
            }

    results = check_golden(Minimal(), CASES["mpnet/pt/masked-lm"])
    assert [r.status for r in results] == ["pass", "skip"]
    assert seen == [
        (False, False, ["attention_mask", "input_ids"])
    ]  # labels only feed the loss: not sent
    assert "loss" in results[0].not_checked and "hidden_states.2" in results[0].not_checked
    assert (
        "not checked (not provided): attentions (2), hidden_states (3), loss (1)"
        in results[0].message
    )
    plan = Plan(
        "tests.test_ports:refuses_all",
        family="mpnet",
        profile="pt",
        tiers=("property",),
        caps=FINAL_ONLY,
        max_examples=3,
    )
    props = {r.id: r for r in run_plan(plan, NONE, NONE, impl=Minimal())}
    assert (
        props["property/mpnet/pt/batching"].status == "pass"
    )  # needs only last_hidden_state and a mask
    assert props["property/mpnet/pt/bookkeeping"].status == "skip"
    assert "needs attentions, hidden_states" in props["property/mpnet/pt/bookkeeping"].message


def test_selection_by_id_glob_and_task_and_listing(capsys):
    code, out, _ = run_cli(capsys, "--list", "--task", "token-classification", "--family", "mpnet")
    ids = [line.split()[1] for line in out.strip().splitlines()]
    assert code == 0 and all("token-classification" in i or i.startswith("property/") for i in ids)
    assert (
        "property/mpnet/pt/token-loss-rule" in ids and "mpnet/pt/token-classification::tuple" in ids
    )
    assert "property/mpnet/pt/batching" not in ids  # its model is a base model
    code, out, _ = run_cli(capsys, "--list", "-k", "mpnet/*/base-s1")
    assert sorted(line.split()[1] for line in out.strip().splitlines()) == [
        "mpnet/pt/base-s1",
        "mpnet/tf/base-s1",
    ]
    code, out, _ = run_cli(capsys, "--list", "-k", "base-s1")  # a substring: the tuple checks too
    assert len(out.strip().splitlines()) == 4


def test_relative_error_and_margin_read_right():
    passing = compare("x", np.array([1e-6, 0.0, 10.0]), np.array([0.0, 0.0, 10.0005]), 2e-5, 1e-4)
    assert passing.ok and passing.margin < 1 and passing.max_rel == pytest.approx(5e-5, rel=1e-3)
    tiny = compare("x", np.array([1e-6]), np.array([0.0]), 2e-5, 1e-4)
    assert tiny.ok and tiny.max_rel is None and "max rel" not in tiny.describe()
    failing = compare("x", np.array([1.0, 2.0]), np.array([1.0, 2.1]), 2e-5, 1e-4)
    assert not failing.ok and failing.margin > 1 and failing.worst_index == (1,)


def test_masks_are_classified_per_token_or_as_3d_and_4d():
    ids = np.zeros((2, 3, 7), np.int64)
    assert input_features({"input_ids": ids, "attention_mask": np.ones((2, 3, 7))}) == {
        "attention_mask"
    }
    assert input_features({"input_ids": ids[:, 0], "attention_mask": np.ones((2, 7, 7))}) == {
        "mask_3d"
    }
    assert input_features({"input_ids": ids[:, 0], "labels": ids[:, 0], "past.0.key": ids}) == {
        "labels",
        "past",
    }


def test_an_edited_golden_file_is_a_one_line_error(tmp_path, capsys):
    golden = tmp_path / "golden"
    shutil.copytree(ROOT / "golden", golden, ignore=shutil.ignore_patterns("*.onnx"))
    meta = golden / "mpnet/pt/base-s1/case.json"
    meta.write_text(meta.read_text().replace('"fp32"', '"bf16"', 1))
    code, _, err = run_cli(capsys, "--golden-dir", str(golden), "--family", "mpnet")
    assert code == 2 and "does not match its manifest SHA-256" in err and "Traceback" not in err


def test_plot_draws_the_failing_cases(minimal_outputs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    buggy = tmp_path / "buggy"
    shutil.copytree(minimal_outputs, buggy)
    plant_mask_bug(buggy)
    picture = tmp_path / "failures.png"
    code, out, _ = run_cli(
        capsys,
        "--impl",
        "outputs",
        "--outputs-dir",
        str(buggy),
        "-k",
        "mpnet/pt/base-*",
        "--plot",
        str(picture),
    )
    assert code == 1 and "failing cases drawn to" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
