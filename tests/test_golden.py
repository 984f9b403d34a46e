"""Every golden case (produced by transformers 4.37.2 on PyTorch and TensorFlow) through the
reference."""

from __future__ import annotations

import numpy as np
import pytest

import reference
from conformance.adapters.reference import implementation, split_past
from conformance.checks import check_golden
from conformance.golden import generate_outputs, golden_root, iter_cases, load_manifest, sha256

CASES = list(
    iter_cases(dtype="fp32")
)  # the reference computes in fp32; -bf16/-fp16 cases: test_low_precision.py
BUCKET_CASES = list(iter_cases(tier="op", family="mpnet"))


def test_manifest_lists_every_case_directory_and_hashes_match():
    root = golden_root()
    listed = {c["path"] for c in load_manifest()["cases"]}
    on_disk = {str(p.parent.relative_to(root)) for p in root.glob("*/*/*/case.json")}
    assert listed == on_disk
    for entry in load_manifest()["cases"]:
        for name, digest in entry["sha256"].items():
            assert sha256(root / entry["path"] / name) == digest, f"{entry['path']}/{name} changed"


def test_golden_directory_stays_small():
    """What the repository stores: git keeps one copy of identical files (the generate cases share
    one model), so distinct contents are counted, and the checked-out tree is bounded too."""
    files = [p for p in golden_root().rglob("*") if p.is_file()]
    distinct = {sha256(p): p.stat().st_size for p in files}
    stored, tree = sum(distinct.values()), sum(p.stat().st_size for p in files)
    assert stored < 16 * 2**20, f"golden/ holds {stored / 2**20:.1f} MiB of distinct files"
    assert tree < 32 * 2**20, f"golden/ is {tree / 2**20:.1f} MiB checked out"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden_case(case):
    """The reference reproduces upstream's outputs (every layer) and tuple order within the case's
    fp32 tolerance."""
    with np.errstate(all="ignore"):
        results = check_golden(implementation, case)
    for r in results:
        no_tuple = r.id.endswith("::tuple") and "tuple_layout" not in case.meta
        assert r.status == "pass" or (no_tuple and r.status == "skip"), (
            f"{r.id}: {r.message}\n{r.diagnosis or ''}"
        )


@pytest.mark.parametrize("case", [c for c in CASES if c.expect_error], ids=lambda c: c.id)
def test_upstream_errors_become_clear_value_or_type_errors(case):
    """Where upstream raised (IndexError, InvalidArgumentError, ...), the reference raises
    ValueError/TypeError."""
    with pytest.raises((ValueError, TypeError)) as info:
        implementation.run(
            case.family,
            case.task,
            case.config,
            case.weights,
            case.inputs,
            {**case.options, "profile": case.profile},
        )
    assert len(str(info.value)) > 20


@pytest.mark.parametrize("case", [c for c in CASES if not c.expect_error], ids=lambda c: c.id)
def test_golden_checkpoint_loads_through_from_pretrained(case):
    """Each case directory is a save_pretrained checkpoint: from_pretrained reads it and matches
    upstream."""
    model = reference.from_pretrained(case.path, task=case.task, profile=case.profile)
    inputs, past = split_past(case.inputs)
    if "generate" in case.options:
        out = generate_outputs(model.generate(**inputs, **case.options["generate"]))
        np.testing.assert_array_equal(out["sequences"], case.expected["sequences"])
        return
    with np.errstate(all="ignore"):
        out = model(**inputs, **({"past_key_values": past} if past else {})).to_dict()
    for name in ("logits", "last_hidden_state", "start_logits", "end_logits"):
        if name in case.expected:
            diff = np.abs(out[name] - case.expected[name]).max()
            assert diff <= case.tolerance["fp32"]["atol"], f"{name}: max abs error {diff:.3g}"


@pytest.mark.parametrize("case", BUCKET_CASES, ids=[c.id for c in BUCKET_CASES])
def test_relative_position_buckets_match_upstream(case):
    """Our bucket function equals upstream's (PT over -1000..1000, TF over -300..300) for 16, 32 and
    64 buckets."""
    from reference.mpnet import relative_position_bucket

    rel = case.inputs["relative_position"]
    for name, expected in case.expected.items():
        got = relative_position_bucket(rel, num_buckets=int(name.split(".")[1]))
        mismatch = np.flatnonzero(got != expected)
        assert mismatch.size == 0, f"{name}: first mismatch at distance {rel[mismatch[0]]}"


class _Bf16Tensor:
    """Stands in for a torch bf16 tensor where generate_outputs meets one (a bf16 port's cache):
    numpy() refuses it as torch does, float() widens it."""

    def __init__(self, values, widened=False):
        self.values, self.widened = np.asarray(values, np.float32), widened

    def __len__(self):
        return len(self.values)

    def detach(self):
        return self

    def cpu(self):
        return self

    def is_floating_point(self):
        return True

    def float(self):
        return _Bf16Tensor(self.values, widened=True)

    def numpy(self):
        if not self.widened:
            raise TypeError("Got unsupported ScalarType BFloat16")
        return self.values


def test_generate_outputs_widens_low_precision_tensors():
    """A bf16 port's generate() output (scores and cache in bf16; numpy has no bf16) is read as
    float32 rather than failing: the transformers-bf16 adapter failed the generate-cache property
    on that before."""
    from types import SimpleNamespace

    key, value = _Bf16Tensor([[1.0, 2.5]]), _Bf16Tensor([[-0.5, 4.0]])
    out = SimpleNamespace(
        sequences=np.array([[3, 4]]),
        scores=(_Bf16Tensor([[0.25, -1.0]]),),
        past_key_values=((key, value),),
    )
    flat = generate_outputs(out)
    assert flat["present.0.key"].dtype == np.float32
    np.testing.assert_array_equal(flat["present.0.key"], [[1.0, 2.5]])
    np.testing.assert_array_equal(flat["present.0.value"], [[-0.5, 4.0]])
    np.testing.assert_array_equal(flat["scores.0"], [[0.25, -1.0]])
