"""MPT in NumPy: config, ALiBi, attention with an explicit KV cache, pre-norm blocks, heads.

Reads top-down: config -> profile features -> ALiBi -> masks -> attention -> block -> model -> heads.
Numbers follow SPEC.md section 2 (transformers 4.37.2, profile ``hf``) and MosaicML llm-foundry
(profile ``mosaic``); reference/profiles.py has the table of what the two profiles change.

How MPT differs from the textbook GPT decoder:
* no position embeddings by default: ALiBi adds ``slope_h * (j - (K - 1))`` to the score of key j.
  This key-only form differs from the paper's ``-slope_h * (i - j)`` by a per-row constant, which
  the softmax cancels (SPEC 2.2);
* one fused Wqkv projection split into contiguous thirds; masked scores are *replaced* by the most
  negative float32 (not added to), so a fully masked row attends uniformly;
* LayerNorms without bias and bias-free Linears (hf); the LM head is tied to the token embeddings.

Axis letters: B batch, S new tokens, P past length, K = P + S keys, H heads, D head size,
C d_model, V vocabulary, L layers.

The KV cache is a value: ``past_key_values`` is a tuple of L (key, value) pairs, each [B, H, P, D]
(the HF layout; keys are not transposed). A call with use_cache=True returns the extended pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np

from . import losses
from .generation import GenerationMixin
from .inputs import (MAX_LAYERS, MAX_SIZE, as_float, as_ids, check_field_types, check_flags, check_tokens,
                     is_integer, label_fields, make_rng, require_positive_ints, require_probabilities)
from .kernels import NUMPY
from .ops import dropout, layer_norm, linear
from .precision import to_bf16_bits
from .outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
    upstream_tuple,
)
from .profiles import MPTProfile, get_profile

HF_ALIBI_BIAS_MAX = 8  # HF 4.37.2 never passes config.alibi_bias_max (SPEC 2.1)
HF_EXPANSION_RATIO = 4  # HF 4.37.2 hard-codes the MLP width to 4 * d_model (SPEC 2.1)
ATTN_TYPES = ("multihead_attention",)


# ------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class MPTConfig:
    """MptConfig with its attn_config flattened; defaults are HF 4.37.2's (SPEC 2.1)."""

    d_model: int = 2048
    n_heads: int = 16
    n_layers: int = 24
    expansion_ratio: float = 4
    max_seq_len: int = 2048
    vocab_size: int = 50368
    resid_pdrop: float = 0.0
    emb_pdrop: float = 0.0
    layer_norm_epsilon: float = 1e-5
    learned_pos_emb: bool = True
    logit_scale: object = None
    no_bias: bool = True
    use_cache: bool = False
    tie_word_embeddings: bool = True
    pad_token_id: Optional[int] = None
    eos_token_id: object = None  # an id, a list of ids (HF allows several), or None
    bos_token_id: Optional[int] = None
    num_labels: int = 2
    problem_type: Optional[str] = None
    id2label: dict = field(default_factory=dict)
    # attn_config
    attn_type: str = "multihead_attention"
    attn_pdrop: float = 0.0
    clip_qkv: Optional[float] = None
    softmax_scale: Optional[float] = None
    prefix_lm: bool = False
    qk_ln: bool = False
    attn_uses_sequence_id: bool = False
    alibi: bool = True
    alibi_bias_max: float = 8
    # llm-foundry features outside this reference (refused under mosaic, dropped by HF 4.37.2)
    rope: bool = False
    kv_n_heads: Optional[int] = None
    ffn_type: str = "mptmlp"

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_heads

    ALIASES = {"hidden_size": "d_model", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers",
               "norm_eps": "layer_norm_epsilon"}

    @classmethod
    def from_dict(cls, d: dict, profile=None) -> "MPTConfig":
        """From an HF config.json (nested attn_config) or a MosaicML one; missing fields take the
        profile's defaults (HF's for hf, llm-foundry's for mosaic)."""
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        if d.get("model_type", "mpt") != "mpt":
            raise ValueError(f"config model_type is {d.get('model_type')!r}, not 'mpt'")
        profile = get_profile("mpt", profile)
        attn = d.get("attn_config") or {}
        if not isinstance(attn, dict):
            raise TypeError(f"config.attn_config must be a dict, got {type(attn).__name__}")
        ffn = d.get("ffn_config") or {}
        flat = {**dict(profile.config_defaults), **{cls.ALIASES.get(k, k): v for k, v in d.items()}, **attn,
                **({"ffn_type": ffn["ffn_type"]} if isinstance(ffn, dict) and "ffn_type" in ffn else {})}
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in flat.items() if k in names and k not in ("id2label", "num_labels")}
        config = cls(**kwargs, **label_fields(d))
        config.validate()
        return config

    def validate(self) -> None:
        check_field_types(self)
        require_positive_ints(self, ("d_model", "n_heads", "max_seq_len", "vocab_size", "num_labels"))
        require_positive_ints(self, ("n_layers",), limit=MAX_LAYERS)
        if self.d_model % self.n_heads:
            raise ValueError(f"config.d_model ({self.d_model}) is not a multiple of n_heads ({self.n_heads})")
        if self.attn_type not in ATTN_TYPES:
            raise ValueError(f"attn_config.attn_type {self.attn_type!r} is not supported; accepted: {list(ATTN_TYPES)} "
                             "(HF 4.37.2 accepts multiquery_attention in the config but builds full multi-head weights)")
        eos = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        if self.eos_token_id is not None and not all(isinstance(e, int) and not isinstance(e, bool) for e in eos):
            raise TypeError(f"config.eos_token_id must be an integer, a list of integers or null, got {self.eos_token_id!r}")
        require_probabilities(self, ("attn_pdrop", "resid_pdrop", "emb_pdrop"))
        if (isinstance(self.expansion_ratio, bool) or not isinstance(self.expansion_ratio, (int, float))
                or not 0 < self.expansion_ratio * self.d_model <= MAX_SIZE):
            raise ValueError(f"config.expansion_ratio must be positive, with expansion_ratio * d_model at most "
                             f"{MAX_SIZE}, got {self.expansion_ratio!r}")
        if self.softmax_scale is not None and (isinstance(self.softmax_scale, bool) or not isinstance(
                self.softmax_scale, (int, float)) or not math.isfinite(self.softmax_scale)):
            raise ValueError(f"attn_config.softmax_scale must be a finite number or null, got {self.softmax_scale!r}")
        if not (self.logit_scale is None or self.logit_scale == "inv_sqrt_d_model" or (
                isinstance(self.logit_scale, (int, float)) and not isinstance(self.logit_scale, bool))):
            raise ValueError(f"config.logit_scale {self.logit_scale!r} is not a number or 'inv_sqrt_d_model'")


