"""Calling conventions shared by the models: Keras-style positional input and boundary checks."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np


def unpack_keras_inputs(first, order, given):
    """Merge a Keras-style first argument into the keyword arguments.

    ``first`` may be a dict keyed by parameter name, a list or tuple of arrays in ``order`` (the
    TensorFlow signature order), or a single array, taken as input_ids. ``given`` holds the keyword
    arguments passed explicitly; a value given both ways is an error.
    """
    if isinstance(first, dict):
        unpacked = dict(first)
    elif (
        isinstance(first, (list, tuple))
        and first
        and all(item is None or isinstance(item, (np.ndarray, bool)) for item in first)
    ):
        if len(first) > len(order):
            raise ValueError(
                f"got {len(first)} positional inputs; the signature order is {list(order)}"
            )
        unpacked = dict(zip(order, first))
    else:
        return {**given, "input_ids": first}
    unknown = sorted(set(unpacked) - set(order))
    if unknown:
        raise TypeError(f"unknown input name(s) {unknown}; accepted: {list(order)}")
    for name, value in unpacked.items():
        if value is not None and given.get(name) is not None:
            raise ValueError(f"{name} was given both in the first argument and as a keyword")
    merged = dict(given)
    merged.update({k: v for k, v in unpacked.items() if v is not None})
    return merged


def label_fields(d):
    """num_labels and id2label as HF derives them: id2label (keys made ints) wins over
    num_labels."""
    raw = d.get("id2label") or {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, (int, str)) and str(k).lstrip("-").isdigit() for k in raw
    ):
        raise ValueError(f"config.id2label must map integer class ids to names, got {raw!r}"[:300])
    id2label = {int(k): v for k, v in raw.items()}
    if id2label:
        return {"id2label": id2label, "num_labels": len(id2label)}
    return {"num_labels": d["num_labels"]} if "num_labels" in d else {}


MAX_SIZE = 2**31 - 1  # no real model comes near; an absurd size fails here, not in an allocation
MAX_LAYERS = (
    10_000  # far past any real model; bounds the per-layer bookkeeping done before the memory check
)


FIELD_CHECKS = {  # annotation -> (accepts the value, how the error describes it)
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "a finite number",
    ),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
}


def check_field_types(config):
    """Every field of a config dataclass holds a value of its annotated type (Optional[...] allows
    None)."""
    for f in fields(config):
        kind = str(f.type)
        optional = kind.startswith("Optional[")
        base = kind[len("Optional[") : -1] if optional else kind
        value = getattr(config, f.name)
        if (optional and value is None) or base not in FIELD_CHECKS:
            continue
        accepts, described = FIELD_CHECKS[base]
        if not accepts(value):
            null = " or null" if optional else ""
            raise TypeError(f"config.{f.name} must be {described}{null}, got {value!r}"[:300])


def require_positive_ints(config, names, limit=MAX_SIZE):
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
        if value > limit:
            raise ValueError(
                f"config.{name} is {value}, more than the {limit} this implementation accepts"
            )


def require_probabilities(config, names):
    for name in names:
        p = getattr(config, name)
        if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"config.{name} must be in [0, 1), got {p!r}")


def is_integer(value):
    """A Python or NumPy integer scalar, not a bool (bool is an int subclass in Python)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value):
    """A Python or NumPy integer or float scalar, not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def as_ids(ids, name, vocab_size, ndim):
    """Integer ids of rank ``ndim`` with every value in [0, vocab_size)."""
    ids = np.asarray(ids)
    if ids.dtype == object or not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == bool):
        raise TypeError(f"{name} must be integers, got dtype {ids.dtype}")
    if ids.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {ids.shape}")
    if ids.size == 0:
        raise ValueError(
            f"{name} is empty (shape {ids.shape}): at least one sequence of at least one token is"
            " needed"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)][0]
        raise ValueError(f"{name} contains {bad}, outside the vocabulary [0, {vocab_size})")
    return ids.astype(np.int64)


def check_tokens(input_ids, inputs_embeds, vocab_size, width, dtype):
    """Exactly one of input_ids [B, S] and inputs_embeds [B, S, width]; returns (ids, embeds, B,
    S)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if input_ids is not None:
        ids = as_ids(input_ids, "input_ids", vocab_size, ndim=2)
        return ids, None, *ids.shape
    embeds = as_float(inputs_embeds, "inputs_embeds", (None, None, width), dtype)
    if 0 in embeds.shape[:2]:
        raise ValueError(
            "inputs_embeds needs at least one sequence of at least one token, got shape"
            f" {embeds.shape}"
        )
    return None, embeds, *embeds.shape[:2]


def as_float(x, name, shape, dtype):
    """A real-valued array of exactly ``shape`` (None entries match any size), cast to dtype."""
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(x.shape, shape)
    ):
        expected = tuple("*" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {expected}, got {x.shape}")
    return x.astype(dtype)


def check_flags(**flags):
    """Switches such as use_cache and return_dict: True, False or None (the model's default)."""
    for name, value in flags.items():
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True, False or None, got {value!r}")


def make_rng(rng):
    """A numpy Generator for dropout: pass a Generator, an integer seed, or None for fresh
    entropy."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")
