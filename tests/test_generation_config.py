"""generate()'s settings from a checkpoint: generation_config.json and config.json, chosen as
transformers 4.37.2 chooses them (the golden cases mpt/hf/generate-generation-config* check the
tokens against upstream; these tests check the rules, the overrides and the refusals)."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mpt_properties import CONFIG, tiny_mpt

import reference
from conformance.golden import iter_cases
from conformance.ops import check_op_case
from reference import mpt_model
from reference.checkpoint import CheckpointError
from reference.generation import (
    contrastive_choice,
    generation_settings,
    nucleus_removed,
    process_logits,
    top_indices,
    warp_logits,
)
from reference.ops import log_softmax, softmax
from reference.precision import round_to_bf16

PROMPT = np.array([[3, 14, 15, 9], [2, 6, 5, 35]])


def test_the_file_rules_unless_it_is_marked_derived_and_config_json_sets_generation():
    config = {"eos_token_id": 7, "pad_token_id": 1}
    file = {"eos_token_id": [2, 4], "max_new_tokens": 5, "top_k": 0}
    # no file: config.json's eos and pad, GenerationConfig's defaults for the rest
    derived = generation_settings(config)
    assert (derived["eos_token_id"], derived["pad_token_id"], derived["max_length"]) == (7, 1, 20)
    assert derived["max_new_tokens"] is None and derived["top_k"] == 50
    # a file of its own: its settings, config.json's eos and pad not consulted
    own = generation_settings(config, file)
    assert own["eos_token_id"] == [2, 4] and own["pad_token_id"] is None
    assert own["max_new_tokens"] == 5 and own["top_k"] == 0
    # marked as derived, config.json without generation parameters: the file as it is
    marked = {**file, "_from_model_config": True}
    assert generation_settings(config, marked) == own
    # marked as derived, config.json with one (any of upstream's list): config.json instead
    for extra in ({"max_length": 30}, {"do_sample": True}, {"repetition_penalty": 1.1}):
        again = generation_settings({**config, **extra}, marked)
        assert again["eos_token_id"] == 7 and again["max_new_tokens"] is None, extra
    # unmarked: config.json's generation parameters do not matter
    assert generation_settings({**config, "max_length": 30}, file) == own


SEED = 3  # a tiny model whose greedy tokens vary: row 0's third new one is not among row 1's


def with_settings(file, **config):
    """The tiny MPT with a checkpoint's generation settings, as from_pretrained would give it."""
    model = tiny_mpt(seed=SEED, **config)
    model.generation_config = generation_settings({**CONFIG, **config}, file)
    return model


def test_arguments_given_override_the_settings_none_included():
    free = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=8)
    assert free[0, 6] not in free[1, 4:] and free[0, 6] not in free[0, 4:6]
    early = int(free[0, 6])  # row 0's third new token
    model = with_settings({"eos_token_id": early, "max_new_tokens": 8, "pad_token_id": 0})
    stopped = model.generate(PROMPT)
    assert stopped.shape[1] <= free.shape[1]
    assert (stopped[0, 7:] == 0).all() and stopped[0, 6] == early  # row 0 stopped and padded
    # eos_token_id=None given: no eos, as a keyword argument of transformers' generate() does
    np.testing.assert_array_equal(model.generate(PROMPT, eos_token_id=None), free)
    # max_new_tokens from the settings wins over max_length given (upstream warns and does so)
    assert model.generate(PROMPT, eos_token_id=None, max_length=6).shape == (2, 12)
    assert model.generate(PROMPT, eos_token_id=None, max_new_tokens=3).shape == (2, 7)
    # streaming takes the same settings
    streamed = np.stack(list(model.stream(PROMPT)), axis=1)
    np.testing.assert_array_equal(streamed, stopped[:, 4:])


def test_sampling_settings_from_the_checkpoint_equal_the_same_arguments():
    file = {"do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.9, "max_new_tokens": 6}
    model = with_settings(file)
    want = tiny_mpt(seed=SEED).generate(
        PROMPT, max_new_tokens=6, do_sample=True, temperature=0.7, top_k=5, top_p=0.9, seed=4
    )
    np.testing.assert_array_equal(model.generate(PROMPT, seed=4), want)
    greedy = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=6)
    np.testing.assert_array_equal(model.generate(PROMPT, do_sample=False), greedy)


