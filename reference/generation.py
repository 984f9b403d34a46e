"""Token generation for causal models: greedy decoding as transformers 4.37.2 does it, and sampling.

Decoding always uses the KV cache: one forward over the prompt, then one token per step. That gives
the same tokens as HF's default for MPT (use_cache=False, which recomputes the whole sequence every
step, SPEC 2.8) and as HF with use_cache=True.

Axis letters: B batch, S prompt length, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from .inputs import as_float, as_ids, is_integer, is_number
from .ops import softmax

HF_DEFAULT_MAX_LENGTH = (
    20  # GenerationConfig.max_length: prompt plus new tokens when nothing is said
)
HF_DEFAULT_TOP_K = 50  # GenerationConfig.top_k, applied when sampling


def initial_attention_mask(input_ids, pad_token_id, eos_token_ids):  # [B, S] -> [B, S]
    """HF's rule: mask pad tokens only if a pad id is set, occurs in the prompt, and is not an eos
    id."""
    if (
        pad_token_id is not None
        and (input_ids == pad_token_id).any()
        and pad_token_id not in eos_token_ids
    ):
        return (input_ids != pad_token_id).astype(np.int64)
    return np.ones_like(input_ids)


def warp_logits(logits, temperature, top_k, top_p):  # [B, V] -> [B, V]
    """HF's sampling warpers, in its order: temperature, then top-k, then top-p (nucleus)."""
    logits = logits.astype(np.float64)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k:
        k = min(top_k, logits.shape[-1])
        kth = np.sort(logits, axis=-1)[:, -k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)  # ties with the k-th value are kept
    if top_p is not None and top_p < 1.0:
        order = np.argsort(logits, axis=-1, kind="stable")  # ascending
        sorted_probs = softmax(np.take_along_axis(logits, order, axis=-1))
        remove_sorted = np.cumsum(sorted_probs, axis=-1) <= (1 - top_p)
        remove_sorted[:, -1] = False  # always keep the most likely token
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        logits = np.where(remove, -np.inf, logits)
    return logits


def sample(logits, rng):  # [B, V] -> [B]
    """One draw per row from softmax(logits) by inverting the cumulative distribution."""
    cdf = np.cumsum(softmax(logits), axis=-1)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=-1), logits.shape[-1] - 1)


