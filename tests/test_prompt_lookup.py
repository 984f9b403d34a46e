"""Prompt lookup decoding (prompt_lookup_num_tokens): the guesses, how many are kept, the passes
that check several tokens over the cache (every session's extend and rewind), and generate()'s
tokens against decoding a token at a time."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mpt_properties import CONFIG, tiny_mpt

from reference import build, from_pretrained, generation, mpt_model
from reference.generation import ModelSession, accepted_guesses, lookup_guesses

FAST = settings(max_examples=60, deadline=None)
ROOT = Path(__file__).resolve().parents[1]


def guesses_by_scanning(sequence, count):
    """Upstream's candidate search read plainly: for n = 2 then 1, the first earlier place whose
    n tokens equal the last n and that has a token after it; up to ``count`` of those."""
    sequence = list(sequence)
    T = len(sequence)
    for n in (2, 1):
        if n > T - 1:
            continue
        for start in range(T - n + 1):
            if sequence[start : start + n] == sequence[T - n :] and start + n < T:
                return sequence[start + n : start + n + count]
    return []


@pytest.mark.parametrize(
    "sequence, count, want",
    [
        ([1, 2, 3, 1, 2], 3, [3, 1, 2]),  # the bigram 1 2 seen at the start
        ([1, 2, 3, 1, 2], 1, [3]),
        ([5, 6, 7, 8, 6], 9, [7, 8, 6]),  # no earlier 8 6: the unigram 6
        ([4, 4], 5, [4]),  # two tokens: unigrams only
        ([9], 3, []),  # nothing to look up
        ([1, 2, 3], 4, []),  # nothing repeats
        ([7, 1, 7, 1], 10, [7, 1]),  # the guesses stop at the end of the text
    ],
)
def test_lookup_guesses_take_the_tokens_after_the_first_earlier_ngram(sequence, count, want):
    assert lookup_guesses(np.array(sequence), count).tolist() == want


@FAST
@given(st.lists(st.integers(0, 4), min_size=1, max_size=20), st.integers(1, 6))
def test_lookup_guesses_equal_a_plain_scan(sequence, count):
    got = lookup_guesses(np.array(sequence), count).tolist()
    assert got == guesses_by_scanning(sequence, count), (sequence, count)


@pytest.mark.parametrize(
    "guesses, chosen, eos, room, want",
    [
        ([3, 4, 5], [3, 4, 5, 6], [], 10, 3),  # all hold: the three and the model's next
        ([3, 4, 5], [3, 9], [], 10, 1),  # the second is missed
        ([3, 4, 5], [8], [], 10, 0),
        ([3, 4, 5], [3, 4, 5], [5], 10, 2),  # all hold and the last is an eos: one fewer
        ([3, 4, 5], [3, 4, 9], [4], 10, 2),  # an eos inside the run is kept (upstream's quirk)
        ([3, 4, 5], [3, 4, 5, 6], [], 2, 1),  # room for two tokens
        ([], [7], [7], 5, 0),  # no guesses: the model's token alone
    ],
)
def test_accepted_guesses_count_as_upstreams_assisted_decoding(guesses, chosen, eos, room, want):
    assert accepted_guesses(np.array(guesses, np.int64), chosen, eos, room) == want


def reference_logits(model, ids, mask):  # the full forward's logits [B, S, V]
    return model(ids, attention_mask=mask).logits


@pytest.mark.parametrize("backend, kv_cache", [("numpy", None), ("numba", None), ("numba", "bf16")])
def test_extend_and_rewind_give_the_logits_of_one_forward_over_the_whole_text(backend, kv_cache):
    """A session's extend (several tokens over the cache), after a left-padded prompt, and a
    rewind that forgets guesses: each pass's logits equal the full forward's at those places."""
    options = {} if kv_cache is None else {"kv_cache": kv_cache}
    ref = tiny_mpt(**options)
    fast = tiny_mpt(backend=backend, **options)
    text = np.array([[0, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]])
    mask = (text != 0).astype(np.int64)
    full = reference_logits(ref, text, mask)
    session = fast._session(1, text.shape[1])
    first = session.extend(text[:, :5], mask[:, :5])  # the padding's own rows are not compared
    assert_close(first[:, 2:], full[:, 2:5], atol=1e-4, rtol=1e-4, what="prompt")
    got = session.extend(text[:, 5:9], last=2)
    assert_close(got, full[:, 7:9], atol=1e-4, rtol=1e-4, what="guesses")
    session.rewind(6)  # three of the four forgotten: a step and a pass write over them
    assert_close(session.step(text[:, 6]), full[:, 6], atol=1e-4, rtol=1e-4, what="step")
    got = session.extend(text[:, 7:12])
    assert_close(got, full[:, 7:12], atol=1e-4, rtol=1e-4, what="after rewind")


def test_model_session_is_the_models_own_forward():
    model = tiny_mpt()
    text = np.array([[3, 4, 5, 6, 7, 8]])
    session = ModelSession(model)
    assert session.prefill(text[:, :4], np.ones((1, 4), np.int64)).shape == (1, 50)
    session.extend(text[:, 4:])
    session.rewind(4)
    assert session.past[0][0].shape[2] == 4 and session.mask.shape == (1, 4)
    assert_close(session.step(text[:, 4]), reference_logits(model, text, None)[:, 4], atol=1e-5)


def looping_prompts():
    """Prompts the tiny model continues by repeating itself (so the guesses are checked), each
    with an eos it writes in the middle of a run of kept guesses or not at all."""
    model = tiny_mpt(seed=3)
    rng = np.random.default_rng(0)
    return model, [rng.integers(1, 50, (1, int(rng.integers(3, 9)))) for _ in range(12)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_lookup_writes_greedy_tokens_except_past_an_eos_inside_kept_guesses(backend):
    """With no eos among its kept guesses, prompt lookup writes greedy decoding's tokens; where
    an eos is among them (not last), it writes on past it, as upstream: its text then starts
    with greedy decoding's, up to and with the eos (the next test has such a case)."""
    model, prompts = looping_prompts()
    model = tiny_mpt(seed=3, backend=backend) if backend != "numpy" else model
    checked = past_eos = 0
    for ids in prompts:
        S = ids.shape[1]
        free = model.generate(ids, max_new_tokens=10, eos_token_id=None)[0, S:]
        for eos in [49, *sorted(set(free.tolist()))[:3]]:
            kw = dict(max_new_tokens=10, eos_token_id=eos, use_cache=True)
            greedy = model.generate(ids, **kw)
            looked = model.generate(ids, prompt_lookup_num_tokens=4, **kw)
            checked += 1
            if looked.shape == greedy.shape:
                np.testing.assert_array_equal(looked, greedy, err_msg=f"{ids} eos {eos}")
            else:  # written past an eos: greedy's text up to it, then more
                past_eos += 1
                n = greedy.shape[1]
                np.testing.assert_array_equal(looked[:, :n], greedy)
                assert greedy[0, -1] == eos and looked.shape[1] > n
    assert checked >= 36, checked


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_lookup_writes_on_past_an_eos_among_its_kept_guesses_as_upstream(backend):
    """The golden case generate-prompt-lookup-past-eos's checkpoint and prompt: greedy decoding
    stops at its eos, 28; the lookup guesses 28 1 34 after 31 and keeps 28 with the model's 33,
    and goes on (transformers 4.37.2 checks only the last kept token)."""
    case = ROOT / "golden" / "mpt" / "hf" / "generate-prompt-lookup-past-eos"
    model = from_pretrained(case, task="causal-lm", backend=backend)
    ids = np.array([[58, 31, 28, 1, 34]])
    kw = dict(max_new_tokens=11, eos_token_id=28, use_cache=True)
    assert model.generate(ids, **kw)[0, 5:].tolist() == [31, 28]
    looked = model.generate(ids, prompt_lookup_num_tokens=3, **kw)[0, 5:].tolist()
    assert looked[:3] == [31, 28, 33] and len(looked) == 11