@dataclass(frozen=True)
class Features:
    """What the forward pass actually does, once the profile has decided which config fields count."""

    bias: bool
    mlp_width: int
    alibi: bool
    alibi_bias_max: float
    learned_pos_emb: bool
    clip_qkv: Optional[float]
    qk_ln: bool
    logit_scale: Optional[float]
    sequence_id: bool
    prefix_lm: bool
    mask_rule: str  # "exactly-one": masked unless the value is 1 (hf); "nonzero": masked where 0 (mosaic)
    accepts_4d_mask: bool
    resid_pdrop: float
    emb_pdrop: float


def resolve_features(config: MPTConfig, profile: MPTProfile) -> Features:
    if not profile.honours_original_fields:  # HF 4.37.2 (SPEC 2.1, 2.9)
        return Features(bias=False, mlp_width=HF_EXPANSION_RATIO * config.d_model, alibi=True,
                        alibi_bias_max=HF_ALIBI_BIAS_MAX, learned_pos_emb=False, clip_qkv=None, qk_ln=False,
                        logit_scale=None, sequence_id=False, prefix_lm=False, mask_rule="exactly-one",
                        accepts_4d_mask=True,
                        resid_pdrop=config.attn_pdrop, emb_pdrop=0.0)
    if config.rope or config.ffn_type != "mptmlp" or config.kv_n_heads not in (None, config.n_heads):
        raise ValueError(f"llm-foundry features outside this reference: rope={config.rope}, ffn_type={config.ffn_type!r}, "
                         f"kv_n_heads={config.kv_n_heads} (supported: rope false, ffn_type 'mptmlp', kv_n_heads = n_heads)")
    scale = config.logit_scale
    if scale == "inv_sqrt_d_model":
        scale = 1 / math.sqrt(config.d_model)
    return Features(bias=not config.no_bias, mlp_width=int(config.expansion_ratio * config.d_model),
                    alibi=bool(config.alibi), alibi_bias_max=config.alibi_bias_max,
                    learned_pos_emb=bool(config.learned_pos_emb), clip_qkv=config.clip_qkv, qk_ln=bool(config.qk_ln),
                    logit_scale=scale, sequence_id=bool(config.attn_uses_sequence_id), prefix_lm=bool(config.prefix_lm),
                    mask_rule="nonzero",
                    accepts_4d_mask=False, resid_pdrop=config.resid_pdrop, emb_pdrop=config.emb_pdrop)


