"""Corpus embedding: length-sorted batches give every text the vector it gets alone, in input
order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given
from hypothesis import strategies as st

import reference
from reference.embedding import (
    BATCH_OVERHEAD_TOKENS,
    batches_by_length,
    embed_corpus,
    embed_tokens,
    iter_texts,
    line_count,
    lower_cases,
    max_seq_length,
    npy_rows,
    pad_id,
    pool,
    pooling_rules,
    read_texts,
    token_ids,
)
from reference.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_demo_models  # noqa: E402

TEXTS = ["w1 w2 w3 w4 w5 w6", "w7", "w2 w9 w3", "", "w5 w5 w5 w5 w5 w5 w5 w5 w5 w5 w5", "w8 w1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_demo_models.make(
        "mpnet/pt/base-right-padding", 99, tmp_path_factory.mktemp("embed") / "m"
    )


def alone(model, tok, text, max_length):
    """One text in a batch of its own: no padding at all."""
    tok.backend.enable_truncation(max_length)
    ids = np.array([tok.backend.encode(text).ids])
    return pool(model(ids).last_hidden_state, np.ones_like(ids), "mean", True)[0]


def test_batched_by_length_equals_each_text_alone_in_input_order(checkpoint):
    model, tok = reference.from_pretrained(str(checkpoint)), Tokenizer(str(checkpoint))
    got = embed_corpus(model, tok.backend, TEXTS, batch_size=4, max_length=8)
    assert got.shape == (len(TEXTS), model.config.hidden_size) and got.dtype == np.float32
    for i, text in enumerate(TEXTS):
        assert_close(
            got[i], alone(model, tok, text, 8), atol=2e-6, rtol=1e-5, what=f"text {i} ({text!r})"
        )
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)


def padded_tokens(lengths, batches):
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_batches_are_cut_where_padding_costs_more_than_a_batch():
    """A fixed cut of 4 would pad three short texts to the long one (800 tokens run for 347 real
    ones); the long text alone and the rest together run 350, plus a second batch's overhead."""
    lengths = [50, 200, 49, 48]
    batches = batches_by_length(lengths, 4)
    assert [list(b) for b in batches] == [[1], [0, 2, 3]]
    # similar lengths stay in full batches: a cut would save less padding than a batch costs
    assert [len(b) for b in batches_by_length([30, 29, 31, 30, 28, 30], 3)] == [3, 3]


@given(st.lists(st.integers(1, 400), min_size=1, max_size=200), st.integers(1, 40))
def test_length_batching_covers_each_row_once_and_never_pads_more_than_a_fixed_cut(lengths, size):
    batches = batches_by_length(lengths, size)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert all(1 <= len(b) <= size for b in batches)
    ordered = [lengths[i] for i in rows]
    assert ordered == sorted(lengths, reverse=True)  # longest first, each batch a run of them
    fixed = [rows[i : i + size] for i in range(0, len(rows), size)]
    overhead = BATCH_OVERHEAD_TOKENS
    cost = padded_tokens(lengths, batches) + overhead * len(batches)
    assert cost <= padded_tokens(lengths, fixed) + overhead * len(fixed)


def test_pooling_modes_and_max_length_follow_the_sentence_transformers_files(tmp_path):
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    assert_close(pool(hidden, mask, "mean", False)[0], hidden[0, :2].mean(0), atol=0)
    assert_close(pool(hidden, mask, "max", False)[0], hidden[0, 1], atol=0)
    assert_close(pool(hidden, mask, "cls", False), hidden[:, 0], atol=0)
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 384}))
    assert max_seq_length(str(tmp_path), 514) == 384
    assert max_seq_length(str(tmp_path / "none"), 514) == 512


def st_files(path, pooling, modules=("Transformer", "Pooling")):  # -> path, as a checkpoint dir
    entries = [
        {
            "idx": i,
            "name": str(i),
            "path": "" if kind == "Transformer" else f"{i}_{kind}",
            "type": f"sentence_transformers.models.{kind}",
        }
        for i, kind in enumerate(modules)
    ]
    path.mkdir()
    (path / "modules.json").write_text(json.dumps(entries))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return str(path)


