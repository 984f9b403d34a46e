"""MPT config parsing (HF and MosaicML forms), validation, and profile-dependent checkpoint
rules."""

from __future__ import annotations

import numpy as np
import pytest

import reference
from reference import mpt_model

HF = dict(
    model_type="mpt",
    d_model=16,
    n_heads=2,
    n_layers=1,
    vocab_size=20,
    max_seq_len=8,
    attn_config=dict(softmax_scale=0.5, alibi_bias_max=4),
)


def test_hf_form_flattens_attn_config_and_keeps_hf_defaults():
    c = mpt_model.MPTConfig.from_dict(HF)
    assert c.softmax_scale == 0.5 and c.alibi and c.no_bias
    feats = mpt_model.resolve_features(c, reference.get_profile("mpt", "hf"))
    assert (
        feats.alibi_bias_max == 8 and feats.mlp_width == 64 and not feats.bias
    )  # HF ignores both fields


def test_mosaic_form_takes_llm_foundry_defaults_and_aliases():
    mosaic = dict(
        model_type="mpt",
        d_model=16,
        n_heads=2,
        n_layers=1,
        vocab_size=20,
        max_seq_len=8,
        norm_eps=1e-6,
        expansion_ratio=2,
        attn_config=dict(attn_impl="torch", alibi_bias_max=4, qk_ln=True),
    )
    c = mpt_model.MPTConfig.from_dict(mosaic, profile="mosaic")
    assert (c.alibi, c.no_bias, c.layer_norm_epsilon) == (False, False, 1e-6)
    feats = mpt_model.resolve_features(c, reference.get_profile("mpt", "mosaic"))
    assert feats.mlp_width == 32 and feats.qk_ln and feats.bias and feats.learned_pos_emb
    shapes = mpt_model.param_shapes(c, "causal-lm", "mosaic")
    assert shapes["blocks.0.attn.q_ln.bias"] == (16,) and shapes["wpe.weight"] == (8, 16)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(d_model=15), "not a multiple of n_heads"),
        (
            dict(attn_config=dict(attn_type="multiquery_attention")),
            "attn_type 'multiquery_attention' is not supported",
        ),
        (dict(n_layers=0), "n_layers must be a positive integer"),
        (dict(max_seq_len="8"), "max_seq_len must be an integer, got .8."),
        (dict(logit_scale="huge"), "logit_scale"),
        (dict(attn_config=[1]), "attn_config must be a dict"),
        (dict(model_type="gpt2"), "not 'mpt'"),
    ],
)
def test_bad_configs_are_refused(change, message):
    with pytest.raises((ValueError, TypeError), match=message):
        mpt_model.MPTConfig.from_dict({**HF, **change})


def test_tied_lm_head_copy_is_ignored_and_untied_head_is_required():
    c = mpt_model.MPTConfig.from_dict(HF)
    rng = np.random.default_rng(0)
    weights = {
        "transformer." + k: rng.normal(size=s).astype(np.float32)
        for k, s in mpt_model.param_shapes(c, "causal-lm").items()
    }
    weights["lm_head.weight"] = weights["transformer.wte.weight"]
    model = reference.build(HF, weights, task="causal-lm")
    assert "lm_head.weight" not in model.state_dict()
    with pytest.raises(reference.CheckpointError, match="missing weights.*lm_head.weight"):
        reference.build(
            {**HF, "tie_word_embeddings": False},
            {k: v for k, v in weights.items() if k != "lm_head.weight"},
            task="causal-lm",
        )


def test_profile_specific_inputs_are_refused_elsewhere():
    c = mpt_model.MPTConfig.from_dict(HF)
    rng = np.random.default_rng(0)
    weights = {
        k: rng.normal(size=s).astype(np.float32)
        for k, s in mpt_model.param_shapes(c, "base").items()
    }
    model = reference.build(HF, weights)
    ids = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match="sequence_id needs the mosaic profile"):
        model(ids, sequence_id=np.array([[0, 0, 1]]))
    with pytest.raises(ValueError, match="prefix_mask needs the mosaic profile"):
        model(ids, prefix_mask=np.array([[1, 0, 0]]))


@pytest.mark.parametrize(
    "extra",
    [
        dict(ffn_config=dict(ffn_type="mptglu")),
        dict(attn_config=dict(rope=True)),
        dict(attn_config=dict(kv_n_heads=1)),
        dict(norm_type="rmsnorm"),
        dict(norm_type="low_precision_rmsnorm"),
        dict(norm_type=None),  # HF 4.37.2 reads no norm_type at all, so it takes this one too
    ],
)
def test_mosaic_features_outside_the_reference_are_named(extra):
    c = mpt_model.MPTConfig.from_dict({**HF, **extra}, profile="mosaic")
    with pytest.raises(ValueError, match="outside this reference"):
        mpt_model.resolve_features(c, reference.get_profile("mpt", "mosaic"))
    mpt_model.resolve_features(
        mpt_model.MPTConfig.from_dict({**HF, **extra}), reference.get_profile("mpt", "hf")
    )  # HF drops them


def test_both_layer_norm_types_of_the_original_are_taken_under_mosaic():
    """norm_type "layernorm" and "low_precision_layernorm" are both a LayerNorm in float32 (they
    differ only under autocast), so both resolve; the RMSNorms are refused above."""
    mosaic = reference.get_profile("mpt", "mosaic")
    for norm_type in ("layernorm", "low_precision_layernorm"):
        c = mpt_model.MPTConfig.from_dict({**HF, "norm_type": norm_type}, profile="mosaic")
        assert mpt_model.resolve_features(c, mosaic).bias == (not c.no_bias)