# ------------------------------------------------------------------------------------------ ALiBi


def alibi_slopes(n_heads, alibi_bias_max=HF_ALIBI_BIAS_MAX):  # H -> [H] float32
    """Per-head slopes 2^(-k * max / H') for k = 1..H', H' the next power of two (SPEC 2.2).

    When H is not a power of two, the H' slopes are reordered as the odd-indexed ones then the
    even-indexed ones and cut to H, so the first H slopes interleave two geometric sequences.
    """
    padded = 2 ** math.ceil(math.log2(n_heads))
    exponents = np.arange(1, padded + 1, dtype=np.float32) * np.float32(alibi_bias_max / padded)
    slopes = np.float32(1.0) / np.power(np.float32(2.0), exponents)
    if padded != n_heads:
        slopes = np.concatenate([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes.astype(np.float32)


def alibi_bias(slopes, key_len):  # [H], K -> [H, 1, K]
    """Key-only ALiBi: bias[h, 0, j] = slope_h * (j - (K - 1)); 0 at the newest key, broadcast over queries."""
    distance = np.arange(1 - key_len, 1, dtype=np.int32).astype(np.float32)  # [K]
    return slopes[:, None, None] * distance[None, None, :]


def symmetric_alibi_bias(slopes, S, P):  # [H], S, P -> [H, S, K]
    """Prefix-LM ALiBi (llm-foundry "full" bias): -slope_h * |i - j| for query position i = P..P+S-1.
    Queries may look right inside the prefix, so the key-only shortcut no longer applies."""
    distance = -np.abs((P + np.arange(S))[:, None] - np.arange(P + S)[None, :]).astype(np.float32)  # [S, K]
    return slopes[:, None, None] * distance[None]


def decoder_bias(config, feats, S, P, dtype):  # -> [H, 1|S, K] or None
    """The ALiBi bias of S new tokens after P cached ones: key-only, or symmetric under prefix_lm."""
    if not feats.alibi:
        return None
    slopes = alibi_slopes(config.n_heads, feats.alibi_bias_max)
    return (symmetric_alibi_bias(slopes, S, P) if feats.prefix_lm else alibi_bias(slopes, P + S)).astype(dtype)


def softmax_scale(config) -> float:
    """attn_config.softmax_scale, else 1 / sqrt(head size) (SPEC 2.3)."""
    return config.softmax_scale if config.softmax_scale is not None else 1 / math.sqrt(config.head_size)


# ------------------------------------------------------------------------------------------ masks


def causal_mask(S, P):  # -> [S, K] bool, True = masked
    """Query i (the (P+i)-th token) may see key j iff j <= P + i; past keys are always visible."""
    return np.arange(P + S)[None, :] > (P + np.arange(S))[:, None]


def key_is_masked(mask, rule):  # [...] -> [...] bool
    """hf: any value other than exactly 1 masks the key (SPEC 2.4); mosaic: only 0 does (bool cast)."""
    return mask != 1 if rule == "exactly-one" else mask == 0


def decoder_masks(feats, attention_mask, sequence_id, prefix_mask, B, S, P, dtype, profile="this"):
    """masked [B, 1, S, K] bool (True = masked) and the 2D key mask [B, K] (True = real key) or None.

    What is hidden: keys after the query (causal), keys the attention mask hides (under the feature
    set's rule), keys of another sequence (sequence_id); prefix keys are visible to every query. The
    inputs are checked here (dtype sets the float type masks are read in; profile names the profile
    in errors): every caller, the model and the decode sessions, goes through this one function."""
    K = P + S
    causal = causal_mask(S, P) if S > 1 else np.zeros((S, K), dtype=bool)
    if feats.prefix_lm:  # a query may also see every prefix key, even to its right
        if prefix_mask is None:
            raise ValueError("prefix_mask [B, past + new] is required when attn_config.prefix_lm is true")
        prefix = as_float(prefix_mask, "prefix_mask", (B, K), dtype) != 0
        causal = causal_mask(S, P)[None] & ~prefix[:, None, :]  # [B, S, K]
    elif prefix_mask is not None:
        raise ValueError("prefix_mask needs the mosaic profile with attn_config.prefix_lm=True")
    key_mask = None
    if attention_mask is None:
        masked = np.broadcast_to(causal.reshape(-1, 1, S, K), (B, 1, S, K))
    else:
        m = np.asarray(attention_mask)
        if m.ndim == 4:
            if not feats.accepts_4d_mask:
                raise ValueError(f"the {profile} profile accepts only a 2D attention_mask ({B}, {K})")
            masked = key_is_masked(as_float(m, "attention_mask", (B, 1, S, K), dtype), feats.mask_rule)
        else:  # a length-1 mask with a single new token broadcasts over every key (SPEC 2.4)
            width = 1 if (m.ndim == 2 and m.shape[1] == 1 and S == 1) else K
            m = as_float(m, "attention_mask (covering past and new tokens)", (B, width), dtype)
            key_masked = key_is_masked(m, feats.mask_rule)  # [B, K or 1]
            key_mask = np.broadcast_to(~key_masked, (B, K))
            masked = causal.reshape(-1, 1, S, K) | key_masked[:, None, None, :]
    if sequence_id is not None:
        if not feats.sequence_id:
            raise ValueError("sequence_id needs the mosaic profile with attn_config.attn_uses_sequence_id=True")
        if P:
            raise ValueError("sequence_id cannot be combined with past_key_values")
        seq = as_ids(sequence_id, "sequence_id", np.iinfo(np.int64).max, ndim=2)
        if seq.shape != (B, S):
            raise ValueError(f"sequence_id must have shape ({B}, {S}), got {seq.shape}")
        masked = masked | (seq[:, None, :, None] != seq[:, None, None, :])
    return masked, key_mask


# ------------------------------------------------------------------------------------- the blocks


def attention(p, config, feats, x, past, bias, masked, rng, kernels=NUMPY):
    """Fused-QKV self-attention over the cache (SPEC 2.3).

    p: this layer's ``attn.*`` weights; x [B, S, C]; past: (key, value) [B, H, P, D] or None;
    bias: [H, 1, K] or None; masked: [B, 1|H, S, K] bool (True = masked).
    Returns out [B, S, C], probs [B, H, S, K] and the present (key, value) [B, H, K, D].
    """
    B, S, C = x.shape
    H, D, K = config.n_heads, config.head_size, kernels
    qkv = K.linear(x, p["Wqkv.weight"], p.get("Wqkv.bias"))  # [B, S, 3C]
    if feats.clip_qkv is not None:
        qkv = np.clip(qkv, -feats.clip_qkv, feats.clip_qkv)
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]  # contiguous thirds
    if feats.qk_ln:  # LayerNorm over all of d_model, before the split into heads
        q = layer_norm(q, p["q_ln.weight"], p.get("q_ln.bias"), config.layer_norm_epsilon)
        k = layer_norm(k, p["k_ln.weight"], p.get("k_ln.bias"), config.layer_norm_epsilon)
    q, k, v = (t.reshape(B, S, H, D).transpose(0, 2, 1, 3) for t in (q, k, v))  # [B, H, S, D]
    if past is not None:
        k = np.concatenate([past[0], k], axis=2)  # [B, H, K, D]
        v = np.concatenate([past[1], v], axis=2)
    # scores = q k^T * scale + ALiBi; masked scores replaced by finfo(float32).min (not added); softmax
    context, probs = K.attention(q, k, v, softmax_scale(config), bias=bias, masked=masked, dropout_p=config.attn_pdrop,
                                 rng=rng)
    context = context.transpose(0, 2, 1, 3).reshape(B, S, C)  # [B, H, S, D] -> [B, S, C]
    return K.linear(context, p["out_proj.weight"], p.get("out_proj.bias")), probs, (k, v)


def block(params, i, config, feats, x, past, bias, masked, rng, kernels=NUMPY):
    """Pre-norm block: x + attn(LN1(x)), then + down(GELU(up(LN2(x)))) (SPEC 2.6)."""
    pre, K = f"blocks.{i}.", kernels
    sub = lambda name: {k[len(pre + name):]: w for k, w in params.items() if k.startswith(pre + name)}  # noqa: E731
    eps = config.layer_norm_epsilon
    a, probs, present = attention(sub("attn."), config, feats, K.layer_norm(x, params[pre + "norm_1.weight"],
                                  params.get(pre + "norm_1.bias"), eps), past, bias, masked, rng, K)
    x = x + dropout(a, feats.resid_pdrop, rng)
    h = K.layer_norm(x, params[pre + "norm_2.weight"], params.get(pre + "norm_2.bias"), eps)
    h = K.gelu(K.linear(h, params[pre + "ffn.up_proj.weight"], params.get(pre + "ffn.up_proj.bias")))  # [B, S, 4C]
    h = K.linear(h, params[pre + "ffn.down_proj.weight"], params.get(pre + "ffn.down_proj.bias"))  # [B, S, C]
    return x + dropout(h, feats.resid_pdrop, rng), probs, present


def decoder(params, config, feats, x, past, masked, bias, rng=None, kernels=NUMPY):  # [B, S, C] -> outputs
    """The L blocks over embedded tokens, then the final norm (SPEC 2.5-2.6). past: L (key, value)
    pairs or Nones; masked and bias from decoder_masks and decoder_bias. Returns every output:
    last_hidden_state, the L presents, the L+1 hidden states (the last after norm_f) and the L
    attention maps; the model drops those not asked for."""
    hidden_states, attentions, presents = [], [], []
    for i in range(config.n_layers):
        hidden_states.append(x)
        x, probs, present = block(params, i, config, feats, x, past[i], bias, masked, rng, kernels)
        attentions.append(probs)
        presents.append(present)
    x = kernels.layer_norm(x, params["norm_f.weight"], params.get("norm_f.bias"), config.layer_norm_epsilon)
    hidden_states.append(x)  # the last entry is after norm_f (SPEC 2.6)
    return BaseModelOutputWithPast(x, tuple(presents), tuple(hidden_states), tuple(attentions))


def embedding_rows(params, ids):  # [...] -> [..., C]
    """Token embeddings; bf16-stored tables (uint16 bit patterns, see store_weights) widened to float32."""
    rows = params["wte.weight"][ids]
    return (rows.astype(np.uint32) << 16).view(np.float32) if rows.dtype == np.uint16 else rows


# ------------------------------------------------------------------------------------------ model


class MPTModel(GenerationMixin):
    """The MPT decoder. ``params`` are keyed by HF names without the "transformer." prefix
    (``wte.weight``, ``blocks.0.attn.Wqkv.weight``, ...) plus head weights."""

    task = "base"
    label_inputs: tuple = ()

    def __init__(self, config, params, profile=None, rng=None, kernels=NUMPY, weight_storage="fp32"):
        self.kernels = kernels  # the backend's kernel set, resolved at load (reference/backends/)
        self.profile: MPTProfile = get_profile("mpt", profile)
        self.config = config if isinstance(config, MPTConfig) else MPTConfig.from_dict(config, self.profile)
        self.features = resolve_features(self.config, self.profile)
        self.dtype = params["wte.weight"].dtype
        self.params = store_weights(params, weight_storage, self.kernels)
        self.problem_type = self.config.problem_type
        self.rng = rng

    def __call__(self, input_ids=None, past_key_values=None, attention_mask=None, inputs_embeds=None,
                 use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                 training=False, rng=None, sequence_id=None, prefix_mask=None, **labels):
        """Run the model with the HF keyword names (see the module docstring for the cache layout).

        input_ids [B, S] or inputs_embeds [B, S, C]; attention_mask [B, K] (or [B, 1, S, K] under hf)
        covering past and new tokens; past_key_values: L pairs [B, H, P, D]; use_cache returns the
        extended pairs; sequence_id [B, S] (mosaic, attn_uses_sequence_id); prefix_mask [B, K] (mosaic,
        prefix_lm: keys every query may see, on top of the causal ones); labels for a loss.
        """
        unknown = sorted(set(labels) - set(self.label_inputs))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected input(s) {unknown}; labels accepted: {list(self.label_inputs)}")
        check_flags(use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                    return_dict=return_dict, training=training)
        drop_rng = make_rng(rng if rng is not None else self.rng) if training else None
        out = self.forward(dict(input_ids=input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
                                inputs_embeds=inputs_embeds,
                                use_cache=self.config.use_cache if use_cache is None else use_cache,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                rng=drop_rng, sequence_id=sequence_id, prefix_mask=prefix_mask), **labels)
        return out if return_dict in (None, True) else self.upstream_tuple(out)

    def forward(self, call):
        """call: the keyword arguments of ``transformer``; heads add their labels."""
        return self.transformer(**call)

    def upstream_tuple(self, out):
        """The return_dict=False tuple of this task (reference/outputs.py, TUPLE_LAYOUTS)."""
        return upstream_tuple(out, "mpt", self.task, self.profile.name)

    # -- the decoder -------------------------------------------------------------------------

    def transformer(self, input_ids, past_key_values, attention_mask, inputs_embeds, use_cache,
                    output_attentions, output_hidden_states, rng, sequence_id, prefix_mask) -> BaseModelOutputWithPast:
        """Embed -> ALiBi and masks -> L pre-norm blocks -> final norm (SPEC 2.3-2.6)."""
        config, feats, params = self.config, self.features, self.params
        x, B, S = self._embed(input_ids, inputs_embeds)
        past = self._check_past(past_key_values, B)
        P = 0 if past[0] is None else past[0][0].shape[2]
        K = P + S
        if K > config.max_seq_len:
            raise ValueError(f"past length {P} plus {S} new tokens is {K}, over max_seq_len {config.max_seq_len}")
        masked, key_mask = decoder_masks(feats, attention_mask, sequence_id, prefix_mask, B, S, P, self.dtype,
                                         self.profile.name)
        if feats.learned_pos_emb:  # mosaic: learned positions that skip left padding
            x = x + params["wpe.weight"][learned_positions(key_mask, P, S, B)]
        x = dropout(x, feats.emb_pdrop, rng)
        out = decoder(params, config, feats, x, past, masked, decoder_bias(config, feats, S, P, self.dtype), rng,
                      self.kernels)
        return BaseModelOutputWithPast(
            last_hidden_state=out.last_hidden_state,
            past_key_values=out.past_key_values if use_cache else None,
            hidden_states=out.hidden_states if output_hidden_states else None,
            attentions=out.attentions if output_attentions else None,
        )

    # -- boundary checks ---------------------------------------------------------------------

    def _embed(self, input_ids, inputs_embeds):
        ids, embeds, B, S = check_tokens(input_ids, inputs_embeds, self.config.vocab_size, self.config.d_model, self.dtype)
        return (embedding_rows(self.params, ids) if ids is not None else embeds), B, S  # [B, S, C]

    def decode_session(self, batch, total_len):
        """The kernel set's decode over a preallocated cache (Numba and CUDA have one), or None."""
        if self.kernels.decode_session is None or self.task != "causal-lm":
            return None
        for name, value in (("batch", batch), ("total_len", total_len)):
            if not is_integer(value) or value < 1:
                raise ValueError(f"decode_session {name} must be a positive integer, got {value!r}")
        if total_len > self.config.max_seq_len:
            raise ValueError(f"decode_session total_len {total_len} is over max_seq_len {self.config.max_seq_len}")
        return self.kernels.decode_session(self.config, self.params, self.features, batch, total_len)

    def _check_past(self, past_key_values, B):
        L, H, D = self.config.n_layers, self.config.n_heads, self.config.head_size
        if past_key_values is None:
            return [None] * L
        if not isinstance(past_key_values, (tuple, list)) or len(past_key_values) != L:
            raise ValueError(f"past_key_values must be {L} (key, value) pairs, got "
                             f"{len(past_key_values) if isinstance(past_key_values, (tuple, list)) else type(past_key_values).__name__}")
        past = []
        P = None
        for i, pair in enumerate(past_key_values):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"past_key_values[{i}] must be a (key, value) pair")
            P = np.shape(pair[0])[2] if P is None and np.ndim(pair[0]) == 4 else P
            k = as_float(pair[0], f"past_key_values[{i}][0] (key)", (B, H, P, D), self.dtype)
            v = as_float(pair[1], f"past_key_values[{i}][1] (value)", (B, H, P, D), self.dtype)
            past.append((k, v))
        return past


