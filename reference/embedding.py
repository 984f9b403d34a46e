"""Sentence embeddings of a corpus, the way users of all-mpnet-base-v2 make them.

sentence-transformers runs a checkpoint's modules in order (Transformer -> Pooling -> Normalize)
over batches of texts sorted by length, so that each batch pads to nearly its own longest text, and
returns the vectors in input order. ``embed_corpus`` does the same with this project's models:
tokenize everything first (truncated to the checkpoint's max_seq_length; token_ids, a chunk of
texts at a time, keeping only the ids), sort by token count, run batch after batch, pool (mean
over real tokens, the <s> vector, or max, as the checkpoint's Pooling config says), L2-normalise
where it has a Normalize module, and put each vector back at its text's row (embed_tokens: into
an array given, such as npy_rows' memory map of the output file).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os

import numpy as np

from .checkpoint import _json_object, _json_value
from .tokenizer import bare_backend

# sentence-transformers' poolings by the name its `pooling_mode` gives them: the flag that sets each
# in a Pooling config.json, the value it takes where the config leaves it out, and the pooling embed
# computes for it (None: none). Several set at once concatenate their vectors there.
POOLINGS = {
    "cls": ("pooling_mode_cls_token", False, "cls"),
    "max": ("pooling_mode_max_tokens", False, "max"),
    "mean": ("pooling_mode_mean_tokens", True, "mean"),
    "mean_sqrt_len_tokens": ("pooling_mode_mean_sqrt_len_tokens", False, None),
    "weightedmean": ("pooling_mode_weightedmean_tokens", False, None),
    "lasttoken": ("pooling_mode_lasttoken", False, None),
}
# the sentence-transformers modules embed computes
MODULES = ("Transformer", "Pooling", "Normalize")


def pooling_rules(path):
    """sentence-transformers files, when present: (mode, normalise); default mean pooling + L2.
    A ValueError naming the file where they ask for more than embed computes (a module such as
    Dense after the pooling, or a pooling other than one of cls, max and mean), which would
    otherwise give vectors that are not the checkpoint's."""
    mode, normalise = "mean", True
    modules = os.path.join(path, "modules.json")
    if not os.path.isfile(modules):
        return mode, normalise
    entries = _json_list(modules)
    kinds = [e.get("type", "").rsplit(".", 1)[-1] for e in entries]
    others = [e.get("type", "") for e, kind in zip(entries, kinds) if kind not in MODULES]
    if others:
        raise ValueError(
            f"{modules}: embed computes the {', '.join(MODULES)} modules; this checkpoint also"
            f" has {others}"
        )
    normalise = "Normalize" in kinds
    for e, kind in zip(entries, kinds):
        pooling = os.path.join(path, e.get("path", ""), "config.json")
        if kind != "Pooling" or not os.path.isfile(pooling):
            continue
        cfg = _json_object(pooling)
        if cfg.get("pooling_mode"):  # a name, where given, stands for the flags
            asked = [cfg["pooling_mode"]]
        else:
            asked = [
                name for name, (flag, default, _) in POOLINGS.items() if cfg.get(flag, default)
            ]
        if len(asked) != 1 or POOLINGS.get(asked[0], (None,) * 3)[2] is None:
            raise ValueError(
                f"{pooling}: embed pools by one of cls, max or mean; this config asks for"
                f" {asked or 'no pooling'}"
            )
        mode = POOLINGS[asked[0]][2]
    return mode, normalise


def lower_cases(path):
    """Whether sentence_bert_config.json asks for the texts in lower case (do_lower_case), as
    sentence-transformers lower-cases them before its tokenizer sees them."""
    config = os.path.join(path, "sentence_bert_config.json")
    return os.path.isfile(config) and bool(_json_object(config).get("do_lower_case", False))


def max_seq_length(path, max_position_embeddings):
    """Tokens a text keeps, as sentence-transformers decides: sentence_bert_config.json's
    max_seq_length, else the tokenizer's model_max_length (tokenizer_config.json); never more than
    the position table holds (MPNet's positions start at 2: max_position_embeddings - 2)."""
    limit = max_position_embeddings - 2
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        file = os.path.join(path, name)
        value = _json_object(file).get(key) if os.path.isfile(file) else None
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{file}: {key} must be an integer of at least 2, got {value!r}")
        return min(limit, value)
    return limit


def _json_list(path):  # modules.json: a list of objects, with a clear error otherwise
    value = _json_value(path)
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(value).__name__}")
    return value


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


def iter_texts(path, field="text"):
    """The texts of a file, one at a time: one per line, or JSON lines (.jsonl / .ndjson), each a
    string or an object with ``field`` (blank JSON lines skipped). A line that does not parse
    raises ValueError naming the file and line number."""
    jsonl = path.endswith((".jsonl", ".ndjson"))
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not jsonl:
                yield line
                continue
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
            yield text


def read_texts(path, field="text"):  # iter_texts as a list
    return list(iter_texts(path, field))


# Texts per call of the tokenizer in token_ids. Its Encoding objects (tokens as strings, offsets,
# masks) took about 4.5 KB a short text: tokenizing 200,000 texts in one call raised the peak
# memory by 909 MB, in calls of 10,000 keeping only the ids by 99 MB; with these chunks the whole
# embed command's peak went from 442 MB to 94 MB for 200,000 texts, 2.31 GB to 264 MB for 1,000,000
TOKENIZE_CHUNK = 4096


