"""conformance/suspects.py: a port that fails a golden case the way a known porting variant does
is told which, and one with another fault is not told a wrong one."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.adapters.reference import ReferenceImplementation
from conformance.checks import check_golden
from conformance.golden import iter_cases
from conformance.suspects import ggml_gelu
from reference import mpt
from reference.ops import gelu_new

CASES = {c.id: c for c in iter_cases()}


class Port(ReferenceImplementation):
    """The reference with one fault of its own, made its own way: ``inputs``, ``config`` and
    ``weights`` edit what it is given, ``outputs`` what it returns, ``mpt`` replaces functions of
    reference.mpt (name -> function) while it runs."""

    def __init__(self, inputs=None, config=None, weights=None, outputs=None, mpt=None):
        super().__init__()
        self.edit_inputs, self.edit_config, self.edit_weights = inputs, config, weights
        self.edit_outputs, self.mpt = outputs, mpt or {}

    def run(self, family, task, config, weights, inputs, options):
        inputs = self.edit_inputs(dict(inputs)) if self.edit_inputs else inputs
        config = self.edit_config(dict(config)) if self.edit_config else config
        weights = self.edit_weights(dict(weights)) if self.edit_weights else weights
        real = {name: getattr(mpt, name) for name in self.mpt}
        try:
            for name, function in self.mpt.items():
                setattr(mpt, name, function)
            out = super().run(family, task, config, weights, inputs, options)
        finally:
            for name, function in real.items():
                setattr(mpt, name, function)
        return self.edit_outputs(out) if self.edit_outputs else out


def positions_from_zero(inputs):  # position ids 0 .. S - 1 given explicitly, padding or not
    B, S = inputs["input_ids"].shape
    return {**inputs, "position_ids": np.broadcast_to(np.arange(S), (B, S)).copy()}


def geometric_slopes(n_heads, alibi_bias_max=8):  # 2^(-8 k / H): right for powers of two only
    return np.exp2(-np.arange(1, n_heads + 1) * alibi_bias_max / n_heads).astype(np.float32)


def no_bias_table(weights):  # MPNet's relative attention bias table zeroed: BERT's attention
    name = next(k for k in weights if k.endswith("relative_attention_bias.weight"))
    return {**weights, name: np.zeros_like(weights[name])}


def unmasked(inputs):
    return {**inputs, "attention_mask": np.ones_like(inputs["attention_mask"])}


def table_gelu(x):
    """GELU read from a table of all 65,536 fp16 values (the tanh approximation at each, in
    ggml's float32 form 0.5 v (1 + tanh(sqrt(2 / pi) v (1 + 0.044715 v^2))), stored as fp16),
    indexed by the input's fp16 bits: ggml's way, built here as a table rather than by
    conformance.suspects.ggml_gelu's arithmetic on rounded values."""
    if not hasattr(table_gelu, "table"):
        v = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
        c, a = np.float32(np.sqrt(2 / np.pi)), np.float32(0.044715)
        with np.errstate(all="ignore"):
            exact = np.float32(0.5) * v * (1 + np.tanh(c * v * (1 + a * v * v)))
        table_gelu.table = exact.astype(np.float16).astype(np.float32)
    x = np.asarray(x, np.float32)
    looked_up = table_gelu.table[x.astype(np.float16).view(np.uint16)]
    return np.where(x <= -10, np.float32(0), np.where(x >= 10, x, looked_up))


@pytest.mark.parametrize(
    "case_id, port, suspect",
    [
        ("mpt/hf/causal-lm-heads-3", Port(mpt={"gelu": gelu_new}), "gelu-tanh"),
        ("mpt/hf/causal-lm-heads-3", Port(mpt={"gelu": table_gelu}), "gelu-fp16-table"),
        (
            "mpt/hf/causal-lm-heads-3",  # 3 heads: the slopes differ from MPT's
            Port(mpt={"alibi_slopes": geometric_slopes}),
            "alibi-slopes-power-of-two",
        ),
        ("mpt/hf/causal-lm-left-padding", Port(inputs=unmasked), "attention-mask-ignored"),
        ("mpnet/pt/base-left-padding", Port(inputs=unmasked), "attention-mask-ignored"),
        ("mpnet/pt/base-right-padding", Port(weights=no_bias_table), "relative-bias-missing"),
        (
            "mpnet/pt/base-right-padding",
            Port(config=lambda c: {**c, "hidden_act": "gelu_new"}),
            "gelu-tanh",
        ),
        ("mpnet/pt/base-right-padding", Port(inputs=positions_from_zero), "positions-from-zero"),
        (
            "mpt/hf/softmax-scale",
            Port(config=lambda c: {**c, "attn_config": {}}),  # the scale dropped on conversion
            "softmax-scale-ignored",
        ),
        ("mpnet/pt/base-buckets-64", Port(config=lambda c: c), None),  # passes: nothing to say
    ],
)
def test_a_port_failing_as_a_known_variant_is_told_which(case_id, port, suspect):
    result = check_golden(port, CASES[case_id])[0]
    if suspect is None:
        assert result.status == "pass", result.message
        return
    assert result.status == "fail", result.message
    assert f"explained by a known variant: {suspect} (" in result.diagnosis, result.diagnosis
    assert result.diagnosis.startswith("first divergence: "), result.diagnosis


def test_a_fault_that_is_no_known_variant_names_none():
    """Logits off by a factor, or the last hidden state shifted by a constant: no suspect comes
    within tolerance or tenfold closer, so the diagnosis names none."""
    scaled = Port(outputs=lambda out: {k: v * 1.01 if k == "logits" else v for k, v in out.items()})
    shifted = Port(
        outputs=lambda out: {
            k: v + 0.05 if k == "last_hidden_state" else v for k, v in out.items()
        },
    )
    for port, case_id in (
        (scaled, "mpt/hf/causal-lm-heads-3"),
        (shifted, "mpnet/pt/base-right-padding"),
    ):
        result = check_golden(port, CASES[case_id])[0]
        assert result.status == "fail" and "known variant" not in result.diagnosis, result.diagnosis


def test_ggmls_gelu_emulation_is_the_table_it_describes():
    """ggml_gelu (arithmetic on fp16-rounded values) equals a lookup in a table of all fp16
    inputs, over values across [-12, 12] and the fp16 rounding boundaries."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-12, 12, 100_000), np.linspace(-10.5, 10.5, 20_001)])
    x = x.astype(np.float32)
    np.testing.assert_array_equal(ggml_gelu(x), table_gelu(x))
