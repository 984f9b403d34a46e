"""Output containers, named and ordered as the Hugging Face ModelOutput classes.

Each is a dataclass: fields are read as attributes (``out.logits``) or by name (``out["logits"]``),
``to_tuple()`` returns the fields that are set, in declaration order (HF's ``to_tuple``), and
``to_dict()`` flattens them into the named arrays the conformance suite compares
(``hidden_states.0``, ``attentions.1``, ``present.0.key``, ...).

A few outputs are computed but not part of upstream's output class: the pooled output of MPNet's
token classification (TF puts it in its tuple) and the presents of MPT's token classification and
question answering (their tuples hold them, through an upstream bug). They are real fields marked
``not_upstream``, left out of ``keys()``, ``to_tuple()`` and ``to_dict()`` as upstream leaves them
out, and read by ``upstream_tuple``: the ``return_dict=False`` layout of every (family, task,
profile) is the one table TUPLE_LAYOUTS below.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

Array = np.ndarray


NOT_UPSTREAM = {
    "not_upstream": True
}  # field metadata: computed, but not in upstream's output class


def not_upstream():
    return field(default=None, metadata=NOT_UPSTREAM)


@dataclass
class ModelOutput:
    def to_tuple(self) -> tuple:
        """The upstream fields that are not None, in declaration order."""
        return tuple(getattr(self, name) for name in self.keys())

    def __getitem__(self, name: str):
        return getattr(self, name)

    def keys(self) -> list[str]:
        return [
            f.name
            for f in fields(self)
            if getattr(self, f.name) is not None and not f.metadata.get("not_upstream")
        ]

    def to_dict(self) -> dict[str, Array]:
        """Flat name -> array mapping; tuples of arrays become ``name.i`` entries."""
        flat: dict[str, Array] = {}
        for name in self.keys():
            value = getattr(self, name)
            if name == "past_key_values":
                for i, (k, v) in enumerate(value):
                    flat[f"present.{i}.key"] = k
                    flat[f"present.{i}.value"] = v
            elif isinstance(value, tuple):
                for i, item in enumerate(value):
                    flat[f"{name}.{i}"] = item
            else:
                flat[name] = value
        return flat


@dataclass
class BaseModelOutput(ModelOutput):
    """Encoder output. last_hidden_state [B, S, C]; pooler_output [B, C] (None without a pooler);
    hidden_states: L+1 arrays [B, S, C] (embeddings, then each layer); attentions: L arrays [B, H,
    S, S].
    """

    last_hidden_state: Array = None
    pooler_output: Array | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    """loss [] (pt) or [1] (tf); logits [B, S, V]."""

    loss: Array | None = None
    logits: Array = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    """loss [] (pt) or [B] (tf); logits [B, num_labels]."""

    loss: Array | None = None
    logits: Array = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class MultipleChoiceModelOutput(ModelOutput):
    """loss [] (pt) or [B] (tf); logits [B, num_choices]."""

    loss: Array | None = None
    logits: Array = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    """loss [] (pt) or [1] (tf); logits [B, S, num_labels]; not upstream's: pooler_output [B, C]
    (MPNet; the tf tuple holds it), past_key_values (MPT; its tuple holds them)."""

    loss: Array | None = None
    logits: Array = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    pooler_output: Array | None = not_upstream()
    past_key_values: tuple | None = not_upstream()


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    """loss [] (pt) or [B] (tf); start_logits and end_logits [B, S]; not upstream's: past_key_values
    (MPT; its tuple holds them)."""

    loss: Array | None = None
    start_logits: Array = None
    end_logits: Array = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    past_key_values: tuple | None = not_upstream()


@dataclass
class BaseModelOutputWithPast(ModelOutput):
    """Decoder output. last_hidden_state [B, S, C] (after the final norm); past_key_values: L pairs
    of key and value [B, H, K, D] when use_cache; hidden_states: L+1 arrays, the last one after the
    final norm.
    """

    last_hidden_state: Array = None
    past_key_values: tuple | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class CausalLMOutputWithPast(ModelOutput):
    """loss []; logits [B, S, V]; past_key_values as in BaseModelOutputWithPast."""

    loss: Array | None = None
    logits: Array = None
    past_key_values: tuple | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class SequenceClassifierOutputWithPast(ModelOutput):
    """loss []; logits [B, num_labels] (pooled at one position per row)."""

    loss: Array | None = None
    logits: Array = None
    past_key_values: tuple | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    """generate(return_dict_in_generate=True) of greedy decoding, sampling and contrastive search.
    sequences [R, L]; scores (with output_scores): one [R, V] array a step, the scores the token
    was chosen from as upstream records them (after the logits processors; sampling: after the
    warpers too). attentions and hidden_states (output_attentions, output_hidden_states): one
    entry a step, the pass its logits came from (the prompt's first), each a tuple a layer of
    [R, H, q, K] maps or the L + 1 hidden states [R, q, C], q the tokens the pass ran (1 a step
    with use_cache, the whole text without; contrastive search: the chosen candidate's rows;
    prompt lookup: its passes split a token each, generation.split_pass). past_key_values
    (with use_cache on): the cache at the end, L pairs of [R, H, K, D] keys and values, K every
    position but the last token's (which no pass has run), as upstream returns it; None with
    use_cache off (MPT's default)."""

    sequences: Array = None
    scores: tuple | None = None
    attentions: tuple | None = None
    hidden_states: tuple | None = None
    past_key_values: tuple | None = None


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """generate(return_dict_in_generate=True) of the beam searches. sequences [R, L]; with
    output_scores: sequences_scores [R] (each hypothesis' pool score: summed log-probabilities
    over new length ** length_penalty), scores (one [B * num_beams, V] array a step: the
    processed log-probabilities; constrained beam search adds each beam's sum, as upstream) and
    beam_indices [R, L] (the beam each new token came from, -1 after; None for diverse beam
    search). attentions and hidden_states as GenerateDecoderOnlyOutput's, B * num_beams rows in
    the order the beams had at each pass; past_key_values the cache of the B * num_beams live
    beams in their last order (not the rows of sequences), every position but the last step's
    token."""

    sequences: Array = None
    sequences_scores: Array | None = None
    scores: tuple | None = None
    beam_indices: Array | None = None
    attentions: tuple | None = None
    hidden_states: tuple | None = None
    past_key_values: tuple | None = None


# ------------------------------------------------------------------------ return_dict=False tuples


@dataclass(frozen=True)
class TupleLayout:
    """An upstream return_dict=False tuple: the ``head`` fields, then the ``base`` fields (the
    encoder's or decoder's optional outputs). None entries are dropped, as HF's to_tuple drops them,
    except the fields in ``keep_none``; then the first ``skip`` base entries that remain are
    dropped.
    """

    head: tuple
    base: tuple = ("hidden_states", "attentions")
    keep_none: tuple = ()
    skip: int = 0


WITH_PAST = ("past_key_values", "hidden_states", "attentions")

# (family, task, profile) -> layout; None matches any task or profile, the most specific key wins.
TUPLE_LAYOUTS = {
    # MPNetModel: (sequence, pooled, ...): pooled stays in its place even when it is None (pt heads'
    # encoder).
    ("mpnet", "base", None): TupleLayout(
        ("last_hidden_state", "pooler_output"), keep_none=("pooler_output",)
    ),
    # MPNet heads return (loss?, logits) + encoder outputs[2:], i.e. without the pooled output (SPEC
    # 1.10) ...
    ("mpnet", None, None): TupleLayout(("loss", "logits")),
    ("mpnet", "question-answering", None): TupleLayout(("loss", "start_logits", "end_logits")),
    # ... except TF token classification, which slices [1:] and so keeps it.
    ("mpnet", "token-classification", "tf"): TupleLayout(
        ("loss", "logits", "pooler_output"), keep_none=("pooler_output",)
    ),
    # MptModel: (last_hidden_state, presents?, hidden_states?, attentions?).
    ("mpt", "base", None): TupleLayout(("last_hidden_state",), WITH_PAST),
    ("mpt", None, None): TupleLayout(("loss", "logits"), WITH_PAST),
    # Upstream bug (SPEC 2.7): (loss?, logits) + MptModel outputs[2:], which drops the first
    # optional
    # entry (the presents when use_cache is on, else hidden_states, else attentions).
    ("mpt", "token-classification", None): TupleLayout(("loss", "logits"), WITH_PAST, skip=1),
    ("mpt", "question-answering", None): TupleLayout(
        ("loss", "start_logits", "end_logits"), WITH_PAST, skip=1
    ),
}


def tuple_layout(family, task, profile) -> TupleLayout:
    """The most specific entry; every family has a (family, None, None) one."""
    keys = ((family, task, profile), (family, task, None), (family, None, profile))
    return next(
        (TUPLE_LAYOUTS[k] for k in keys if k in TUPLE_LAYOUTS), TUPLE_LAYOUTS[family, None, None]
    )


def upstream_tuple(out: ModelOutput, family, task, profile) -> tuple:
    """The return_dict=False tuple upstream returns for this output (TUPLE_LAYOUTS)."""
    layout = tuple_layout(family, task, profile)
    head = tuple(
        getattr(out, n) for n in layout.head if getattr(out, n) is not None or n in layout.keep_none
    )
    base = tuple(v for v in (getattr(out, n) for n in layout.base) if v is not None)
    return head + base[layout.skip :]
