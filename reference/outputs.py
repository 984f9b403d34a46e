"""Output containers, named and ordered as the Hugging Face ModelOutput classes.

Each is a dataclass: fields are read as attributes (``out.logits``) or by name (``out["logits"]``),
``to_tuple()`` returns the fields that are set, in declaration order (HF's ``to_tuple``), and
``to_dict()`` flattens them into the named arrays the conformance suite compares
(``hidden_states.0``, ``attentions.1``, ``present.0.key``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

Array = np.ndarray


@dataclass
class ModelOutput:
    def to_tuple(self) -> tuple:
        """The fields that are not None, in declaration order."""
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, name: str):
        return getattr(self, name)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

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
    hidden_states: L+1 arrays [B, S, C] (embeddings, then each layer); attentions: L arrays [B, H, S, S]."""

    last_hidden_state: Array = None
    pooler_output: Optional[Array] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class MaskedLMOutput(ModelOutput):
    """loss [] (pt) or [1] (tf); logits [B, S, V]."""

    loss: Optional[Array] = None
    logits: Array = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    """loss [] (pt) or [B] (tf); logits [B, num_labels]."""

    loss: Optional[Array] = None
    logits: Array = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class MultipleChoiceModelOutput(ModelOutput):
    """loss [] (pt) or [B] (tf); logits [B, num_choices]."""

    loss: Optional[Array] = None
    logits: Array = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    """loss [] (pt) or [1] (tf); logits [B, S, num_labels]."""

    loss: Optional[Array] = None
    logits: Array = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    """loss [] (pt) or [B] (tf); start_logits and end_logits [B, S]."""

    loss: Optional[Array] = None
    start_logits: Array = None
    end_logits: Array = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class BaseModelOutputWithPast(ModelOutput):
    """Decoder output. last_hidden_state [B, S, C] (after the final norm); past_key_values: L pairs of
    key and value [B, H, K, D] when use_cache; hidden_states: L+1 arrays, the last one after the final norm."""

    last_hidden_state: Array = None
    past_key_values: Optional[tuple] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class CausalLMOutputWithPast(ModelOutput):
    """loss []; logits [B, S, V]; past_key_values as in BaseModelOutputWithPast."""

    loss: Optional[Array] = None
    logits: Array = None
    past_key_values: Optional[tuple] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


@dataclass
class SequenceClassifierOutputWithPast(ModelOutput):
    """loss []; logits [B, num_labels] (pooled at one position per row)."""

    loss: Optional[Array] = None
    logits: Array = None
    past_key_values: Optional[tuple] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
