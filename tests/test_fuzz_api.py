"""Random shapes, dtypes and values at the public entry points: only ValueError or TypeError come
out, and a call that succeeds returns outputs of the documented shapes.

The values are drawn to hit the edges a user can reach: negative and huge integers, floats where ids
belong, strings, empty and ragged arrays, NaN, wrong ranks, and past_key_values of the wrong
structure. Each public model call, generate(), the tokenizer and the command line are driven this
way; the fast backends get the same inputs, so no kernel ever sees an index the boundary checks did
not vet.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_model
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_mpt_properties import CONFIG as MPT_CONFIG
from test_mpt_properties import tiny_mpt

from reference.constraints import DisjunctiveConstraint, PhrasalConstraint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

DOCUMENTED = (ValueError, TypeError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
B, S = 2, 5


def _numba_available():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = ["numpy"] + (["numba"] if _numba_available() else [])


def mostly(valid, hostile):
    """Draws from ``valid`` four times in five, so that most calls get past their first check."""
    return st.integers(0, 4).flatmap(lambda n: hostile if n == 0 else valid)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.just(b"\x00"),
    st.just(object()),
)


@st.composite
def arrays(draw):
    """An array-like of random rank, size and dtype, or a list, or a scalar."""
    kind = draw(
        st.sampled_from(["int", "float", "bool", "str", "object", "list", "scalar", "near"])
    )
    if kind == "scalar":
        return draw(scalars)
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=4)))
    if kind == "near":  # the right shape, values around the valid range
        shape = draw(st.sampled_from([(B, S), (B, S, S), (B, 1, S, S), (S,), (B,)]))
        return np.asarray(
            draw(
                st.lists(
                    st.integers(-3, 60), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))
                )
            )
        ).reshape(shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "int":
        dtype = draw(st.sampled_from([np.int8, np.int32, np.int64, np.uint64]))
        info = np.iinfo(dtype)
        return rng.integers(
            max(info.min, -(2**62)), min(info.max, 2**62), shape, dtype=dtype, endpoint=True
        )
    if kind == "float":
        x = rng.normal(0, draw(st.sampled_from([1.0, 1e30])), shape)
        if x.size and draw(st.booleans()):
            x.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        with np.errstate(over="ignore"):
            return x.astype(draw(st.sampled_from([np.float16, np.float32, np.float64])))
    if kind == "bool":
        return rng.random(shape) < 0.5
    if kind == "str":
        return np.full(shape, "a")
    if kind == "object":
        return np.empty(shape, dtype=object)
    return draw(st.lists(st.one_of(st.integers(-5, 60), st.floats(), st.none()), max_size=6))


def valid_ids(vocab):
    return np.random.default_rng(0).integers(0, vocab, (B, S))


def valid_inputs(task, vocab, num_labels=3):
    """Inputs a model of this task accepts; the tests then break one or two of them."""
    inputs = {"input_ids": valid_ids(vocab), "attention_mask": np.ones((B, S), np.int64)}
    if task == "token-classification":
        inputs["labels"] = np.zeros((B, S), np.int64)
    elif task == "sequence-classification":
        inputs["labels"] = np.ones(B, np.int64)
    elif task == "question-answering":
        inputs["start_positions"], inputs["end_positions"] = np.array([0, 1]), np.array([2, 3])
    return inputs


def call_quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # NaN inputs legitimately give NaN outputs; that is not an error
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)


def assert_only_documented_errors(fn, *args, names=(), **kwargs):
    """Call fn; a ValueError or TypeError must name one of ``names`` (the arguments it was given: a
    mismatch between two of them may be reported under either name), never a NumPy internal."""
    try:
        out = call_quietly(fn, *args, **kwargs)
    except DOCUMENTED as e:
        message = str(e)
        event(f"{type(e).__name__}: {message[:40]}")
        assert not names or any(n in message for n in names), (
            f"{type(e).__name__}({message!r}) does not name the broken argument(s) {list(names)}"
        )
        return None
    event("ran")
    return out


MPNET_INPUTS = [
    "input_ids",
    "attention_mask",
    "position_ids",
    "head_mask",
    "inputs_embeds",
    "labels",
    "start_positions",
    "end_positions",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "training",
]
MPNET_MODELS = {
    (task, profile, backend): tiny_model(
        task=task,
        profile=profile,
        backend=backend,
        **({"num_labels": 2} if task == "question-answering" else {}),
    )
    for task in ["base", "token-classification", "question-answering", "sequence-classification"]
    for profile in ["pt", "tf"]
    for backend in BACKENDS
}
broken = mostly(
    st.dictionaries(st.sampled_from(MPNET_INPUTS), arrays(), max_size=1),
    st.dictionaries(st.sampled_from(MPNET_INPUTS), arrays(), max_size=3),
)


@FUZZ
@given(st.sampled_from(sorted(MPNET_MODELS)), broken)
def test_mpnet_calls_raise_only_documented_errors(key, changes):
    model = MPNET_MODELS[key]
    inputs = valid_inputs(key[0], 40)
    out = assert_only_documented_errors(model, **{**inputs, **changes}, names={**inputs, **changes})
    if out is not None and not isinstance(out, tuple):
        lead = (
            out.to_tuple()[1 if out.loss is not None else 0]
            if hasattr(out, "loss")
            else out.last_hidden_state
        )
        assert lead.shape[0] == B


MPT_INPUTS = [
    "input_ids",
    "attention_mask",
    "inputs_embeds",
    "labels",
    "past_key_values",
    "start_positions",
    "end_positions",
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "sequence_id",
    "prefix_mask",
]
MPT_MODELS = {
    (task, backend): tiny_mpt(task=task, backend=backend, pad_token_id=0)
    for task in [
        "causal-lm",
        "sequence-classification",
        "token-classification",
        "question-answering",
    ]
    for backend in BACKENDS
}


@st.composite
def pasts(draw):
    """Past key/values: valid, or broken in one of the ways a caller can break them."""
    L, H, D = (
        MPT_CONFIG["n_layers"],
        MPT_CONFIG["n_heads"],
        MPT_CONFIG["d_model"] // MPT_CONFIG["n_heads"],
    )
    P = draw(st.integers(0, 20))
    pair = (np.zeros((B, H, P, D), np.float32), np.zeros((B, H, P, D), np.float32))
    how = draw(st.sampled_from(["valid", "short", "pair", "shape", "ragged", "array", "nan"]))
    if how == "short":
        return (pair,) * (L - 1)
    if how == "pair":
        return (pair[:1],) * L
    if how == "shape":
        return ((pair[0][:, :1], pair[1]),) * L
    if how == "ragged":
        return (pair, (np.zeros((B, H, P + 1, D)), np.zeros((B, H, P + 1, D))))
    if how == "array":
        return draw(arrays())
    if how == "nan":
        return ((np.full((B, H, P, D), np.nan), pair[1]),) * L
    return (pair,) * L


@FUZZ
@given(
    st.sampled_from(sorted(MPT_MODELS)),
    mostly(
        st.dictionaries(st.sampled_from(MPT_INPUTS), arrays(), max_size=1),
        st.dictionaries(st.sampled_from(MPT_INPUTS), arrays(), max_size=3),
    ),
    st.one_of(st.none(), pasts()),
)
def test_mpt_calls_raise_only_documented_errors(key, changes, past):
    model = MPT_MODELS[key]
    inputs = valid_inputs(key[0], MPT_CONFIG["vocab_size"])
    if past is not None:
        changes["past_key_values"] = past
    if "past_key_values" in changes and "attention_mask" not in changes:
        inputs.pop("attention_mask")  # it would have to cover the past too
    out = assert_only_documented_errors(
        model, **{**inputs, **changes}, names=[*inputs, *changes, "max_seq_len"]
    )
    if out is not None and not isinstance(out, tuple) and getattr(out, "logits", None) is not None:
        assert out.logits.shape[0] == B


TOKEN_LISTS = st.lists(st.integers(0, 49), max_size=3)
BAD_TOKEN_LISTS = st.lists(st.one_of(st.integers(-3, 60), scalars), max_size=3)
PHRASES = st.lists(st.integers(0, 49), min_size=1, max_size=3)
GENERATE_ARGS = st.fixed_dictionaries(
    {},
    optional={
        "attention_mask": mostly(st.just(np.ones((B, S), np.int64)), arrays()),
        "max_new_tokens": mostly(st.integers(0, 15), st.one_of(st.integers(-3, 30), scalars)),
        "max_length": mostly(st.integers(S, 20), st.one_of(st.integers(-3, 30), scalars)),
        "do_sample": mostly(st.booleans(), scalars),
        "temperature": mostly(st.floats(0.1, 3), st.one_of(st.floats(-2, 3), scalars)),
        "top_k": mostly(st.integers(0, 80), scalars),
        "top_p": mostly(st.floats(0.05, 1), st.one_of(st.floats(-1, 2), scalars)),
        "seed": mostly(st.integers(0, 2**64), st.one_of(st.integers(-3, 2**70), scalars)),
        "eos_token_id": mostly(
            st.one_of(st.integers(0, 49), st.lists(st.integers(0, 49), max_size=3)),
            st.one_of(st.integers(-3, 60), st.lists(st.integers(-3, 60), max_size=3), scalars),
        ),
        "pad_token_id": mostly(st.integers(0, 49), st.one_of(st.integers(-3, 60), scalars)),
        "repetition_penalty": mostly(st.floats(0.5, 2), st.one_of(st.floats(-1, 3), scalars)),
        "encoder_repetition_penalty": mostly(
            st.floats(0.5, 2), st.one_of(st.floats(-1, 3), scalars)
        ),
        "no_repeat_ngram_size": mostly(st.integers(0, 4), st.one_of(st.integers(-2, 8), scalars)),
        "min_length": mostly(st.integers(0, 12), st.one_of(st.integers(-2, 30), scalars)),
        "min_new_tokens": mostly(st.integers(0, 6), st.one_of(st.integers(-2, 30), scalars)),
        "suppress_tokens": mostly(TOKEN_LISTS, BAD_TOKEN_LISTS),
        "begin_suppress_tokens": mostly(TOKEN_LISTS, BAD_TOKEN_LISTS),
        "bad_words_ids": mostly(
            st.lists(st.lists(st.integers(0, 49), min_size=1, max_size=3), min_size=1, max_size=3),
            st.one_of(st.lists(BAD_TOKEN_LISTS, max_size=3), scalars),
        ),
        "forced_bos_token_id": mostly(st.integers(0, 49), st.one_of(st.integers(-3, 60), scalars)),
        "forced_eos_token_id": mostly(
            st.one_of(st.integers(0, 49), TOKEN_LISTS), st.one_of(BAD_TOKEN_LISTS, scalars)
        ),
        "remove_invalid_values": mostly(st.booleans(), scalars),
        "exponential_decay_length_penalty": mostly(
            st.tuples(st.integers(0, 5), st.floats(0.5, 3)),
            st.one_of(st.lists(st.one_of(st.integers(-2, 5), scalars), max_size=3), scalars),
        ),
        "typical_p": mostly(st.floats(0.05, 1), st.one_of(st.floats(-1, 2), scalars)),
        "epsilon_cutoff": mostly(st.floats(0, 0.5), st.one_of(st.floats(-1, 2), scalars)),
        "eta_cutoff": mostly(st.floats(0, 0.5), st.one_of(st.floats(-1, 2), scalars)),
        "num_return_sequences": mostly(st.integers(1, 3), st.one_of(st.integers(-1, 4), scalars)),
        "max_time": mostly(st.none() | st.floats(0, 5), st.one_of(st.floats(-1, 1), scalars)),
        "num_beams": mostly(st.integers(1, 4), st.one_of(st.integers(-1, 6), scalars)),
        "length_penalty": mostly(st.floats(-2, 2), scalars),
        "early_stopping": mostly(st.sampled_from([True, False, "never"]), scalars),
        "num_beam_groups": mostly(st.integers(1, 2), st.one_of(st.integers(-1, 5), scalars)),
        "diversity_penalty": mostly(st.floats(0, 2), scalars),
        "forced_decoder_ids": mostly(
            st.lists(st.tuples(st.integers(0, 30), st.integers(0, 49)), max_size=3),
            st.one_of(st.lists(st.lists(st.integers(-3, 60), max_size=3), max_size=3), scalars),
        ),
        "sequence_bias": mostly(
            st.dictionaries(
                st.lists(st.integers(0, 49), min_size=1, max_size=3).map(tuple),
                st.floats(-5, 5),
                min_size=1,
                max_size=3,
            ),
            st.one_of(st.dictionaries(st.text(max_size=3), scalars, max_size=2), scalars),
        ),
        "guidance_scale": mostly(st.none() | st.floats(0, 3), scalars),
        "penalty_alpha": mostly(st.none() | st.floats(0, 1), st.one_of(st.floats(-1, 2), scalars)),
        "use_cache": mostly(st.booleans(), scalars),
        "renormalize_logits": mostly(st.booleans(), scalars),
        "output_scores": mostly(st.booleans(), scalars),
        "prompt_lookup_num_tokens": mostly(st.none() | st.integers(1, 5), scalars),
        "return_dict_in_generate": mostly(st.booleans(), scalars),
        "negative_prompt_ids": mostly(
            st.none() | st.integers(1, 3).map(lambda n: valid_ids(50)[:, :n]), arrays()
        ),
        "negative_prompt_attention_mask": mostly(st.none(), arrays()),
        "force_words_ids": mostly(
            st.none() | st.lists(st.one_of(PHRASES, st.lists(PHRASES, min_size=1, max_size=3))),
            st.one_of(st.lists(st.one_of(BAD_TOKEN_LISTS, scalars), max_size=3), scalars),
        ),
        "constraints": mostly(
            st.none()
            | st.lists(
                st.one_of(
                    st.builds(PhrasalConstraint, PHRASES),
                    st.builds(DisjunctiveConstraint, st.lists(PHRASES, min_size=1, max_size=1)),
                ),
                min_size=1,
                max_size=2,
            ),
            st.one_of(st.lists(scalars, max_size=2), scalars),
        ),
    },
)


@FUZZ
@given(st.sampled_from(BACKENDS), mostly(st.just(None), arrays()), GENERATE_ARGS)
def test_generate_raises_only_documented_errors(backend, ids, kwargs):
    model = MPT_MODELS[("causal-lm", backend)]
    ids = valid_ids(MPT_CONFIG["vocab_size"]) if ids is None else ids
    out = assert_only_documented_errors(
        model.generate, ids, **kwargs, names=["input_ids", "max_new_tokens", "max_seq_len", *kwargs]
    )
    if out is not None:
        out = getattr(out, "sequences", out)  # return_dict_in_generate: the output object
        assert out.dtype == np.int64 and out.ndim == 2
        assert out.min() >= 0 and out.max() < MPT_CONFIG["vocab_size"], (
            "generated an id outside the vocabulary"
        )


CLI_COMMANDS = {  # a command with arguments it accepts; the test appends random words
    "inspect": [],
    "embed": ["w1 w2", "w3"],
    "ner": ["w1 w2 w3"],
    "qa": ["--question", "w1", "--context", "w2 w3"],
    "generate": ["--prompt", "w1 w2", "--max-new-tokens", "2"],
    "fill-mask": ["w1 <mask> w2"],
    "classify": ["w1 w2"],
    "explain": ["buckets", "--out", "OUT"],
    "nope": [],
}
CLI_WORDS = [
    "--json",
    "--backend",
    "numba",
    "cuda",
    "--profile",
    "tf",
    "hf",
    "mosaic",
    "--max-new-tokens",
    "-1",
    "0",
    "3",
    "nope",
    "--prompt",
    "w1 w2",
    "",
    "/nonexistent",
    "--text",
    "--question",
    "--context",
    "--context-file",
    "--seed",
    "--temperature",
    "--top-k",
    "--top-p",
    "--sample",
    "--eos-token-id",
    "--max-answer-tokens",
    "--max-seq-len",
    "--doc-stride",
    "--stride",
    "--aggregation",
    "first",
    "--ignore-labels",
    "--allow-no-answer",
    "--pair",
    "--function",
    "--targets",
    "--truncate",
    "--candidate-labels",
    "--multi-label",
    "--template",
    "--layer",
    "--head",
    "--length",
    "--num-buckets",
    "--heads",
    "buckets",
    "alibi",
    "attention",
    "--",
    "-x",
    "99999",
]


@pytest.fixture(scope="module")
def cli_models(tmp_path_factory):
    import make_demo_models

    where = tmp_path_factory.mktemp("cli")
    return [
        str(make_demo_models.make(case, vocab, where / case.replace("/", "_")))
        for case, vocab in (("mpnet/pt/token-classification", 99), ("mpt/hf/causal-lm-heads-3", 64))
    ]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(sorted(CLI_COMMANDS)),
    st.integers(0, 2),
    st.lists(st.sampled_from(CLI_WORDS), max_size=4),
)
def test_command_line_exits_cleanly_on_any_argument_list(cli_models, command, model, words):
    """Exit 0, or exit 2 with a one-line error (argparse usage errors also exit 2); never a
    traceback."""
    from reference import cli

    out = str(Path(cli_models[0]).parent / "plot.png")
    argv = (
        [command]
        + [out if w == "OUT" else w for w in CLI_COMMANDS[command]]
        + (["--model", cli_models[model]] if model < 2 else [])
        + words
    )
    stderr = io.StringIO()
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(stderr),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code
    event(f"exit {code}")
    assert code in (0, 2), f"exit status {code} for {argv}: {stderr.getvalue()[-400:]}"
    assert "Traceback" not in stderr.getvalue(), stderr.getvalue()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pad_and_eos_outside_the_vocabulary_are_refused_before_any_step(backend):
    model = MPT_MODELS[("causal-lm", backend)]
    with pytest.raises(ValueError, match="pad_token_id 99 is outside the vocabulary"):
        model.generate(valid_ids(50), max_new_tokens=3, pad_token_id=99, eos_token_id=0)
    with pytest.raises(ValueError, match="eos_token_id -1 is outside the vocabulary"):
        model.generate(valid_ids(50), max_new_tokens=3, eos_token_id=-1)


@pytest.fixture(scope="module")
def tokenizer(cli_models):
    from reference import Tokenizer

    return Tokenizer(cli_models[0])


texts = st.one_of(
    st.text(max_size=40), st.lists(st.text(max_size=20), max_size=4), scalars, arrays()
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts,
    st.one_of(st.none(), texts),
    st.one_of(st.lists(st.integers(-5, 120), max_size=8), arrays()),
)
def test_tokenizer_raises_only_documented_errors(tokenizer, text, pairs, ids):
    out = assert_only_documented_errors(tokenizer.encode, text, pairs, names=["texts", "pairs"])
    if out is not None:
        assert out["input_ids"].shape == out["attention_mask"].shape and out["input_ids"].ndim == 2
    decoded = assert_only_documented_errors(tokenizer.decode, ids, names=["ids"])
    assert decoded is None or isinstance(decoded, str)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200))
def test_a_damaged_tokenizer_file_is_a_value_error(tmp_path, data):
    from reference import Tokenizer

    (tmp_path / "tokenizer.json").write_bytes(data)
    with pytest.raises(ValueError, match="tokenizer.json"):
        Tokenizer(tmp_path)


PIPELINE_TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.sampled_from(["w1", "w7s", "w30", ",", "[UNK]", "<s>", "<mask>", "é", " "]), max_size=60
    ).map(" ".join),
)
SMALL_INT = st.one_of(st.integers(-3, 40), st.none(), st.just(True), st.just(2.5), st.just("4"))


@pytest.fixture(scope="module")
def pipeline_models():
    import reference
    from conformance.golden import golden_root

    folder = golden_root() / "pipelines"
    load = reference.from_pretrained
    return {
        "qa": load(golden_root() / "mpnet/pt/question-answering", task="question-answering"),
        "ner": load(golden_root() / "mpnet/pt/token-classification", task="token-classification"),
        "tok": reference.Tokenizer(str(folder / "tokenizer.json")),
    }


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    PIPELINE_TEXT,
    PIPELINE_TEXT,
    mostly(st.integers(1, 6), SMALL_INT),
    mostly(st.integers(6, 38), SMALL_INT),
    mostly(st.integers(0, 12), SMALL_INT),
    mostly(st.integers(1, 8), SMALL_INT),
)
def test_pipelines_raise_only_documented_errors(pipeline_models, question, text, a, b, c, d):
    """answer_question and find_entities on any text and any window settings: answers that are
    their context's slice and entities whose offsets lie in the text, or a ValueError or
    TypeError; never an error from the tokenizers library or a kernel."""
    from reference.question_answering import answer_question
    from reference.token_classification import AGGREGATIONS, find_entities

    qa, ner, tok = pipeline_models["qa"], pipeline_models["ner"], pipeline_models["tok"]
    try:
        answers = answer_question(
            qa, tok, question, text, top_k=a, max_seq_len=b, doc_stride=c, max_answer_len=d
        )
        event("answered")
        for answer in answers:  # offsets past the context: a "<s>" in the question, as upstream
            assert (
                0 <= answer["start"] and text[answer["start"] : answer["end"]] == answer["answer"]
            )
    except DOCUMENTED as e:
        event(f"qa refused: {type(e).__name__}")
    aggregation = AGGREGATIONS[abs(hash(text)) % len(AGGREGATIONS)]
    try:
        entities = find_entities(ner, tok, text, aggregation, stride=c, model_max_length=b)
        event("entities")
        for entity in entities:
            assert 0 <= entity["start"] <= entity["end"] <= len(text)
            assert 0 < entity["score"] <= 1
    except DOCUMENTED as e:
        event(f"ner refused: {type(e).__name__}")