def test_forced_words_from_the_checkpoint_equal_the_same_arguments_and_warn_nothing():
    file = {"force_words_ids": [[3, 4], [[9], [10, 11]]], "num_beams": 3, "max_new_tokens": 5}
    want = tiny_mpt(seed=SEED).generate(PROMPT, **file)
    np.testing.assert_array_equal(with_settings(file).generate(PROMPT), want)
    with pytest.raises(ValueError, match="constraints must be a list of Constraint objects"):
        with_settings({"constraints": [[3]]})  # what a JSON file would hold: no objects
    quiet = with_settings(
        {"eos_token_id": 3, "repetition_penalty": 1.3, "min_new_tokens": 1, "max_new_tokens": 2}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.generate(PROMPT)


def checkpoint(tmp_path, generation):
    """A tiny MPT directory with generation_config.json holding ``generation`` (text or dict)."""
    from conftest import write_checkpoint

    c = mpt_model.MPTConfig.from_dict(CONFIG)
    rng = np.random.default_rng(0)
    weights = {
        f"transformer.{k}" if not k.startswith("lm_head") else k: rng.normal(0, 0.3, s).astype(
            np.float32
        )
        for k, s in mpt_model.param_shapes(c, "causal-lm", None).items()
    }
    path = write_checkpoint(tmp_path / "mpt", CONFIG, weights)
    text = generation if isinstance(generation, str) else json.dumps(generation)
    (path / "generation_config.json").write_text(text)
    return path


def test_from_pretrained_reads_generation_config_json_for_a_generating_model(tmp_path):
    path = checkpoint(tmp_path, {"max_new_tokens": 3, "eos_token_id": [1, 2]})
    model = reference.from_pretrained(path, task="causal-lm")
    assert model.generation_config["max_new_tokens"] == 3
    assert model.generation_config["eos_token_id"] == [1, 2]
    assert model.generate(PROMPT, eos_token_id=None).shape == (2, 7)
    # a model that does not generate does not read it (a broken file does not stop it loading)
    (path / "generation_config.json").write_text("{not json")
    reference.from_pretrained(path, task="base")


@pytest.mark.parametrize(
    "generation, message",
    [
        ("{not json", "generation_config.json: not valid JSON"),
        ("[1, 2]", "generation_config.json: expected a JSON object"),
        ({"temperature": "hot"}, "generation_config.json: temperature must be a number"),
        ({"eos_token_id": [1, "a"]}, "generation_config.json: eos_token_id must be a token id"),
        ({"pad_token_id": 1.5}, "generation_config.json: pad_token_id must be a token id"),
        ({"max_new_tokens": -1}, "generation_config.json: max_new_tokens must be a non-negative"),
        ({"max_length": True}, "generation_config.json: max_length must be a non-negative"),
        ({"do_sample": "yes"}, "generation_config.json: do_sample must be true or false"),
        ({"top_k": 2.5}, "generation_config.json: top_k must be a non-negative integer"),
    ],
)
def test_a_bad_generation_config_json_is_refused_naming_the_file(tmp_path, generation, message):
    path = checkpoint(tmp_path, generation)
    with pytest.raises(CheckpointError, match=message) as info:
        reference.from_pretrained(path, task="causal-lm")
    assert str(path) in str(info.value)


def test_an_eos_outside_the_vocabulary_is_refused_when_generate_uses_it():
    model = with_settings({"eos_token_id": [3, CONFIG["vocab_size"]]})
    with pytest.raises(ValueError, match="eos_token_id 50 is outside the vocabulary"):
        model.generate(PROMPT)


@pytest.mark.parametrize(
    "argument, message",
    [
        ({"repetition_penalty": 0}, "repetition_penalty must be a number above 0, got 0"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be a non-negative integer"),
        ({"min_new_tokens": 1.5}, "min_new_tokens must be a non-negative integer or null"),
        ({"suppress_tokens": 3}, "suppress_tokens must be a list of token ids or null"),
        ({"suppress_tokens": [3, 50]}, "suppress_tokens 50 is outside the vocabulary"),
        ({"begin_suppress_tokens": [-1]}, "begin_suppress_tokens -1 is outside the vocabulary"),
        ({"sequence_bias": {}}, "sequence_bias must be a non-empty dict"),
        ({"sequence_bias": {"3": 1.0}}, "sequence_bias must be a non-empty dict"),
        ({"sequence_bias": [[[3], "x"]]}, "sequence_bias must be a non-empty dict"),
        ({"sequence_bias": {(3, 50): 1.0}}, "sequence_bias 50 is outside the vocabulary"),
        ({"bad_words_ids": [3]}, "bad_words_ids must be a non-empty list of non-empty lists"),
        ({"bad_words_ids": [[]]}, "bad_words_ids must be a non-empty list of non-empty lists"),
        ({"bad_words_ids": [[3, 99]]}, "bad_words_ids 99 is outside the vocabulary"),
        ({"forced_bos_token_id": [1]}, "forced_bos_token_id must be a token id or null"),
        ({"forced_eos_token_id": [1, 50]}, "forced_eos_token_id 50 is outside the vocabulary"),
        ({"remove_invalid_values": 1}, "remove_invalid_values must be true or false"),
        ({"exponential_decay_length_penalty": [1]}, r"must be \[start, factor\]"),
        (
            {"exponential_decay_length_penalty": (1, 1.5), "eos_token_id": None},
            "exponential_decay_length_penalty needs an eos_token_id",
        ),
    ],
)
def test_bad_logits_processing_arguments_are_refused_by_name(argument, message):
    with pytest.raises(ValueError, match=message):
        tiny_mpt().generate(PROMPT, max_new_tokens=2, **argument)


def test_suppressed_tokens_never_come_and_min_new_tokens_holds_back_eos():
    free = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=8)
    first = [int(t) for t in free[:, 4]]
    got = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=8, suppress_tokens=first)
    assert not np.isin(got[:, 4:], first).any()
    once = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=8, begin_suppress_tokens=(*first,))
    assert not np.isin(once[:, 4], first).any()
    eos = int(free[0, 5])  # row 0's second token
    held = tiny_mpt(seed=SEED).generate(
        PROMPT, max_new_tokens=8, eos_token_id=eos, pad_token_id=0, min_new_tokens=4
    )
    assert eos not in held[0, 4:8].tolist() and held.shape[1] > 6


def test_an_unknown_setting_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"\['eos_id'\]; it takes"):
        tiny_mpt().generate(PROMPT, eos_id=3)


def test_bad_words_a_forced_eos_and_invalid_values_as_transformers_applies_them():
    free = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=6)
    a, b = int(free[0, 4]), int(free[0, 5])  # row 0's first two new tokens
    # a one-token bad word is never made; an eos id alone is not a bad word (it is dropped)
    got = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=6, bad_words_ids=[[a]])
    assert a not in got[:, 4:].tolist()[0] + got[:, 4:].tolist()[1]
    kept = tiny_mpt(seed=SEED).generate(
        PROMPT, max_new_tokens=6, bad_words_ids=[[a]], eos_token_id=a, pad_token_id=0
    )
    assert kept[0, 4] == a
    # a two-token bad word: its second token only after its first
    pair = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=6, bad_words_ids=[[a, b]])
    assert pair[0, 4] == a and pair[0, 5] != b
    # the last new token is the forced eos
    forced = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=6, forced_eos_token_id=[3, 9])
    assert set(forced[:, -1].tolist()) <= {3, 9} and (forced[:, 4:-1] == free[:, 4:-1]).all()
    # NaN and inf scores become finite before the argmax
    logits = np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32)
    run = {**generation_settings({}), "remove_invalid_values": True}
    cleaned = process_logits(logits, np.zeros((1, 2), np.int64), 2, 4, run, [])
    big = np.finfo(np.float32).max
    np.testing.assert_array_equal(cleaned, [[0.0, big, -big, 1.0]])


def warper_port(warp):
    """A port exposing ``warp`` as its logits_warper op."""
    return type("Port", (), {"ops": {"logits_warper": warp}})()


def last_temperature(scores, temperature=1.0, **rest):  # the filters, then the temperature
    return warp_logits(scores, **rest) / temperature


