"""The likeliest tokens for the masks of a text, from a masked-LM model, as transformers 4.37.2's
fill-mask pipeline gives them.

Each mask token of the text gets a softmax over the vocabulary at its position (or over the
``targets`` alone) and its ``top_k`` tokens, best first. A proposal holds its probability, the
token id, the token's text and the whole text with that token in the mask's place: decoded
without special tokens where the text has one mask, with them (the other masks included) where
it has several, as upstream does. Masks are filled one at a time, each from the same single
forward pass, not jointly. Texts are decoded as transformers decodes them: the tokenizer.json
decoder's, cleaned up where tokenizer_config.json's clean_up_tokenization_spaces asks (the default
in 4.37; reference.tokenizer.CLEAN_UPS)."""

from __future__ import annotations

import numpy as np


def fill_mask(model, tokenizer, text, top_k=5, targets=None, mask_token=None):
    """A list of proposals (dicts of "score", "token", "token_str", "sequence"), best first, for
    each mask of ``text`` in order. ``targets``: words the proposals are limited to (a target not
    in the vocabulary stands for its first token); ``mask_token``: the mask's text (default the
    config's mask_token, else "<mask>" or "[MASK]")."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an integer of at least 1, got {top_k!r}")
    backend = tokenizer.backend
    mask_id = mask_token_id(tokenizer, mask_token)
    with tokenizer.bare() as bare:
        ids = np.array(bare.encode(text).ids, dtype=np.int64)
    where = np.flatnonzero(ids == mask_id)
    if not where.size:
        raise ValueError(f"the text has no mask token ({backend.id_to_token(mask_id)})")
    candidates = None if targets is None else target_ids(tokenizer, targets)
    if candidates is not None:
        top_k = min(top_k, len(candidates))
    logits = np.asarray(model(ids[None], attention_mask=np.ones((1, len(ids)), np.int64)).logits)
    pad = tokenizer.special_token_id("pad_token", "<pad>", "[PAD]")
    single = where.size == 1
    proposals = []
    for position in where:
        row = logits[0, position].astype(np.float32)
        shifted = np.exp(row - row.max())
        probs = shifted / shifted.sum()
        if candidates is not None:
            probs = probs[candidates]
        order = np.argsort(-probs, kind="stable")[:top_k]
        found = []
        for k in order:
            token = int(k if candidates is None else candidates[k])
            filled = ids.copy()
            filled[position] = token
            if pad is not None:
                filled = filled[filled != pad]
            found.append(
                {
                    "score": float(probs[k]),
                    "token": token,
                    "token_str": tokenizer.decode([token], clean_up_tokenization_spaces=None),
                    "sequence": tokenizer.decode(
                        filled, skip_special_tokens=single, clean_up_tokenization_spaces=None
                    ),
                }
            )
        proposals.append(found)
    return proposals


def mask_token_id(tokenizer, mask_token=None):
    """The mask's id: ``mask_token``'s, else the config's mask_token, else <mask> or [MASK]."""
    if mask_token is not None:
        found = tokenizer.backend.token_to_id(mask_token)
        names = [mask_token]
    else:
        found = tokenizer.special_token_id("mask_token", "<mask>", "[MASK]")
        names = [tokenizer.special_tokens.get("mask_token", "<mask> or [MASK]")]
    if found is None:
        raise ValueError(f"the tokenizer has no mask token ({names[0]})")
    return found


def target_ids(tokenizer, targets):
    """Each target's id: the token of that text, else the first token it encodes to (targets
    that encode to nothing are left out); duplicates once, in ascending id order."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    backend = tokenizer.backend
    found = set()
    for target in targets:
        if not isinstance(target, str):
            raise TypeError(f"targets must be strings, got {type(target).__name__}")
        token = backend.token_to_id(target)
        if token is None:
            with tokenizer.bare() as bare:
                pieces = bare.encode(target, add_special_tokens=False).ids
            if not pieces:
                continue
            token = pieces[0]
        found.add(token)
    if not found:
        raise ValueError(f"no target is in the vocabulary or encodes to a token: {targets}")
    return np.array(sorted(found))
