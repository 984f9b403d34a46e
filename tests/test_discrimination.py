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