def learned_positions(key_mask, P, S, B):  # [B, K] bool or None -> [B, S]
    """llm-foundry: pos = arange(P, P+S) minus the number of padding keys so far, clamped at 0."""
    pos = np.arange(P, P + S)[None, :].repeat(B, 0)
    if key_mask is None:
        return pos
    pads_so_far = np.cumsum(~key_mask, axis=1)[:, P:]
    return np.maximum(pos - pads_so_far, 0)


def store_weights(params, storage, kernels):
    """fp32: as given. bf16 (Numba backend only): matrices held as bfloat16 bit patterns (uint16),
    half the bytes; the Numba kernels widen them as they stream through. An inference option of this
    project, not an upstream behaviour: results then differ from fp32 by bf16 rounding of the weights."""
    if storage == "fp32":
        return params
    if storage != "bf16":
        raise ValueError(f"unknown weight_storage {storage!r}; accepted: 'fp32', 'bf16'")
    if kernels.name != "numba":
        raise ValueError("weight_storage='bf16' needs backend='numba' (its kernels widen bf16 weights)")
    return {k: to_bf16_bits(w) if w.ndim == 2 else w for k, w in params.items()}


# ------------------------------------------------------------------------------------------ heads


class MPTForCausalLM(MPTModel):
    """logits = h wte^T (tied unless tie_word_embeddings is false); loss on labels shifted by one (SPEC 2.7)."""

    task = "causal-lm"
    label_inputs = ("labels",)

    def forward(self, call, labels=None):
        out = self.transformer(**call)
        weight = self.params["wte.weight"] if self.config.tie_word_embeddings else self.params["lm_head.weight"]
        logits = self.kernels.linear(out.last_hidden_state, weight)  # [B, S, V]
        if self.features.logit_scale is not None:
            logits = logits * logits.dtype.type(self.features.logit_scale)
        loss = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != logits.shape[:2]:
                raise ValueError(f"labels must have shape {logits.shape[:2]}, got {labels.shape}")
            loss = losses.pt_token_loss(logits[:, :-1], labels[:, 1:])  # predict token t+1 from t
        return CausalLMOutputWithPast(loss, logits, out.past_key_values, out.hidden_states, out.attentions)


