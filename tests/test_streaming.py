"""generate(streamer=): the calls a streamer gets, in transformers 4.37.2's order and shapes, and
TextStreamer's text (reference/streaming.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mpt_properties import tiny_mpt
from test_prompt_lookup import echo_mpt

import reference
from reference import TextStreamer

PADDED = np.array([[3, 14, 15, 9, 2], [0, 0, 6, 5, 35]])  # row 1 left-padded


class Recorder:
    """A streamer that keeps what it is handed."""

    def __init__(self):
        self.calls = []

    def put(self, tokens):
        self.calls.append(np.array(tokens))

    def end(self):
        self.calls.append("end")


DECODINGS = {
    "greedy": dict(eos_token_id=None),
    "greedy, eos and pad": dict(eos_token_id=9, pad_token_id=0),
    "sampling, two sequences": dict(do_sample=True, seed=3, num_return_sequences=2),
    "contrastive": dict(penalty_alpha=0.6, top_k=4, use_cache=True),
}


@pytest.mark.parametrize("decoding", DECODINGS)
def test_a_streamer_gets_the_prompt_then_each_steps_tokens_then_end(decoding):
    """As upstream's decodings hand them: put(prompt [B, S]) before any pass (the prompt as
    given, not repeated for num_return_sequences), put(tokens [R]) each step, pad included for
    finished rows, end() once after the last; the tokens are generate()'s without a streamer."""
    model = tiny_mpt(seed=1)
    mask = (PADDED != 0).astype(np.int64)
    kw = dict(DECODINGS[decoding], attention_mask=mask, max_new_tokens=5)
    want = model.generate(PADDED, **kw)
    recorder = Recorder()
    got = model.generate(PADDED, streamer=recorder, **kw)
    np.testing.assert_array_equal(got, want)
    calls = recorder.calls
    assert calls[-1] == "end" and all(not isinstance(c, str) for c in calls[:-1])
    np.testing.assert_array_equal(calls[0], PADDED)
    steps = calls[1:-1]
    assert all(step.shape == (len(want),) for step in steps), [s.shape for s in steps]
    np.testing.assert_array_equal(np.stack(steps, axis=1), want[:, PADDED.shape[1] :])


def test_prompt_lookup_hands_the_streamer_each_passs_tokens():
    """Prompt lookup puts each pass's kept guesses and the token after them at once, [1, n], as
    upstream's assisted decoding does: on a text that repeats, several tokens a put."""
    model = echo_mpt()
    ids = np.array([[3, 7, 11, 5]])
    kw = dict(max_new_tokens=12, eos_token_id=49, use_cache=True, prompt_lookup_num_tokens=4)
    recorder = Recorder()
    out = model.generate(ids, streamer=recorder, **kw)
    passes = recorder.calls[1:-1]
    assert recorder.calls[-1] == "end" and all(p.ndim == 2 and len(p) == 1 for p in passes)
    assert max(p.shape[1] for p in passes) > 1, [p.shape for p in passes]
    np.testing.assert_array_equal(np.concatenate(passes, axis=1), out[:, 4:])
    np.testing.assert_array_equal(out, model.generate(ids, **kw))


def test_a_streamer_is_refused_with_beam_search_or_without_put_and_end():
    model = tiny_mpt()
    with pytest.raises(ValueError, match="cannot follow beam search"):
        model.generate(PADDED, max_new_tokens=2, num_beams=2, streamer=Recorder())
    with pytest.raises(TypeError, match="must have put\\(\\) and end\\(\\) methods"):
        model.generate(PADDED, max_new_tokens=2, streamer=object())
    with pytest.raises(TypeError, match="a streamer is for generate"):
        model.stream(PADDED, max_new_tokens=2, streamer=Recorder())
    with pytest.raises(TypeError, match="decode"):
        TextStreamer(object())


