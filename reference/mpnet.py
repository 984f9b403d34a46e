"""MPNet in NumPy: config, embeddings, relative position bias, encoder, pooler and the five heads.

Reads top-down: config -> position ids and buckets -> attention -> layer -> encoder -> heads.
The numbers follow SPEC.md section 1 (transformers 4.37.2); section references are given inline.

How MPNet differs from the textbook BERT encoder:
* no token-type embeddings; position ids skip padding tokens (id 1) and start at 2;
* a T5-style relative position bias, computed once per forward and added to every layer's scores;
* the masked-LM decoder is tied to the word embeddings and always uses the exact erf GELU.

Axis letters: B batch, S sequence, H heads, D head size, C hidden size, V vocabulary, L layers,
NB buckets, N choices (multiple choice).

Parameters are a flat dict keyed by the HF checkpoint names without the "mpnet." prefix of the
base model (``embeddings.word_embeddings.weight``, ``encoder.layer.0.attention.attn.q.weight``, ...);
head parameters keep their own names (``lm_head.dense.weight``, ``classifier.weight``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import losses
from .inputs import (MAX_LAYERS, as_float, as_ids, check_field_types, check_flags, check_tokens, label_fields,
                     make_rng, require_positive_ints, require_probabilities, unpack_keras_inputs)
from .kernels import NUMPY
from .ops import ACTIVATIONS, dropout, gelu, layer_norm, linear
from .outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    upstream_tuple,
)
from .profiles import MPNetProfile, get_profile

PADDING_IDX = 1  # the embeddings hard-code padding_idx=1 whatever config.pad_token_id says (SPEC 1.1)
MAX_DISTANCE = 128  # relative distances at or beyond this share the last log-spaced bucket (SPEC 1.4)


# ------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class MPNetConfig:
    """The MPNetConfig fields the forward pass reads, with the 4.37.2 class defaults (SPEC 1.1)."""

    vocab_size: int = 30527
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    relative_attention_num_buckets: int = 32
    pad_token_id: int = 1
    num_labels: int = 2
    problem_type: Optional[str] = None
    tf_legacy_loss: bool = False
    id2label: dict = field(default_factory=dict)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict, profile=None) -> "MPNetConfig":
        """Build from a config.json dict, validating types and sizes (the profile changes no default)."""
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        model_type = d.get("model_type", "mpnet")
        if model_type != "mpnet":
            raise ValueError(f"config model_type is {model_type!r}, not 'mpnet'")
        kwargs = {}
        for f in cls.__dataclass_fields__.values():
            if f.name in d and f.name not in ("num_labels", "id2label"):
                kwargs[f.name] = d[f.name]
        config = cls(**kwargs, **label_fields(d))
        config.validate()
        return config

    def validate(self) -> None:
        check_field_types(self)
        require_positive_ints(self, ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size",
                                     "max_position_embeddings", "relative_attention_num_buckets", "num_labels"))
        require_positive_ints(self, ("num_hidden_layers",), limit=MAX_LAYERS)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"config.hidden_size ({self.hidden_size}) is not a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"config.hidden_act {self.hidden_act!r} is not supported; accepted: {sorted(ACTIVATIONS)}")
        require_probabilities(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ValueError(f"config.layer_norm_eps must be positive, got {self.layer_norm_eps!r}")


# ------------------------------------------------------------------------ positions and buckets


def position_ids_from_input_ids(input_ids):  # [B, S] -> [B, S]
    """Real tokens get 2, 3, ... counting only non-pad tokens; pad tokens (id 1) get 1 (SPEC 1.3)."""
    real = (input_ids != PADDING_IDX).astype(np.int64)
    return np.cumsum(real, axis=1) * real + PADDING_IDX


def sequential_position_ids(seq_len):  # S -> [1, S]
    """With inputs_embeds padding cannot be seen, so positions are simply 2 .. S+1."""
    return np.arange(PADDING_IDX + 1, seq_len + PADDING_IDX + 1, dtype=np.int64)[None, :]


def relative_position_bucket(relative_position, num_buckets=32, max_distance=MAX_DISTANCE):  # [...] -> [...]
    """T5 bucketing of key-minus-query distances (SPEC 1.4).

    Half the buckets hold keys to the left of (or at) the query, half those to the right. Within a
    half, the first num_buckets/4 distances get a bucket each; larger distances share log-spaced
    buckets up to max_distance, beyond which everything lands in the last one.
    """
    n = -np.asarray(relative_position, dtype=np.int64)  # query minus key
    half = num_buckets // 2
    bucket = np.where(n < 0, half, 0)
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):  # log(0) only occurs where the exact branch is taken
        log_ratio = np.log(n / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + np.floor(log_ratio * (half - max_exact))
    large = np.minimum(np.where(n < max_exact, 0, large), half - 1).astype(np.int64)
    return bucket + np.where(n < max_exact, n, large)


def relative_position_bias(table, seq_len, num_buckets):  # [NB, H], S -> [H, S, S]
    """bias[h, i, j] = table[bucket(j - i), h]; distances are arange indices, never position_ids."""
    positions = np.arange(seq_len)
    buckets = relative_position_bucket(positions[None, :] - positions[:, None], num_buckets)  # [S, S]
    if buckets.size and buckets.max() >= table.shape[0]:
        raise ValueError(
            f"relative bucket {buckets.max()} needs a bias table of at least {buckets.max() + 1} rows, "
            f"but encoder.relative_attention_bias has {table.shape[0]} (config.relative_attention_num_buckets "
            f"is smaller than the {num_buckets} buckets this profile uses)"
        )
    return table[buckets].transpose(2, 0, 1)  # [S, S, H] -> [H, S, S]


# --------------------------------------------------------------------------------------- encoder


def embed(params, config, input_ids, position_ids, inputs_embeds, rng, kernels=NUMPY):  # -> [B, S, C]
    """word embedding + position embedding, LayerNorm, dropout (SPEC 1.3)."""
    words = params["embeddings.word_embeddings.weight"][input_ids] if inputs_embeds is None else inputs_embeds
    positions = params["embeddings.position_embeddings.weight"][position_ids]  # [B, S, C]
    x = kernels.add_layer_norm(words, positions, params["embeddings.LayerNorm.weight"],  # layer_norm(words + positions)
                               params["embeddings.LayerNorm.bias"], config.layer_norm_eps)
    return dropout(x, config.hidden_dropout_prob, rng)


def split_heads(x, num_heads):  # [B, S, C] -> [B, H, S, D]
    B, S, C = x.shape
    return x.reshape(B, S, num_heads, C // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x):  # [B, H, S, D] -> [B, S, C]
    B, H, S, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, S, H * D)


def attention(p, config, x, position_bias, mask_bias, head_mask, rng, kernels=NUMPY):  # [B, S, C] -> [B, S, C], [B, H, S, S]
    """Self-attention with the relative bias and the additive mask (SPEC 1.6 steps 1-5).

    p holds this layer's ``attention.attn.*`` weights; position_bias is [H, S, S] (not scaled by
    1/sqrt(D)); mask_bias is [B, 1, 1|S, S]; head_mask is [H] or None. kernels: NumPy or a fast backend.
    """
    H, K = config.num_attention_heads, kernels
    q, k, v = (split_heads(y, H) for y in K.linears(  # [B, S, C] -> 3 x [B, H, S, D]
        x, (p["q.weight"], p["k.weight"], p["v.weight"]), (p["q.bias"], p["k.bias"], p["v.bias"])))
    # scores = q k^T / sqrt(D) + relative bias (not scaled) + mask bias; softmax; dropout; head mask
    context, probs = K.attention(q, k, v, 1 / math.sqrt(config.head_size), bias=position_bias, mask_add=mask_bias,
                                 dropout_p=config.attention_probs_dropout_prob, rng=rng, head_mask=head_mask)
    return K.linear(merge_heads(context), p["o.weight"], p["o.bias"]), probs  # [B, H, S, D] -> [B, S, C]


def encoder_layer(params, i, config, x, position_bias, mask_bias, head_mask, rng, kernels=NUMPY):  # [B, S, C] -> [B, S, C], probs
    """Post-LN layer: attention + residual + LN, then feed-forward + residual + LN (SPEC 1.6)."""
    prefix, K = f"encoder.layer.{i}.", kernels
    attn = {name[len(prefix + "attention.attn."):]: w for name, w in params.items() if name.startswith(prefix + "attention.attn.")}
    a, probs = attention(attn, config, x, position_bias, mask_bias, head_mask, rng, K)
    x1 = K.add_layer_norm(  # layer_norm(a + x)
        dropout(a, config.hidden_dropout_prob, rng), x,
        params[prefix + "attention.LayerNorm.weight"], params[prefix + "attention.LayerNorm.bias"], config.layer_norm_eps,
    )
    w_in, b_in = params[prefix + "intermediate.dense.weight"], params[prefix + "intermediate.dense.bias"]
    if config.hidden_act == "gelu":
        f = K.linear_gelu(x1, w_in, b_in)  # gelu(linear(x1)): [B, S, C] -> [B, S, 4C]
    else:
        f = ACTIVATIONS[config.hidden_act](K.linear(x1, w_in, b_in))
    f = K.linear(f, params[prefix + "output.dense.weight"], params[prefix + "output.dense.bias"])  # [B, S, C]
    x2 = K.add_layer_norm(  # layer_norm(f + x1)
        dropout(f, config.hidden_dropout_prob, rng), x1,
        params[prefix + "output.LayerNorm.weight"], params[prefix + "output.LayerNorm.bias"], config.layer_norm_eps,
    )
    return x2, probs


def pack_qkv(params, config):  # -> a new dict; the same values
    """Each layer's q, k and v weights (and biases) copied into adjacent rows of one array, and kept
    under their checkpoint names as views of it: [3C, C] holds q.weight, k.weight, v.weight. Nothing
    about the values changes, and the three separate arrays can be freed; a backend's ``linears``
    may then run the three projections as one GEMM over the whole block."""
    params = dict(params)
    for i in range(config.num_hidden_layers):
        pre = f"encoder.layer.{i}.attention.attn."
        for kind in ("weight", "bias"):
            names = [f"{pre}{n}.{kind}" for n in "qkv"]
            parts = [params[n] for n in names]
            if all(w.dtype == parts[0].dtype and w.shape[1:] == parts[0].shape[1:] for w in parts):
                block = np.concatenate(parts)
                ends = np.cumsum([w.shape[0] for w in parts])
                for n, start, end in zip(names, ends - ends[0], ends):
                    params[n] = block[start:end]
    return params


def mask_to_bias(attention_mask, profile, dtype):  # [B, S] or [B, S, S] -> [B, 1, 1|S, S]
    """(1 - mask) * mask_value: 0 where attended, the profile's large negative where masked (SPEC 1.5)."""
    m = attention_mask.astype(dtype)
    m = m[:, None, None, :] if m.ndim == 2 else m[:, None, :, :]
    return (1 - m) * dtype.type(profile.mask_value)