def exactly_k(scores, top_k=0, **rest):  # top-k keeping k tokens, ties cut by position
    out = warp_logits(scores, **rest)
    if top_k:
        cut = np.argsort(-out, axis=-1, kind="stable")[:, top_k:]
        np.put_along_axis(out, cut, -np.inf, axis=-1)
    return out


def no_cutoffs(scores, epsilon_cutoff=0.0, eta_cutoff=0.0, **rest):  # epsilon and eta ignored
    return warp_logits(scores, **rest)


def test_the_warper_op_case_passes_the_reference_and_fails_ports_with_a_sampling_mistake():
    """mpt/hf/op-logits-warpers holds transformers' own warpers on fixed scores: the reference
    passes it, and ports with plausible mistakes fail it, naming the token they keep or drop."""
    case = next(c for c in iter_cases(tier="op") if c.id == "mpt/hf/op-logits-warpers")
    ok, message, worst = check_op_case(warper_port(warp_logits), case)
    assert ok and worst < 1e-6, message
    for mistake in (last_temperature, exactly_k, no_cutoffs):
        ok, message, _ = check_op_case(warper_port(mistake), case)
        assert not ok and "upstream" in message, (mistake.__name__, message)


def nucleus_by_argsort(logits, top_p, keep):  # top-p's removals as written: a stable argsort
    order = np.argsort(logits, axis=-1, kind="stable")  # ascending, equal scores by index
    sorted_probs = softmax(np.take_along_axis(logits, order, axis=-1))
    remove_sorted = np.cumsum(sorted_probs, axis=-1) <= 1 - top_p
    remove_sorted[:, -keep:] = False  # the most likely are kept
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return remove


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(
        st.lists(
            st.one_of(
                st.sampled_from([0.0, -0.0, 1.0, 2.0, -np.inf, -3.5]),  # ties, banned tokens
                st.floats(-30, 30),
            ),
            min_size=1,
            max_size=40,
        ),
        min_size=1,
        max_size=3,
    ).filter(lambda rows: len({len(r) for r in rows}) == 1),
    top_p=st.floats(0.0, 0.999),
    keep=st.integers(1, 4),
    nan=st.booleans(),
)
def test_top_p_from_the_sorted_scores_removes_what_the_stable_argsort_does(
    scores, top_p, keep, nan
):
    """nucleus_removed finds top-p's removals from np.sort's values and the cut's last score:
    the same tokens as the argsort it replaces, with ties at the cut (taken by index), -0.0 and
    0.0, -inf (tokens banned before), NaN rows (nothing removed) and keep beyond the vocabulary."""
    logits = np.array(scores, np.float64)
    if nan:
        logits[0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        want = nucleus_by_argsort(logits, top_p, keep)
        got = nucleus_removed(logits, top_p, keep)
    np.testing.assert_array_equal(got, want, err_msg=f"{logits} top_p {top_p} keep {keep}")


def test_sampling_with_a_cutoff_that_leaves_one_token_is_greedy_decoding():
    greedy = tiny_mpt(seed=SEED).generate(PROMPT, max_new_tokens=6)
    for cutoff in ({"epsilon_cutoff": 0.999}, {"top_p": 1e-9}, {"typical_p": 1e-9, "top_k": 1}):
        sampled = tiny_mpt(seed=SEED).generate(
            PROMPT, max_new_tokens=6, do_sample=True, seed=5, **cutoff
        )
        np.testing.assert_array_equal(sampled, greedy, err_msg=str(cutoff))
    with pytest.raises(ValueError, match=r"sampling needs eta_cutoff in \[0, 1\) \(0: off\)"):
        tiny_mpt().generate(PROMPT, do_sample=True, eta_cutoff=1.0)
    with pytest.raises(ValueError, match=r"sampling needs typical_p in \(0, 1\]"):
        tiny_mpt().generate(PROMPT, do_sample=True, typical_p=0)


def test_num_return_sequences_repeats_each_prompt_for_sampling_and_needs_it():
    model = tiny_mpt(seed=SEED)
    out = model.generate(PROMPT, max_new_tokens=5, do_sample=True, seed=2, num_return_sequences=3)
    assert out.shape == (6, 9)
    np.testing.assert_array_equal(out[:, :4], np.repeat(PROMPT, 3, axis=0))  # row by row
    # top_k 1 leaves one token to draw: every copy is the greedy continuation
    one = model.generate(
        PROMPT, max_new_tokens=5, do_sample=True, top_k=1, seed=2, num_return_sequences=2
    )
    np.testing.assert_array_equal(
        one, np.repeat(model.generate(PROMPT, max_new_tokens=5), 2, axis=0)
    )
    assert [
        len(t)
        for t in model.stream(PROMPT, max_new_tokens=2, do_sample=True, num_return_sequences=2)
    ] == [4, 4]
    with pytest.raises(ValueError, match="num_return_sequences 2 needs do_sample"):
        model.generate(PROMPT, num_return_sequences=2)
    with pytest.raises(ValueError, match="num_return_sequences must be a positive integer"):
        model.generate(PROMPT, do_sample=True, num_return_sequences=0)
    with pytest.raises(ValueError, match="generation_config.json: num_return_sequences 2 needs"):
        generation_settings({}, {"num_return_sequences": 2})
    assert (
        generation_settings({}, {"num_return_sequences": 2, "do_sample": True})[
            "num_return_sequences"
        ]
        == 2
    )


def test_max_time_stops_after_the_token_that_passes_it():
    model = tiny_mpt(seed=SEED)
    assert model.generate(PROMPT, max_new_tokens=6, max_time=0.0).shape == (2, 5)
    assert model.generate(PROMPT, max_new_tokens=6, max_time=60.0).shape == (2, 10)
    with pytest.raises(ValueError, match="max_time must be a non-negative number or null"):
        model.generate(PROMPT, max_time=-1)


def test_beam_search_refusals_and_its_edges():
    model = tiny_mpt(seed=SEED)
    with pytest.raises(ValueError, match="beam search .* has no token stream"):
        model.stream(PROMPT, num_beams=2)
    with pytest.raises(ValueError, match="num_return_sequences 3 is more than num_beams 2"):
        model.generate(PROMPT, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match='early_stopping must be true, false or "never"'):
        model.generate(PROMPT, num_beams=2, early_stopping="soon")
    with pytest.raises(ValueError, match="num_beams must be a positive integer"):
        model.generate(PROMPT, num_beams=0)
    with pytest.raises(ValueError, match="generation_config.json: num_return_sequences 3 is more"):
        generation_settings({}, {"num_beams": 2, "num_return_sequences": 3})
    groups = dict(num_beams=4, num_beam_groups=2, diversity_penalty=0.5)
    with pytest.raises(ValueError, match="num_beams 4 does not split into num_beam_groups 3"):
        model.generate(PROMPT, **{**groups, "num_beam_groups": 3})
    with pytest.raises(ValueError, match="needs a diversity_penalty above 0"):
        model.generate(PROMPT, **{**groups, "diversity_penalty": 0.0})
    with pytest.raises(ValueError, match=r"diverse beam search\) does not sample"):
        model.generate(PROMPT, **groups, do_sample=True)
    # guidance scores a group's rows at a time: its context takes a token a group each step, so
    # 4 new tokens after a prompt of PROMPT's length leave it within max_seq_len, 12 do not
    model.generate(PROMPT, **groups, guidance_scale=1.5, max_new_tokens=4)
    with pytest.raises(ValueError, match=r"guidance's unconditional context would be 2\d tokens"):
        model.generate(PROMPT, **groups, guidance_scale=1.5, max_new_tokens=12)
    # a negative diversity_penalty is no penalty (upstream adds its processor only above 0): the
    # groups then choose alike, whatever its size
    mild, strong = (
        model.generate(PROMPT, **{**groups, "diversity_penalty": d}, num_return_sequences=4)
        for d in (-0.5, -3.0)
    )
    np.testing.assert_array_equal(mild, strong)
    # no room for a new token: transformers fails in beam search, so it is refused here
    with pytest.raises(ValueError, match="beam search needs a new token: max_new_tokens is 0"):
        model.generate(PROMPT, num_beams=3, max_new_tokens=0)
    with pytest.raises(ValueError, match="max_length 3 leaves no room after a prompt of 4"):
        model.generate(PROMPT, num_beams=3, max_length=3)
    # one beam is greedy decoding (transformers' own tokens for more: the golden beam cases)
    greedy = model.generate(PROMPT, max_new_tokens=5)
    np.testing.assert_array_equal(model.generate(PROMPT, max_new_tokens=5, num_beams=1), greedy)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 4),
    st.integers(1, 6),
    st.floats(-2, 2),
    st.sampled_from([True, False, "never"]),
    st.lists(st.integers(0, CONFIG["vocab_size"] - 1), max_size=3),
    st.sampled_from([{}, {"repetition_penalty": 1.4}, {"no_repeat_ngram_size": 2}]),
    st.data(),
)
def test_beam_search_on_drawn_settings_gives_sequences_of_the_promised_shape(
    beams, new, penalty, early, eos, processors, data
):
    keep = data.draw(st.integers(1, beams))
    out = tiny_mpt(seed=SEED).generate(
        PROMPT,
        max_new_tokens=new,
        num_beams=beams,
        num_return_sequences=keep,
        length_penalty=penalty,
        early_stopping=early,
        eos_token_id=eos or None,
        pad_token_id=0,
        **processors,
    )
    assert out.dtype == np.int64 and out.shape[0] == 2 * keep
    assert 4 < out.shape[1] <= 4 + new and 0 <= out.min() and out.max() < CONFIG["vocab_size"]
    np.testing.assert_array_equal(out[:, :4], np.repeat(PROMPT, keep, axis=0))


