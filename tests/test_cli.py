"""The command line, end to end as a subprocess, on golden checkpoints with a tokenizer built
here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"
sys.path.insert(0, str(ROOT / "tools"))

import make_demo_models  # noqa: E402


def model_dir(tmp_path, case, vocab_size):
    """A golden checkpoint plus a WordPiece tokenizer.json of the model's vocabulary size."""
    return make_demo_models.make(case, vocab_size, tmp_path / case.replace("/", "_"))


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "reference", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_inspect_reports_config_parameters_and_profile_features(tmp_path):
    out = cli(
        "inspect",
        "--model",
        str(GOLDEN / "mpt/mosaic/mosaic-qk-ln"),
        "--profile",
        "mosaic",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["model_type"] == "mpt" and info["features"]["qk_ln"] and info["features"]["bias"]
    assert info["parameters"] > 0 and info["dtypes"] == ["F32"]
    # the weights by storage: float32 is the checkpoint's own count (F32, no head of its own)
    sizes = info["weight_bytes"]
    assert sizes["fp32"] == 4 * info["parameters"] and sizes["fp32"] > sizes["bf16"] > sizes["q8"]
    text = cli("inspect", "--model", str(GOLDEN / "mpt/mosaic/mosaic-qk-ln"), "--profile", "mosaic")
    want = f"weight_bytes: fp32 {sizes['fp32'] / 1024:.2f} KiB, bf16 {sizes['bf16'] / 1024:.2f} KiB"
    assert want in text.stdout, text.stdout


def test_embed_mean_pools_and_normalises(tmp_path):
    path = model_dir(tmp_path, "mpnet/pt/base-right-padding", 99)
    out = cli("embed", "--model", str(path), "w1 w2 w3", "w4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    vectors = data["embeddings"]
    assert len(vectors) == 2 and len(vectors[0]) == 32 and data["pooling"] == "mean"
    assert all(abs(sum(v * v for v in vec) - 1) < 1e-5 for vec in vectors)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Dense"}]
    (path / "modules.json").write_text(json.dumps(modules))  # a module embed does not compute
    out = cli("embed", "--model", str(path), "w1 w2 w3")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "modules.json" in out.stderr and "Dense" in out.stderr, out.stderr


def test_ner_lists_the_libraries_entities(tmp_path):
    """The entities of reference.token_classification (which tests/test_token_classification.py
    holds to transformers' pipeline); words of two pieces stay whole; a text longer than the
    model takes needs --stride, and with it is read in windows."""
    import numpy as np

    import reference
    from reference.token_classification import find_entities

    path = model_dir(tmp_path, "mpnet/pt/token-classification", 99)
    model, tok = (
        reference.from_pretrained(path, task="token-classification"),
        reference.Tokenizer(path),
    )
    for aggregation in ("simple", "first", "none"):
        out = cli("ner", "--model", str(path), "w1 w7s w9", "--json", "--aggregation", aggregation)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)["entities"]
        want = find_entities(model, tok, "w1 w7s w9", aggregation)
        assert [e["word"] for e in got] == [e["word"] for e in want]
        assert np.allclose([e["score"] for e in got], [float(e["score"]) for e in want])
    first = json.loads(
        cli("ner", "--model", str(path), "w1 w7s w9", "--json", "--aggregation", "first").stdout
    )["entities"]
    assert any("w7s" in e["word"] for e in first)  # "w7s" is two pieces, one word
    long = " ".join(f"w{i % 90}" for i in range(0, 400, 7))
    refused = cli("ner", "--model", str(path), long)
    assert refused.returncode == 2 and "give --stride" in refused.stderr, refused.stderr
    read = cli("ner", "--model", str(path), long, "--stride", "8", "--ignore-labels", "--json")
    assert read.returncode == 0, read.stderr
    entities = json.loads(read.stdout)["entities"]
    assert max(e["end"] for e in entities) == len(long)  # to the end of the text


def test_fill_mask_and_classify_print_the_libraries_results(tmp_path):
    """fill-mask and classify give reference.fill_mask's and classify_text's results (which
    tests/test_fill_mask_and_text_classification.py holds to transformers' pipelines)."""
    import shutil

    import numpy as np

    import reference
    from reference.mask_filling import fill_mask
    from reference.text_classification import classify_text
    from reference.zero_shot_classification import classify_zero_shot

    pipelines = GOLDEN / "pipelines"
    path = tmp_path / "mlm"
    path.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(GOLDEN / "mpnet/pt/masked-lm" / name, path / name)
    shutil.copy(pipelines / "tokenizer-mask.json", path / "tokenizer.json")
    out = cli("fill-mask", "--model", str(path), "w1 <mask> w3 <mask>", "--top-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["masks"]
    model, tok = reference.from_pretrained(path, task="masked-lm"), reference.Tokenizer(path)
    want = fill_mask(model, tok, "w1 <mask> w3 <mask>", top_k=2)
    assert [[p["sequence"] for p in row] for row in got] == [
        [p["sequence"] for p in row] for row in want
    ]
    text = cli("fill-mask", "--model", str(path), "w1 <mask> w3 <mask>", "--top-k", "2")
    assert text.stdout.splitlines()[0] == "mask 1:" and len(text.stdout.splitlines()) == 6
    missing = cli("fill-mask", "--model", str(path), "w1 w3")
    assert missing.returncode == 2 and "no mask token" in missing.stderr, missing.stderr

    path = model_dir(tmp_path, "mpnet/pt/sequence-classification-single-label", 99)
    out = cli("classify", "--model", str(path), "w1 w2", "--pair", "w3", "--top-k", "0", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["labels"]
    model = reference.from_pretrained(path, task="sequence-classification")
    want = classify_text(model, reference.Tokenizer(path), "w1 w2", "w3", top_k=None)
    assert [r["label"] for r in got] == [r["label"] for r in want] and len(got) == 3
    assert np.allclose([r["score"] for r in got], [r["score"] for r in want])
    raw = cli("classify", "--model", str(path), "w1 w2", "--function", "none")
    assert raw.returncode == 0 and len(raw.stdout.splitlines()) == 1, raw.stderr
    zero = cli("classify", "--model", str(path), "w1 w2", "--candidate-labels", "w3, w4", "--json")
    assert zero.returncode == 0, zero.stderr
    got = json.loads(zero.stdout)["labels"]
    want = classify_zero_shot(model, reference.Tokenizer(path), "w1 w2", "w3, w4")
    assert [r["label"] for r in got] == want["labels"]
    assert np.allclose([r["score"] for r in got], want["scores"])


def test_qa_returns_a_span_inside_the_context_with_offsets(tmp_path):
    path = model_dir(tmp_path, "mpnet/pt/question-answering", 99)
    context = "w5 w6 w7 w8 w9"
    out = cli("qa", "--model", str(path), "--question", "w1 w2", "--context", context, "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert context[answer["start"] : answer["end"]] == answer["answer"] and 0 < answer["score"] <= 1


def test_qa_reads_a_long_context_in_windows_and_lists_the_best_answers(tmp_path):
    """A context past the model's 38 positions is read in windows (the library call's answers,
    which tests/test_question_answering.py holds to transformers' pipeline); --top-k answers,
    best first; a window that leaves the context no room is refused in one line."""
    import numpy as np

    import reference
    from reference.question_answering import answer_question

    path = model_dir(tmp_path, "mpnet/pt/question-answering", 99)
    context = " ".join(f"w{i % 90}" for i in range(0, 300, 7))
    run = ("qa", "--model", str(path), "--question", "w1 w2", "--context", context)
    out = cli(*run, "--top-k", "3", "--max-seq-len", "20", "--doc-stride", "5", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    model = reference.from_pretrained(path, task="question-answering")
    tok = reference.Tokenizer(path)
    want = answer_question(model, tok, "w1 w2", context, top_k=3, max_seq_len=20, doc_stride=5)
    assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in want]
    assert np.allclose([a["score"] for a in got["answers"]], [a["score"] for a in want])
    assert got["answer"] == want[0]["answer"] and len(got["answers"]) == 3
    default = cli(*run, "--json")  # windows of the model's 38 tokens
    assert default.returncode == 0, default.stderr
    text = cli(*run, "--top-k", "2")
    assert text.returncode == 0 and len(text.stdout.strip().splitlines()) == 2, text.stdout
    (tmp_path / "document.txt").write_text(context, encoding="utf-8")
    run_file = ("qa", "--model", str(path), "--question", "w1 w2")
    from_file = cli(*run_file, "--context-file", str(tmp_path / "document.txt"), "--json")
    assert json.loads(from_file.stdout)["answers"] == json.loads(default.stdout)["answers"]
    missing = cli(*run_file, "--context-file", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "nope.txt: cannot be read" in missing.stderr
    bad = cli(*run, "--max-seq-len", "4", "--doc-stride", "1")
    assert bad.returncode == 2 and "which leaves 0 for the context" in bad.stderr, bad.stderr


def test_generate_streams_greedy_tokens_equal_to_the_api(tmp_path):
    path = model_dir(tmp_path, "mpt/hf/causal-lm-heads-3", 64)
    out = cli(
        "generate", "--model", str(path), "--prompt", "w1 w2 w3", "--max-new-tokens", "5", "--json"
    )
    assert out.returncode == 0, out.stderr
    tokens = json.loads(out.stdout)["tokens"]
    import numpy as np

    import reference

    model = reference.from_pretrained(path, task="causal-lm")
    ids = reference.Tokenizer(path).backend.encode("w1 w2 w3", add_special_tokens=False).ids
    assert tokens == model.generate(np.array([ids]), max_new_tokens=5)[0, len(ids) :].tolist()
    text = cli("generate", "--model", str(path), "--prompt", "w1 w2 w3", "--max-new-tokens", "3")
    assert text.returncode == 0 and text.stdout.startswith("w1 w2 w3")


def test_generate_takes_what_the_command_line_leaves_out_from_generation_config_json(tmp_path):
    import numpy as np

    import reference

    path = model_dir(tmp_path, "mpt/hf/causal-lm-heads-3", 64)
    run = lambda *more: cli(  # noqa: E731
        "generate", "--model", str(path), "--prompt", "w1 w2 w3", "--json", *more
    )
    free = json.loads(run("--max-new-tokens", "6").stdout)["tokens"]
    (path / "generation_config.json").write_text(
        json.dumps({"max_new_tokens": 4, "eos_token_id": free[1], "do_sample": True})
    )
    shown = json.loads(cli("inspect", "--model", str(path), "--json").stdout)["generation"]
    assert shown == {"max_new_tokens": 4, "eos_token_id": free[1], "do_sample": True}
    model = reference.from_pretrained(path, task="causal-lm")
    ids = reference.Tokenizer(path).backend.encode("w1 w2 w3", add_special_tokens=False).ids
    sampled = model.generate(np.array([ids]), seed=0)[0, len(ids) :].tolist()
    out = run("--seed", "0")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tokens"] == sampled  # sampling, as the file says
    # greedy, stopping at the file's eos: its second token; the command line's settings win
    assert json.loads(run("--no-sample").stdout)["tokens"] == free[:2]
    assert json.loads(run("--no-sample", "--eos-token-id", "63").stdout)["tokens"] == free[:4]
    assert len(json.loads(run("--no-sample", "--max-new-tokens", "1").stdout)["tokens"]) == 1
    # the penalties, from the command line
    penalised = run("--no-sample", "--repetition-penalty", "1.5", "--no-repeat-ngram-size", "2")
    want = model.generate(
        np.array([ids]), do_sample=False, repetition_penalty=1.5, no_repeat_ngram_size=2
    )[0, len(ids) :].tolist()
    assert json.loads(penalised.stdout)["tokens"] == want
    held = run("--no-sample", "--min-new-tokens", "3")
    assert (
        json.loads(held.stdout)["tokens"]
        == model.generate(np.array([ids]), do_sample=False, min_new_tokens=3)[
            0, len(ids) :
        ].tolist()
    )
    beams = run("--no-sample", "--num-beams", "3")
    assert (
        json.loads(beams.stdout)["tokens"]
        == model.generate(np.array([ids]), do_sample=False, num_beams=3)[0, len(ids) :].tolist()
    )
    forced = run("--no-sample", "--num-beams", "3", "--force-word", "w5 w6")
    word = reference.Tokenizer(path).backend.encode("w5 w6", add_special_tokens=False).ids
    want = model.generate(np.array([ids]), do_sample=False, num_beams=3, force_words_ids=[word])
    assert json.loads(forced.stdout)["tokens"] == want[0, len(ids) :].tolist(), forced.stderr
    guided = run("--no-sample", "--guidance-scale", "1.5", "--negative-prompt", "w7 w8")
    negative = reference.Tokenizer(path).backend.encode("w7 w8", add_special_tokens=False).ids
    want = model.generate(
        np.array([ids]), do_sample=False, guidance_scale=1.5, negative_prompt_ids=[negative]
    )
    assert json.loads(guided.stdout)["tokens"] == want[0, len(ids) :].tolist(), guided.stderr
    looked = run("--no-sample", "--prompt-lookup", "3", "--eos-token-id", "63")
    assert json.loads(looked.stdout)["tokens"] == free[:4], looked.stderr  # greedy's tokens
    with_beams = run("--no-sample", "--prompt-lookup", "3", "--num-beams", "2")
    assert with_beams.returncode == 2 and "greedy decoding or sampling" in with_beams.stderr
    no_beams = run("--no-sample", "--force-word", "w5")
    assert no_beams.returncode == 2 and "--force-word needs beam search" in no_beams.stderr
    shown = cli(
        "generate", "--model", str(path), "--prompt", "w1 w2 w3", "--no-sample", "--num-beams", "2"
    )
    assert shown.returncode == 0 and shown.stdout.startswith("w1 w2 w3"), shown.stderr
    bad = run("--repetition-penalty", "0")
    assert bad.returncode == 2 and "repetition_penalty must be a number above 0" in bad.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("inspect", "--model", "/no/such/dir"), "no config.json"),
        (("generate", "--model", str(GOLDEN / "mpt/hf/s1"), "--prompt", "x"), "no tokenizer.json"),
        (("ner", "--model", str(GOLDEN / "mpt/hf/s1"), "x"), "missing weights .*classifier"),
        (("embed", "--model", str(GOLDEN / "mpnet/pt/base-s1"), "--backend", "cuda", "x"), "cuda"),
        (
            ("embed", "--model", str(GOLDEN / "mpnet/pt/base-s1"), "--input", str(ROOT), "--output",
             "x.npy"),
            "not a regular file",
        ),
        (
            ("qa", "--model", str(GOLDEN / "mpnet/pt/base-s1"), "--question", "q", "--context", "c",
             "--max-answer-len", "0"),
            "max_answer_len must be an integer of at least 1, got 0",
        ),
        (("explain", "buckets", "--out", "x.png", "--num-buckets", "3"), "at least 4"),
        (("explain", "buckets", "--out", "x.png", "--length", "0"), "--length must be at least 1"),
        (("explain", "alibi", "--out", "x.png", "--heads", "0"), "--heads must be at least 1"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_exit_status_2(args, message):
    import re

    out = cli(*args)
    assert out.returncode == 2 and out.stdout == ""
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and re.search(message, lines[0]), out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "what, extra",
    [
        ("buckets", ()),
        ("alibi", ("--heads", "6", "--length", "20")),
        ("attention", ("--text", "w1 w2 w3", "--layer", "1", "--head", "2")),
    ],
)
def test_explain_writes_png_pictures(tmp_path, what, extra):
    pytest.importorskip("matplotlib")
    png = tmp_path / f"{what}.png"
    model = (
        ("--model", str(model_dir(tmp_path, "mpnet/pt/base-right-padding", 99)))
        if what == "attention"
        else ()
    )
    out = cli("explain", what, "--out", str(png), *model, *extra)
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_attention_checks_layer_and_head(tmp_path):
    pytest.importorskip("matplotlib")
    path = model_dir(tmp_path, "mpnet/pt/base-right-padding", 99)
    out = cli(
        "explain",
        "attention",
        "--model",
        str(path),
        "--text",
        "w1",
        "--layer",
        "5",
        "--out",
        str(tmp_path / "a.png"),
    )
    assert out.returncode == 2 and "--layer 5 is outside 0..1" in out.stderr


def test_progress_bar_draws_counts_and_stays_silent_off_a_terminal():
    import io

    from reference.progress import Progress

    stream = io.StringIO()
    with Progress(4, "work", stream=stream, force=True) as bar:
        for _ in range(4):
            bar.update()
    assert "work [" in stream.getvalue() and "4/4" in stream.getvalue()
    quiet = io.StringIO()
    Progress(4, "work", stream=quiet).update()
    assert quiet.getvalue() == ""


def test_embed_max_length_zero_is_refused_not_taken_as_the_default(tmp_path):
    path = model_dir(tmp_path, "mpnet/pt/base-s1", 64)
    out = cli("embed", "--model", str(path), "--max-length", "0", "w1 w2")
    assert out.returncode == 2, out.stderr
    assert "max_length must be an integer of at least 2, got 0" in out.stderr


def test_compile_notice_announces_the_first_compile_and_totals_the_outermost_kernels():
    """A compile (a cache miss) is announced once, on its start; kernels compiled inside another
    count as that one; a call that compiles nothing leaves the stream empty."""
    import io

    numba = pytest.importorskip("numba")

    from reference.backends.compile_notice import CompileNotice

    @numba.njit(cache=False)
    def inner(x):
        return x + 1.0

    @numba.njit(cache=False)
    def outer(x):
        return inner(x) * 2.0

    stream = io.StringIO()
    with CompileNotice(stream):
        assert outer(1.0) == 4.0
        assert outer(2.0) == 6.0  # compiled already: nothing more
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("compiling Numba kernels for this CPU and these input types (once")
    assert re.fullmatch(r"compiled 1 Numba kernel in \d+\.\ds \(later runs load .*\)", lines[1])
    quiet = io.StringIO()
    with CompileNotice(quiet):
        assert outer(3.0) == 8.0
    assert quiet.getvalue() == ""
    inner(1)  # after the block the listener is gone: an int64 compile reaches no stream
    assert quiet.getvalue() == "" and stream.getvalue().count("\n") == 2


def test_generate_text_mode_writes_the_prompt_with_its_first_token_or_alone(tmp_path):
    path = model_dir(tmp_path, "mpt/hf/causal-lm-heads-3", 64)
    for new, backend in ((3, "numba"), (0, "numpy")):
        out = cli(
            "generate", "--model", str(path), "--prompt", "w1 w2 w3",
            "--max-new-tokens", str(new), "--backend", backend,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("w1 w2 w3") and out.stdout.count("w1 w2 w3") == 1, out.stdout
        assert len(out.stdout.split()) == 3 + new, out.stdout


def test_generate_with_q8_weights_matches_the_api_and_refuses_a_model_it_cannot_hold(tmp_path):
    """generate --backend numba --weight-storage q8 (and --kv-cache bf16): the tokens of the API's
    model built the same way; on a model whose width is not a multiple of 32 a one-line error
    naming the reason."""
    import numpy as np
    from conftest import write_checkpoint
    from test_mpt_properties import CONFIG, tiny_mpt

    import reference

    config = {**CONFIG, "d_model": 64, "n_heads": 4, "vocab_size": 64}
    weights = {"transformer." + k: v for k, v in tiny_mpt(**config).state_dict().items()}
    path = write_checkpoint(tmp_path / "mpt-q8", config, weights)
    make_demo_models.write_tokenizer(path, 64)
    args = ("--backend", "numba", "--weight-storage", "q8", "--max-new-tokens", "4", "--json")
    out = cli("generate", "--model", str(path), "--prompt", "w1 w2 w3", *args)
    assert out.returncode == 0, out.stderr
    model = reference.from_pretrained(path, task="causal-lm", backend="numba", weight_storage="q8")
    ids = reference.Tokenizer(path).backend.encode("w1 w2 w3", add_special_tokens=False).ids
    want = model.generate(np.array([ids]), max_new_tokens=4)[0, len(ids) :].tolist()
    assert json.loads(out.stdout)["tokens"] == want
    args_cache = ("--backend", "numba", "--kv-cache", "bf16", "--max-new-tokens", "4", "--json")
    out = cli("generate", "--model", str(path), "--prompt", "w1 w2 w3", *args_cache)
    assert out.returncode == 0, out.stderr
    model = reference.from_pretrained(path, task="causal-lm", backend="numba", kv_cache="bf16")
    want = model.generate(np.array([ids]), max_new_tokens=4)[0, len(ids) :].tolist()
    assert json.loads(out.stdout)["tokens"] == want
    narrow = model_dir(tmp_path, "mpt/hf/causal-lm-heads-3", 64)  # d_model 24
    out = cli("generate", "--model", str(narrow), "--prompt", "w1", *args)
    assert out.returncode != 0 and "multiple of 32" in out.stderr
    assert "Traceback" not in out.stderr


def test_make_random_mpt_writes_a_checkpoint_that_generates_from_the_command_line(tmp_path):
    """tools/make_random_mpt.py (a model of any size, to try loading and decoding at scale): its
    bf16 file reads back as the float32 weights truncated, and `generate` runs on it."""
    import make_random_mpt
    import numpy as np

    from reference.checkpoint import read_weights

    path = tmp_path / "mpt-random"
    count = make_random_mpt.write(path, d_model=64, layers=2, heads=4, vocab=96)
    weights = read_weights(path)
    assert sum(w.size for w in weights.values()) == count == 2 * 12 * 64 * 64 + 96 * 64 + 5 * 64
    wqkv = weights["transformer.blocks.0.attn.Wqkv.weight"]
    assert wqkv.shape == (192, 64) and 0.015 < wqkv.std() < 0.025
    assert np.all(wqkv.view(np.uint32) & 0xFFFF == 0)  # bf16 values
    out = cli("generate", "--model", str(path), "--prompt", "w1 w2", "--max-new-tokens", "3")
    assert out.returncode == 0 and len(out.stdout.split()) == 5, out.stderr


def test_a_forced_word_is_either_spelling_where_a_byte_level_bpe_tells_them_apart():
    from types import SimpleNamespace

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from reference.cli import spellings

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        ["Paris is nice", "we met in Paris", "Paris again"] * 20,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tok = SimpleNamespace(backend=bpe)
    start, spaced = (bpe.encode(w, add_special_tokens=False).ids for w in ("Paris", " Paris"))
    assert start != spaced  # "Paris" and "ĠParis" are different tokens
    assert spellings(tok, "Paris") == [start, spaced]  # either one, as a disjunctive word
    assert spellings(tok, " Paris") == spaced


def chat_model(tmp_path, markers=False):
    """A random MPT of 64 tokens and 128 positions; with ``markers`` its tokenizer's last two ids
    are ChatML's <|im_start|> and <|im_end|>, as special tokens."""
    import make_random_mpt
    from tokenizers import Tokenizer

    path = tmp_path / "chat"
    make_random_mpt.write(path, d_model=32, layers=2, heads=4, vocab=64, max_seq_len=128)
    if markers:
        make_demo_models.write_tokenizer(path, 62)
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
        tok.save(str(path / "tokenizer.json"))
    return path


def run_chat(monkeypatch, capsys, path, turns, *flags):
    """`chat` in this process on ``turns`` (stdin), every generate() call it makes recorded:
    -> (its stdout, [(input_ids, the given cache, sequences)])."""
    import io

    from reference import cli
    from reference.generation import GenerationMixin

    calls, real = [], GenerationMixin.generate

    def spy(self, input_ids, **kw):
        out = real(self, input_ids, **kw)
        if "streamer" in kw:  # the command's calls, not the test's own
            calls.append((input_ids, kw["past_key_values"], out.sequences))
        return out

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    monkeypatch.setattr(sys, "stdin", io.StringIO(turns))
    assert cli.main(["chat", "--model", str(path), *flags]) == 0
    return capsys.readouterr().out, calls


def test_chat_goes_on_from_the_last_turns_cache_as_generate_over_the_whole_text(
    tmp_path, monkeypatch, capsys
):
    """Each turn's call gets the text so far plus the turn (plain: on a line of its own) and the
    cache the last call returned; its reply is the tokens generate() writes given the whole text
    without a cache, and --json prints them a turn a line (blank lines are not turns)."""
    import numpy as np

    import reference

    path = chat_model(tmp_path)
    out, calls = run_chat(
        monkeypatch,
        capsys,
        path,
        "w1 w2 w3\nw4 w5\n\nw6 w7 w8\n",
        "--max-new-tokens",
        "4",
        "--json",
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["turn"] for r in records] == ["w1 w2 w3", "w4 w5", "w6 w7 w8"] and len(calls) == 3
    model = reference.from_pretrained(path, task="causal-lm")
    for i, ((ids, past, sequences), record) in enumerate(zip(calls, records)):
        assert (past is None) == (i == 0)
        if i:
            previous = calls[i - 1][2]
            np.testing.assert_array_equal(ids[:, : previous.shape[1]], previous)
            assert past[0][0].shape[2] == previous.shape[1] - 1  # all but the last token
        whole = model.generate(ids, max_new_tokens=4)  # no cache: the whole text runs
        np.testing.assert_array_equal(sequences, whole)
        assert record["tokens"] == whole[0, ids.shape[1] :].tolist()
    # without --json each reply is streamed: the text after the prompt's, spaced as in the whole
    text, again = run_chat(monkeypatch, capsys, path, "w1 w2 w3\nw4 w5\n", "--max-new-tokens", "4")
    tok = reference.Tokenizer(str(path))
    want = [tok.decode(seq[0])[len(tok.decode(ids[0])) :] for ids, _, seq in again]
    assert text.splitlines() == want and all(line.startswith(" w") for line in want)


def test_chat_writes_chatml_turns_where_the_tokenizer_has_the_markers(
    tmp_path, monkeypatch, capsys
):
    """With ChatML's markers in the tokenizer: the system message, each turn in its markers and
    the assistant's opening; a reply ends at <|im_end|> (an eos id), and one that
    --max-new-tokens cut off is closed before the next turn."""
    import reference

    path = chat_model(tmp_path, markers=True)
    _, calls = run_chat(
        monkeypatch,
        capsys,
        path,
        "w1 w2\nw3\n",
        "--max-new-tokens",
        "3",
        "--system",
        "w9",
        "--json",
    )
    tok = reference.Tokenizer(str(path))
    (first, _, replied), (second, _, _) = calls
    reply = tok.decode(replied[0, first.shape[1] :], skip_special_tokens=False)
    closed = reply.endswith("<|im_end|>")
    said = tok.decode(second[0], skip_special_tokens=False)
    want = (  # the demo vocabulary spells system, user and assistant as [UNK]
        "<|im_start|> [UNK] w9 <|im_end|> <|im_start|> [UNK] w1 w2 <|im_end|> <|im_start|>"
        f" [UNK] {reply}{'' if closed else ' <|im_end|>'} <|im_start|> [UNK] w3 <|im_end|>"
        " <|im_start|> [UNK]"
    )
    assert " ".join(said.split()) == " ".join(want.split())  # WordPiece drops the newlines
    bad = cli("chat", "--model", str(chat_model(tmp_path / "plain")), "--template", "chatml")
    assert bad.returncode == 2 and "needs the tokens <|im_start|> and <|im_end|>" in bad.stderr
    bad = cli("chat", "--model", str(path), "--template", "plain", "--system", "w1")
    assert bad.returncode == 2 and "--system needs the chatml template" in bad.stderr


def readme_sessions():
    """The command-line section's examples: (command, shown lines) for each "$ " line."""
    text = (ROOT / "README.md").read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    sessions = []
    for block in text.split("```")[1::2]:
        for line in block.strip("\n").splitlines():
            if line.startswith("$ "):
                sessions.append((line[2:], []))
            elif sessions:
                sessions[-1][1].append(line)
    return sessions


def test_the_readme_command_line_examples_print_what_they_show(tmp_path):
    """Each example runs (the demo checkpoints written first, as the README says) and prints its
    shown lines in order, "..." standing for what the README leaves out; an "error:" line is the
    command's standard error."""
    import re
    import shlex

    sessions = readme_sessions()
    assert len(sessions) >= 8 and sessions[0][0].startswith("python tools/make_demo_models.py")
    python = shlex.quote(sys.executable)
    for command, shown in sessions:
        line = command.replace("python tools/", f"{python} {ROOT}/tools/")
        line = line.replace("python -m reference", f"{python} -m reference")
        run = subprocess.run(line, shell=True, capture_output=True, text=True, cwd=tmp_path)
        out = iter((run.stdout + run.stderr).splitlines())
        for want in shown:
            pattern = ".*".join(re.escape(part) for part in want.split("..."))
            assert any(re.fullmatch(pattern, got) for got in out), (command, want, run.stdout)