def pool(params, hidden):  # [B, S, C] -> [B, C]
    """tanh(dense(h[:, 0])): the <s> vector through a dense layer (SPEC 1.7)."""
    return np.tanh(linear(hidden[:, 0], params["pooler.dense.weight"], params["pooler.dense.bias"]))


# --------------------------------------------------------------------------------------- models


HEAD_INPUTS = ("input_ids", "attention_mask", "position_ids", "head_mask", "inputs_embeds",
               "output_attentions", "output_hidden_states", "return_dict")


class MPNetModel:
    """The MPNet encoder. Call it with the HF keyword names; see ``__call__``.

    ``params`` are float arrays keyed by HF names without the "mpnet." prefix (plus head weights
    for the subclasses). The compute dtype is the dtype of the word embeddings.
    """

    task = "base"
    uses_pooler = True  # MPNetModel(add_pooling_layer=True); heads override
    label_inputs: tuple = ()
    keras_order = HEAD_INPUTS + ("training",)

    def __init__(self, config, params, profile=None, rng=None, kernels=NUMPY):
        self.kernels = kernels  # the backend's kernel set, resolved at load (reference/backends/)
        self.config = config if isinstance(config, MPNetConfig) else MPNetConfig.from_dict(config)
        self.profile: MPNetProfile = get_profile("mpnet", profile)
        self.params = pack_qkv(params, self.config)
        self.dtype = params["embeddings.word_embeddings.weight"].dtype
        self.problem_type = self.config.problem_type  # settled by the first loss and then kept, as upstream
        self.rng = rng

    # -- calling convention ------------------------------------------------------------------

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, head_mask=None, inputs_embeds=None,
                 output_attentions=None, output_hidden_states=None, return_dict=None, training=False, rng=None,
                 **labels):
        """Run the model.

        input_ids [B, S] int (or a Keras-style dict / list in TF signature order / single array);
        attention_mask [B, S] (pt also [B, S, S]), 1 = attend; position_ids [B, S];
        head_mask [H] or [L, H] (pt only); inputs_embeds [B, S, C] instead of input_ids;
        labels (and start_positions / end_positions for QA) to get a loss.
        training=True applies dropout drawn from ``rng`` (a Generator or int seed).
        Returns an output dataclass, or the upstream tuple when return_dict=False.
        """
        given = dict(attention_mask=attention_mask, position_ids=position_ids, head_mask=head_mask,
                     inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                     output_hidden_states=output_hidden_states, return_dict=return_dict, training=training, **labels)
        if isinstance(input_ids, (dict, list, tuple)):
            given = unpack_keras_inputs(input_ids, self.keras_order + self.label_inputs, given)
        else:
            given["input_ids"] = input_ids
        unknown = sorted(set(given) - set(self.keras_order) - set(self.label_inputs) - {"input_ids"})
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected input(s) {unknown}; labels accepted: {list(self.label_inputs)}")
        check_flags(**{k: given.get(k) for k in ("output_attentions", "output_hidden_states", "return_dict", "training")})
        training = bool(given.pop("training") or False)
        return_dict = given.pop("return_dict")
        drop_rng = make_rng(rng if rng is not None else self.rng) if training else None
        out = self.forward(**given, rng=drop_rng)
        return out if return_dict in (None, True) else self.upstream_tuple(out)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, head_mask=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, rng=None):
        encoded = self.encode(input_ids, attention_mask, position_ids, head_mask, inputs_embeds,
                              output_attentions, output_hidden_states, rng)
        return encoded

    def upstream_tuple(self, out):
        """The return_dict=False tuple of this task and profile (reference/outputs.py, TUPLE_LAYOUTS)."""
        return upstream_tuple(out, "mpnet", self.task, self.profile.name)

    # -- the encoder -------------------------------------------------------------------------

    def encode(self, input_ids, attention_mask, position_ids, head_mask, inputs_embeds,
               output_attentions, output_hidden_states, rng) -> BaseModelOutput:
        """Embeddings -> relative bias -> L post-LN layers -> optional pooler (SPEC 1.3-1.7)."""
        config, params = self.config, self.params
        input_ids, inputs_embeds, B, S = check_tokens(input_ids, inputs_embeds, config.vocab_size, config.hidden_size,
                                                      self.dtype)
        position_ids = self._positions(input_ids, position_ids, B, S)
        mask_bias = mask_to_bias(self._check_mask(attention_mask, B, S), self.profile, self.dtype)
        layer_head_mask = self._check_head_mask(head_mask)

        x = embed(params, config, input_ids, position_ids, inputs_embeds, rng, self.kernels)  # [B, S, C]
        bias = relative_position_bias(params["encoder.relative_attention_bias.weight"], S,
                                      self.profile.num_buckets(config))  # [H, S, S], shared by every layer
        hidden_states, attentions = [x], []
        stacked = None
        if self.kernels.encoder_stack is not None and not (output_attentions or output_hidden_states) and rng is None \
                and all(m is None for m in layer_head_mask):
            stacked = self.kernels.encoder_stack(params, config, x, bias, mask_bias)  # all layers at once, or None
        if stacked is not None:
            x = stacked
        else:
            for i in range(config.num_hidden_layers):
                x, probs = encoder_layer(params, i, config, x, bias, mask_bias, layer_head_mask[i], rng, self.kernels)
                hidden_states.append(x)
                attentions.append(probs)

        pooled = None
        if (self.uses_pooler or self.profile.always_pools) and "pooler.dense.weight" in params:
            pooled = pool(params, x)
        return BaseModelOutput(
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    # -- boundary checks ---------------------------------------------------------------------

    def _positions(self, input_ids, position_ids, B, S):
        limit = self.config.max_position_embeddings
        if position_ids is None:
            position_ids = position_ids_from_input_ids(input_ids) if input_ids is not None else sequential_position_ids(S)
            if position_ids.size and position_ids.max() >= limit:
                raise ValueError(
                    f"sequence of {S} tokens needs position id {position_ids.max()}, but the position table has "
                    f"{limit} rows (positions start at 2, so at most {limit - 2} non-pad tokens fit)"
                )
            return position_ids
        position_ids = as_ids(position_ids, "position_ids", limit, ndim=np.ndim(position_ids))
        if position_ids.shape not in ((B, S), (1, S), (S,)):
            raise ValueError(f"position_ids must have shape ({B}, {S}) or ({S},), got {position_ids.shape}")
        return position_ids

    def _check_mask(self, attention_mask, B, S):
        if attention_mask is None:
            return np.ones((B, S), dtype=self.dtype)
        m = np.asarray(attention_mask)
        if m.ndim == 3 and not self.profile.accepts_3d_mask:
            raise ValueError(f"the {self.profile.name} profile accepts only a 2D attention_mask ({B}, {S}), got {m.shape}")
        shape = (B, S) if m.ndim == 2 else (B, S, S)
        return as_float(m, "attention_mask", shape, self.dtype)

    def _check_head_mask(self, head_mask):  # -> L entries of [H] or None
        L, H = self.config.num_hidden_layers, self.config.num_attention_heads
        if head_mask is None:
            return [None] * L
        if not self.profile.head_mask_supported:
            raise ValueError(f"head_mask is not supported by the {self.profile.name} profile "
                             "(TF MPNet raises NotImplementedError)")
        hm = np.asarray(head_mask)
        if hm.shape == (H,):
            return [as_float(hm, "head_mask", (H,), self.dtype)] * L
        return list(as_float(hm, "head_mask", (L, H), self.dtype))


class _Head(MPNetModel):
    """A head on the encoder: ``head`` maps the encoder output (and labels) to the task output."""

    uses_pooler = False
    label_inputs = ("labels",)
    keras_order = HEAD_INPUTS + ("labels", "training")

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, head_mask=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, rng=None, **labels):
        encoded = self.encode(input_ids, attention_mask, position_ids, head_mask, inputs_embeds,
                              output_attentions, output_hidden_states, rng)
        return self.head(encoded, rng=rng, **labels)

    def _loss_style(self):
        return self.profile.loss_style


