"""Head losses in the two upstream conventions (SPEC.md 1.9 for PyTorch, 1.10 for TensorFlow).

PyTorch (``pt``) returns a 0-d mean. TensorFlow (``tf``, transformers >= 4.21) returns shape (1,)
for masked-LM and token classification and a per-example (B,) vector for the other heads; with
``config.tf_legacy_loss`` masked-LM and token classification return the (n,) per-token losses.

Axis letters: B batch, S sequence, C classes, N flattened rows.
"""

from __future__ import annotations

import numpy as np

from .ops import IGNORE_INDEX, bce_with_logits, cross_entropy, cross_entropy_per_item, mse


def _int_labels(labels, what, count):  # -> [count] int64
    """Integer targets, one per logits row, in any shape holding ``count`` of them (HF flattens
    them)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{what} must be integers, got dtype {labels.dtype}")
    if labels.size != count:
        raise ValueError(
            f"{what} must hold {count} values (one per prediction), got shape {labels.shape}"
        )
    return labels.astype(np.int64).reshape(-1)


def _float_labels(labels, what, shape):  # -> shape, float
    """Real-valued targets of exactly the logits' size (regression, multi-label)."""
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.number) or labels.dtype == bool):
        raise TypeError(f"{what} must be numeric, got dtype {labels.dtype}")
    if labels.size != int(np.prod(shape)):
        raise ValueError(
            f"{what} must hold {int(np.prod(shape))} values (the logits' shape {shape}), got shape"
            f" {labels.shape}"
        )
    return labels


def _check_classes(labels, classes, what):
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise ValueError(f"{what} value {labels[bad][0]} is outside [0, {classes})")


# ----------------------------------------------------------------------------------------- pt


def pt_token_loss(logits, labels):  # [B, S, C], [B, S] -> []
    """Masked-LM and token classification: mean CE over labels != -100; all ignored -> NaN."""
    flat = logits.reshape(-1, logits.shape[-1])
    return cross_entropy(flat, _int_labels(labels, "labels", flat.shape[0]))


def pt_sequence_classification_loss(
    logits, labels, problem_type
):  # [B, C], [B] or [B, C] -> [], str
    """The problem_type rule: returns the loss and the problem type it settled on (which sticks)."""
    labels = np.asarray(labels)
    num_labels = logits.shape[-1]
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (np.int64, np.int32):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        labels = _float_labels(labels, "labels", logits.shape)
        if num_labels == 1:
            return mse(np.squeeze(logits), np.squeeze(labels).astype(logits.dtype)), problem_type
        if labels.shape != logits.shape:
            raise ValueError(
                f"regression labels must have the logits' shape {logits.shape}, got {labels.shape}"
            )
        return mse(logits, labels.astype(logits.dtype)), problem_type
    if problem_type == "single_label_classification":
        flat = logits.reshape(-1, num_labels)
        return cross_entropy(flat, _int_labels(labels, "labels", flat.shape[0])), problem_type
    if problem_type == "multi_label_classification":
        labels = _float_labels(labels, "labels", logits.shape)
        if labels.shape != logits.shape:
            raise ValueError(
                f"multi-label labels must have the logits' shape {logits.shape}, got {labels.shape}"
            )
        return bce_with_logits(logits, labels.astype(logits.dtype)), problem_type
    raise ValueError(
        f"unknown problem_type {problem_type!r}; accepted: regression, single_label_classification,"
        " multi_label_classification"
    )


def pt_multiple_choice_loss(logits, labels):  # [B, C], [B] -> []
    return cross_entropy(logits, _int_labels(labels, "labels", logits.shape[0]))


def pt_span_loss(
    start_logits, end_logits, start_positions, end_positions
):  # [B, S] x2, [B] x2 -> []
    """QA: clamp positions to [0, S]; S is ignored; negative positions (even -100) count as 0."""
    seq_len = start_logits.shape[1]
    terms = []
    for logits, positions, name in (
        (start_logits, start_positions, "start_positions"),
        (end_logits, end_positions, "end_positions"),
    ):
        positions = _int_labels(positions, name, logits.shape[0])
        positions = np.clip(positions, 0, seq_len)
        terms.append(cross_entropy(logits, positions, ignore_index=seq_len))
    return np.asarray((terms[0] + terms[1]) / 2, dtype=start_logits.dtype)


# ----------------------------------------------------------------------------------------- tf


def tf_masked_lm_loss(logits, labels, legacy=False):  # [B, S, V], [B, S] -> [1] or [n]
    """Only -100 is masked; any other negative label is replaced by 0 and counted as class 0."""
    flat = logits.reshape(-1, logits.shape[-1])
    labels = _int_labels(labels, "labels", flat.shape[0])
    keep = labels != IGNORE_INDEX
    if legacy:
        kept = labels[keep]
        _check_classes(kept, flat.shape[-1], "labels")
        return cross_entropy_per_item(flat[keep], kept)
    targets = np.where(keep, np.maximum(labels, 0), 0)
    _check_classes(targets, flat.shape[-1], "labels")
    return _masked_mean(cross_entropy_per_item(flat, targets), keep, logits.dtype)


def tf_token_classification_loss(logits, labels, legacy=False):  # [B, S, C], [B, S] -> [1] or [n]
    """Every negative label is masked. Legacy mode keeps labels != -100, or != -1 if any -1
    occurs."""
    flat = logits.reshape(-1, logits.shape[-1])
    labels = _int_labels(labels, "labels", flat.shape[0])
    if legacy:
        keep = labels != (-1 if (labels == -1).any() else IGNORE_INDEX)
        kept = labels[keep]
        _check_classes(kept, flat.shape[-1], "labels")
        return cross_entropy_per_item(flat[keep], kept)
    keep = labels >= 0
    targets = np.where(keep, labels, 0)
    _check_classes(targets, flat.shape[-1], "labels")
    return _masked_mean(cross_entropy_per_item(flat, targets), keep, logits.dtype)


def _masked_mean(losses, keep, dtype):  # [N], [N] -> [1]
    """sum(loss * mask) / sum(mask) as a (1,) vector; NaN when nothing is kept."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (losses * keep).sum() / keep.sum()
    return np.asarray([mean], dtype=dtype)


def tf_sequence_classification_loss(logits, labels):  # [B, C], [B] -> [B]
    """One logit column -> per-example squared error; otherwise per-example sparse CE. No
    multi-label."""
    if logits.ndim == 1 or logits.shape[1] == 1:
        targets = _float_labels(labels, "labels", logits.shape).reshape(-1, 1).astype(logits.dtype)
        return ((logits.reshape(-1, 1) - targets) ** 2).mean(axis=-1)
    return tf_multiple_choice_loss(logits, labels)


def tf_multiple_choice_loss(logits, labels):  # [B, C], [B] -> [B]
    labels = _int_labels(labels, "labels", logits.shape[0])
    _check_classes(labels, logits.shape[-1], "labels")
    return cross_entropy_per_item(logits, labels)


def tf_span_loss(
    start_logits, end_logits, start_positions, end_positions
):  # [B, S] x2, [B] x2 -> [B]
    """Per-example (CE_start + CE_end) / 2 with no clamping: out-of-range positions are errors."""
    seq_len = start_logits.shape[1]
    terms = []
    for logits, positions, name in (
        (start_logits, start_positions, "start_positions"),
        (end_logits, end_positions, "end_positions"),
    ):
        positions = _int_labels(positions, name, logits.shape[0])
        _check_classes(positions, seq_len, f"{name} (tf profile: no clamping)")
        terms.append(cross_entropy_per_item(logits, positions))
    return (terms[0] + terms[1]) / 2