def echo_mpt(scale=50.0):
    """The tiny model with its (tied) embeddings scaled up: it writes its last token again and
    again, so every guess of the lookup holds (bench.py's echo model, small)."""
    c = mpt_model.MPTConfig.from_dict(CONFIG)
    rng = np.random.default_rng(0)
    params = {
        k: (rng.normal(0, 0.3, s) + (1.0 if "norm" in k and k.endswith("weight") else 0))
        for k, s in mpt_model.param_shapes(c, "causal-lm").items()
    }
    params["wte.weight"] *= scale
    return build(CONFIG, {k: v.astype(np.float32) for k, v in params.items()}, task="causal-lm")


def test_a_text_that_repeats_takes_its_guesses_a_run_a_pass(monkeypatch):
    """On a text that repeats, each run of kept guesses (LOOKUP_AHEAD or more) sends as many with
    the last token in the next first pass: fewer passes than with guesses only after the last
    token's step, and the same tokens."""
    model = echo_mpt()
    ids = np.array([[3, 7, 11, 5]])
    kw = dict(max_new_tokens=16, eos_token_id=49, use_cache=True)
    greedy = model.generate(ids, **kw)
    assert (greedy[0, 4:] == 5).all()  # the echo: its last token again
    passes = []
    real = ModelSession.extend
    monkeypatch.setattr(
        ModelSession,
        "extend",
        lambda self, *a, **k: (passes.append(a[0].shape[1]), real(self, *a, **k))[1],
    )
    counts = {}
    for ahead in (3, 100):  # 100: never (each first pass is the last token alone)
        monkeypatch.setattr(generation, "LOOKUP_AHEAD", ahead)
        passes.clear()
        np.testing.assert_array_equal(model.generate(ids, prompt_lookup_num_tokens=5, **kw), greedy)
        counts[ahead] = len(passes)
    assert counts[3] < counts[100] < 16, counts