class MPNetForMaskedLM(_Head):
    """LM head: dense -> erf GELU -> LayerNorm -> tied decoder (word embeddings) + bias (SPEC 1.8)."""

    task = "masked-lm"

    def head(self, encoded, rng, labels=None):
        p, config = self.params, self.config
        t = gelu(linear(encoded.last_hidden_state, p["lm_head.dense.weight"], p["lm_head.dense.bias"]))  # always erf
        t = layer_norm(t, p["lm_head.layer_norm.weight"], p["lm_head.layer_norm.bias"], config.layer_norm_eps)
        logits = linear(t, p["embeddings.word_embeddings.weight"], p["lm_head.bias"])  # [B, S, V]
        loss = None
        if labels is not None:
            loss = (losses.pt_token_loss(logits, labels) if self._loss_style() == "pt"
                    else losses.tf_masked_lm_loss(logits, labels, legacy=config.tf_legacy_loss))
        return MaskedLMOutput(loss, logits, encoded.hidden_states, encoded.attentions)


class MPNetForSequenceClassification(_Head):
    """<s> vector -> dropout -> dense -> tanh -> dropout -> out_proj (no pooler; SPEC 1.8)."""

    task = "sequence-classification"

    def head(self, encoded, rng, labels=None):
        p, drop = self.params, self.config.hidden_dropout_prob
        x = dropout(encoded.last_hidden_state[:, 0], drop, rng)  # [B, C]
        x = dropout(np.tanh(linear(x, p["classifier.dense.weight"], p["classifier.dense.bias"])), drop, rng)
        logits = linear(x, p["classifier.out_proj.weight"], p["classifier.out_proj.bias"])  # [B, num_labels]
        loss = None
        if labels is not None:
            if self._loss_style() == "pt":
                loss, self.problem_type = losses.pt_sequence_classification_loss(logits, labels, self.problem_type)
            else:
                loss = losses.tf_sequence_classification_loss(logits, labels)
        return SequenceClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions)


