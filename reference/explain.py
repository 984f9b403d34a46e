"""Pictures of the position machinery and of attention, saved as PNG (matplotlib is optional).

* ``bucket_map``: MPNet's relative-position bucket for every (query, key) pair (SPEC 1.4);
* ``alibi_map``: MPT's ALiBi bias per head, in the key-only form the models use (SPEC 2.2);
* ``attention_map``: one layer's attention probabilities for a real input.
"""

from __future__ import annotations

from .mpnet import bucket_matrix
from .mpt import alibi_bias, alibi_slopes


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError(
            "explain needs matplotlib: pip install 'mpnet-mpt-reference[plot]'"
        ) from None
    return plt


def bucket_map(path, length=160, num_buckets=32):  # -> [length, length] buckets
    buckets = bucket_matrix(length, num_buckets)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(buckets, cmap="viridis")
    ax.set(
        title=f"MPNet relative-position buckets ({num_buckets}, max distance 128)",
        xlabel="key j",
        ylabel="query i",
    )
    fig.colorbar(im, ax=ax, label=f"bucket ({num_buckets // 2}+ : key right of query)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buckets


def alibi_map(path, n_heads=12, key_len=32, alibi_bias_max=8):  # -> [H, K] bias
    bias = alibi_bias(alibi_slopes(n_heads, alibi_bias_max), key_len)[:, 0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    im = ax.imshow(bias, aspect="auto", cmap="magma")
    ax.set(
        title=f"MPT ALiBi bias, {n_heads} heads: slope_h * (j - (K - 1))",
        xlabel="key j",
        ylabel="head",
    )
    fig.colorbar(im, ax=ax)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return bias


def attention_map(path, probs, tokens, layer, head):  # probs [H, S, K] of one example
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(probs[head], cmap="Blues", vmin=0, vmax=1)
    ax.set(title=f"attention, layer {layer + 1}, head {head}", xlabel="key", ylabel="query")
    if len(tokens) <= 40:
        ax.set_xticks(range(len(tokens)), tokens, rotation=90)
        ax.set_yticks(range(len(tokens)), tokens)
    fig.colorbar(im, ax=ax)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return probs[head]