@pytest.mark.parametrize("chunk, ahead", [(1, 1), (2, 3), (100, 100)])
def test_the_passes_guesses_run_in_change_no_token_or_score(chunk, ahead, monkeypatch):
    """LOOKUP_CHUNK sets how many guesses a pass checks once the first holds (1: one at a time;
    100: every guess in one pass, as upstream), LOOKUP_AHEAD after how long a run the next first
    pass takes guesses: the tokens and recorded scores are the same."""
    model, prompts = looping_prompts()
    kw = dict(
        max_new_tokens=12,
        eos_token_id=49,
        use_cache=True,
        prompt_lookup_num_tokens=5,
        repetition_penalty=1.3,
        return_dict_in_generate=True,
        output_scores=True,
    )
    baseline = [model.generate(ids, **kw) for ids in prompts]
    monkeypatch.setattr(generation, "LOOKUP_CHUNK", chunk)
    monkeypatch.setattr(generation, "LOOKUP_AHEAD", ahead)
    for ids, want in zip(prompts, baseline):
        got = model.generate(ids, **kw)
        np.testing.assert_array_equal(got.sequences, want.sequences)
        assert len(got.scores) == got.sequences.shape[1] - ids.shape[1]
        for step, (a, b) in enumerate(zip(got.scores, want.scores)):
            assert_close(a, b, atol=1e-5, rtol=1e-5, what=f"scores {step}")


def test_lookup_sampling_draws_once_a_token_so_a_seed_gives_sampling_tokens():
    """Sampling with prompt lookup draws each place's token in order and stops at the first
    miss: one draw a token, so with a seed its text is plain sampling's with that seed (an eos
    it never writes)."""
    model, prompts = looping_prompts()
    kw = dict(max_new_tokens=10, eos_token_id=49, use_cache=True, do_sample=True, top_k=5)
    for seed, ids in enumerate(prompts):
        plain = model.generate(ids, seed=seed, **kw)
        looked = model.generate(ids, seed=seed, prompt_lookup_num_tokens=3, **kw)
        np.testing.assert_array_equal(looked, plain)