class MPNetForMultipleChoice(_Head):
    """Each (example, choice) row is encoded; pooled -> dropout -> Linear(C, 1) -> [B, N] (SPEC 1.8)."""

    task = "multiple-choice"
    uses_pooler = True

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, head_mask=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, rng=None, labels=None):
        source = input_ids if input_ids is not None else inputs_embeds
        if source is None:
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        source = np.asarray(source)
        want = 3 if input_ids is not None else 4
        if source.ndim != want:
            raise ValueError(f"multiple choice expects {'input_ids [B, N, S]' if want == 3 else 'inputs_embeds [B, N, S, C]'}, "
                             f"got shape {source.shape}")
        B, N, S = source.shape[:3]

        def flat(x, tail):  # [B, N, S, ...] -> [B*N, S, ...]
            return None if x is None else np.asarray(x).reshape((B * N,) + tail)

        encoded = self.encode(flat(input_ids, (S,)), flat(attention_mask, np.shape(attention_mask)[2:]),
                              flat(position_ids, (S,)), head_mask, flat(inputs_embeds, (S, self.config.hidden_size)),
                              output_attentions, output_hidden_states, rng)
        p = self.params
        pooled = dropout(encoded.pooler_output, self.config.hidden_dropout_prob, rng)  # [B*N, C]
        logits = linear(pooled, p["classifier.weight"], p["classifier.bias"]).reshape(B, N)  # [B*N, 1] -> [B, N]
        loss = None
        if labels is not None:
            loss = (losses.pt_multiple_choice_loss(logits, labels) if self._loss_style() == "pt"
                    else losses.tf_multiple_choice_loss(logits, labels))
        return MultipleChoiceModelOutput(loss, logits, encoded.hidden_states, encoded.attentions)