def test_top_indices_is_a_stable_descending_argsort_cut_to_k():
    rng = np.random.default_rng(0)
    for trial in range(500):
        B, N = rng.integers(1, 4), rng.integers(1, 60)
        scores = (np.round(rng.normal(size=(B, N)) * 2) / 2).astype(np.float32)  # many ties
        if trial % 3 == 0:
            scores[:, rng.integers(0, N)] = -np.inf
        k = int(rng.integers(1, N + 3))
        want = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_indices(scores, k), want, err_msg=f"trial {trial}")
    # a row of NaN (every token banned, then normalised): the argsort's order, not a crash
    nan = np.array([[np.nan] * 4, [0.5, np.nan, 2.0, 1.0]], np.float32)
    np.testing.assert_array_equal(top_indices(nan, 3), [[0, 1, 2], [2, 3, 0]])


def test_every_setting_is_in_one_table_and_every_applied_one_is_checked():
    from reference import generation as g

    assert set(g._SETTING_TYPES) == set(g.APPLIED_SETTINGS)
    assert set(g.CONFIG_GENERATION_PARAMETERS) <= set(g.SETTING_DEFAULTS)


def test_contrastive_search_streams_needs_the_cache_setting_and_differs_from_greedy():
    model = tiny_mpt(seed=SEED)
    args = dict(max_new_tokens=6, penalty_alpha=0.6, top_k=4, use_cache=True)
    tokens = model.generate(PROMPT, **args)
    streamed = np.stack(list(model.stream(PROMPT, **args)), axis=1)
    np.testing.assert_array_equal(streamed, tokens[:, 4:])
    assert not np.array_equal(tokens, model.generate(PROMPT, max_new_tokens=6))
    # top_k 1 or penalty_alpha 0 is greedy decoding, as upstream chooses the mode
    greedy = model.generate(PROMPT, max_new_tokens=6)
    for off in ({"top_k": 1}, {"penalty_alpha": 0.0}):
        np.testing.assert_array_equal(model.generate(PROMPT, **{**args, **off}), greedy)
    with pytest.raises(ValueError, match="contrastive search .* needs use_cache=True"):
        model.generate(PROMPT, max_new_tokens=2, penalty_alpha=0.6, top_k=4)


def test_contrastive_choice_weighs_probability_against_likeness_to_the_context():
    context = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)  # [1, T=2, C=2]
    hidden = np.array([[[1.0, 0.01], [1.0, 1.0]]], np.float32)  # candidate 0 repeats position 0
    probs = np.array([[0.6, 0.4]], np.float32)
    assert contrastive_choice(context, hidden, probs, 0.0)[0] == 0  # probability alone
    assert contrastive_choice(context, hidden, probs, 0.6)[0] == 1  # the less repetitive one