def test_lookup_streams_each_token_and_makes_none_without_room():
    model, prompts = looping_prompts()
    ids = prompts[0]
    kw = dict(eos_token_id=49, use_cache=True, prompt_lookup_num_tokens=3)
    streamed = [t.tolist() for t in model.stream(ids, max_new_tokens=9, **kw)]
    assert all(len(t) == 1 for t in streamed)
    np.testing.assert_array_equal(
        np.concatenate([ids[0], np.ravel(streamed)]),
        model.generate(ids, max_new_tokens=9, **kw)[0],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.generate(ids, max_new_tokens=0, **kw)
    np.testing.assert_array_equal(out, ids)
    assert any("prompt lookup makes none" in str(w.message) for w in caught)


@FAST
@given(
    prompt=st.lists(st.integers(1, 8), min_size=1, max_size=8),  # few distinct tokens: repeats
    eos=st.integers(1, 8),
    count=st.integers(1, 5),
    new=st.integers(1, 10),
    penalty=st.sampled_from([1.0, 1.3]),
)
def test_lookup_agrees_with_greedy_decoding_up_to_its_end(prompt, eos, count, new, penalty):
    """Any prompt, eos, guess count and length: prompt lookup writes greedy decoding's text, and
    where it is longer, greedy's ended at an eos that lookup kept among its guesses."""
    model = ECHOLESS
    ids = np.array([prompt])
    kw = dict(max_new_tokens=new, eos_token_id=eos, use_cache=True, repetition_penalty=penalty)
    greedy = model.generate(ids, **kw)
    looked = model.generate(ids, prompt_lookup_num_tokens=count, **kw)
    n = greedy.shape[1]
    assert looked.shape[1] >= n
    np.testing.assert_array_equal(looked[:, :n], greedy)
    if looked.shape[1] > n:
        assert greedy[0, -1] == eos


ECHOLESS = tiny_mpt(seed=5, vocab_size=10)  # a vocabulary of 10: texts that repeat themselves


@FAST
@given(
    st.integers(1, 3),  # rows
    st.integers(1, 6),  # cached positions
    # tokens in each pass: at most 6 + 3 x 4 = 18 positions, within the tiny model's max_seq_len
    # of 20 (a draw of 6 + 3 x 5 had run past it)
    st.lists(st.integers(1, 4), min_size=1, max_size=3),
    st.booleans(),  # a bf16 cache
    st.integers(0, 2**31 - 1),
)
def test_numba_passes_as_batched_steps_equal_passes_through_the_layers(B, P, passes, bf16, seed):
    """The numba session's passes of real tokens over a cache run through decode_step, n rows a
    cache row (up to FUSED_PASS_MAX_ROWS); through the stack's layers, as a prompt runs, they
    give the same logits and the same cache (a bf16 one too)."""
    import reference.backends.numba_stacks as ns

    options = {"kv_cache": "bf16"} if bf16 else {}
    model = tiny_mpt(backend="numba", **options)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 50, (B, P + sum(passes)))
    mask = np.ones((B, P), np.int64)
    mask[0, : P - 1] = 0  # row 0 left-padded inside the cache
    results = []
    for limit in (ns.FUSED_PASS_MAX_ROWS, 0):  # fused, then through the layers
        old, ns.FUSED_PASS_MAX_ROWS = ns.FUSED_PASS_MAX_ROWS, limit
        try:
            session = model.decode_session(B, ids.shape[1])
            out = [session.prefill(ids[:, :P], mask)]
            at = P
            for n in passes:
                out.append(session.extend(ids[:, at : at + n]).reshape(B, -1))
                at += n
            results.append((out, session.cache()))
        finally:
            ns.FUSED_PASS_MAX_ROWS = old
    (fused, fused_cache), (layers, layers_cache) = results
    # float32 sums in another order; a bf16 cache may round such a pair a bf16 step apart
    tol = dict(atol=2e-3, rtol=2.0**-7) if bf16 else dict(atol=2e-4, rtol=2e-4)
    for i, (a, b) in enumerate(zip(fused, layers)):
        assert_close(a, b, **tol, what=f"pass {i} logits")
    for (k, v), (k_ref, v_ref) in zip(fused_cache, layers_cache):
        assert_close(k, k_ref, **tol, what="keys")
        assert_close(v, v_ref, **tol, what="values")


@pytest.mark.parametrize("storage", ["fp32", "bf16", "q8"])
def test_a_numba_pass_equals_its_tokens_a_step_at_a_time_on_every_weight_storage(storage):
    """A pass of 10 tokens for each of 2 rows (20 rows of the matvecs: the register tiles, and
    for bf16 the row tiles of the bf16 dot products) against the same tokens a step each (2 rows:
    a row at a time), on each weight storage."""
    model = tiny_mpt(backend="numba", weight_storage=storage, d_model=128, n_heads=4)
    ids = np.random.default_rng(0).integers(1, 50, (2, 14))
    passes, steps = model.decode_session(2, 14), model.decode_session(2, 14)
    passes.prefill(ids[:, :4], None)
    steps.prefill(ids[:, :4], None)
    got = passes.extend(ids[:, 4:])
    want = np.stack([steps.step(ids[:, i]) for i in range(4, 14)], axis=1)
    tol = 1e-3 if storage == "bf16" else 1e-4  # bf16: the row tiles sum in another order
    assert_close(got, want, atol=tol, rtol=tol, what=f"{storage} pass")
