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


def test_special_tokens_the_config_names_are_special_as_in_transformers(tmp_path):
    """transformers' AutoTokenizer (4.37.2; golden/pipelines/special-tokens.json, recorded by
    tools/golden/make_pipelines.py) on a tokenizer.json whose config names [UNK] (in the
    vocabulary, not special in the file), <mask> (as an AddedToken object) and <extra> (not in
    the file at all): the same ids (<mask> and <extra> added after the vocabulary, matched whole
    in text) and the same decoded texts with and without special tokens and clean-up."""
    import json

    from conformance.golden import golden_root, sha256

    folder = golden_root() / "pipelines"
    record = json.loads((folder / "special-tokens.json").read_text())
    assert sha256(folder / "tokenizer.json") == record["tokenizers"]["tokenizer.json"]
    (tmp_path / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(record["tokenizer_config"]))
    tok = reference.Tokenizer(str(tmp_path))
    for example in record["examples"]:
        ids = tok.backend.encode(example["text"]).ids
        assert ids == example["ids"], (example["text"], ids)
        assert tok.decode(ids, skip_special_tokens=False) == example["decoded"]
        assert tok.decode(ids) == example["decoded_without_special"]
        assert tok.decode(ids, clean_up_tokenization_spaces=None) == example["decoded_cleaned_up"]
    plain = reference.Tokenizer(
        str(folder / "tokenizer.json")
    )  # no config beside it: the file's own
    assert plain.decode(record["examples"][0]["ids"]) == "w1 [UNK] w2"


def test_a_special_token_the_config_writes_wrongly_is_named(tmp_path):
    import json

    from conformance.golden import golden_root

    source = golden_root() / "pipelines" / "tokenizer.json"
    (tmp_path / "tokenizer.json").write_bytes(source.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"mask_token": ["<mask>"]}))
    with pytest.raises(ValueError, match="tokenizer_config.json: a special token must be a string"):
        reference.Tokenizer(str(tmp_path))


def test_a_tokenizer_files_own_padding_and_truncation_are_not_used():
    """sentence-transformers' tokenizer.json files often pad to a fixed length and cut there;
    transformers sets both at each call and uses neither, and so does reference.Tokenizer (its
    masks cover the text's tokens alone). embedding.token_ids, handed such a backend directly,
    leaves its settings as they were."""
    from conformance.golden import golden_root
    from reference.embedding import token_ids

    padded = golden_root() / "pipelines" / "tokenizer-padded.json"
    plain = golden_root() / "pipelines" / "tokenizer.json"
    tok, ref = reference.Tokenizer(str(padded)), reference.Tokenizer(str(plain))
    texts = ["w1 w2", " ".join(["w3"] * 40)]
    np.testing.assert_array_equal(
        tok.encode(texts)["attention_mask"], ref.encode(texts)["attention_mask"]
    )
    assert tok.encode(texts)["input_ids"].shape == (2, 42)  # <s>, 40 words, </s>: not cut at 30
    from tokenizers import Tokenizer as Backend

    raw = Backend.from_file(str(padded))
    before = raw.truncation, raw.padding
    ids, starts = token_ids(raw, texts, 38)
    assert np.diff(starts).tolist() == [4, 38] and (raw.truncation, raw.padding) == before
