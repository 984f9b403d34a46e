"""Sentence embeddings of a corpus, the way users of all-mpnet-base-v2 make them.

sentence-transformers runs a checkpoint's modules in order (Transformer -> Pooling -> Normalize)
over batches of texts sorted by length, so that each batch pads to nearly its own longest text, and
returns the vectors in input order. ``embed_corpus`` does the same with this project's models:
tokenize everything once (truncated to the checkpoint's max_seq_length), sort by token count, run
batch after batch, pool (mean over real tokens, the <s> vector, or max, as the checkpoint's Pooling
config says), L2-normalise where it has a Normalize module, and put each vector back at its text's
row.
"""

from __future__ import annotations

import json
import os

import numpy as np


def pooling_rules(path):
    """sentence-transformers files, when present: (mode, normalise); default mean pooling + L2."""
    mode, normalise = "mean", True
    modules = os.path.join(path, "modules.json")
    if os.path.isfile(modules):
        with open(modules) as f:
            entries = json.load(f)
        normalise = any(e.get("type", "").endswith("Normalize") for e in entries)
        for e in entries:
            pooling = os.path.join(path, e.get("path", ""), "config.json")
            if e.get("type", "").endswith("Pooling") and os.path.isfile(pooling):
                with open(pooling) as f:
                    cfg = json.load(f)
                if cfg.get("pooling_mode_cls_token"):
                    mode = "cls"
                elif cfg.get("pooling_mode_max_tokens"):
                    mode = "max"
    return mode, normalise


def max_seq_length(path, max_position_embeddings):
    """sentence_bert_config.json's max_seq_length, else what the position table holds (MPNet's
    positions start at 2, so max_position_embeddings - 2 tokens fit)."""
    limit = max_position_embeddings - 2
    config = os.path.join(path, "sentence_bert_config.json")
    if os.path.isfile(config):
        with open(config) as f:
            limit = min(limit, int(json.load(f).get("max_seq_length", limit)))
    return limit


def pool(hidden, mask, mode, normalise):  # [B, S, C], [B, S] -> [B, C]
    """Mean over the real tokens, the <s> vector, or the max over real tokens; then L2 (eps
    1e-12)."""
    m = mask[..., None].astype(hidden.dtype)
    if mode == "cls":
        vectors = hidden[:, 0]
    elif mode == "max":
        vectors = np.where(m > 0, hidden, -np.inf).max(axis=1)
    else:
        vectors = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    if normalise:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    return vectors


def read_texts(path, field="text"):
    """One text per line, or JSON lines (.jsonl / .ndjson): each a string or an object with
    ``field``."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not path.endswith((".jsonl", ".ndjson")):
        return lines
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from None
        text = item.get(field) if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise ValueError(
                f"{path}:{number}: expected a string or an object with a string {field!r} field"
            )
        texts.append(text)
    return texts


# A batch's fixed cost, in tokens' worth of work: batches_by_length cuts a batch early only where
# that saves more padding than this. Measured on MPNet-base (numba, 2 threads, Zen 4): a text of
# 24 tokens alone took 26.9 ms where 24 tokens of a batch of 32 took 20.8 (about 7 tokens' worth),
# and a token cost 2-9% more in batches of 4 or fewer texts than in batches of 16 or 32
BATCH_OVERHEAD_TOKENS = 32


def batches_by_length(lengths, batch_size):  # [N] -> lists of row indices
    """Rows sorted by token count, longest first (sentence-transformers' order), cut into batches
    of at most batch_size rows. Where sentence-transformers cuts every batch_size rows, each batch
    padded to its first (longest) row, the cuts here are the ones that minimise the tokens run,
    padding included, plus BATCH_OVERHEAD_TOKENS a batch (dynamic programming over the sorted
    rows): in the long tail of a corpus the first batch of a fixed cut can be a third padding.
    Which rows share a batch does not change a row's embedding beyond float rounding."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    longest = np.asarray(lengths, np.int64)[order]  # a batch starting at sorted row i pads to this
    N = len(order)
    best = np.zeros(N + 1, np.float64)  # best[j]: the least cost of sorted rows 0 .. j - 1
    start = np.zeros(N + 1, np.int64)  # where the last batch of that best cut starts
    for j in range(1, N + 1):
        lo = max(0, j - batch_size)
        cost = best[lo:j] + BATCH_OVERHEAD_TOKENS + (j - np.arange(lo, j)) * longest[lo:j]
        k = int(np.argmin(cost))  # the first minimum: the largest batch among equal costs
        best[j], start[j] = cost[k], lo + k
    cuts, j = [], N
    while j > 0:
        cuts.append((start[j], j))
        j = start[j]
    return [order[i:j] for i, j in reversed(cuts)]


def embed_corpus(
    model,
    tokenizer,
    texts,
    batch_size=32,
    max_length=512,
    mode="mean",
    normalise=True,
    on_batch=None,
):  # N texts -> [N, C] float32, in input order
    """tokenizer: a ``tokenizers.Tokenizer`` (reference.tokenizer.Tokenizer(...).backend).
    on_batch(n) is called after each batch with its number of texts (a progress bar)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer of at least 2, got {max_length!r}")
    tokenizer.enable_truncation(max_length)  # special tokens kept: <s> ... </s> fit in max_length
    ids = [e.ids for e in tokenizer.encode_batch(list(texts))]
    pad = tokenizer.token_to_id("<pad>")
    pad = 1 if pad is None else pad
    out = None  # [N, C], allocated once the width is known
    for rows in batches_by_length([len(i) for i in ids], batch_size):
        S = len(ids[rows[0]])  # the longest in this batch
        batch = np.full((len(rows), S), pad, np.int64)
        mask = np.zeros((len(rows), S), np.int64)
        for j, row in enumerate(rows):
            batch[j, : len(ids[row])] = ids[row]
            mask[j, : len(ids[row])] = 1
        hidden = model(batch, attention_mask=mask).last_hidden_state  # [B, S, C]
        if out is None:
            out = np.zeros((len(ids), hidden.shape[-1]), np.float32)
        out[rows] = pool(hidden, mask, mode, normalise)
        if on_batch is not None:
            on_batch(len(rows))
    return out
