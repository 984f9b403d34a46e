"""Each targeted golden case really discriminates its behaviour: with that behaviour flipped, it
fails.

A case that passes under both semantics would prove nothing; these tests run the reference with the
one behaviour changed (another profile, or the targeted config field reset) and require a failure.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.adapters.reference import ReferenceImplementation
from conformance.checks import check_golden
from conformance.golden import iter_cases
from conformance.ops import check_op_case
from reference.mpnet import relative_position_bucket
from reference.mpt import alibi_bias
from reference.ops import layer_norm
from reference.precision import ROUND

CASES = {c.id: c for c in iter_cases()}


class Flipped(ReferenceImplementation):
    """The reference with a different profile or an edited config."""

    def __init__(self, profile=None, config_edit=None, mask_edit=None):
        super().__init__()
        self.profile, self.config_edit, self.mask_edit = profile, config_edit, mask_edit

    def run(self, family, task, config, weights, inputs, options):
        if self.config_edit:
            config = self.config_edit(dict(config))
        if self.mask_edit:
            inputs = {**inputs, "attention_mask": self.mask_edit(inputs["attention_mask"])}
        return super().run(
            family,
            task,
            config,
            weights,
            inputs,
            {**options, "profile": self.profile or options["profile"]},
        )


def drop_attn(field):
    def edit(config):
        config["attn_config"] = {k: v for k, v in config["attn_config"].items() if k != field}
        return config

    return edit


def setting(**values):
    return lambda config: {**config, **values}


FLIPS = [
    (
        "mpnet/pt/base-fully-masked-row",
        Flipped(profile="tf"),
        "uniform vs unmasked fully padded row",
    ),
    (
        "mpnet/tf/base-fully-masked-row",
        Flipped(profile="pt"),
        "unmasked vs uniform fully padded row",
    ),
    ("mpnet/pt/base-buckets-64", Flipped(profile="tf"), "32 vs 64 buckets"),
    ("mpnet/tf/base-buckets-64", Flipped(profile="pt"), "64 vs 32 buckets"),
    ("mpnet/pt/base-nonbinary-mask", Flipped(profile="tf"), "finfo.min vs -10000 scaling"),
    ("mpnet/tf/base-nonbinary-mask", Flipped(profile="pt"), "-10000 vs finfo.min scaling"),
    ("mpnet/pt/base-gelu-new", Flipped(config_edit=setting(hidden_act="gelu")), "tanh vs erf GELU"),
    (
        "mpnet/pt/masked-lm-gelu-new",
        Flipped(config_edit=setting(hidden_act="gelu")),
        "encoder GELU form",
    ),
    (
        "mpnet/pt/token-classification-legacy-loss",
        Flipped(profile="tf"),
        "pt ignores tf_legacy_loss",
    ),
    (
        "mpnet/pt/question-answering-negative",
        Flipped(profile="tf"),
        "pt clamps negatives, tf rejects them",
    ),
    (
        "mpt/hf/softmax-scale",
        Flipped(config_edit=drop_attn("softmax_scale")),
        "explicit vs default softmax scale",
    ),
    (
        "mpt/hf/mask-non-binary",
        Flipped(mask_edit=lambda m: (m != 0).astype(m.dtype)),
        "nonzero instead of exactly-1",
    ),
    ("mpt/mosaic/mosaic-clip-qkv", Flipped(config_edit=drop_attn("clip_qkv")), "clip_qkv"),
    (
        "mpt/mosaic/mosaic-logit-scale",
        Flipped(config_edit=setting(logit_scale=None)),
        "logit_scale",
    ),
    (
        "mpt/mosaic/mosaic-alibi-bias-max",
        Flipped(config_edit=drop_attn("alibi_bias_max")),
        "alibi_bias_max 4 vs 8",
    ),
    (
        "mpt/mosaic/mosaic-sequence-id",
        Flipped(config_edit=drop_attn("attn_uses_sequence_id")),
        "sequence_id masking",
    ),
    (
        "mpt/mosaic/mosaic-mask-non-binary",
        Flipped(mask_edit=lambda m: (m == 1).astype(m.dtype)),
        "exactly-1 instead of nonzero",
    ),
    ("mpnet/pt/base-left-padding", Flipped(mask_edit=np.ones_like), "padding ignored"),
    ("mpt/hf/causal-lm-left-padding", Flipped(mask_edit=np.ones_like), "padding ignored"),
]


@pytest.mark.parametrize("case_id, impl, behaviour", FLIPS, ids=[f[0] for f in FLIPS])
def test_flipping_the_targeted_behaviour_fails_the_case(case_id, impl, behaviour):
    with np.errstate(all="ignore"):
        result = check_golden(impl, CASES[case_id])[0]
    assert result.status == "fail", (
        f"{case_id} still passes with {behaviour} flipped: the case does not discriminate"
    )


# The op tier: each op case against a port's op with a mistake ports make, and against ours.
OP_CASES = {c.id: c for c in iter_cases(tier="op")}


def _slopes_as_if_a_power_of_two(n_heads):  # 2^(-8 k / H) for k = 1..H, whatever H is
    return np.float32(1.0) / np.power(np.float32(2.0), np.arange(1, n_heads + 1) * (8 / n_heads))


def _norm_in_float32_then_rounded(x, weight, bias, eps, precision=None):
    """The LayerNorm of the unrounded inputs, only its result rounded (autocast's rounding of x,
    weight and bias left out)."""
    y = layer_norm(x, weight, bias, eps)
    return y if precision is None else ROUND[precision](y)


OP_BUGS = [
    (
        "mpnet/pt/op-relative-position-bucket",
        "relative_position_bucket",
        lambda rel, num_buckets: relative_position_bucket(-np.asarray(rel), num_buckets),
        "distances taken query minus key",
    ),
    (
        "mpnet/tf/op-relative-position-bucket",
        "relative_position_bucket",
        lambda rel, num_buckets: relative_position_bucket(rel, num_buckets, max_distance=256),
        "max_distance 256",
    ),
    (
        "mpt/hf/op-alibi",
        "alibi_bias",
        lambda n_heads, key_len: alibi_bias(_slopes_as_if_a_power_of_two(n_heads), key_len),
        "slopes of a head count that is not a power of two",
    ),
    (
        "mpt/mosaic/op-low-precision-layer-norm",
        "low_precision_layer_norm",
        _norm_in_float32_then_rounded,
        "inputs not rounded before the norm",
    ),
]


@pytest.mark.parametrize("case_id, op, bug, mistake", OP_BUGS, ids=[b[0] for b in OP_BUGS])
def test_each_op_case_fails_a_port_with_a_known_mistake_and_passes_ours(case_id, op, bug, mistake):
    """The op tier (conformance.ops.check_op_case) on a port whose op has a mistake seen in
    ports: the case fails and its message names the output that diverged; the same case passes
    the reference's op."""
    case = OP_CASES[case_id]
    ours = ReferenceImplementation()
    ok, message, _ = check_op_case(ours, case)
    assert ok, f"{case_id} fails the reference: {message}"

    class Port:
        ops = {**ours.ops, op: bug}

    with np.errstate(all="ignore"):
        ok, message, _ = check_op_case(Port(), case)
    assert not ok, f"{case_id} passes a port with {mistake}: the op case does not discriminate"
    assert any(name in message for name in case.expected), message