def test_beam_search_cut_short_by_max_time_returns_its_beams_as_they_stand():
    model = tiny_mpt(seed=SEED)
    out = model.generate(PROMPT, max_new_tokens=6, num_beams=2, max_time=0.0)
    assert out.shape == (2, 5)  # one step, no eos to add
    with_eos = model.generate(
        PROMPT, max_new_tokens=6, num_beams=2, max_time=0.0, eos_token_id=49, pad_token_id=0
    )
    assert with_eos.shape == (2, 6) and (with_eos[:, 5] == 49).all()  # the eos marks the end


def test_every_setting_given_as_an_argument_is_checked_by_name():
    """A value no setting takes (a string) is refused naming the setting, for every setting."""
    from reference.generation import APPLIED_SETTINGS

    for key in APPLIED_SETTINGS:
        with pytest.raises((ValueError, TypeError), match=key):
            tiny_mpt().generate(PROMPT, max_new_tokens=2, **{key: "x"})


def test_guidance_runs_the_unconditional_context_with_or_without_its_cache():
    model = tiny_mpt(seed=SEED)
    guided = model.generate(PROMPT, max_new_tokens=4, guidance_scale=1.5)
    cached = model.generate(PROMPT, max_new_tokens=4, guidance_scale=1.5, use_cache=True)
    np.testing.assert_array_equal(guided, cached)  # the same tokens either way
    assert not np.array_equal(guided, model.generate(PROMPT, max_new_tokens=4))
    np.testing.assert_array_equal(  # guidance_scale 1 adds nothing, as upstream
        model.generate(PROMPT, max_new_tokens=4, guidance_scale=1.0),
        model.generate(PROMPT, max_new_tokens=4),
    )


def test_a_length_penalty_decay_past_float_range_forces_the_eos_without_an_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning, no OverflowError (Python's pow)
        out = tiny_mpt(seed=SEED).generate(
            PROMPT,
            max_new_tokens=14,
            exponential_decay_length_penalty=(0, 1e200),
            eos_token_id=49,
            pad_token_id=0,
        )
    assert (out[:, 4:] == 49).any(axis=1).all()  # every row ends on the eos


def test_sequence_bias_as_upstream_takes_it_or_in_its_json_form():
    model = tiny_mpt(seed=SEED)
    free = model.generate(PROMPT, max_new_tokens=4)
    a, b = int(free[0, 4]), int(free[0, 5])
    as_dict = model.generate(PROMPT, max_new_tokens=4, sequence_bias={(a,): -50.0})
    as_pairs = model.generate(PROMPT, max_new_tokens=4, sequence_bias=[[[a], -50.0]])
    np.testing.assert_array_equal(as_dict, as_pairs)
    assert a not in as_dict[:, 4:].tolist()[0]
    after = model.generate(PROMPT, max_new_tokens=4, sequence_bias={(a, b): -50.0})
    assert after[0, 4] == a and after[0, 5] != b  # b only after a


def test_no_room_for_a_new_token_still_makes_one_with_a_warning_as_transformers():
    model = tiny_mpt(seed=SEED)
    one = model.generate(PROMPT, max_new_tokens=1)
    for lengths, said in (
        (dict(max_new_tokens=0), "max_new_tokens is 0"),
        (dict(max_length=4), "max_length 4 leaves no room after a prompt of 4 tokens"),
        (dict(max_length=2), "max_length 2 leaves no room"),
    ):
        with pytest.warns(UserWarning, match=said):
            np.testing.assert_array_equal(model.generate(PROMPT, **lengths), one)
        with pytest.warns(UserWarning, match=said):
            streamed = list(model.stream(PROMPT, **lengths))
        np.testing.assert_array_equal(np.stack(streamed, axis=1), one[:, 4:])


def test_beam_sampling_draws_distinct_candidates_ranked_by_score_and_is_seeded():
    from reference.generation import sampled_candidates

    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    scores = np.append(np.log(p), -np.inf)[None]  # a fifth token that cannot be drawn
    seen = np.zeros(5)
    for _ in range(4000):
        drawn = sampled_candidates(scores, 3, rng)[0]
        assert len(set(drawn.tolist())) == 3 and 4 not in drawn  # without replacement, p > 0
        assert (np.diff(scores[0, drawn]) <= 0).all()  # ranked by score
        seen[drawn] += 1
    # how often each token is among the three: drawn one after another, each from what is left
    # (torch.multinomial without replacement), P(i, j, k) = p_i p_j / (1 - p_i) p_k / (1 - p_i -
    # p_j) over the ordered triples
    inside = np.zeros(4)
    for i, j, k in itertools.permutations(range(4), 3):
        inside[[i, j, k]] += p[i] * p[j] / (1 - p[i]) * p[k] / (1 - p[i] - p[j])
    np.testing.assert_allclose(seen[:4] / 4000, inside, atol=0.025)
    with pytest.raises(ValueError, match="leave only 4 tokens any probability"):
        sampled_candidates(scores, 5, rng)
    # it draws among the tokens of any probability only: the same tokens as numpy's draw over
    # the whole row, zeros and all (scattered -inf, as top-k leaves them)
    wide = np.full(400, -np.inf)
    wide[np.random.default_rng(1).choice(400, 24, replace=False)] = np.linspace(-3, 1, 24)
    whole = softmax(wide)
    for seed in range(300):
        drawn = np.random.default_rng(seed).choice(400, size=6, replace=False, p=whole)
        want = drawn[np.argsort(-wide[drawn], kind="stable")]
        got = sampled_candidates(wide[None], 6, np.random.default_rng(seed))[0]
        np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}")
    model = tiny_mpt(seed=SEED)
    kw = dict(max_new_tokens=6, num_beams=3, do_sample=True, num_return_sequences=2)
    a, b = model.generate(PROMPT, seed=1, **kw), model.generate(PROMPT, seed=1, **kw)
    np.testing.assert_array_equal(a, b)
    assert a.shape[0] == 4 and a.min() >= 0 and a.max() < CONFIG["vocab_size"]
    runs = {model.generate(PROMPT, seed=s, **kw).tobytes() for s in range(6)}
    assert len(runs) > 1, "six seeds drew the same beams"
    numba = tiny_mpt(seed=SEED, backend="numba").generate(PROMPT, seed=1, **kw)
    np.testing.assert_array_equal(numba, a)  # the same draws over the same scores


