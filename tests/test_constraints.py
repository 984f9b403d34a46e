"""Constrained beam search (force_words_ids, constraints) and its word constraints. The golden
cases mpt/hf/generate-constrained-* check the tokens against transformers 4.37.2; these tests
check the bookkeeping's rules one by one, upstream's quirks included, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from test_mpt_properties import tiny_mpt

from reference.constraints import (
    ConstraintState,
    DisjunctiveConstraint,
    PhrasalConstraint,
    choose_beams,
    completes,
)

PROMPT = np.array([[3, 14, 15, 9], [2, 6, 5, 35]])


def test_a_phrase_is_met_by_its_tokens_in_a_row_and_a_broken_run_is_not_restarted():
    phrase = [PhrasalConstraint([7, 8])]
    assert completes(phrase, [1, 7, 8, 2])
    assert not completes(phrase, [7, 1, 8])
    # upstream: the token that breaks a run is not tried as the start of a new one
    assert not completes(phrase, [7, 7, 8])
    assert completes(phrase, [7, 7, 1, 7, 8])


def test_alternatives_any_one_of_which_meets_a_disjunctive_constraint():
    either = [DisjunctiveConstraint([[4, 5], [4, 6, 1], [9]])]
    assert completes(either, [4, 5]) and completes(either, [9]) and completes(either, [4, 6, 1])
    assert not completes(either, [4, 6]) and not completes(either, [5, 4])
    with pytest.raises(ValueError, match="may not be the start of one another"):
        DisjunctiveConstraint([[4, 5], [4]])
    with pytest.raises(ValueError, match="may not be the start of one another"):
        DisjunctiveConstraint([[4, 5], [4, 5]])


def test_the_bank_counts_completed_constraints_by_the_longest_run_plus_progress():
    both = [PhrasalConstraint([1, 2, 3]), PhrasalConstraint([7])]  # longest run: 3
    assert ConstraintState(both).read([]).bank() == 0
    assert ConstraintState(both).read([1, 2]).bank() == 2  # two of three under way
    assert ConstraintState(both).read([7]).bank() == 3  # one completed
    state = ConstraintState(both).read([7, 1])
    assert state.bank() == 4 and not state.completed
    assert ConstraintState(both).read([7, 1, 2, 3]).completed
    # the next tokens: every pending constraint's first, in order; then the run in progress's
    assert ConstraintState(both).read([]).advance() == [1, 7]
    assert state.advance() == [2]
    # a run that breaks goes to the end of the pending list
    assert ConstraintState(both).read([1, 5]).advance() == [7, 1]


def test_a_copy_of_a_disjunctive_run_in_progress_shares_its_prefix_as_upstream():
    # two alternatives after 4: trying 5 on one copy leaves it in the other's prefix, so 6 then
    # breaks off (upstream's stateful copy shares the list)
    state = ConstraintState([DisjunctiveConstraint([[4, 5, 1], [4, 6, 1]])]).read([4])
    first, second = state.copy(), state.copy()
    first.add(5)
    assert first.bank() == 2
    second.add(6)
    assert second.bank() == 0 and second.current is None


def test_choose_beams_takes_the_candidates_round_robin_over_banks():
    phrase = [PhrasalConstraint([7, 8])]
    rows = np.array([[1, 2], [1, 3]])
    vocab = np.full((2, 10), -10.0, np.float32)
    vocab[0, 7], vocab[1, 7] = -9.0, -20.0
    # plain beam search chose tokens 4 and 5 after row 0 (scores -1, -2): no progress
    scores, tokens, beams = choose_beams(
        phrase, rows, vocab, np.array([-1.0, -2.0], np.float32), np.array([4, 5]), np.array([0, 0])
    )
    # offered too: 7 after each row (bank 1); the best of bank 1, then the best of bank 0
    assert tokens.tolist() == [7, 4] and beams.tolist() == [0, 0]
    np.testing.assert_array_equal(scores, np.array([-9.0, -1.0], np.float32))


def test_constraints_are_not_changed_by_a_generate_call_that_uses_them():
    phrase = PhrasalConstraint([7, 8])
    tiny_mpt().generate(PROMPT, max_new_tokens=4, num_beams=2, constraints=[phrase])
    assert phrase.matched == 0 and not phrase.completed


def test_a_hypothesis_finished_by_eos_meets_every_constraint():
    """A hypothesis ending in eos joins the pool only if it meets the constraints; one that does
    not can be returned only as a live beam, which never chose eos. Over 120 random calls (eos a
    token the unconstrained search writes, so that some hypotheses finish)."""
    rng = np.random.default_rng(0)
    models = [tiny_mpt(seed=s) for s in range(4)]
    finished = 0
    for trial in range(120):
        model, beams = models[trial % 4], int(rng.integers(2, 5))
        free = model.generate(PROMPT, max_new_tokens=8, num_beams=beams)[:, PROMPT.shape[1] :]
        eos = int(rng.choice(free.reshape(-1)))
        words = [[int(t)] for t in rng.integers(0, 50, rng.integers(1, 3)) if t != eos]
        if not words:
            continue
        out = model.generate(
            PROMPT, max_new_tokens=8, num_beams=beams, force_words_ids=words, eos_token_id=eos
        )
        for row in out.tolist():
            if eos in row[PROMPT.shape[1] :]:
                finished += 1
                assert completes([PhrasalConstraint(w) for w in words], row), (row, words, eos)
    assert finished >= 10, f"only {finished} hypotheses finished by eos: the test saw too few"


def test_constraint_objects_equal_force_words_ids_and_come_first():
    model = tiny_mpt(seed=1)
    kw = dict(max_new_tokens=6, num_beams=3)
    words = [[11, 12], [[20, 21], [22]]]
    want = model.generate(PROMPT, force_words_ids=words, **kw)
    objects = [PhrasalConstraint([11, 12]), DisjunctiveConstraint([[20, 21], [22]])]
    np.testing.assert_array_equal(model.generate(PROMPT, constraints=objects, **kw), want)
    split = model.generate(PROMPT, constraints=objects[:1], force_words_ids=words[1:], **kw)
    np.testing.assert_array_equal(split, want)
    # force_words_ids alone ignores do_sample (upstream checks only constraints for it)
    sampled = model.generate(PROMPT, force_words_ids=words, do_sample=True, seed=0, **kw)
    np.testing.assert_array_equal(sampled, want)


def test_numba_and_numpy_give_the_same_constrained_beams():
    kw = dict(
        max_new_tokens=7, num_beams=3, num_return_sequences=2, eos_token_id=[4], pad_token_id=0
    )
    words = [[[11, 12, 13], [11, 14]], [30]]
    want = tiny_mpt(seed=2).generate(PROMPT, force_words_ids=words, **kw)
    got = tiny_mpt(seed=2, backend="numba").generate(PROMPT, force_words_ids=words, **kw)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(force_words_ids=[[3]]), "constrained beam search, which needs num_beams > 1"),
        (
            dict(force_words_ids=[[3]], num_beams=4, num_beam_groups=2, diversity_penalty=0.5),
            "num_beam_groups must be 1",
        ),
        (
            dict(constraints=[PhrasalConstraint([3])], num_beams=2, do_sample=True),
            "constraints with do_sample",
        ),
        (dict(force_words_ids=[[3, 50]], num_beams=2), r"token 50 is outside the vocabulary"),
        (dict(force_words_ids=[[]], num_beams=2), "force_words_ids must be a non-empty list"),
        (dict(force_words_ids=[[[1, 2], [1]]], num_beams=2), "force_words_ids: a disjunctive"),
        (dict(force_words_ids=[], num_beams=2), "force_words_ids must be a non-empty list"),
        (dict(constraints=[[3]], num_beams=2), "constraints must be a list of Constraint"),
        (dict(diversity_penalty=0.5, num_beams=2), "needs num_beam_groups > 1"),
    ],
)
def test_what_constrained_beam_search_refuses(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_mpt().generate(PROMPT, max_new_tokens=3, **settings)
    with pytest.raises(ValueError, match=message):
        tiny_mpt().stream(PROMPT, max_new_tokens=3, **settings)  # at the call, before any step
