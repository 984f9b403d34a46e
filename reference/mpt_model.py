"""MPT's calling convention: the config, the profile's feature set, the model classes, the
checkpoint layout.

The math is in mpt.py; this module is everything around it: the config and its validation, what the
profile makes of it (``Features``), the HF keyword names, argument checks at the boundary (token
ids, masks, the cache), the losses, the output classes and the parameter shapes.

A model holds ``params``, the checkpoint nested once at load (reference/checkpoint.py, ``nest``),
and ``stack``: a fast backend's decoder bound at load to this model's weights (it embeds, runs the L
blocks, computes the LM logits and opens decode sessions), or None for the NumPy reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from . import losses, mpt
from .checkpoint import flatten, nest
from .generation import GenerationMixin
from .inputs import (
    MAX_LAYERS,
    MAX_SIZE,
    as_float,
    check_field_types,
    check_flags,
    check_tokens,
    is_integer,
    label_fields,
    make_rng,
    require_positive_ints,
    require_probabilities,
)
from .ops import dropout, linear
from .outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
    upstream_tuple,
)
from .profiles import MPTProfile, get_profile

HF_ALIBI_BIAS_MAX = mpt.HF_ALIBI_BIAS_MAX
HF_EXPANSION_RATIO = 4  # HF 4.37.2 hard-codes the MLP width to 4 * d_model (SPEC 2.1)
ATTN_TYPES = ("multihead_attention",)
WEIGHT_STORAGES = ("fp32", "bf16", "q8")
KV_CACHES = ("fp32", "bf16")  # how keys and values are kept between tokens (MPTModel, kv_cache)
# the keyword options from_pretrained passes on to an MPT model, with their accepted values
LOAD_OPTIONS = {"weight_storage": WEIGHT_STORAGES, "kv_cache": KV_CACHES}


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
    pad_token_id: int | None = None
    eos_token_id: object = None  # an id, a list of ids (HF allows several), or None
    bos_token_id: int | None = None
    num_labels: int = 2
    problem_type: str | None = None
    id2label: dict = field(default_factory=dict)
    # attn_config
    attn_type: str = "multihead_attention"
    attn_pdrop: float = 0.0
    clip_qkv: float | None = None
    softmax_scale: float | None = None
    prefix_lm: bool = False
    qk_ln: bool = False
    attn_uses_sequence_id: bool = False
    alibi: bool = True
    alibi_bias_max: float = 8
    # llm-foundry features outside this reference (refused under mosaic, dropped by HF 4.37.2)
    rope: bool = False
    kv_n_heads: int | None = None
    ffn_type: str = "mptmlp"
    norm_type: object = "low_precision_layernorm"  # or "layernorm"; any other: mosaic refuses it

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_heads

    ALIASES = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "norm_eps": "layer_norm_epsilon",
    }

    @classmethod
    def from_dict(cls, d: dict, profile=None) -> MPTConfig:
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
        flat = {
            **dict(profile.config_defaults),
            **{cls.ALIASES.get(k, k): v for k, v in d.items()},
            **attn,
            **(
                {"ffn_type": ffn["ffn_type"]} if isinstance(ffn, dict) and "ffn_type" in ffn else {}
            ),
        }
        names = {f.name for f in fields(cls)}
        kwargs = {
            k: v for k, v in flat.items() if k in names and k not in ("id2label", "num_labels")
        }
        config = cls(**kwargs, **label_fields(d))
        config.validate()
        return config

    def validate(self) -> None:
        check_field_types(self)
        require_positive_ints(
            self, ("d_model", "n_heads", "max_seq_len", "vocab_size", "num_labels")
        )
        require_positive_ints(self, ("n_layers",), limit=MAX_LAYERS)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"config.d_model ({self.d_model}) is not a multiple of n_heads ({self.n_heads})"
            )
        if self.attn_type not in ATTN_TYPES:
            raise ValueError(
                f"attn_config.attn_type {self.attn_type!r} is not supported; accepted:"
                f" {list(ATTN_TYPES)} (HF 4.37.2 accepts multiquery_attention in the config but"
                " builds full multi-head weights)"
            )
        eos = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        if self.eos_token_id is not None and not all(
            isinstance(e, int) and not isinstance(e, bool) for e in eos
        ):
            raise TypeError(
                "config.eos_token_id must be an integer, a list of integers or null, got"
                f" {self.eos_token_id!r}"
            )
        require_probabilities(self, ("attn_pdrop", "resid_pdrop", "emb_pdrop"))
        if (
            isinstance(self.expansion_ratio, bool)
            or not isinstance(self.expansion_ratio, (int, float))
            or not 0 < self.expansion_ratio * self.d_model <= MAX_SIZE
        ):
            raise ValueError(
                "config.expansion_ratio must be positive, with expansion_ratio * d_model at most "
                f"{MAX_SIZE}, got {self.expansion_ratio!r}"
            )
        if self.softmax_scale is not None and (
            isinstance(self.softmax_scale, bool)
            or not isinstance(self.softmax_scale, (int, float))
            or not math.isfinite(self.softmax_scale)
        ):
            raise ValueError(
                "attn_config.softmax_scale must be a finite number or null, got"
                f" {self.softmax_scale!r}"
            )
        if not (
            self.logit_scale is None
            or self.logit_scale == "inv_sqrt_d_model"
            or (
                isinstance(self.logit_scale, (int, float))
                and not isinstance(self.logit_scale, bool)
            )
        ):
            raise ValueError(
                f"config.logit_scale {self.logit_scale!r} is not a number or 'inv_sqrt_d_model'"
            )


@dataclass(frozen=True)
class Features:
    """What the forward pass actually does, once the profile has decided which config fields
    count."""

    bias: bool
    mlp_width: int
    alibi: bool
    alibi_bias_max: float
    learned_pos_emb: bool
    clip_qkv: float | None
    qk_ln: bool
    logit_scale: float | None
    sequence_id: bool
    prefix_lm: bool
    mask_rule: (
        str  # "exactly-one": masked unless the value is 1 (hf); "nonzero": masked where 0 (mosaic)
    )
    accepts_4d_mask: bool
    resid_pdrop: float
    emb_pdrop: float
    kv_cache: str = "fp32"  # "bf16": keys and values rounded to bf16 as they enter the cache


# The original's norm_type values that are a LayerNorm (the low-precision one differs only under
# autocast, SPEC 2.5); its "rmsnorm" and "low_precision_rmsnorm" are another normalisation.
LAYER_NORM_TYPES = ("low_precision_layernorm", "layernorm")


def resolve_features(config: MPTConfig, profile: MPTProfile) -> Features:
    if not profile.honours_original_fields:  # HF 4.37.2 (SPEC 2.1, 2.9)
        return Features(
            bias=False,
            mlp_width=HF_EXPANSION_RATIO * config.d_model,
            alibi=True,
            alibi_bias_max=HF_ALIBI_BIAS_MAX,
            learned_pos_emb=False,
            clip_qkv=None,
            qk_ln=False,
            logit_scale=None,
            sequence_id=False,
            prefix_lm=False,
            mask_rule="exactly-one",
            accepts_4d_mask=True,
            resid_pdrop=config.attn_pdrop,
            emb_pdrop=0.0,
        )
    if (
        config.rope
        or config.ffn_type != "mptmlp"
        or config.kv_n_heads not in (None, config.n_heads)
        or config.norm_type not in LAYER_NORM_TYPES
    ):
        raise ValueError(
            f"llm-foundry features outside this reference: rope={config.rope},"
            f" ffn_type={config.ffn_type!r}, kv_n_heads={config.kv_n_heads},"
            f" norm_type={config.norm_type!r} (supported: rope false, ffn_type 'mptmlp',"
            f" kv_n_heads = n_heads, norm_type one of {list(LAYER_NORM_TYPES)})"
        )
    scale = config.logit_scale
    if scale == "inv_sqrt_d_model":
        scale = 1 / math.sqrt(config.d_model)
    return Features(
        bias=not config.no_bias,
        mlp_width=int(config.expansion_ratio * config.d_model),
        alibi=bool(config.alibi),
        alibi_bias_max=config.alibi_bias_max,
        learned_pos_emb=bool(config.learned_pos_emb),
        clip_qkv=config.clip_qkv,
        qk_ln=bool(config.qk_ln),
        logit_scale=scale,
        sequence_id=bool(config.attn_uses_sequence_id),
        prefix_lm=bool(config.prefix_lm),
        mask_rule="nonzero",
        accepts_4d_mask=False,
        resid_pdrop=config.resid_pdrop,
        emb_pdrop=config.emb_pdrop,
    )


# ------------------------------------------------------------------------------------------ model


class MPTModel:
    """The MPT decoder. ``params`` are keyed by HF names without the "transformer." prefix
    (``wte.weight``, ``blocks.0.attn.Wqkv.weight``, ...) plus head weights. ``backend``: a fast
    backend (reference/backends/) whose decoder stack runs the blocks; None for NumPy.
    weight_storage="bf16" (a Numba-backend option, not an upstream behaviour) keeps the matrices as
    bfloat16: half the memory traffic, results differing from fp32 by the weights' rounding.
    weight_storage="q8" (opt-in, Numba) keeps them as int8 in blocks of 32 with a float32 scale each
    (precision.Q8Matrix, like llama.cpp's q8_0 but with float32 activations, or on a 16-bit grid
    per block where AVX512-VNNI multiplies them: precision.InterleavedQ8): about 3.6 times less
    traffic than fp32; its measured accuracy is in the README.
    kv_cache="bf16" (opt-in, not an upstream behaviour; NumPy and Numba) rounds every new key and
    value to bfloat16 as it enters the cache, so a decode session keeps them in half the bytes,
    which is what bounds a step at long contexts; the presents it returns are float32 arrays on
    the bf16 grid. Attention still reads them as float32 (mpt.attention; measured accuracy in the
    README)."""

    task = "base"
    label_inputs: tuple = ()

    def __init__(
        self,
        config,
        params,
        profile=None,
        rng=None,
        backend=None,
        weight_storage="fp32",
        kv_cache="fp32",
    ):
        self.profile: MPTProfile = get_profile("mpt", profile)
        self.config = (
            config if isinstance(config, MPTConfig) else MPTConfig.from_dict(config, self.profile)
        )
        if kv_cache not in KV_CACHES:
            raise ValueError(f"unknown kv_cache {kv_cache!r}; accepted: {list(KV_CACHES)}")
        has = getattr(backend, "kv_caches", ("fp32",))
        if backend is not None and kv_cache not in has:
            name = getattr(backend, "name", backend)
            raise ValueError(
                f"kv_cache={kv_cache!r} is not supported by backend {name!r}; it has {list(has)}"
            )
        self.features = replace(resolve_features(self.config, self.profile), kv_cache=kv_cache)
        self.dtype = params["wte.weight"].dtype
        self.params = nest(params)
        if weight_storage not in WEIGHT_STORAGES:
            raise ValueError(
                f"unknown weight_storage {weight_storage!r}; accepted: {list(WEIGHT_STORAGES)}"
            )
        if weight_storage not in getattr(backend, "weight_storages", ("fp32",)):
            raise ValueError(
                f"weight_storage={weight_storage!r} needs backend='numba' (its kernels widen bf16"
                " and q8 weights)"
            )
        bind = getattr(backend, "mpt_decoder", None)
        self.stack = (
            None if bind is None else bind(self.config, self.features, self.params, weight_storage)
        )
        self.problem_type = (
            self.config.problem_type
        )  # settled by the first loss and then kept, as upstream
        self.rng = rng

    def state_dict(self):
        """The parameters under their checkpoint names (without the "transformer." prefix). With
        weight_storage="bf16" the matrices are bf16 bit patterns (uint16 [O, I]), or, on CPUs
        whose bf16 matvec uses AVX512-BF16, precision.InterleavedBf16 objects (four rows
        interleaved, for that kernel) whose bits() gives those patterns and widen() their float32
        values; with "q8" they are precision.Q8Matrix objects, or, on CPUs with AVX512-VNNI and
        where the shape allows, precision.InterleavedQ8 objects (four rows by four blocks
        interleaved), whose dequantize() gives the float32 values computed with."""
        return flatten(self.params)

    def __call__(
        self,
        input_ids=None,
        past_key_values=None,
        attention_mask=None,
        inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        training=False,
        rng=None,
        sequence_id=None,
        prefix_mask=None,
        **labels,
    ):
        """Run the model with the HF keyword names (mpt.py's docstring has the cache layout).

        input_ids [B, S] or inputs_embeds [B, S, C]; attention_mask [B, K] (or [B, 1, S, K] under
        hf) covering past and new tokens; past_key_values: L pairs [B, H, P, D]; use_cache returns
        the extended pairs; sequence_id [B, S] (mosaic, attn_uses_sequence_id); prefix_mask [B, K]
        (mosaic, prefix_lm: keys every query may see, on top of the causal ones); labels for a loss.
        """
        unknown = sorted(set(labels) - set(self.label_inputs))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected input(s) {unknown}; "
                f"labels accepted: {list(self.label_inputs)}"
            )
        check_flags(
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            training=training,
        )
        drop_rng = make_rng(rng if rng is not None else self.rng) if training else None
        out = self.forward(
            dict(
                input_ids=input_ids,
                past_key_values=past_key_values,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                use_cache=self.config.use_cache if use_cache is None else use_cache,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                rng=drop_rng,
                sequence_id=sequence_id,
                prefix_mask=prefix_mask,
            ),
            **labels,
        )
        return out if return_dict in (None, True) else self.upstream_tuple(out)

    def forward(self, call):
        """call: the keyword arguments of ``transformer``; heads add their labels."""
        return self.transformer(**call)

    def upstream_tuple(self, out):
        """The return_dict=False tuple of this task (reference/outputs.py, TUPLE_LAYOUTS)."""
        return upstream_tuple(out, "mpt", self.task, self.profile.name)

    def transformer(
        self,
        input_ids,
        past_key_values,
        attention_mask,
        inputs_embeds,
        use_cache,
        output_attentions,
        output_hidden_states,
        rng,
        sequence_id,
        prefix_mask,
    ) -> BaseModelOutputWithPast:
        """Checks every input, builds the masks and the ALiBi bias, then mpt.transformer (SPEC
        2.3-2.6)."""
        config, feats = self.config, self.features
        ids, embeds, B, S = check_tokens(
            input_ids, inputs_embeds, config.vocab_size, config.d_model, self.dtype
        )
        past = self._check_past(past_key_values, B)
        P = 0 if past[0] is None else past[0][0].shape[2]
        if P + S > config.max_seq_len:
            raise ValueError(
                f"past length {P} plus {S} new tokens is {P + S}, over max_seq_len"
                f" {config.max_seq_len}"
            )
        masked, key_mask = mpt.decoder_masks(
            feats, attention_mask, sequence_id, prefix_mask, B, S, P, self.dtype, self.profile.name
        )  # [B, 1, S, K], [B, K] or None
        bias = mpt.decoder_bias(config, feats, S, P, self.dtype)  # [H, 1|S, K] or None
        if embeds is None:
            embeds = (
                self.stack.embed(ids)
                if self.stack
                else mpt.embed(self.params["wte"]["weight"], ids)
            )
        per_layer = bool(output_attentions or output_hidden_states)
        stack = (
            None if self.stack is None else (lambda *args: self.stack(*args, per_layer=per_layer))
        )
        x, presents, hidden_states, attentions = mpt.transformer(
            self.params, config, feats, embeds, past, masked, key_mask, bias, rng, stack
        )
        return BaseModelOutputWithPast(
            last_hidden_state=x,
            past_key_values=tuple(presents) if use_cache else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def decode_session(self, batch, total_len):
        """The backend's decode over a preallocated cache (Numba and CUDA have one), or None."""
        if self.stack is None or self.task != "causal-lm":
            return None
        for name, value in (("batch", batch), ("total_len", total_len)):
            if not is_integer(value) or value < 1:
                raise ValueError(f"decode_session {name} must be a positive integer, got {value!r}")
        if total_len > self.config.max_seq_len:
            raise ValueError(
                f"decode_session total_len {total_len} is over max_seq_len"
                f" {self.config.max_seq_len}"
            )
        return self.stack.decode_session(batch, total_len)

    def _check_past(self, past_key_values, B):
        L, H, D = self.config.n_layers, self.config.n_heads, self.config.head_size
        if past_key_values is None:
            return [None] * L
        if not isinstance(past_key_values, (tuple, list)) or len(past_key_values) != L:
            got = (
                len(past_key_values)
                if isinstance(past_key_values, (tuple, list))
                else type(past_key_values).__name__
            )
            raise ValueError(f"past_key_values must be {L} (key, value) pairs, got {got}")
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


# ------------------------------------------------------------------------------------------ heads


class MPTForCausalLM(MPTModel, GenerationMixin):
    """mpt.lm_logits: tied to wte unless tie_word_embeddings is false; loss on labels shifted by one
    (SPEC 2.7)."""

    task = "causal-lm"
    label_inputs = ("labels",)

    def forward(self, call, labels=None):
        out = self.transformer(**call)
        if self.stack is not None:
            logits = self.stack.lm_logits(
                out.last_hidden_state, self.features.logit_scale
            )  # [B, S, V]
        else:
            p = self.params
            weight = (
                p["wte"]["weight"] if self.config.tie_word_embeddings else p["lm_head"]["weight"]
            )
            logits = mpt.lm_logits(
                out.last_hidden_state, weight, self.features.logit_scale
            )  # [B, S, V]
        loss = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != logits.shape[:2]:
                raise ValueError(f"labels must have shape {logits.shape[:2]}, got {labels.shape}")
            loss = losses.pt_token_loss(logits[:, :-1], labels[:, 1:])  # predict token t+1 from t
        return CausalLMOutputWithPast(
            loss, logits, out.past_key_values, out.hidden_states, out.attentions
        )


class MPTForSequenceClassification(MPTModel):
    """score (no bias) at every position, read at mpt.last_token_index (the 4.37.2 rule, SPEC
    2.7)."""

    task = "sequence-classification"
    label_inputs = ("labels",)

    def forward(self, call, labels=None):
        out = self.transformer(**call)
        logits = linear(out.last_hidden_state, **self.params["score"])  # [B, S, num_labels]
        B, S = logits.shape[:2]
        if self.config.pad_token_id is None and B != 1:
            raise ValueError(
                "sequence classification of a batch needs config.pad_token_id to find each row's "
                "last token"
            )
        pooled = logits[
            np.arange(B), mpt.last_token_index(call["input_ids"], self.config.pad_token_id, B, S)
        ]
        loss = None
        if labels is not None:  # upstream keeps the type it settled on in its config
            loss, self.problem_type = losses.pt_sequence_classification_loss(
                pooled, labels, self.problem_type
            )
        return SequenceClassifierOutputWithPast(
            loss, pooled, out.past_key_values, out.hidden_states, out.attentions
        )


class MPTForTokenClassification(MPTModel):
    """dropout(0.1) -> Linear(C, num_labels) with bias at every position (SPEC 2.7)."""

    task = "token-classification"
    label_inputs = ("labels",)
    CLASSIFIER_DROPOUT = 0.1  # MptConfig has neither classifier_dropout nor hidden_dropout

    def forward(self, call, labels=None):
        out = self.transformer(**call)
        h = dropout(out.last_hidden_state, self.CLASSIFIER_DROPOUT, call["rng"])
        logits = linear(h, **self.params["classifier"])  # [B, S, num_labels]
        loss = None if labels is None else losses.pt_token_loss(logits, labels)
        return TokenClassifierOutput(
            loss, logits, out.hidden_states, out.attentions, past_key_values=out.past_key_values
        )  # its tuple holds them (SPEC 2.7)


class MPTForQuestionAnswering(MPTModel):
    """Linear(C, 2) with bias split into start and end logits; num_labels is ignored (SPEC 2.7)."""

    task = "question-answering"
    label_inputs = ("start_positions", "end_positions")

    def forward(self, call, start_positions=None, end_positions=None):
        if call["past_key_values"] is not None:
            raise ValueError("MptForQuestionAnswering takes no past_key_values")
        out = self.transformer(
            **{**call, "use_cache": self.config.use_cache}
        )  # upstream passes no use_cache
        logits = linear(out.last_hidden_state, **self.params["qa_outputs"])  # [B, S, 2]
        start, end = logits[..., 0], logits[..., 1]  # [B, S] each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = losses.pt_span_loss(start, end, start_positions, end_positions)
        return QuestionAnsweringModelOutput(
            loss, start, end, out.hidden_states, out.attentions, past_key_values=out.past_key_values
        )  # its tuple holds them


TASKS = {
    cls.task: cls
    for cls in (
        MPTModel,
        MPTForCausalLM,
        MPTForSequenceClassification,
        MPTForTokenClassification,
        MPTForQuestionAnswering,
    )
}


# ---------------------------------------------------------------------------------------- weights


def param_shapes(config, task, profile=None):
    """name -> shape of every parameter, in the checkpoint's (out, in) layout, for this profile."""
    feats = resolve_features(config, get_profile("mpt", profile))
    C, V, W = config.d_model, config.vocab_size, feats.mlp_width
    shapes = {"wte.weight": (V, C), "norm_f.weight": (C,)}
    linears = {
        "attn.Wqkv": (3 * C, C),
        "attn.out_proj": (C, C),
        "ffn.up_proj": (W, C),
        "ffn.down_proj": (C, W),
    }
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
        "base": {},
        "causal-lm": {} if config.tie_word_embeddings else {"lm_head.weight": (V, C)},
        "sequence-classification": {"score.weight": (config.num_labels, C)},
        "token-classification": {
            "classifier.weight": (config.num_labels, C),
            "classifier.bias": (config.num_labels,),
        },
        "question-answering": {"qa_outputs.weight": (2, C), "qa_outputs.bias": (2,)},
    }
    shapes.update(heads[task])
    return shapes


def checkpoint_rules(config, task):
    """(ignored names, aliases, optional names) for reading a checkpoint: a tied lm_head copy is
    ignored."""
    ignored = ("lm_head.weight",) if config.tie_word_embeddings else ()
    return ignored, {}, ()


Config = MPTConfig
BASE_PREFIX = "transformer."
