"""Semantics profiles: where upstream implementations of one model family disagree.

A profile is a small frozen object consulted at the few places where the upstreams differ. The table
below is the whole story for MPNet (SPEC.md sections 1.4-1.10); docs list it beside the code.

| behaviour                  | ``pt`` (4.37.2, PyTorch)       | ``tf`` (4.37.2, TensorFlow)     |
|----------------------------|--------------------------------|---------------------------------|
| value added at masked keys | finfo(float32).min (a fully    | -10000 (a fully masked row      |
|                            | masked row is uniform)         | attends as if unmasked)         |
| attention mask ranks       | 2D (B, S) and 3D (B, S, S)     | 2D only                         |
| relative buckets used      | always 32 (config: table size) | relative_attention_num_buckets  |
| head_mask                  | multiplies the probabilities   | refused                         |
| pooler                     | only where the head has one    | always, where its weights exist |
| token-classification tuple | (loss, logits, hs, att)        | (loss, logits, pooled, hs, att) |
| losses                     | torch means (losses.py)        | Keras shapes (losses.py)        |
"""

from __future__ import annotations

from dataclasses import dataclass

from .ops import MASK_VALUE

PT_MASK_VALUE = MASK_VALUE  # -3.4028234663852886e38: HF PyTorch adds finfo(dtype).min
TF_MASK_VALUE = (
    -10000.0
)  # HF TensorFlow MPNet still adds the pre-2022 constant (transformers #17306)
PT_NUM_BUCKETS = 32  # compute_position_bias is called with its default; the config is not consulted


@dataclass(frozen=True)
class MPNetProfile:
    name: str
    mask_value: float  # added to the scores of masked keys, scaled by (1 - mask)
    buckets_from_config: bool  # False: always PT_NUM_BUCKETS buckets
    accepts_3d_mask: bool
    head_mask_supported: bool
    always_pools: bool  # TF's main layer always computes the pooled output
    loss_style: str  # "pt" or "tf": selects the loss rules in reference/losses.py

    def num_buckets(self, config) -> int:
        return config.relative_attention_num_buckets if self.buckets_from_config else PT_NUM_BUCKETS


MPNET_PROFILES = {
    "pt": MPNetProfile(
        name="pt",
        mask_value=PT_MASK_VALUE,
        buckets_from_config=False,
        accepts_3d_mask=True,
        head_mask_supported=True,
        always_pools=False,
        loss_style="pt",
    ),
    "tf": MPNetProfile(
        name="tf",
        mask_value=TF_MASK_VALUE,
        buckets_from_config=True,
        accepts_3d_mask=False,
        head_mask_supported=False,
        always_pools=True,
        loss_style="tf",
    ),
}


@dataclass(frozen=True)
class MPTProfile:
    """hf: transformers 4.37.2, which reads only some MptConfig fields (SPEC 2.1 and 2.9). mosaic:
    MosaicML llm-foundry (0.22), which honours them all.

    | behaviour                    | ``hf``                   | ``mosaic``                    |
    |------------------------------|--------------------------|-------------------------------|
    | missing fields' defaults     | HF MptConfig (alibi)     | llm-foundry (no alibi)        |
    | Linear / LayerNorm biases    | never                    | unless no_bias                |
    | MLP width                    | 4 * d_model              | expansion_ratio * d_model     |
    | ALiBi                        | always, alibi_bias_max 8 | if alibi, with alibi_bias_max |
    | learned positions (wpe)      | never                    | if learned_pos_emb, pad-aware |
    | clip_qkv, qk_ln, logit_scale | ignored                  | honoured                      |
    | attention_mask values        | masked unless exactly 1  | masked where 0 (bool cast)    |
    | 4D attention_mask            | as given, no causal part | refused                       |
    | sequence_id                  | refused                  | if attn_uses_sequence_id      |
    | residual / embed. dropout    | attn_pdrop / none        | resid_pdrop / emb_pdrop       |
    """

    name: str
    honours_original_fields: bool
    config_defaults: tuple  # (field, value) pairs that differ from the HF MptConfig defaults


MPT_PROFILES = {
    "hf": MPTProfile(name="hf", honours_original_fields=False, config_defaults=()),
    "mosaic": MPTProfile(
        name="mosaic",
        honours_original_fields=True,
        config_defaults=(("alibi", False), ("no_bias", False)),
    ),
}

PROFILES = {"mpnet": MPNET_PROFILES, "mpt": MPT_PROFILES}


def get_profile(family: str, name: str | None):
    """The named profile of a family; None means the family's default (pt, hf)."""
    table = PROFILES.get(family)
    if table is None:
        raise ValueError(f"no profiles for model family {family!r}")
    if name is None:
        return next(iter(table.values()))
    if isinstance(name, (MPNetProfile, MPTProfile)):
        return name
    if name not in table:
        raise ValueError(f"unknown {family} profile {name!r}; accepted: {sorted(table)}")
    return table[name]