def demo_tokenizer(tmp_path):
    """The demo checkpoints' WordPiece tokenizer (words w0, w1, ... joined by spaces)."""
    from tools.make_demo_models import write_tokenizer

    write_tokenizer(tmp_path, 64)
    return reference.Tokenizer(str(tmp_path))


def test_text_streamer_writes_the_whole_text_as_it_comes(tmp_path):
    """The prompt with the first new token, then each token's text, a newline at the end: the
    text of the sequence generate() returns, spaced as the tokenizer joins it; with skip_prompt
    what follows the prompt alone, its first space included. It takes one row only, and the next
    call's prompt after end()."""
    tok = demo_tokenizer(tmp_path)
    model = tiny_mpt(seed=2, vocab_size=64)
    ids = np.array([[5, 6, 7]])
    writes = []

    class File(io.StringIO):
        def write(self, text):
            writes.append(text)
            return super().write(text)

    out = File()
    streamer = TextStreamer(tok, file=out)
    seq = model.generate(ids, max_new_tokens=6, streamer=streamer)
    whole = tok.decode(seq[0])
    assert out.getvalue() == whole + "\n"
    assert writes[0].startswith(tok.decode(ids[0])) and len(writes) >= 6  # a piece a token
    model.generate(ids, max_new_tokens=6, streamer=streamer)  # again, after end()
    assert out.getvalue() == 2 * (whole + "\n")
    rest = io.StringIO()
    model.generate(ids, max_new_tokens=6, streamer=TextStreamer(tok, skip_prompt=True, file=rest))
    assert rest.getvalue() == whole[len(tok.decode(ids[0])) :] + "\n"
    assert rest.getvalue().startswith(" ")  # WordPiece joins the first new word with a space
    with pytest.raises(ValueError, match="one row's text"):
        model.generate(np.array([[5, 6], [7, 8]]), max_new_tokens=2, streamer=TextStreamer(tok))


