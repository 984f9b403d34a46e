"""ONNX Runtime on torch.onnx exports of the MPNet golden models: a foreign port the suite is proven
on.

It must pass on every output it declares (final outputs and every layer), and a bug planted in it
must be reported at the right first divergence."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from conformance import __main__ as cli  # noqa: E402
from conformance.adapters.onnx_runtime import OnnxRuntimePort  # noqa: E402
from conformance.checks import check_golden  # noqa: E402
from conformance.golden import golden_root, iter_cases, model_digest, sha256  # noqa: E402

CASES = {c.id: c for c in iter_cases()}
MANIFEST = json.loads((golden_root() / "onnx" / "manifest.json").read_text())


class IgnoresMask(OnnxRuntimePort):
    """The planted bug: the port feeds an all-ones attention mask, whatever the caller passed."""

    def feeds(self, config, inputs):
        fed = super().feeds(config, inputs)
        return {**fed, "attention_mask": np.ones_like(fed["attention_mask"])}


ignores_mask = IgnoresMask()


def test_the_onnx_port_passes_every_check_it_declares(tmp_path, capsys):
    report = tmp_path / "onnx.json"
    code = cli.main(
        [
            "run",
            "--impl",
            "onnxruntime",
            "--max-examples",
            "5",
            "--report",
            str(report),
            "--require",
            "golden=25",
            "--require",
            "property=4",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    data = json.loads(report.read_text())
    assert data["implementation"]["name"] == "onnxruntime" and data["summary"]["fail"] == 0
    compared = {c["name"].split(".")[0] for check in data["checks"] for c in check["comparisons"]}
    assert {
        "hidden_states",
        "attentions",
        "last_hidden_state",
        "logits",
        "start_logits",
    } <= compared
    too_long = next(c for c in data["checks"] if c["id"] == "mpnet/pt/base-too-long")
    assert too_long["status"] == "pass" and too_long["raised"]["type"] == "ValueError"


def test_a_bug_planted_in_the_onnx_port_is_found_at_its_first_divergence():
    result = check_golden(ignores_mask, CASES["mpnet/pt/base-right-padding"])[0]
    assert result.status == "fail"
    assert result.diagnosis.startswith("first divergence: attentions.0"), result.diagnosis
    assert "(the attention probabilities of layer 1)" in result.diagnosis
    unmasked = check_golden(ignores_mask, CASES["mpnet/pt/base-s1"])[0]
    assert (
        unmasked.status == "pass"
    )  # no padding: the bug does not show, and the suite does not invent one


def test_the_exports_are_listed_with_their_sums_and_models():
    folder = golden_root() / "onnx"
    assert sorted(p.name for p in folder.glob("*.onnx")) == sorted(
        m["file"] for m in MANIFEST["models"]
    )
    for entry in MANIFEST["models"]:
        assert sha256(folder / entry["file"]) == entry["sha256"], entry["file"]
        case = CASES[entry["cases"][0]]
        assert model_digest(case.config, case.weights) == entry["model_digest"]
        assert entry["max_abs_vs_torch"] < 2e-5, entry


def test_the_onnx_port_declared_final_only_is_asked_for_and_judged_on_final_outputs():
    """The same port, as a serving runtime would use it: final outputs only, asked for nothing
    more."""
    from dataclasses import replace

    from conformance.runner import Plan, run_plan
    from conformance.selection import Selection

    port = OnnxRuntimePort()
    caps = replace(port.capabilities, outputs=frozenset({"final"}))
    plan = Plan("onnxruntime", family="mpnet", profile="pt", tiers=("golden",), caps=caps)
    results = [
        r
        for r in run_plan(plan, Selection.load(None), Selection.load(None), impl=port)
        if r.status != "skip"
    ]
    assert len(results) >= 25 and all(r.status == "pass" for r in results), [
        r.message for r in results
    ]
    compared = {c.name for r in results for c in r.comparisons}
    assert compared and not any(n.startswith(("hidden_states", "attentions")) for n in compared)