class MPTForSequenceClassification(MPTModel):
    """score (no bias) at every position, read at the token before the first pad (4.37.2 rule, SPEC 2.7)."""

    task = "sequence-classification"
    label_inputs = ("labels",)

    def forward(self, call, labels=None):
        out = self.transformer(**call)
        input_ids = call["input_ids"]
        logits = linear(out.last_hidden_state, self.params["score.weight"])  # [B, S, num_labels]
        B, S = logits.shape[:2]
        pooled = logits[np.arange(B), self.pool_index(input_ids, B, S)]  # [B, num_labels]
        loss = None
        if labels is not None:
            loss, self.problem_type = losses.pt_sequence_classification_loss(pooled, labels, self.problem_type)
        return SequenceClassifierOutputWithPast(loss, pooled, out.past_key_values, out.hidden_states, out.attentions)

    def pool_index(self, input_ids, B, S):  # -> [B]
        """(argmax(ids == pad) - 1) mod S: the token before the first pad; S-1 when there is none."""
        pad = self.config.pad_token_id
        if pad is None:
            if B != 1:
                raise ValueError("sequence classification of a batch needs config.pad_token_id to find each row's last token")
            return np.array([S - 1])
        if input_ids is None:  # upstream warns: padding cannot be seen in inputs_embeds
            return np.full(B, S - 1)
        return (np.argmax(np.asarray(input_ids) == pad, axis=-1) - 1) % S