def test_text_streamer_waits_for_a_character_spelled_over_several_tokens(tmp_path):
    """A byte-level BPE spells a character outside its merges as one token a byte, and its first
    bytes alone decode to U+FFFD: the streamer writes nothing of it until it is whole, so what it
    writes is never taken back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        ["plain words only"] * 10,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    bpe.save(str(tmp_path / "tokenizer.json"))
    tok = reference.Tokenizer(str(tmp_path))
    text = "words 日本 é plain"
    ids = bpe.encode(text, add_special_tokens=False).ids
    split = [i for i in range(1, len(ids)) if "\ufffd" in tok.decode(ids[:i])]
    assert split, "no character spelled over several tokens"
    out = io.StringIO()
    streamer = TextStreamer(tok, file=out)
    streamer.put(np.array([ids[:1]]))  # the prompt: one token
    for token in ids[1:]:
        streamer.put(np.array([token]))
        assert "\ufffd" not in out.getvalue(), out.getvalue()
    streamer.end()
    assert out.getvalue() == text + "\n"


def wordpiece_with_cleanup(path):
    """WordPiece with the marks its decoder's clean-up joins to the word before (" ." and
    " n't" become "." and "n't"), a continuation piece and special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = ["<s>", "<pad>", "</s>", "[UNK]", "##s", "##ing", ".", ",", "?", "'", "n't", "'s"]
    vocab += ["do", "it"] + [f"w{i}" for i in range(20)]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.add_special_tokens(["<s>", "<pad>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    tok.save(str(path / "tokenizer.json"))
    return reference.Tokenizer(str(path))


def metaspace_with_byte_fallback(path):
    """A SentencePiece-style vocabulary as Llama's: "▁" for a space, stripped at the start of a
    text, and the bytes <0x00>..<0xFF> for what the pieces do not spell (ByteFallback decodes a
    run of them that is not UTF-8 to one U+FFFD a byte)."""
    from tokenizers import Tokenizer, decoders, models

    pieces = ["<unk>", "<s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += ["▁", "▁hello", "▁w", "p", "o", "rld", "."]
    tok = Tokenizer(models.BPE({w: i for i, w in enumerate(pieces)}, [], byte_fallback=True))
    tok.add_special_tokens(["<unk>", "<s>"])
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.save(str(path / "tokenizer.json"))
    return reference.Tokenizer(str(path))


@pytest.fixture(scope="module")
def joining_tokenizers(tmp_path_factory):
    """Each tokenizer with what a sequence is drawn from: its tokens one at a time, for the
    byte fallback its ASCII bytes and the bytes of whole characters (two, three and four
    bytes long). Stray bytes are left out: a stream cannot know that a later byte turns an
    earlier one into part of a sequence that is not UTF-8."""
    made = {}
    for make in (wordpiece_with_cleanup, metaspace_with_byte_fallback):
        tok = make(tmp_path_factory.mktemp(make.__name__))
        vocab = tok.backend.get_vocab_size(with_added_tokens=True)
        units = [[i] for i in range(vocab)]
        if make is metaspace_with_byte_fallback:
            byte = tok.backend.token_to_id("<0x00>")
            units = [[i] for i in range(vocab) if not byte <= i < byte + 256]
            units += [[byte + b] for b in b"\n azAZ09."]
            units += [[byte + b for b in c.encode()] for c in "é日😀"]
        made[make.__name__] = tok, units
    return made


def streamed(tok, prompt, new, skip_prompt=False):
    out = io.StringIO()
    streamer = TextStreamer(tok, skip_prompt=skip_prompt, file=out)
    streamer.put(np.array([prompt]))
    for token in new:
        streamer.put(np.array([token]))
    streamer.end()
    return out.getvalue()


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(), name=st.sampled_from(["wordpiece_with_cleanup", "metaspace_with_byte_fallback"])
)
def test_text_streamer_writes_what_decoding_the_whole_sequence_gives(
    joining_tokenizers, data, name
):
    """Any tokens, special ones, clean-up marks, a lone "▁" and characters spelled in bytes
    included, the prompt ending anywhere (inside a character too): what the streamer writes, a
    few tokens decoded at a time, is the whole sequence's decoded text (with skip_prompt: what
    follows the prompt's text in it)."""
    tok, units = joining_tokenizers[name]
    drawn = data.draw(st.lists(st.sampled_from(units), min_size=2, max_size=16))
    ids = [i for unit in drawn for i in unit]
    split = data.draw(st.integers(1, len(ids) - 1))
    whole = tok.decode(ids)
    assert streamed(tok, ids[:split], ids[split:]) == whole + "\n"
    whole_characters = [tok.decode(ids[:k]) for k in range(split + 1)]
    prompt = [t for t in whole_characters if not t.endswith("\ufffd")][-1]  # a character it
    if whole.startswith(prompt):  # ends inside is written with the rest
        rest = whole[len(prompt) :]
        assert streamed(tok, ids[:split], ids[split:], skip_prompt=True) == rest + "\n"


def test_text_streamer_decodes_a_few_tokens_a_token(tmp_path):
    """A token costs a decode of the tokens since the last write and of the one before: the
    tokens decoded over a 400-token reply grow as its length, not as its square (the whole
    text each token would be 80,000)."""
    tok = demo_tokenizer(tmp_path)
    decoded = []

    class Counting:
        def decode(self, ids, skip_special_tokens=True):
            decoded.append(len(ids))
            return tok.decode(ids, skip_special_tokens=skip_special_tokens)

    new = np.random.default_rng(0).integers(5, 64, 400).tolist()
    text = streamed(Counting(), [5, 6, 7], new, skip_prompt=True)
    assert text == tok.decode([5, 6, 7] + new)[len(tok.decode([5, 6, 7])) :] + "\n"
    assert sum(decoded) <= 4 * len(new) + 10, (sum(decoded), max(decoded))
