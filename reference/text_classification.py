"""Labels of a text (or a pair of texts) from a sequence-classification model, as transformers
4.37.2's text-classification pipeline gives them.

The scores are the logits through ``function_to_apply``: by default the sigmoid where the config's
problem_type is multi_label_classification or there is one label (a regression model's single
output too, as upstream does), otherwise the softmax. The labels come best first, ``top_k`` of them
(None: all)."""

from __future__ import annotations

import numpy as np

from .question_answering import truncate
from .token_classification import label_names

FUNCTIONS = ("sigmoid", "softmax", "none")


def classify_text(
    model,
    tokenizer,
    text,
    text_pair=None,
    top_k=1,
    function_to_apply=None,
    labels=None,
    model_max_length=None,
):
    """[{"label": ..., "score": ...}, ...], best first: ``top_k`` labels of ``text`` (with
    ``text_pair``, the pair as the tokenizer joins it). ``function_to_apply``: "sigmoid",
    "softmax", "none" or None (the default above); ``labels``: names by id (default
    config.id2label, else LABEL_i); ``model_max_length``: tokens kept (None: all, as upstream
    by default)."""
    for name, value in (("text", text), ("text_pair", text_pair)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if text is None:
        raise TypeError("text must be a string, got None")
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(f"top_k must be an integer of at least 1, or None, got {top_k!r}")
    function = function_to_apply or default_function(model.config)
    if function not in FUNCTIONS:
        raise ValueError(
            f"function_to_apply must be one of {', '.join(FUNCTIONS)}, got {function!r}"
        )
    with tokenizer.bare() as backend:
        if model_max_length is not None:
            truncate(backend, model_max_length, 0)
        encoding = backend.encode(text) if text_pair is None else backend.encode(text, text_pair)
    ids = np.array([encoding.ids], dtype=np.int64)
    logits = np.asarray(model(ids, attention_mask=np.ones_like(ids)).logits[0], np.float32)
    if function == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-logits))
    elif function == "softmax":
        shifted = np.exp(logits - logits.max())
        scores = shifted / shifted.sum()
    else:
        scores = logits
    names = label_names(model.config, labels)
    ranked = sorted(
        ({"label": names[i], "score": float(s)} for i, s in enumerate(scores)),
        key=lambda r: r["score"],
        reverse=True,
    )
    return ranked if top_k is None else ranked[:top_k]


def default_function(config):
    """Upstream's choice when none is given: sigmoid for multi_label_classification or a single
    label, softmax for single_label_classification or several labels."""
    problem = getattr(config, "problem_type", None)
    count = len(label_names(config))
    if problem == "multi_label_classification" or count == 1:
        return "sigmoid"
    if problem == "single_label_classification" or count > 1:
        return "softmax"
    return "none"
