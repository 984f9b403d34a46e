"""A thin wrapper over the ``tokenizers`` library for a checkpoint's tokenizer.json."""

from __future__ import annotations

import os

import numpy as np


class Tokenizer:
    """Encode text to padded id and mask arrays ready for a model call."""

    def __init__(self, path):
        from tokenizers import Tokenizer as _Tokenizer

        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ValueError(f"{path}: no tokenizer.json")
        self.backend = _Tokenizer.from_file(file)

    def encode(self, texts, pairs=None, pad_id=None):
        """Batch-encode; returns {"input_ids": [B, S] int64, "attention_mask": [B, S] int64}, right-padded."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if pairs is not None:
            pairs = [pairs] if isinstance(pairs, str) else list(pairs)
            encodings = self.backend.encode_batch(list(zip(texts, pairs)))
        else:
            encodings = self.backend.encode_batch(texts)
        if pad_id is None:
            pad_id = self.backend.token_to_id("<pad>")
            pad_id = 0 if pad_id is None else pad_id
        S = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), S), pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), S), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def decode(self, ids, skip_special_tokens=True):
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