class MPNetForTokenClassification(_Head):
    """dropout -> Linear(C, num_labels) at every position (SPEC 1.8)."""

    task = "token-classification"

    def head(self, encoded, rng, labels=None):
        p = self.params
        x = dropout(encoded.last_hidden_state, self.config.hidden_dropout_prob, rng)
        logits = linear(x, p["classifier.weight"], p["classifier.bias"])  # [B, S, num_labels]
        loss = None
        if labels is not None:
            loss = (losses.pt_token_loss(logits, labels) if self._loss_style() == "pt"
                    else losses.tf_token_classification_loss(logits, labels, legacy=self.config.tf_legacy_loss))
        return TokenClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions,
                                     pooler_output=encoded.pooler_output)  # the tf tuple holds it (SPEC 1.10)


class MPNetForQuestionAnswering(_Head):
    """Linear(C, 2) split into start and end logits [B, S] (SPEC 1.8, losses 1.9 / 1.10)."""

    task = "question-answering"
    label_inputs = ("start_positions", "end_positions")
    keras_order = HEAD_INPUTS + ("start_positions", "end_positions", "training")

    def __init__(self, config, params, profile=None, rng=None, kernels=NUMPY):
        super().__init__(config, params, profile, rng, kernels)
        if self.config.num_labels != 2:
            raise ValueError(f"question answering needs num_labels == 2 (start, end), config has {self.config.num_labels}")

    def head(self, encoded, rng, start_positions=None, end_positions=None):
        p = self.params
        logits = linear(encoded.last_hidden_state, p["qa_outputs.weight"], p["qa_outputs.bias"])  # [B, S, 2]
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None and end_positions is not None:
            span_loss = losses.pt_span_loss if self._loss_style() == "pt" else losses.tf_span_loss
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss, start_logits, end_logits, encoded.hidden_states, encoded.attentions)