def test_the_pooling_and_normalisation_are_read_from_the_sentence_transformers_files(tmp_path):
    """modules.json and the Pooling config decide the pooling, with sentence-transformers' defaults
    for the flags a config leaves out (mean on, the others off); no files: mean, then L2."""
    off = {"pooling_mode_mean_tokens": False}
    cls = st_files(tmp_path / "cls", {**off, "pooling_mode_cls_token": True})
    assert pooling_rules(cls) == ("cls", False)
    normalised = ("Transformer", "Pooling", "Normalize")
    mx = st_files(tmp_path / "max", {**off, "pooling_mode_max_tokens": True}, normalised)
    assert pooling_rules(mx) == ("max", True)
    assert pooling_rules(st_files(tmp_path / "mean", {}, normalised)) == ("mean", True)
    assert pooling_rules(st_files(tmp_path / "named", {"pooling_mode": "cls"})) == ("cls", False)
    assert pooling_rules(str(tmp_path / "none")) == ("mean", True)


@pytest.mark.parametrize(
    "pooling, modules, named",
    [
        ({"pooling_mode_cls_token": True}, ("Transformer", "Pooling"), "['cls', 'mean']"),
        ({"pooling_mode_mean_tokens": False}, ("Transformer", "Pooling"), "no pooling"),
        (
            {"pooling_mode_weightedmean_tokens": True, "pooling_mode_mean_tokens": False},
            ("Transformer", "Pooling"),
            "weightedmean",
        ),
        ({"pooling_mode": "lasttoken"}, ("Transformer", "Pooling"), "lasttoken"),
        ({}, ("Transformer", "Pooling", "Dense", "Normalize"), "Dense"),
    ],
)
def test_sentence_transformers_files_asking_for_more_than_embed_computes_are_refused(
    tmp_path, pooling, modules, named
):
    """Poolings that sentence-transformers concatenates, or that embed does not compute, and
    modules after the pooling: a ValueError naming the file and what it asks for, where embed
    had silently mean-pooled (or cls-pooled) and left the rest out."""
    with pytest.raises(ValueError, match="embed") as error:
        pooling_rules(st_files(tmp_path / "ckpt", pooling, modules))
    assert named in str(error.value) and str(tmp_path) in str(error.value), error.value


