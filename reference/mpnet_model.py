"""MPNet's calling convention: the config, the model classes users call, and the checkpoint layout.

The math is in mpnet.py; this module is everything around it, kept out of the way of a reader of the
forward pass: the config and its validation, the HF keyword names (and TF's Keras-style dict, list
or single-array first argument), argument checks at the boundary, the profile's few decisions, the
losses, the output classes and the parameter shapes a checkpoint must have.

A model holds ``params``, the checkpoint nested once at load (reference/checkpoint.py, ``nest``),
and ``stack``: the L encoder layers of a fast backend, bound at load to this model's weights, or
None for the NumPy reference (mpnet.encoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import losses, mpnet
from .checkpoint import flatten, nest
from .inputs import (
    MAX_LAYERS,
    as_float,
    as_ids,
    check_field_types,
    check_flags,
    check_tokens,
    label_fields,
    make_rng,
    require_positive_ints,
    require_probabilities,
    unpack_keras_inputs,
)
from .ops import ACTIVATIONS
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
    problem_type: str | None = None
    tf_legacy_loss: bool = False
    id2label: dict = field(default_factory=dict)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict, profile=None) -> MPNetConfig:
        """Build from a config.json dict, validating types and sizes (the profile changes no
        default)."""
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
        require_positive_ints(
            self,
            (
                "vocab_size",
                "hidden_size",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
                "relative_attention_num_buckets",
                "num_labels",
            ),
        )
        require_positive_ints(self, ("num_hidden_layers",), limit=MAX_LAYERS)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"config.hidden_size ({self.hidden_size}) is not a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"config.hidden_act {self.hidden_act!r} is not supported; accepted:"
                f" {sorted(ACTIVATIONS)}"
            )
        require_probabilities(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ValueError(f"config.layer_norm_eps must be positive, got {self.layer_norm_eps!r}")


# --------------------------------------------------------------------------------------- models


HEAD_INPUTS = (
    "input_ids",
    "attention_mask",
    "position_ids",
    "head_mask",
    "inputs_embeds",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
)


class MPNetModel:
    """The MPNet encoder. Call it with the HF keyword names; see ``__call__``.

    ``params``: float arrays keyed by HF names without the "mpnet." prefix (plus head weights for
    the subclasses). The compute dtype is the dtype of the word embeddings. ``backend``: a fast
    backend (reference/backends/) whose encoder stack runs the layers; None for NumPy.
    """

    task = "base"
    uses_pooler = True  # MPNetModel(add_pooling_layer=True); heads override
    label_inputs: tuple = ()
    keras_order = HEAD_INPUTS + ("training",)

    def __init__(self, config, params, profile=None, rng=None, backend=None):
        self.config = config if isinstance(config, MPNetConfig) else MPNetConfig.from_dict(config)
        self.profile: MPNetProfile = get_profile("mpnet", profile)
        self.params = nest(params)
        self.dtype = params["embeddings.word_embeddings.weight"].dtype
        bind = getattr(backend, "mpnet_encoder", None)
        self.stack = None if bind is None else bind(self.config, self.params)
        self.problem_type = (
            self.config.problem_type
        )  # settled by the first loss and then kept, as upstream
        self.rng = rng

    def state_dict(self):
        """The parameters under their checkpoint names (without the "mpnet." prefix), as arrays:
        matrices a fast backend holds in a layout of its own (numba_gemm.PackedMatrix) come back
        as unpacked copies."""
        return {
            name: value if isinstance(value, np.ndarray) else np.asarray(value)
            for name, value in flatten(self.params).items()
        }

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        training=False,
        rng=None,
        **labels,
    ):
        """Run the model.

        input_ids [B, S] int (or a Keras-style dict / list in TF signature order / single array);
        attention_mask [B, S] (pt also [B, S, S]), 1 = attend; position_ids [B, S]; head_mask [H] or
        [L, H] (pt only); inputs_embeds [B, S, C] instead of input_ids; labels (and start_positions
        / end_positions for QA) to get a loss. training=True applies dropout drawn from ``rng`` (a
        Generator or int seed). Returns an output dataclass, or the upstream tuple when
        return_dict=False.
        """
        given = dict(
            attention_mask=attention_mask,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            training=training,
            **labels,
        )
        if isinstance(input_ids, (dict, list, tuple)):
            given = unpack_keras_inputs(input_ids, self.keras_order + self.label_inputs, given)
        else:
            given["input_ids"] = input_ids
        unknown = sorted(
            set(given) - set(self.keras_order) - set(self.label_inputs) - {"input_ids"}
        )
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected input(s) {unknown}; "
                f"labels accepted: {list(self.label_inputs)}"
            )
        check_flags(
            **{
                k: given.get(k)
                for k in ("output_attentions", "output_hidden_states", "return_dict", "training")
            }
        )
        training = bool(given.pop("training") or False)
        return_dict = given.pop("return_dict")
        drop_rng = make_rng(rng if rng is not None else self.rng) if training else None
        out = self.forward(**given, rng=drop_rng)
        return out if return_dict in (None, True) else self.upstream_tuple(out)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        rng=None,
    ):
        return self.encode(
            input_ids,
            attention_mask,
            position_ids,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            rng,
        )

    def upstream_tuple(self, out):
        """The return_dict=False tuple of this task and profile (reference/outputs.py,
        TUPLE_LAYOUTS)."""
        return upstream_tuple(out, "mpnet", self.task, self.profile.name)

    def encode(
        self,
        input_ids,
        attention_mask,
        position_ids,
        head_mask,
        inputs_embeds,
        output_attentions,
        output_hidden_states,
        rng,
    ) -> BaseModelOutput:
        """Checks every input, then mpnet.mpnet (and the pooler where this model has one)."""
        config, profile = self.config, self.profile
        input_ids, inputs_embeds, B, S = check_tokens(
            input_ids, inputs_embeds, config.vocab_size, config.hidden_size, self.dtype
        )
        position_ids = self._positions(input_ids, position_ids, B, S)
        mask_bias = mpnet.mask_to_bias(
            self._check_mask(attention_mask, B, S), profile.mask_value
        )  # [B, 1, 1|S, S]
        per_layer = bool(output_attentions or output_hidden_states)
        stack = (
            None if self.stack is None else (lambda *args: self.stack(*args, per_layer=per_layer))
        )
        x, hidden_states, attentions = mpnet.mpnet(
            self.params,
            config,
            input_ids,
            inputs_embeds,
            position_ids,
            mask_bias,
            self._check_head_mask(head_mask),
            profile.num_buckets(config),
            rng,
            stack,
        )
        pooled = None
        if (self.uses_pooler or profile.always_pools) and "pooler" in self.params:
            pooled = mpnet.pool(self.params["pooler"], x)
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
            position_ids = (
                mpnet.position_ids_from_input_ids(input_ids)
                if input_ids is not None
                else mpnet.sequential_position_ids(S)
            )
            if position_ids.size and position_ids.max() >= limit:
                raise ValueError(
                    f"sequence of {S} tokens needs position id {position_ids.max()}, but the"
                    f" position table has {limit} rows (positions start at 2, so at most"
                    f" {limit - 2} non-pad tokens fit)"
                )
            return position_ids
        position_ids = as_ids(position_ids, "position_ids", limit, ndim=np.ndim(position_ids))
        if position_ids.shape not in ((B, S), (1, S), (S,)):
            raise ValueError(
                f"position_ids must have shape ({B}, {S}) or ({S},), got {position_ids.shape}"
            )
        return position_ids

    def _check_mask(self, attention_mask, B, S):
        if attention_mask is None:
            return np.ones((B, S), dtype=self.dtype)
        m = np.asarray(attention_mask)
        if m.ndim == 3 and not self.profile.accepts_3d_mask:
            raise ValueError(
                f"the {self.profile.name} profile accepts only a 2D attention_mask ({B}, {S}), "
                f"got {m.shape}"
            )
        shape = (B, S) if m.ndim == 2 else (B, S, S)
        return as_float(m, "attention_mask", shape, self.dtype)

    def _check_head_mask(self, head_mask):  # -> L entries of [H] or None
        L, H = self.config.num_hidden_layers, self.config.num_attention_heads
        if head_mask is None:
            return [None] * L
        if not self.profile.head_mask_supported:
            raise ValueError(
                f"head_mask is not supported by the {self.profile.name} profile "
                "(TF MPNet raises NotImplementedError)"
            )
        hm = np.asarray(head_mask)
        if hm.shape == (H,):
            return [as_float(hm, "head_mask", (H,), self.dtype)] * L
        return list(as_float(hm, "head_mask", (L, H), self.dtype))


class _Head(MPNetModel):
    """A head on the encoder: ``head`` maps the encoder output (and labels) to the task output."""

    uses_pooler = False
    label_inputs = ("labels",)
    keras_order = HEAD_INPUTS + ("labels", "training")

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        rng=None,
        **labels,
    ):
        encoded = self.encode(
            input_ids,
            attention_mask,
            position_ids,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            rng,
        )
        return self.head(encoded, rng=rng, **labels)

    def _loss_style(self):
        return self.profile.loss_style


class MPNetForMaskedLM(_Head):
    """mpnet.masked_lm_head; pt: cross entropy over labels != -100; tf: the Keras masked-LM loss."""

    task = "masked-lm"

    def head(self, encoded, rng, labels=None):
        p, config = self.params, self.config
        logits = mpnet.masked_lm_head(
            p["lm_head"],
            p["embeddings"]["word_embeddings"]["weight"],
            encoded.last_hidden_state,
            config.layer_norm_eps,
        )  # [B, S, V]
        loss = None
        if labels is not None:
            loss = (
                losses.pt_token_loss(logits, labels)
                if self._loss_style() == "pt"
                else losses.tf_masked_lm_loss(logits, labels, legacy=config.tf_legacy_loss)
            )
        return MaskedLMOutput(loss, logits, encoded.hidden_states, encoded.attentions)


class MPNetForSequenceClassification(_Head):
    """mpnet.sequence_classification_head; pt settles problem_type on the first loss (SPEC 1.9)."""

    task = "sequence-classification"

    def head(self, encoded, rng, labels=None):
        logits = mpnet.sequence_classification_head(
            self.params["classifier"],
            encoded.last_hidden_state,
            self.config.hidden_dropout_prob,
            rng,
        )  # [B, num_labels]
        loss = None
        if labels is not None:
            if self._loss_style() == "pt":  # upstream keeps the type it settled on in its config
                loss, self.problem_type = losses.pt_sequence_classification_loss(
                    logits, labels, self.problem_type
                )
            else:
                loss = losses.tf_sequence_classification_loss(logits, labels)
        return SequenceClassifierOutput(loss, logits, encoded.hidden_states, encoded.attentions)


class MPNetForMultipleChoice(_Head):
    """Each (example, choice) row is encoded and pooled; mpnet.multiple_choice_head -> [B, N] (SPEC
    1.8)."""

    task = "multiple-choice"
    uses_pooler = True

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        rng=None,
        labels=None,
    ):
        source = input_ids if input_ids is not None else inputs_embeds
        if source is None:
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        source = np.asarray(source)
        want = 3 if input_ids is not None else 4
        if source.ndim != want:
            raise ValueError(
                "multiple choice expects "
                f"{'input_ids [B, N, S]' if want == 3 else 'inputs_embeds [B, N, S, C]'}, "
                f"got shape {source.shape}"
            )
        B, N, S = source.shape[:3]

        def flat(x, tail):  # [B, N, S, ...] -> [B*N, S, ...]
            return None if x is None else np.asarray(x).reshape((B * N,) + tail)

        encoded = self.encode(
            flat(input_ids, (S,)),
            flat(attention_mask, np.shape(attention_mask)[2:]),
            flat(position_ids, (S,)),
            head_mask,
            flat(inputs_embeds, (S, self.config.hidden_size)),
            output_attentions,
            output_hidden_states,
            rng,
        )
        logits = mpnet.multiple_choice_head(
            self.params["classifier"],
            encoded.pooler_output,
            self.config.hidden_dropout_prob,
            rng,
            N,
        )  # [B, N]
        loss = None
        if labels is not None:
            loss = (
                losses.pt_multiple_choice_loss(logits, labels)
                if self._loss_style() == "pt"
                else losses.tf_multiple_choice_loss(logits, labels)
            )
        return MultipleChoiceModelOutput(loss, logits, encoded.hidden_states, encoded.attentions)


class MPNetForTokenClassification(_Head):
    """mpnet.token_classification_head at every position (SPEC 1.8)."""

    task = "token-classification"

    def head(self, encoded, rng, labels=None):
        logits = mpnet.token_classification_head(
            self.params["classifier"],
            encoded.last_hidden_state,
            self.config.hidden_dropout_prob,
            rng,
        )  # [B, S, num_labels]
        loss = None
        if labels is not None:
            loss = (
                losses.pt_token_loss(logits, labels)
                if self._loss_style() == "pt"
                else losses.tf_token_classification_loss(
                    logits, labels, legacy=self.config.tf_legacy_loss
                )
            )
        return TokenClassifierOutput(
            loss,
            logits,
            encoded.hidden_states,
            encoded.attentions,
            pooler_output=encoded.pooler_output,
        )  # the tf tuple holds it (SPEC 1.10)


class MPNetForQuestionAnswering(_Head):
    """mpnet.question_answering_head: start and end logits [B, S] (SPEC 1.8, losses 1.9 / 1.10)."""

    task = "question-answering"
    label_inputs = ("start_positions", "end_positions")
    keras_order = HEAD_INPUTS + ("start_positions", "end_positions", "training")

    def __init__(self, config, params, profile=None, rng=None, backend=None):
        super().__init__(config, params, profile, rng, backend)
        if self.config.num_labels != 2:
            raise ValueError(
                "question answering needs num_labels == 2 (start, end), "
                f"config has {self.config.num_labels}"
            )

    def head(self, encoded, rng, start_positions=None, end_positions=None):
        start_logits, end_logits = mpnet.question_answering_head(
            self.params["qa_outputs"], encoded.last_hidden_state
        )
        loss = None
        if start_positions is not None and end_positions is not None:
            span_loss = losses.pt_span_loss if self._loss_style() == "pt" else losses.tf_span_loss
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(
            loss, start_logits, end_logits, encoded.hidden_states, encoded.attentions
        )


LOAD_OPTIONS: dict = {}  # MPNet models take no keyword options beyond the common ones

TASKS = {
    cls.task: cls
    for cls in (
        MPNetModel,
        MPNetForMaskedLM,
        MPNetForSequenceClassification,
        MPNetForMultipleChoice,
        MPNetForTokenClassification,
        MPNetForQuestionAnswering,
    )
}


# ------------------------------------------------------------------------------------- weights


def param_shapes(config, task, profile=None):
    """name -> shape of every parameter the task needs, in the checkpoint's (out, in) layout."""
    C, I, V = config.hidden_size, config.intermediate_size, config.vocab_size
    shapes = {
        "embeddings.word_embeddings.weight": (V, C),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, C),
        "embeddings.LayerNorm.weight": (C,),
        "embeddings.LayerNorm.bias": (C,),
        "encoder.relative_attention_bias.weight": (
            config.relative_attention_num_buckets,
            config.num_attention_heads,
        ),
    }
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for proj in "qkvo":
            shapes[f"{p}attention.attn.{proj}.weight"] = (C, C)
            shapes[f"{p}attention.attn.{proj}.bias"] = (C,)
        shapes.update(
            {
                f"{p}attention.LayerNorm.weight": (C,),
                f"{p}attention.LayerNorm.bias": (C,),
                f"{p}intermediate.dense.weight": (I, C),
                f"{p}intermediate.dense.bias": (I,),
                f"{p}output.dense.weight": (C, I),
                f"{p}output.dense.bias": (C,),
                f"{p}output.LayerNorm.weight": (C,),
                f"{p}output.LayerNorm.bias": (C,),
            }
        )
    shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = (C, C), (C,)
    L = config.num_labels
    heads = {
        "base": {},
        "masked-lm": {
            "lm_head.dense.weight": (C, C),
            "lm_head.dense.bias": (C,),
            "lm_head.layer_norm.weight": (C,),
            "lm_head.layer_norm.bias": (C,),
            "lm_head.bias": (V,),
        },
        "sequence-classification": {
            "classifier.dense.weight": (C, C),
            "classifier.dense.bias": (C,),
            "classifier.out_proj.weight": (L, C),
            "classifier.out_proj.bias": (L,),
        },
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
