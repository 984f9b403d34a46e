"""Text from a prompt, as transformers 4.37.2's text-generation pipeline returns it.

The prompt (``prefix`` before it) is tokenized without special tokens and generate() runs with the
keyword arguments given (greedy unless they or the checkpoint's generation settings say
otherwise). Each sequence is decoded without special tokens, cleaned up (transformers'
clean_up_tokenization_spaces, on by default in the pipeline), and the decoded prompt's length of
characters is cut from its front: what is left is the continuation, and the full text is the
prompt as given followed by it. With ``prefix``, generate()'s max_length and min_length (where
given without their *_new_tokens twins) count the prefix's tokens on top, as upstream adds them;
a max_length given also cuts the prompt (prefix included) to that many tokens first, as
upstream's tokenizer is asked to."""

from __future__ import annotations

import numpy as np

from .generation import HF_DEFAULT_MAX_LENGTH


def generate_text(
    model,
    tokenizer,
    prompt,
    return_full_text=True,
    prefix="",
    clean_up_tokenization_spaces=True,
    stop_sequence=None,
    handle_long_generation=None,
    model_max_length=None,
    **generate_kwargs,
):
    """[{"generated_text": ...}, ...]: one a returned sequence (num_return_sequences), the
    prompt followed by its continuation, or the continuation alone without return_full_text.
    ``stop_sequence``: text whose first token ends generation (generate()'s eos_token_id).
    ``handle_long_generation="hole"``: where the prompt and the new tokens would pass
    ``model_max_length`` (default the tokenizer's, tokenizer_config.json's; none: no limit), the
    prompt keeps its last tokens that leave room for the new ones."""
    for name, value in (("prompt", prompt), ("prefix", prefix)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    with tokenizer.bare() as backend:
        ids = backend.encode(prefix + prompt, add_special_tokens=False).ids
        prefix_tokens = len(backend.encode(prefix, add_special_tokens=False).ids) if prefix else 0
    if generate_kwargs.get("max_length") is not None:  # upstream's tokenizer cuts there too
        ids = ids[: generate_kwargs["max_length"]]
    if handle_long_generation is not None:
        if handle_long_generation != "hole":
            raise ValueError(
                f"handle_long_generation must be None or 'hole', got {handle_long_generation!r}"
            )
        limit = tokenizer.model_max_length if model_max_length is None else model_max_length
        ids = _hole(ids, limit, generate_kwargs, model.config)
    if not ids:
        raise ValueError("the prompt has no tokens: generate() needs at least one to start from")
    if stop_sequence is not None:
        with tokenizer.bare() as backend:
            stop = backend.encode(stop_sequence, add_special_tokens=False).ids
        if not stop:
            raise ValueError(f"stop_sequence {stop_sequence!r} has no tokens")
        generate_kwargs["eos_token_id"] = stop[0]
    if prefix_tokens:
        if "max_new_tokens" not in generate_kwargs:
            limit = generate_kwargs.get("max_length") or getattr(
                model.config, "max_length", HF_DEFAULT_MAX_LENGTH
            )
            generate_kwargs["max_length"] = limit + prefix_tokens
        if "min_new_tokens" not in generate_kwargs and "min_length" in generate_kwargs:
            generate_kwargs["min_length"] += prefix_tokens
    prompt_ids = np.array([ids], dtype=np.int64)
    out = model.generate(prompt_ids, attention_mask=np.ones_like(prompt_ids), **generate_kwargs)
    sequences = np.asarray(getattr(out, "sequences", out))

    def decode(tokens):
        return tokenizer.decode(
            tokens,
            skip_special_tokens=True,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        )

    cut = len(decode(ids))
    texts = [decode(row)[cut:] for row in sequences]
    return [{"generated_text": prompt + t if return_full_text else t} for t in texts]


def _hole(ids, limit, generate_kwargs, config):
    """The prompt's last tokens that leave the new tokens room within ``limit``, as upstream's
    "hole" keeps them (the new tokens: max_new_tokens, else max_length less the prompt)."""
    if limit is None:
        return ids
    new = generate_kwargs.get("max_new_tokens")
    if new is None:
        total = generate_kwargs.get("max_length") or getattr(
            config, "max_length", HF_DEFAULT_MAX_LENGTH
        )
        new = total - len(ids)
        if new < 0:
            raise ValueError(f"max_length {total} is shorter than the prompt's {len(ids)} tokens")
    if len(ids) + new <= limit:
        return ids
    keep = limit - new
    if keep <= 0:
        raise ValueError(
            f"{new} new tokens leave no room for the prompt within {limit} tokens (hole)"
        )
    return ids[-keep:]