class MPTForTokenClassification(MPTModel):
    """dropout(0.1) -> Linear(C, num_labels) with bias at every position (SPEC 2.7)."""

    task = "token-classification"
    label_inputs = ("labels",)
    CLASSIFIER_DROPOUT = 0.1  # MptConfig has neither classifier_dropout nor hidden_dropout

    def forward(self, call, labels=None):
        out = self.transformer(**call)
        h = dropout(out.last_hidden_state, self.CLASSIFIER_DROPOUT, call["rng"])
        logits = linear(h, self.params["classifier.weight"], self.params["classifier.bias"])  # [B, S, num_labels]
        loss = None if labels is None else losses.pt_token_loss(logits, labels)
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions,
                                     past_key_values=out.past_key_values)  # its tuple holds them (SPEC 2.7)


class MPTForQuestionAnswering(MPTModel):
    """Linear(C, 2) with bias split into start and end logits; num_labels is ignored (SPEC 2.7)."""

    task = "question-answering"
    label_inputs = ("start_positions", "end_positions")

    def forward(self, call, start_positions=None, end_positions=None):
        if call["past_key_values"] is not None:
            raise ValueError("MptForQuestionAnswering takes no past_key_values")
        out = self.transformer(**{**call, "use_cache": self.config.use_cache})  # upstream passes no use_cache
        logits = linear(out.last_hidden_state, self.params["qa_outputs.weight"], self.params["qa_outputs.bias"])
        start, end = logits[..., 0], logits[..., 1]  # [B, S] each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = losses.pt_span_loss(start, end, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss, start, end, out.hidden_states, out.attentions,
                                            past_key_values=out.past_key_values)  # its tuple holds them


