"""The tokenizer wrapper reads a tokenizer.json through the tokenizers library."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

import reference

VOCAB = ["<s>", "<pad>", "</s>", "[UNK]", "the", "cat", "sat", "on", "mat", "##s"]


@pytest.fixture
def tokenizer_dir(tmp_path):
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.add_special_tokens(["<s>", "<pad>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_batch_encoding_pads_with_the_pad_id_and_masks_it(tokenizer_dir):
    tok = reference.Tokenizer(tokenizer_dir)
    batch = tok.encode(["the cat sat", "cats"])
    np.testing.assert_array_equal(batch["input_ids"], [[0, 4, 5, 6, 2], [0, 5, 9, 2, 1]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert tok.decode(batch["input_ids"][0]) == "the cat sat"


def test_pairs_use_the_mpnet_template(tokenizer_dir):
    ids = reference.Tokenizer(tokenizer_dir).encode("the cat", pairs="on mat")["input_ids"][0]
    assert ids.tolist() == [0, 4, 5, 2, 2, 7, 8, 2]


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer.json"):
        reference.Tokenizer(tmp_path)