def token_id(value, name, vocab_size):
    """A single token id in [0, vocab_size)."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer token id, got {value!r}")
    if not 0 <= value < vocab_size:
        raise ValueError(f"{name} {value} is outside the vocabulary [0, {vocab_size})")
    return int(value)


def check_sampling(do_sample, temperature, top_k, top_p, seed):
    """The types and ranges generate() accepts for its decoding options."""
    if not isinstance(do_sample, (bool, np.bool_)):
        raise TypeError(f"do_sample must be True or False, got {do_sample!r}")
    if seed is not None and (not is_integer(seed) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    if not do_sample:
        return
    if not is_number(temperature) or not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(f"sampling needs a finite temperature > 0, got {temperature!r}")
    if top_k is not None and (not is_integer(top_k) or top_k < 0):
        raise ValueError(
            f"top_k must be a non-negative integer (0 turns it off) or None, got {top_k!r}"
        )
    if top_p is not None and (not is_number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"sampling needs top_p in (0, 1], got {top_p!r}")


class GenerationMixin:
    """generate() and stream() for a model whose call returns logits [B, S, V] and
    past_key_values."""

    def generate(
        self,
        input_ids,
        attention_mask=None,
        max_new_tokens=None,
        max_length=None,
        do_sample=False,
        temperature=1.0,
        top_k=HF_DEFAULT_TOP_K,
        top_p=1.0,
        seed=None,
        eos_token_id=None,
        pad_token_id=None,
    ):
        """Prompt ids [B, S] -> [B, S + new]. Rows that emitted eos are continued with
        pad_token_id."""
        ids = as_ids(input_ids, "input_ids", self.config.vocab_size, ndim=2)
        new = [
            t[:, None]
            for t in self.stream(
                ids,
                attention_mask,
                max_new_tokens,
                max_length,
                do_sample,
                temperature,
                top_k,
                top_p,
                seed,
                eos_token_id,
                pad_token_id,
            )
        ]
        return np.concatenate([ids] + new, axis=1)

    def stream(
        self,
        input_ids,
        attention_mask=None,
        max_new_tokens=None,
        max_length=None,
        do_sample=False,
        temperature=1.0,
        top_k=HF_DEFAULT_TOP_K,
        top_p=1.0,
        seed=None,
        eos_token_id=None,
        pad_token_id=None,
    ):
        """Yield the next token of every row, [B], one step at a time (same arguments as
        generate)."""
        V = self.config.vocab_size
        ids = as_ids(input_ids, "input_ids", V, ndim=2)
        B, S = ids.shape
        eos = eos_token_id if eos_token_id is not None else self.config.eos_token_id
        several = isinstance(eos, (list, tuple, np.ndarray))
        eos_ids = (
            []
            if eos is None
            else [token_id(e, "eos_token_id", V) for e in (eos if several else [eos])]
        )
        pad = pad_token_id if pad_token_id is not None else self.config.pad_token_id
        if pad is None and eos_ids:
            pad = eos_ids[0]  # HF sets pad to eos (with a warning)
        if pad is not None:  # a finished row feeds pad back in, so it must be a real token
            pad = token_id(pad, "pad_token_id", V)
        steps = self._steps(S, max_new_tokens, max_length)
        check_sampling(do_sample, temperature, top_k, top_p, seed)
        mask = (
            initial_attention_mask(ids, pad, eos_ids)
            if attention_mask is None
            else as_float(attention_mask, "attention_mask", (B, S), np.float64).astype(np.int64)
        )
        rng = np.random.default_rng(seed)
        unfinished = np.ones(B, dtype=bool)
        session = self.decode_session(B, S + steps)  # a fast backend's preallocated cache, or None
        if session is not None:
            last = session.prefill(ids, mask)
        else:
            out = self(ids, attention_mask=mask, use_cache=True)  # prefill: the whole prompt once
            last = out.logits[:, -1, :]  # [B, V]
        for step in range(steps):
            token = (
                sample(warp_logits(last, temperature, top_k, top_p), rng)
                if do_sample
                else last.argmax(-1)
            )
            if eos_ids:
                token = np.where(unfinished, token, pad)
                unfinished &= ~np.isin(token, eos_ids)
            yield token.astype(np.int64)
            if not unfinished.any() or step == steps - 1:
                return  # the last token needs no forward pass of its own
            if session is not None:
                last = session.step(token)
            else:  # one token over the cache; the mask grows by one real key
                mask = np.concatenate([mask, np.ones((B, 1), mask.dtype)], axis=1)
                out = self(
                    token[:, None],
                    past_key_values=out.past_key_values,
                    attention_mask=mask,
                    use_cache=True,
                )
                last = out.logits[:, -1, :]

    def decode_session(self, batch, total_len):
        """A backend may return an object with prefill(ids, mask) and step(token) -> logits [B,
        V]."""
        return None

    def _steps(self, S, max_new_tokens, max_length):
        if max_length is not None and not is_integer(max_length):
            raise ValueError(f"max_length must be an integer, got {max_length!r}")
        if max_new_tokens is None:
            total = HF_DEFAULT_MAX_LENGTH if max_length is None else max_length
            if total < S:
                raise ValueError(
                    f"max_length {total} is shorter than the prompt ({S} tokens); pass"
                    " max_new_tokens"
                )
            max_new_tokens = total - S
        if not is_integer(max_new_tokens) or max_new_tokens < 0:
            raise ValueError(
                f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}"
            )
        limit = getattr(self.config, "max_seq_len", None)
        if limit is not None and S + max_new_tokens > limit:
            raise ValueError(
                f"prompt of {S} tokens plus {max_new_tokens} new ones exceeds max_seq_len {limit}"
            )
        return int(max_new_tokens)