TASKS = {cls.task: cls for cls in (MPTModel, MPTForCausalLM, MPTForSequenceClassification,
                                   MPTForTokenClassification, MPTForQuestionAnswering)}


# ---------------------------------------------------------------------------------------- weights


def param_shapes(config, task, profile=None):
    """name -> shape of every parameter, in the checkpoint's (out, in) layout, for this profile."""
    feats = resolve_features(config, get_profile("mpt", profile))
    C, V, W = config.d_model, config.vocab_size, feats.mlp_width
    shapes = {"wte.weight": (V, C), "norm_f.weight": (C,)}
    linears = {"attn.Wqkv": (3 * C, C), "attn.out_proj": (C, C), "ffn.up_proj": (W, C), "ffn.down_proj": (C, W)}
    norms = ["norm_1", "norm_2"] + (["attn.q_ln", "attn.k_ln"] if feats.qk_ln else [])
    for i in range(config.n_layers):
        for name, shape in linears.items():
            shapes[f"blocks.{i}.{name}.weight"] = shape
            if feats.bias:
                shapes[f"blocks.{i}.{name}.bias"] = shape[:1]
        for name in norms:
            shapes[f"blocks.{i}.{name}.weight"] = (C,)
            if feats.bias:
                shapes[f"blocks.{i}.{name}.bias"] = (C,)
    if feats.bias:
        shapes["norm_f.bias"] = (C,)
    if feats.learned_pos_emb:
        shapes["wpe.weight"] = (config.max_seq_len, C)
    heads = {
        "base": {}, "causal-lm": {} if config.tie_word_embeddings else {"lm_head.weight": (V, C)},
        "sequence-classification": {"score.weight": (config.num_labels, C)},
        "token-classification": {"classifier.weight": (config.num_labels, C), "classifier.bias": (config.num_labels,)},
        "question-answering": {"qa_outputs.weight": (2, C), "qa_outputs.bias": (2,)},
    }
    shapes.update(heads[task])
    return shapes


def checkpoint_rules(config, task):
    """(ignored names, aliases, optional names) for reading a checkpoint: a tied lm_head copy is ignored."""
    ignored = ("lm_head.weight",) if config.tie_word_embeddings else ()
    return ignored, {}, ()


Config = MPTConfig
BASE_PREFIX = "transformer."
