"""A thin wrapper over the ``tokenizers`` library for a checkpoint's tokenizer.json."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from .checkpoint import _json_object

# transformers' decode() also takes out these spaces before marks and contractions
# (clean_up_tokenization_spaces; on unless tokenizer_config.json turns it off, in 4.37), over the
# whole decoded text, after the tokenizer.json decoder
CLEAN_UPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


@contextmanager
def bare_backend(backend):
    """A tokenizers backend with neither truncation nor padding for a with-block (which may set
    its own, as the pipelines' windows and embed's cut do); its settings (none, unless a caller
    set some) are put back after."""
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        yield backend
    finally:
        backend.no_truncation()
        if truncation:
            backend.enable_truncation(**truncation)
        if padding:
            backend.enable_padding(**padding)


def clean_up_tokenization(text):
    """transformers' clean-up of decoded text: CLEAN_UPS applied in order."""
    for dirty, clean in CLEAN_UPS:
        text = text.replace(dirty, clean)
    return text


class Tokenizer:
    """Encode text to padded id and mask arrays ready for a model call. The truncation and
    padding a tokenizer.json may carry are turned off, as transformers' tokenizer ignores them.

    ``clean_up_tokenization_spaces``: whether transformers' decode would clean the text up
    (tokenizer_config.json's setting beside tokenizer.json, else True as in 4.37). decode() here
    does only where asked: the tokenizer.json decoder's text is what a stream can write token by
    token, and the clean-up of " ' " can take back a space written a token before."""

    def __init__(self, path):
        from tokenizers import Tokenizer as _Tokenizer

        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ValueError(f"{path}: no tokenizer.json")
        try:
            self.backend = _Tokenizer.from_file(file)
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises bare Exception for bad files
            raise ValueError(
                f"{file}: not a tokenizer.json the tokenizers library can read ({e})"
            ) from None
        # a tokenizer.json may carry truncation and padding (sentence-transformers' files often
        # pad to a fixed 128 or 256): transformers sets both at each call and uses neither, and
        # so does this wrapper, whose callers pad and cut for themselves
        self.backend.no_truncation()
        self.backend.no_padding()
        self.clean_up_tokenization_spaces = True
        self.model_max_length = None  # tokenizer_config.json's, where it says (transformers: 1e30)
        folder = os.path.dirname(file)
        named = []
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if os.path.isfile(os.path.join(folder, name)):
                settings = _json_object(os.path.join(folder, name))
                named += special_tokens_named(settings, os.path.join(folder, name))
                if name == "tokenizer_config.json":
                    self.clean_up_tokenization_spaces = bool(
                        settings.get("clean_up_tokenization_spaces", True)
                    )
                    where = os.path.join(folder, name)
                    self.model_max_length = _model_max_length(settings, where)
        self._make_special(named)
        # the tokens the config names for each role (cls_token, mask_token, ...), as the
        # pipelines look them up
        self.special_tokens = {
            key: content for key, content, _ in named if key != "additional_special_tokens"
        }

    def special_token_id(self, key, *fallbacks):
        """The id of the token the checkpoint's config names for ``key`` ("cls_token",
        "mask_token", ...), or else of the first of ``fallbacks`` in the vocabulary; None where
        there is none."""
        names = [self.special_tokens[key]] if key in self.special_tokens else list(fallbacks)
        for name in names:
            found = self.backend.token_to_id(name)
            if found is not None:
                return found
        return None

    def _make_special(self, named):
        """The special tokens the checkpoint's config files name are special to the backend too
        (skipped by decode(skip_special_tokens=True), matched whole in text), as transformers'
        fast tokenizer adds those that tokenizer.json does not already hold as added tokens."""
        from tokenizers import AddedToken

        added = {t.content for t in self.backend.get_added_tokens_decoder().values()}
        for _, content, options in named:
            if content not in added:
                self.backend.add_special_tokens([AddedToken(content, special=True, **options)])
                added.add(content)

    def encode(self, texts, pairs=None, pad_id=None):
        """Batch-encode; returns {"input_ids": [B, S] int64, "attention_mask": [B, S] int64},
        right-padded."""
        texts = _strings(texts, "texts")
        if pairs is not None:
            pairs = _strings(pairs, "pairs")
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
            encodings = self.backend.encode_batch(list(zip(texts, pairs)))
        else:
            encodings = self.backend.encode_batch(texts)
        if pad_id is None:  # the config's pad token, else <pad> or [PAD], else 0 (masked anyway)
            pad_id = self.special_token_id("pad_token", "<pad>", "[PAD]")
            pad_id = 0 if pad_id is None else pad_id
        S = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), S), pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), S), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def bare(self):
        """bare_backend(self.backend): for a with-block that sets its own truncation."""
        return bare_backend(self.backend)

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        """Token ids (a sequence of integers in the vocabulary) back to text, as the tokenizer.json
        decoder gives it; with clean_up_tokenization_spaces, cleaned up as transformers' decode
        does (True; None: as tokenizer_config.json says, as transformers' default)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise TypeError(
                f"ids must be a 1D sequence of integers, got {ids.dtype} of shape {ids.shape}"
            )
        vocab = self.backend.get_vocab_size(with_added_tokens=True)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(
                f"ids contains {ids[(ids < 0) | (ids >= vocab)][0]}, outside the vocabulary [0,"
                f" {vocab})"
            )
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean_up_tokenization_spaces else text


SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
ADDED_TOKEN_OPTIONS = ("single_word", "lstrip", "rstrip", "normalized")


def special_tokens_named(settings, where):
    """(key, content, AddedToken options) of each special token a tokenizer_config.json or
    special_tokens_map.json names ("cls_token", ... or "additional_special_tokens"): a string, or
    an object with "content" and the options."""
    values = [(key, settings.get(key)) for key in SPECIAL_TOKEN_KEYS]
    extra = "additional_special_tokens"
    values += [(extra, value) for value in settings.get(extra) or []]
    named = []
    for key, value in values:
        if value is None:
            continue
        if isinstance(value, str):
            named.append((key, value, {}))
        elif isinstance(value, dict) and isinstance(value.get("content"), str):
            options = {k: bool(value[k]) for k in ADDED_TOKEN_OPTIONS if k in value}
            named.append((key, value["content"], options))
        else:
            raise ValueError(
                f'{where}: a special token must be a string or {{"content": ...}}, got {value!r}'[
                    :300
                ]
            )
    return named


def _model_max_length(settings, where):
    """tokenizer_config.json's model_max_length, None where absent or past any real limit
    (transformers writes 1e30 for none)."""
    value = settings.get("model_max_length")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        raise ValueError(f"{where}: model_max_length must be a positive number, got {value!r}")
    return None if value >= 1e18 else int(value)


def _strings(value, name):
    """One string, or a non-empty sequence of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise TypeError(
            f"{name} must be a string or a non-empty list of strings, got {value!r}"[:300]
        )
    return list(value)