def test_jsonl_and_plain_text_inputs(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo words\n\nfour\n")
    assert read_texts(str(tmp_path / "a.txt")) == ["one", "two words", "", "four"]
    (tmp_path / "b.jsonl").write_text('"plain"\n{"text": "field", "id": 3}\n\n{"body": "x"}\n')
    with pytest.raises(
        ValueError, match=r"b.jsonl:4: expected a string or an object with a string 'text' field"
    ):
        read_texts(str(tmp_path / "b.jsonl"))
    (tmp_path / "c.jsonl").write_text('{"body": "x"}\n"y"\n')
    assert read_texts(str(tmp_path / "c.jsonl"), field="body") == ["x", "y"]
    # lines end at \n, \r\n or \r only: a form feed or U+2028 inside a text leaves it whole
    (tmp_path / "d.txt").write_bytes("a\x0cb\r\nc\u2028d\re\n".encode())
    assert list(iter_texts(str(tmp_path / "d.txt"))) == ["a\x0cb", "c\u2028d", "e"]
    assert [line_count(str(tmp_path / n)) for n in ("a.txt", "d.txt")] == [4, 2]  # \r: no line
    (tmp_path / "f.txt").write_text("")
    (tmp_path / "g.txt").write_text("x\ny")
    assert [line_count(str(tmp_path / n)) for n in ("f.txt", "g.txt")] == [0, 2]
    (tmp_path / "e.jsonl").write_text('"ok"\n{"text": \n')
    texts = iter_texts(str(tmp_path / "e.jsonl"))
    assert next(texts) == "ok"  # read line by line: the bad line raises only when reached
    with pytest.raises(ValueError, match=r"e.jsonl:2: not JSON"):
        next(texts)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        embed_corpus(None, None, ["x"], batch_size=0)


def test_token_ids_are_each_texts_ids_end_to_end_across_tokenizer_chunks(checkpoint, monkeypatch):
    tok = Tokenizer(str(checkpoint)).backend
    monkeypatch.setattr("reference.embedding.TOKENIZE_CHUNK", 4)  # TEXTS span two chunks
    chunks = []
    ids, starts = token_ids(tok, (t for t in TEXTS), 5, chunks.append)  # any iterable, read once
    assert chunks == [4, 2]
    assert ids.dtype == np.int32 and starts.tolist()[0] == 0 and len(starts) == len(TEXTS) + 1
    tok.enable_truncation(5)
    for i, text in enumerate(TEXTS):
        assert ids[starts[i] : starts[i + 1]].tolist() == tok.encode(text).ids, text
    ids, starts = token_ids(tok, [], 5)
    assert ids.size == 0 and starts.tolist() == [0]
    with pytest.raises(ValueError, match="max_length must be an integer of at least 2"):
        token_ids(tok, TEXTS, 1)


def test_embedding_into_a_given_array_and_into_a_npy_file_that_is_whole_or_absent(
    checkpoint, tmp_path
):
    model, tok = reference.from_pretrained(str(checkpoint)), Tokenizer(str(checkpoint))
    expected = embed_corpus(model, tok.backend, TEXTS, batch_size=3, max_length=8)
    ids, starts = token_ids(tok.backend, TEXTS, 8)
    args = (model, ids, starts, pad_id(tok.backend), 3)
    with npy_rows(tmp_path / "rows", expected.shape) as (out, written):
        assert written == str(tmp_path / "rows.npy")  # as np.save names it
        assert embed_tokens(*args, out=out) is out
    assert_close(np.load(written), expected, atol=0, what="rows written through the map")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npy"]
    with pytest.raises(ValueError, match=r"out must be float32 \[6, C\] for 6 texts"):
        embed_tokens(*args, out=np.zeros((5, expected.shape[1]), np.float32))
    with pytest.raises(ValueError, match="out has 3 columns, the model gives"):
        with npy_rows(tmp_path / "bad.npy", (len(TEXTS), 3)) as (out, _):
            embed_tokens(*args, out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npy"]  # nothing half-written
    with npy_rows(None, (1, 1)) as nothing:
        assert nothing == (None, None)


def test_the_command_line_writes_one_row_per_text_in_input_order(checkpoint, tmp_path):
    import subprocess

    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "emb.npy"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "reference",
            "embed",
            "--model",
            str(checkpoint),
            "--input",
            str(source),
            "--output",
            str(out),
            "--batch-size",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["texts"] == len(TEXTS) and info["pooling"] == "mean" and info["normalized"]
    assert info["written"] == str(out) and info["dims"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "texts.jsonl"]
    model, tok = reference.from_pretrained(str(checkpoint)), Tokenizer(str(checkpoint))
    written = np.load(out)
    for i, text in enumerate(TEXTS):
        assert_close(
            written[i],
            alone(model, tok, text, info["max_length"]),
            atol=2e-6,
            rtol=1e-5,
            what=f"row {i}",
        )


def test_the_command_line_names_a_missing_or_empty_input(checkpoint, tmp_path):
    import subprocess

    def embed(source):
        args = ["embed", "--model", str(checkpoint), "--input", str(source), "--output", "o.npy"]
        run = subprocess.run(
            [sys.executable, "-m", "reference", *args], capture_output=True, text=True, cwd=ROOT
        )
        assert run.returncode == 2, run.stderr
        return run.stderr.strip().splitlines()[-1]

    assert embed(tmp_path / "none.txt") == f"error: {tmp_path / 'none.txt'}: no such file"
    (tmp_path / "empty.txt").write_text("")
    assert embed(tmp_path / "empty.txt") == f"error: {tmp_path / 'empty.txt'}: no texts"
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    assert embed(tmp_path / "blank.jsonl") == (
        f"error: {tmp_path / 'blank.jsonl'}: no texts (every line blank)"
    )
    assert not (ROOT / "o.npy").exists()


ST_RECORD = json.loads(
    (Path(__file__).resolve().parents[1] / "golden/pipelines/sentence-embeddings.json").read_text()
)


@pytest.mark.parametrize("layout", ST_RECORD["layouts"], ids=lambda e: e["name"])
def test_vectors_are_sentence_transformers_own(layout, tmp_path):
    """sentence-transformers 2.7.0's encode() (tools/golden/make_embeddings.py) on the golden
    MPNet model laid out as its model folders: mean, CLS and max pooling, normalised or not, texts
    cut at max_seq_length, do_lower_case (upper-case words are [UNK] unless lower-cased), and a
    tokenizer.json that pads to a fixed length (which sentence-transformers does not use, and embed
    had: pads counted as text). The files read from the folder as the command line reads them
    (and for those two, the command line itself); within 1e-5."""
    from conformance.golden import golden_root, sha256

    case_dir = golden_root() / ST_RECORD["model"]["case"]
    for name, digest in ST_RECORD["model"]["sha256"].items():
        assert sha256(case_dir / name) == digest, f"{name} is not the model the record was made on"
    files = dict(layout["files"])
    tokenizer = golden_root() / "pipelines" / files.pop("tokenizer", "tokenizer.json")
    assert sha256(tokenizer) == ST_RECORD["tokenizers"][tokenizer.name]
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((case_dir / name).read_bytes())
    (tmp_path / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(content))
    model = reference.from_pretrained(tmp_path, task="base")
    mode, normalise = pooling_rules(tmp_path)
    got = embed_corpus(
        model,
        Tokenizer(str(tmp_path)).backend,
        ST_RECORD["texts"],
        batch_size=ST_RECORD["batch_size"],
        max_length=max_seq_length(tmp_path, model.config.max_position_embeddings),
        mode=mode,
        normalise=normalise,
        lower=lower_cases(tmp_path),
    )
    assert_close(got, layout["embeddings"], atol=1e-5, what=layout["name"])
    if files["sentence_bert_config.json"]["do_lower_case"] or tokenizer.name != "tokenizer.json":
        import subprocess

        run = subprocess.run(
            [sys.executable, "-m", "reference", "embed", "--model", str(tmp_path), "--json"]
            + ST_RECORD["texts"],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        shown = json.loads(run.stdout)["embeddings"]
        assert_close(shown, layout["embeddings"], atol=1e-5, what="embed " + layout["name"])


def test_the_records_lower_casing_changes_the_upper_case_text():
    """The do_lower_case layout differs from its twin only on the text with upper-case words."""
    vectors = {e["name"]: np.array(e["embeddings"]) for e in ST_RECORD["layouts"]}
    plain = vectors["mean, normalized, 12 tokens (all-mpnet-base-v2's kind)"]
    lowered = vectors["mean, lower-cased first"]
    upper = [i for i, t in enumerate(ST_RECORD["texts"]) if t != t.lower()]
    same = [i for i in range(len(plain)) if i not in upper]
    assert upper and np.abs(plain[upper] - lowered[upper]).max() > 1e-2
    assert np.abs(plain[same] - lowered[same]).max() < 1e-6


def test_the_token_limit_is_sentence_transformers_and_bad_files_are_named(tmp_path):
    """sentence_bert_config.json's max_seq_length, else (absent or null) tokenizer_config.json's
    model_max_length, never past the positions; a file that is not JSON, a modules.json that is
    not a list of objects and a limit that is not an integer are refused naming the file."""
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    assert max_seq_length(tmp_path, 514) == 64
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": None}))
    assert max_seq_length(tmp_path, 514) == 64
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 384}))
    assert max_seq_length(tmp_path, 514) == 384 and max_seq_length(tmp_path, 100) == 98
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": "384"}')
    with pytest.raises(ValueError, match="sentence_bert_config.json: max_seq_length must be"):
        max_seq_length(tmp_path, 514)
    (tmp_path / "sentence_bert_config.json").write_text("{max_seq_length: 384")
    with pytest.raises(ValueError, match="sentence_bert_config.json: not valid JSON"):
        lower_cases(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps({"idx": 0}))
    with pytest.raises(ValueError, match="modules.json: expected a JSON list of objects"):
        pooling_rules(tmp_path)