def test_a_negative_prompt_replaces_the_last_token_as_guidance_context():
    model = tiny_mpt(seed=SEED)
    kw = dict(max_new_tokens=5, guidance_scale=1.7)
    plain = model.generate(PROMPT, **kw)
    last = PROMPT[:, -1:]  # what guidance starts from without a negative prompt
    np.testing.assert_array_equal(model.generate(PROMPT, negative_prompt_ids=last, **kw), plain)
    ones = np.ones_like(last)
    both = model.generate(
        PROMPT, negative_prompt_ids=last, negative_prompt_attention_mask=ones, **kw
    )
    np.testing.assert_array_equal(both, plain)
    other = model.generate(PROMPT, negative_prompt_ids=np.array([[7, 8], [9, 10]]), **kw)
    assert not np.array_equal(other, plain)  # the context matters
    # beams: a row for each beam (upstream does not repeat it, and fails without)
    beams = model.generate(PROMPT, num_beams=2, negative_prompt_ids=np.repeat(last, 2, 0), **kw)
    np.testing.assert_array_equal(beams, model.generate(PROMPT, num_beams=2, **kw))
    with pytest.raises(ValueError, match="negative_prompt_ids has 2 rows; guidance needs one"):
        model.generate(PROMPT, num_beams=2, negative_prompt_ids=last, **kw)
    with pytest.raises(ValueError, match="negative_prompt_attention_mask without"):
        model.generate(PROMPT, negative_prompt_attention_mask=ones, **kw)
    with pytest.raises(ValueError, match="negative_prompt_attention_mask must have shape"):
        model.generate(
            PROMPT, negative_prompt_ids=last, negative_prompt_attention_mask=PROMPT, **kw
        )
    with pytest.warns(UserWarning, match="negative_prompt_ids does nothing without a guidance"):
        model.generate(PROMPT, max_new_tokens=2, negative_prompt_ids=last)


def test_scores_are_what_each_token_was_chosen_from_and_add_up_to_the_beam_scores():
    model = tiny_mpt(seed=SEED)
    S = PROMPT.shape[1]
    out = model.generate(PROMPT, max_new_tokens=5, return_dict_in_generate=True, output_scores=True)
    assert len(out.scores) == 5 and out.keys() == ["sequences", "scores"]
    for t, step in enumerate(out.scores):  # greedy, no processors: the logits of each step
        logits = model(out.sequences[:, : S + t]).logits[:, -1]
        np.testing.assert_allclose(step, logits, atol=1e-5, err_msg=f"step {t}")
        np.testing.assert_array_equal(step.argmax(-1), out.sequences[:, S + t])
    plain = model.generate(PROMPT, max_new_tokens=5, return_dict_in_generate=True)
    assert plain.scores is None and plain.keys() == ["sequences"]
    np.testing.assert_array_equal(plain.sequences, out.sequences)
    # beam search: a hypothesis' tokens, read from the step scores of the beams beam_indices
    # names, sum to its score times its new length ** length_penalty
    eos = int(out.sequences[0, S + 2])
    kw = dict(num_beams=3, num_return_sequences=2, length_penalty=0.7, eos_token_id=eos)
    beams = model.generate(
        PROMPT, max_new_tokens=6, return_dict_in_generate=True, output_scores=True, **kw
    )
    transition = model.compute_transition_scores(beams.sequences, beams.scores, beams.beam_indices)
    for r, row in enumerate(beams.beam_indices):
        steps = row[row >= 0]
        tokens = beams.sequences[r, S : S + len(steps)]
        total = sum(beams.scores[t][b, tok] for t, (b, tok) in enumerate(zip(steps, tokens)))
        np.testing.assert_allclose(
            total / len(steps) ** 0.7, beams.sequences_scores[r], rtol=1e-5, err_msg=f"row {r}"
        )
        # as transformers documents it: the transition scores sum to that
        np.testing.assert_allclose(transition[r].sum(), total, rtol=1e-5, err_msg=f"row {r}")
    with pytest.raises(ValueError, match="a beam search's output needs its beam_indices"):
        model.compute_transition_scores(beams.sequences, beams.scores)
    # greedy, normalized: each new token's log-probability
    logp = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    for t, step in enumerate(out.scores):
        want = np.take_along_axis(log_softmax(step), out.sequences[:, S + t, None], -1)[:, 0]
        np.testing.assert_allclose(logp[:, t], want, atol=1e-6, err_msg=f"step {t}")
    grouped = model.generate(
        PROMPT,
        max_new_tokens=4,
        num_beams=4,
        num_beam_groups=2,
        diversity_penalty=0.5,
        return_dict_in_generate=True,
        output_scores=True,
    )
    assert grouped.beam_indices is None and grouped.sequences_scores.shape == (2,)


def test_prompt_lookup_gives_greedy_tokens_and_is_refused_where_transformers_refuses_it():
    model = tiny_mpt(seed=SEED)
    one = PROMPT[:1]
    kw = dict(max_new_tokens=6, use_cache=True, eos_token_id=49)
    greedy = model.generate(one, **kw)
    np.testing.assert_array_equal(model.generate(one, prompt_lookup_num_tokens=3, **kw), greedy)
    for call, message in (
        (dict(kw, num_beams=2), "runs with greedy decoding or sampling only"),
        (dict(kw, penalty_alpha=0.5, top_k=3), "runs with greedy decoding or sampling only"),
        (dict(kw, use_cache=False), "needs use_cache true"),
        (dict(kw, eos_token_id=None), "needs an eos_token_id"),
        (dict(kw, do_sample=True, num_return_sequences=2), "needs num_return_sequences 1"),
        (dict(kw, prompt_lookup_num_tokens=0), "prompt_lookup_num_tokens must be a positive"),
    ):
        with pytest.raises(ValueError, match=message):
            model.generate(one, **{"prompt_lookup_num_tokens": 3, **call})
    with pytest.raises(ValueError, match=r"needs one prompt \(got 2\)"):
        model.generate(PROMPT, prompt_lookup_num_tokens=3, **kw)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_records_each_passes_attentions_and_hidden_states(use_cache):
    """output_attentions and output_hidden_states (with return_dict_in_generate): a pass's maps
    and states as the model's own forward gives them, the prompt's first; with use_cache a step
    runs one query, without it the whole text again (as upstream's generate()). The numba
    backend records through the same forward."""
    model = tiny_mpt(seed=SEED)
    kw = dict(
        max_new_tokens=3,
        use_cache=use_cache,
        return_dict_in_generate=True,
        output_attentions=True,
        output_hidden_states=True,
    )
    out = model.generate(PROMPT, **kw)
    B, S = PROMPT.shape
    assert len(out.attentions) == len(out.hidden_states) == 3
    last = model(out.sequences[:, :-1], output_attentions=True, output_hidden_states=True)
    for i, (maps, states) in enumerate(zip(out.attentions, out.hidden_states)):
        q = (S if i == 0 else 1) if use_cache else S + i  # the queries the pass ran
        assert maps[0].shape == (B, 3, q, S + i) and states[0].shape == (B, q, 24)
        assert len(maps) == 2 and len(states) == 3  # a map a layer; the L + 1 states
    # the last pass's last query is the whole text's forward at that place
    assert_close(out.attentions[-1][1][:, :, -1], last.attentions[1][:, :, -1], atol=1e-5)
    assert_close(out.hidden_states[-1][2][:, -1], last.hidden_states[2][:, -1], atol=1e-5)
    fast = tiny_mpt(seed=SEED, backend="numba").generate(PROMPT, **kw)
    for a, b in zip(
        fast.attentions[-1] + fast.hidden_states[-1], out.attentions[-1] + out.hidden_states[-1]
    ):
        assert_close(a, b, atol=1e-4, rtol=1e-4)
    plain = model.generate(PROMPT, **dict(kw, return_dict_in_generate=False))
    np.testing.assert_array_equal(plain, out.sequences)  # recording changes no token


