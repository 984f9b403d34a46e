"""Shared numerical primitives: layer norm, activations, softmax, dropout and losses.

Every function is pure NumPy and keeps the dtype of its floating-point input, so the same code runs
the float32 path (bit-close to upstream fp32) and the float64 path (close to exact arithmetic).

Axis letters used in shape comments: N rows, C classes or features.
"""

from __future__ import annotations

import math

import numpy as np

# The most negative float32: what a masked score becomes. MPT replaces masked scores with it, HF
# PyTorch MPNet adds (1 - mask) times it, so a fully masked row attends uniformly (SPEC 1.5, 2.3).
MASK_VALUE = float(np.finfo(np.float32).min)

# resolved on first use: SciPy's vectorised erf if installed, else math.erf element by element
_ERF = []


def _erf(x):
    """erf exact to double precision. SciPy is optional and imported only when GELU first runs."""
    if not _ERF:
        try:
            from scipy.special import erf
        except ImportError:  # pragma: no cover - exercised only where SciPy is absent
            erf = np.vectorize(math.erf, otypes=[np.float64])
        _ERF.append(erf)
    return _ERF[0](x)


IGNORE_INDEX = -100  # label value that PyTorch's CrossEntropyLoss skips (ignore_index default)


def linear(x, weight, bias=None):  # [..., in], [out, in], [out] -> [..., out]
    """y = x W^T + b with W in the PyTorch (out, in) layout of the checkpoint."""
    y = x @ weight.T
    return y if bias is None else y + bias


def layer_norm(x, weight, bias, eps):  # [..., C], [C], [C] or None -> [..., C]
    """LayerNorm over the last axis with biased variance, as torch.nn.LayerNorm."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + x.dtype.type(eps))
    y = y * weight
    return y if bias is None else y + bias


def gelu(x):  # [...] -> [...]
    """Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); HF's "gelu"."""
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)


def gelu_new(x):  # [...] -> [...]
    """Tanh approximation of GELU (HF's "gelu_new", GPT-2's activation)."""
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
    return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype, copy=False)


ACTIVATIONS = {"gelu": gelu, "gelu_new": gelu_new}


def softmax(x, axis=-1):  # [...] -> [...]
    """Numerically stable softmax. A row whose entries are all equal (e.g. all masked) is
    uniform."""
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):  # [...] -> [...]
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def attention(
    q, k, v, scale, bias=None, mask_add=None, masked=None, dropout_p=0.0, rng=None, head_mask=None
):
    """Scaled dot-product attention with the additions both families use; returns (context, probs).

    q [B, H, S, D]; k, v [B, H, K, D]; bias broadcastable to [B, H, S, K] (relative or ALiBi bias);
    mask_add added after it (MPNet's (1 - mask) * constant); masked [B, 1, S, K] bool, whose scores
    are *replaced* by MASK_VALUE (MPT). Dropout and a per-head mask [H] apply to the probabilities,
    which are returned as they are used: context [B, H, S, D], probs [B, H, S, K].
    """
    scores = (q @ k.transpose(0, 1, 3, 2)) * q.dtype.type(scale)  # [B, H, S, K]
    if bias is not None:
        scores = scores + bias
    if mask_add is not None:
        scores = scores + mask_add
    if masked is not None:
        scores = np.where(masked, q.dtype.type(MASK_VALUE), scores)
    probs = dropout(softmax(scores), dropout_p, rng)
    if head_mask is not None:
        probs = probs * head_mask[None, :, None, None]
    return probs @ v, probs


def dropout(x, p, rng):  # [...] -> [...]
    """Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p).

    rng is a numpy Generator when training and None at inference, where dropout is the identity.
    """
    if rng is None or p == 0.0:
        return x
    keep = rng.random(x.shape) >= p
    return np.where(keep, x / x.dtype.type(1.0 - p), x.dtype.type(0.0))


def cross_entropy_per_item(logits, labels):  # [N, C], [N] -> [N]
    """-log softmax(logits)[label] per row; labels must already lie in [0, C)."""
    logp = log_softmax(logits, axis=-1)
    return -np.take_along_axis(logp, labels[:, None].astype(np.int64), axis=-1)[:, 0]


def cross_entropy(logits, labels, ignore_index=IGNORE_INDEX):  # [N, C], [N] -> []
    """Mean cross-entropy over the rows whose label is not ignore_index (torch semantics).

    Every row ignored gives NaN (0/0), as upstream. Any other label outside [0, C) is an error.
    """
    labels = np.asarray(labels).astype(np.int64)
    keep = labels != ignore_index
    classes = logits.shape[-1]
    bad = keep & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise ValueError(
            f"labels contain {labels[bad][0]}, outside [0, {classes}); use {ignore_index} to ignore"
            " a position"
        )
    losses = cross_entropy_per_item(logits[keep], labels[keep])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(losses.sum() / keep.sum(), dtype=logits.dtype)


def mse(predictions, targets):  # [...], [...] -> []
    """Mean squared error over all elements (torch.nn.MSELoss)."""
    return np.asarray(((predictions - targets) ** 2).mean(), dtype=predictions.dtype)


def bce_with_logits(logits, targets):  # [N, C], [N, C] -> []
    """Mean binary cross-entropy on logits, in the stable form max(x,0) - x t + log(1 + e^-|x|)."""
    loss = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
    return np.asarray(loss.mean(), dtype=logits.dtype)