def line_count(path):  # the lines of a file, counted in binary (a progress bar's total)
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            lines, last = lines + block.count(b"\n"), block[-1:]
    return lines + (last != b"\n")


def token_ids(tokenizer, texts, max_length, on_chunk=None, lower=False):
    """Every text's token ids, truncated to max_length (<s> and </s> kept), end to end in one
    array: text i's are ids[starts[i] : starts[i + 1]] (starts int64). texts may be any iterable
    (iter_texts reads a file without holding it); the tokenizer sees TOKENIZE_CHUNK of them at a
    time, only their ids are kept, and on_chunk(n) is called after each with its number of texts
    (a progress bar). Each text is stripped of surrounding white space, and lower-cased where
    ``lower`` (do_lower_case), as sentence-transformers prepares them; the tokenizer's own
    padding is not used, and its settings are as they were after. Returns (ids [total],
    starts [N + 1])."""
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer of at least 2, got {max_length!r}")
    pieces, lengths = [], [np.zeros(1, np.int64)]
    texts = iter(texts)
    # a tokenizer.json's own padding would count pads as the text's; the caller's settings stay
    with bare_backend(tokenizer):
        tokenizer.enable_truncation(max_length)
        while chunk := list(itertools.islice(texts, TOKENIZE_CHUNK)):
            chunk = [t.strip().lower() if lower else t.strip() for t in chunk]
            encodings = tokenizer.encode_batch(chunk)
            lengths.append(np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings)))
            total = int(lengths[-1].sum())
            pieces.append(
                np.fromiter(
                    itertools.chain.from_iterable(e.ids for e in encodings), np.int32, total
                )
            )
            if on_chunk is not None:
                on_chunk(len(chunk))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    return ids, np.cumsum(np.concatenate(lengths))


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


def pad_id(tokenizer):  # the tokenizer's <pad> (MPNet's is 1)
    pad = tokenizer.token_to_id("<pad>")
    return 1 if pad is None else pad


def embed_corpus(
    model,
    tokenizer,
    texts,
    batch_size=32,
    max_length=512,
    mode="mean",
    normalise=True,
    on_batch=None,
    lower=False,
):  # N texts -> [N, C] float32, in input order
    """tokenizer: a ``tokenizers.Tokenizer`` (reference.tokenizer.Tokenizer(...).backend). token_ids
    then embed_tokens; on_batch(n) is called after each batch with its number of texts (a
    progress bar); ``lower``: lower-case the texts first (lower_cases(path))."""
    _check_batch_size(batch_size)
    ids, starts = token_ids(tokenizer, texts, max_length, lower=lower)
    return embed_tokens(
        model, ids, starts, pad_id(tokenizer), batch_size, mode, normalise, on_batch
    )


def _check_batch_size(batch_size):
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def embed_tokens(
    model, ids, starts, pad, batch_size=32, mode="mean", normalise=True, on_batch=None, out=None
):  # token_ids' (ids, starts) -> [N, C] float32, in input order
    """The vectors of texts already tokenized (token_ids), batched by length (batches_by_length),
    each batch padded with pad. out: where the rows go, an [N, C] float32 array (a memory map of
    the output file, for a corpus whose vectors outgrow memory); allocated here where None, once
    the first batch gives C (no texts: [0, 0])."""
    _check_batch_size(batch_size)
    N = len(starts) - 1
    if out is not None and (out.dtype != np.float32 or out.ndim != 2 or out.shape[0] != N):
        raise ValueError(f"out must be float32 [{N}, C] for {N} texts, got {out.dtype} {out.shape}")
    lengths = np.diff(starts)
    for rows in batches_by_length(lengths, batch_size):
        S = int(lengths[rows[0]])  # the longest in this batch
        batch = np.full((len(rows), S), pad, np.int64)
        mask = np.zeros((len(rows), S), np.int64)
        for j, row in enumerate(rows):
            batch[j, : lengths[row]] = ids[starts[row] : starts[row + 1]]
            mask[j, : lengths[row]] = 1
        hidden = model(batch, attention_mask=mask).last_hidden_state  # [B, S, C]
        if out is None:
            out = np.zeros((N, hidden.shape[-1]), np.float32)
        elif out.shape[1] != hidden.shape[-1]:
            raise ValueError(f"out has {out.shape[1]} columns, the model gives {hidden.shape[-1]}")
        out[rows] = pool(hidden, mask, mode, normalise)
        if on_batch is not None:
            on_batch(len(rows))
    return out if out is not None else np.zeros((0, 0), np.float32)


@contextlib.contextmanager
def npy_rows(path, shape):  # -> (float32 rows to fill, the path written), or (None, None)
    """A .npy file of float32 rows, filled in place: a memory map of a file beside path,
    renamed to path once the block ends without an error (removed where it raises), so a file at
    path is always whole. path gets ".npy" appended where it lacks it, as np.save does. path None
    gives (None, None): nothing is written."""
    if path is None:
        yield None, None
        return
    path = os.fspath(path)
    path = path if path.endswith(".npy") else path + ".npy"
    partial = f"{path}.{os.getpid()}.partial"  # created as np.save creates its file
    try:
        rows = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
        yield rows, path
        rows.flush()
        del rows
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