def test_contrastive_search_and_prompt_lookup_record_a_pass_a_token():
    model = tiny_mpt(seed=SEED)
    kw = dict(max_new_tokens=2, use_cache=True, return_dict_in_generate=True)
    looked = model.generate(  # a pass's records split a token each (upstream's split)
        PROMPT[:1], output_attentions=True, prompt_lookup_num_tokens=2, eos_token_id=1, **kw
    )
    assert len(looked.attentions) == looked.sequences.shape[1] - PROMPT.shape[1]
    contrastive = model.generate(  # the prompt's pass, then each chosen candidate's
        PROMPT, output_hidden_states=True, penalty_alpha=0.5, top_k=3, **kw
    )
    assert [h[0].shape[1] for h in contrastive.hidden_states] == [PROMPT.shape[1], 1]
    out = model.generate(PROMPT, max_new_tokens=2, output_attentions=True)  # no dict: no record
    assert isinstance(out, np.ndarray)


PADDED = np.array([[3, 14, 15, 9, 2], [0, 0, 6, 5, 35]])  # row 1 left-padded (pad id 0)
CACHED_DECODINGS = {  # generate() settings of each decoding, with the cache on
    "greedy": dict(eos_token_id=None),
    "sampling": dict(do_sample=True, top_k=5, seed=3),
    "beams": dict(num_beams=3, num_return_sequences=2),
    "beam groups": dict(num_beams=4, num_beam_groups=2, diversity_penalty=0.5),
    "contrastive": dict(penalty_alpha=0.5, top_k=3),
    "prompt lookup": dict(prompt_lookup_num_tokens=2, eos_token_id=1),
    "guidance": dict(guidance_scale=1.5),
}


@pytest.mark.parametrize("decoding", CACHED_DECODINGS)
def test_generate_returns_the_cache_over_every_position_but_the_last_token(decoding):
    """past_key_values (return_dict_in_generate with use_cache): a (key, value) pair a layer,
    [R, H, T - 1, D], as transformers 4.37.2 returns them (the golden cases
    generate-past-key-values-* hold upstream's). Where each row is a sequence, the keys and values
    at its real positions are one forward's over the text but its last token; the left padding's
    queries see no key, so theirs depend on the pass that ran them and are not compared. The
    numba session's cache (float32 and bf16) equals the NumPy reference's."""
    kw = dict(CACHED_DECODINGS[decoding], max_new_tokens=4, use_cache=True)
    ids = PADDED[:1] if decoding == "prompt lookup" else PADDED  # one prompt only
    mask = (ids != 0).astype(np.int64)
    model = tiny_mpt(seed=SEED)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, **kw)
    past = out.past_key_values
    rows = len(ids) * kw.get("num_beams", 1)
    assert len(past) == 2 and past[0][0].shape[:2] == (rows, 3) and past[0][0].shape[3] == 8
    if "num_beams" not in kw:  # the rows are the sequences'
        T = out.sequences.shape[1]
        assert past[0][0].shape[2] == T - 1
        full_mask = np.concatenate([mask, np.ones((len(ids), T - ids.shape[1]), np.int64)], 1)
        whole = model(out.sequences[:, :-1], attention_mask=full_mask[:, :-1], use_cache=True)
        real = full_mask[:, :-1].astype(bool)
        for layer, (got, want) in enumerate(zip(past, whole.past_key_values)):
            for name, a, b in zip(("key", "value"), got, want):
                assert_close(
                    a.transpose(0, 2, 1, 3)[real],
                    b.transpose(0, 2, 1, 3)[real],
                    atol=1e-5,
                    what=f"layer {layer} {name}",
                )
    for options in ({}, {"kv_cache": "bf16"}):
        want = (
            out
            if not options
            else tiny_mpt(seed=SEED, **options).generate(
                ids, attention_mask=mask, return_dict_in_generate=True, **kw
            )
        )
        fast = tiny_mpt(seed=SEED, backend="numba", **options).generate(
            ids, attention_mask=mask, return_dict_in_generate=True, **kw
        )
        np.testing.assert_array_equal(fast.sequences, want.sequences)
        for layer, (got, ref) in enumerate(zip(fast.past_key_values, want.past_key_values)):
            for name, a, b in zip(("key", "value"), got, ref):
                assert a.dtype == np.float32, f"numba {options} layer {layer} {name}"
                assert_close(
                    a, b, atol=2e-4, rtol=1e-3, what=f"numba {options} layer {layer} {name}"
                )