TASKS = {
    cls.task: cls
    for cls in (MPNetModel, MPNetForMaskedLM, MPNetForSequenceClassification, MPNetForMultipleChoice,
                MPNetForTokenClassification, MPNetForQuestionAnswering)
}


# ------------------------------------------------------------------------------------- weights


def param_shapes(config, task, profile=None):
    """name -> shape of every parameter the task needs, in the checkpoint's (out, in) layout."""
    C, I, V = config.hidden_size, config.intermediate_size, config.vocab_size
    shapes = {
        "embeddings.word_embeddings.weight": (V, C),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, C),
        "embeddings.LayerNorm.weight": (C,), "embeddings.LayerNorm.bias": (C,),
        "encoder.relative_attention_bias.weight": (config.relative_attention_num_buckets, config.num_attention_heads),
    }
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for proj in "qkvo":
            shapes[f"{p}attention.attn.{proj}.weight"] = (C, C)
            shapes[f"{p}attention.attn.{proj}.bias"] = (C,)
        shapes.update({
            f"{p}attention.LayerNorm.weight": (C,), f"{p}attention.LayerNorm.bias": (C,),
            f"{p}intermediate.dense.weight": (I, C), f"{p}intermediate.dense.bias": (I,),
            f"{p}output.dense.weight": (C, I), f"{p}output.dense.bias": (C,),
            f"{p}output.LayerNorm.weight": (C,), f"{p}output.LayerNorm.bias": (C,),
        })
    shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = (C, C), (C,)
    L = config.num_labels
    heads = {
        "base": {},
        "masked-lm": {"lm_head.dense.weight": (C, C), "lm_head.dense.bias": (C,), "lm_head.layer_norm.weight": (C,),
                      "lm_head.layer_norm.bias": (C,), "lm_head.bias": (V,)},
        "sequence-classification": {"classifier.dense.weight": (C, C), "classifier.dense.bias": (C,),
                                    "classifier.out_proj.weight": (L, C), "classifier.out_proj.bias": (L,)},
        "multiple-choice": {"classifier.weight": (1, C), "classifier.bias": (1,)},
        "token-classification": {"classifier.weight": (L, C), "classifier.bias": (L,)},
        "question-answering": {"qa_outputs.weight": (L, C), "qa_outputs.bias": (L,)},
    }
    shapes.update(heads[task])
    return shapes


# The tied decoder: its weight is the word embedding and its bias is lm_head.bias (SPEC 1.8).
WEIGHT_ALIASES = {"lm_head.decoder.bias": "lm_head.bias"}
IGNORED_WEIGHTS = ("embeddings.position_ids", "lm_head.decoder.weight")


def checkpoint_rules(config, task):
    """(ignored names, aliases, optional names) for reading a checkpoint. The pooler may be absent
    except where the head reads it."""
    optional = () if task == "multiple-choice" else ("pooler.dense.weight", "pooler.dense.bias")
    return IGNORED_WEIGHTS, WEIGHT_ALIASES, optional


# What reference/loading.py needs to know about this family.
Config = MPNetConfig
BASE_PREFIX = "mpnet."
