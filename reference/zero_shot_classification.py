"""Labels chosen at run time for a text, from a sequence-classification model trained on natural
language inference, as transformers 4.37.2's zero-shot-classification pipeline scores them.

Each candidate label becomes a hypothesis (``hypothesis_template`` with the label in place of {})
paired with the text as the premise, and each pair runs through the model alone. The entailment
logit is the candidate's: the label whose name starts with "entail" (any case; the first such in
the config's order), or the last logit where there is none, as upstream falls back. Without
``multi_label`` the candidates' entailment logits go through one softmax, so the scores sum to 1;
with it (or with a single candidate) each candidate gets the softmax of its contradiction and
entailment logits (contradiction: the first label, or the last where entailment is the first).
Both exponentiate the logits as they are, without taking off their maximum, as upstream does."""

from __future__ import annotations

import numpy as np

from .question_answering import truncate
from .token_classification import label_names

DEFAULT_TEMPLATE = "This example is {}."


def classify_zero_shot(
    model,
    tokenizer,
    text,
    candidate_labels,
    hypothesis_template=DEFAULT_TEMPLATE,
    multi_label=False,
    model_max_length=None,
):
    """{"sequence": text, "labels": [...], "scores": [...]}, the labels best first.
    ``candidate_labels``: a list of labels, or one string of labels separated by commas;
    ``model_max_length``: tokens a pair keeps, the text cut first (None: all)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty string, got {text!r}"[:200])
    if isinstance(candidate_labels, str):
        candidate_labels = [c.strip() for c in candidate_labels.split(",") if c.strip()]
    candidate_labels = list(candidate_labels)
    if not candidate_labels or not all(isinstance(c, str) for c in candidate_labels):
        raise ValueError(f"candidate_labels must be one or more strings, got {candidate_labels!r}")
    if hypothesis_template.format(candidate_labels[0]) == hypothesis_template:
        raise ValueError(
            f"hypothesis_template {hypothesis_template!r} has no {{}} for the label to go in"
        )
    pairs = []  # each pair's ids, the text cut first where the pair is too long
    with tokenizer.bare() as backend:
        for label in candidate_labels:
            pair = (text, hypothesis_template.format(label))
            if model_max_length is not None:
                truncate(backend, model_max_length, 0, strategy="only_first")
            try:
                pairs.append(backend.encode(*pair).ids)
            except Exception:  # noqa: BLE001 - the hypothesis alone is too long: upstream keeps all
                backend.no_truncation()
                pairs.append(backend.encode(*pair).ids)
    logits = []
    for ids in pairs:
        ids = np.array([ids], dtype=np.int64)
        logits.append(
            np.asarray(model(ids, attention_mask=np.ones_like(ids)).logits[0], np.float32)
        )
    logits = np.stack(logits)  # [candidates, labels]
    entailment = entailment_id(model.config)
    if multi_label or len(candidate_labels) == 1:
        contradiction = -1 if entailment == 0 else 0
        pairs = logits[:, [contradiction, entailment]]
        scores = (np.exp(pairs) / np.exp(pairs).sum(-1, keepdims=True))[:, 1]
    else:
        scores = np.exp(logits[:, entailment]) / np.exp(logits[:, entailment]).sum()
    order = np.argsort(scores)[::-1]
    return {
        "sequence": text,
        "labels": [candidate_labels[i] for i in order],
        "scores": [float(scores[i]) for i in order],
    }


def entailment_id(config):
    """The id of the first label named entail... (any case), else -1: the last."""
    for index, name in sorted(label_names(config).items()):
        if name.lower().startswith("entail"):
            return index
    return -1