def test_generate_returns_no_cache_without_use_cache():
    """With use_cache off (an MPT config.json's default) upstream keeps no cache and returns
    past_key_values None; without return_dict_in_generate the tokens alone."""
    model = tiny_mpt(seed=SEED)
    out = model.generate(PROMPT, max_new_tokens=3, return_dict_in_generate=True)
    assert out.past_key_values is None and "past_key_values" not in out.keys()
    beams = model.generate(PROMPT, max_new_tokens=3, num_beams=2, return_dict_in_generate=True)
    assert beams.past_key_values is None
    plain = model.generate(PROMPT, max_new_tokens=3, use_cache=True)
    np.testing.assert_array_equal(plain, out.sequences)


@pytest.mark.parametrize("decoding", [d for d in CACHED_DECODINGS if d != "contrastive"])
def test_generate_goes_on_from_a_given_cache_as_from_the_whole_prompt(decoding):
    """generate(past_key_values=) with the cache a first call returned and input_ids going on
    past it (a next turn): only the tokens after the cache run, and the tokens (and the cache at
    the end) are those of a call given the whole text; on numba (float32 and bf16 caches) too.
    Upstream's own are the golden cases generate-with-past-*."""
    kw = dict(CACHED_DECODINGS[decoding], max_new_tokens=3, use_cache=True)
    ids = PADDED[:1] if decoding == "prompt lookup" else PADDED
    mask = (ids != 0).astype(np.int64)
    rows = kw.get("num_beams", 1)  # a cache row for each row decoded
    for backend, options in (("numpy", {}), ("numba", {}), ("numba", {"kv_cache": "bf16"})):
        model = tiny_mpt(seed=SEED, backend=backend, **options)
        first = model.generate(
            ids, attention_mask=mask, max_new_tokens=2, use_cache=True, return_dict_in_generate=True
        )
        text = np.concatenate([first.sequences, np.full((len(ids), 2), 7)], axis=1)
        text_mask = np.concatenate([mask, np.ones((len(ids), 4), np.int64)], axis=1)
        past = tuple(
            (np.repeat(k, rows, 0), np.repeat(v, rows, 0)) for k, v in first.past_key_values
        )
        want = model.generate(text, attention_mask=text_mask, return_dict_in_generate=True, **kw)
        got = model.generate(
            text, attention_mask=text_mask, past_key_values=past, return_dict_in_generate=True, **kw
        )
        what = f"{backend} {options}"
        np.testing.assert_array_equal(got.sequences, want.sequences, err_msg=what)
        K = want.past_key_values[0][0].shape[2]  # the padding's own keys depend on the pass
        real = np.repeat(np.pad(text_mask, ((0, 0), (0, K)), constant_values=1)[:, :K], rows, 0)
        for a, b in zip(got.past_key_values, want.past_key_values):
            for x, y, name in zip(a, b, ("keys", "values")):
                x, y = x.transpose(0, 2, 1, 3)[real == 1], y.transpose(0, 2, 1, 3)[real == 1]
                assert_close(x, y, atol=1e-4, rtol=1e-4, what=f"{what} {name}")


def test_a_given_cache_is_refused_where_upstream_fails_or_it_does_not_fit():
    model = tiny_mpt(seed=SEED)
    mask = (PADDED != 0).astype(np.int64)
    first = model.generate(
        PADDED, attention_mask=mask, max_new_tokens=2, use_cache=True, return_dict_in_generate=True
    )
    past, seq = first.past_key_values, first.sequences  # past: all but the last token
    longer = np.concatenate([mask, np.ones((2, 2), np.int64)], axis=1)
    kw = dict(attention_mask=longer, max_new_tokens=2, use_cache=True)
    with pytest.raises(ValueError, match="contrastive search does not take past_key_values"):
        model.generate(seq, past_key_values=past, penalty_alpha=0.5, top_k=3, **kw)
    with pytest.raises(ValueError, match="covers 6 positions and input_ids has 6"):
        model.generate(seq[:, :-1], past_key_values=past, **dict(kw, attention_mask=longer[:, :6]))
    with pytest.raises(ValueError, match=r"must have shape \(4, 3, 6, 8\)"):
        model.generate(seq, past_key_values=past, num_beams=2, **kw)  # a row for each beam
    with pytest.raises(ValueError, match="must be 2 \\(key, value\\) pairs"):
        model.generate(seq, past_key_values=past[:1], **kw)


def test_a_bf16_kv_cache_rounds_a_given_cache_off_its_grid_on_both_backends():
    """kv_cache="bf16" holds every cached key and value on the bf16 grid: a given cache off it (a
    float32 model's) is rounded as it enters, by the NumPy model (mpt.attention) and by numba's
    decode session (load) alike, so that both write the tokens and return the cache that the
    cache rounded beforehand gives."""
    fp32 = tiny_mpt(seed=SEED)
    mask = (PADDED != 0).astype(np.int64)
    first = fp32.generate(
        PADDED, attention_mask=mask, max_new_tokens=2, use_cache=True, return_dict_in_generate=True
    )
    past = tuple((k + np.float32(1e-3), v - np.float32(1e-3)) for k, v in first.past_key_values)
    assert any(not np.array_equal(round_to_bf16(t), t) for pair in past for t in pair)
    rounded = tuple(tuple(round_to_bf16(t) for t in pair) for pair in past)
    longer = np.concatenate([mask, np.ones((2, 4), np.int64)], axis=1)
    text = np.concatenate([first.sequences, np.full((2, 2), 7)], axis=1)
    kw = dict(attention_mask=longer, max_new_tokens=4, use_cache=True, return_dict_in_generate=True)
    for backend in ("numpy", "numba"):
        model = tiny_mpt(seed=SEED, backend=backend, kv_cache="bf16")
        got = model.generate(text, past_key_values=past, **kw)
        want = model.generate(text, past_key_values=rounded, **kw)
        np.testing.assert_array_equal(got.sequences, want.sequences, err_msg=backend)
        for layer, (a, b) in enumerate(zip(got.past_key_values, want.past_key_values)):
            for name, x, y in zip(("key", "value"), a, b):
                np.testing.assert_array_equal(x, y, f"{backend} layer {layer} {name}")
                np.testing.assert_array_equal(round_to_bf16(x), x, f"{backend} {name} off grid")
        # the forward itself takes a given cache the same way
        step = model(text[:, 6:7], attention_mask=longer[:, :7], past_key_values=past)
        step_rounded = model(text[:, 6:7], attention_mask=longer[:, :7], past_key_values=rounded)
        np.testing.assert_array_equal(step.logits, step_rounded.logits, err_msg=backend)
