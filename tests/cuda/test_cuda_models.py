"""Whole models on the cuda backend (simulator or GPU): device-resident decoding and golden
cases."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("reference.backends.cuda_ops")

import reference  # noqa: E402
from conformance.adapters.reference import ReferenceImplementation  # noqa: E402
from conformance.checks import check_golden  # noqa: E402
from conformance.compare import compare  # noqa: E402
from conformance.golden import iter_cases  # noqa: E402
from conformance.tolerances import tolerance_for  # noqa: E402
from reference import mpt_model as mpt  # noqa: E402

CONFIG = dict(model_type="mpt", d_model=8, n_heads=2, n_layers=2, vocab_size=20, max_seq_len=24)


def weights(seed=0):
    c = mpt.MPTConfig.from_dict(CONFIG)
    rng = np.random.default_rng(seed)
    return {
        "transformer." + k: (
            (rng.normal(0, 0.3, s) + (1.0 if "norm" in k else 0.0)).astype(np.float32)
        )
        for k, s in mpt.param_shapes(c, "causal-lm").items()
    }


def test_device_resident_generation_equals_numpy_with_left_padding():
    w = weights()
    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4]])
    mask = (ids != 0).astype(np.int64)
    want = reference.build(CONFIG, w, task="causal-lm").generate(
        ids, attention_mask=mask, max_new_tokens=4
    )
    model = reference.build(CONFIG, w, task="causal-lm", backend="cuda")
    assert model.decode_session(2, 10) is not None
    np.testing.assert_array_equal(model.generate(ids, attention_mask=mask, max_new_tokens=4), want)


def test_the_cuda_backend_refuses_a_bf16_kv_cache_by_name():
    with pytest.raises(ValueError, match="kv_cache='bf16' is not supported by backend 'cuda'"):
        reference.build(CONFIG, weights(), task="causal-lm", backend="cuda", kv_cache="bf16")


def test_seeded_sampling_draws_the_same_tokens_as_numpy():
    """Sampling runs on the host in float64 from each step's logits with the seeded NumPy generator,
    so a seed gives the same tokens on every backend (docs/errors.md, determinism)."""
    w = weights(1)
    ids = np.array([[5, 6, 7], [1, 2, 3]])
    args = dict(
        max_new_tokens=2, do_sample=True, seed=7, temperature=1.5, top_k=0
    )  # prefill and one step
    want = reference.build(CONFIG, w, task="causal-lm").generate(ids, **args)
    np.testing.assert_array_equal(
        reference.build(CONFIG, w, task="causal-lm", backend="cuda").generate(ids, **args), want
    )


SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
# The simulator runs each GPU thread as a Python thread: there, a small case of each family and
# profile (TF's the token-classification and question-answering heads this project was first
# written for), about 50 s in all on one core (Zen 4); on a GPU, every golden case.
SMALL = (
    "mpnet/pt/base-s1",
    "mpnet/tf/token-classification",
    "mpnet/tf/question-answering",
    "mpt/hf/cache-decode-one",
    "mpt/mosaic/mosaic-prefix-lm-alibi",
)
CUDA_CASES = [c for c in iter_cases(dtype="fp32") if not SIMULATED or c.id in SMALL]


@pytest.mark.parametrize("case", CUDA_CASES, ids=[c.id for c in CUDA_CASES])
def test_golden_cases_on_the_cuda_kernels(case):
    """Golden cases through the CUDA kernels: every case on a GPU, the smallest ones in the
    simulator."""
    results = check_golden(ReferenceImplementation("cuda"), case)
    for r in results:
        assert r.status == "pass", f"{r.id}: {r.message} {r.diagnosis or ''}"


MPNET = dict(
    model_type="mpnet",
    vocab_size=30,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=20,
    layer_norm_eps=1e-5,
)


def test_mpnet_encoder_runs_device_resident_and_equals_numpy():
    """Every MPNet layer runs on the device (cuda_backend.EncoderStack), with the final outputs only
    and with every layer's hidden state and attention map downloaded; both equal NumPy. A head mask
    is outside the kernels: the stack then runs mpnet.encoder."""
    from reference import mpnet, mpnet_model
    from reference.backends import cuda_ops

    c = mpnet_model.MPNetConfig.from_dict(MPNET)
    rng = np.random.default_rng(3)
    w = {
        k: (rng.normal(0, 0.3, s) + (1.0 if "LayerNorm.weight" in k else 0.0)).astype(np.float32)
        for k, s in mpnet_model.param_shapes(c, "base").items()
    }
    ids = np.array([[0, 5, 6, 7, 8, 2], [0, 9, 2, 1, 1, 1]])
    mask = (ids != 1).astype(np.int64)
    want = reference.build(MPNET, w)(
        ids, attention_mask=mask, output_hidden_states=True, output_attentions=True
    )
    model = reference.build(MPNET, w, backend="cuda")
    launches = []
    real = cuda_ops.attention

    def spy(*args, **kwargs):
        launches.append(1)
        return real(*args, **kwargs)

    cuda_ops.attention = spy
    try:
        got = model(ids, attention_mask=mask)
        assert len(launches) == c.num_hidden_layers, "the device-resident encoder was not used"
        per_layer = model(
            ids, attention_mask=mask, output_hidden_states=True, output_attentions=True
        )
        assert len(launches) == 2 * c.num_hidden_layers, "per-layer outputs also run on the device"
        model(ids, attention_mask=mask, head_mask=np.ones(2, np.float32))
        assert len(launches) == 2 * c.num_hidden_layers, "a head mask runs mpnet.encoder"
    finally:
        cuda_ops.attention = real
    for name in ("last_hidden_state", "pooler_output"):
        diff = np.abs(getattr(got, name) - getattr(want, name)).max()
        assert diff <= 2e-5, f"{name}: max abs error {diff:.3g} (atol 2e-5)"
    for name, array in want.to_dict().items():
        diff = np.abs(per_layer.to_dict()[name] - array).max()
        assert diff <= 2e-5, f"{name}: max abs error {diff:.3g} (atol 2e-5)"
    assert callable(mpnet.encoder)


def test_mpt_decoder_stack_runs_on_the_device_and_equals_numpy():
    """A plain MPT forward runs its blocks on the device (cuda_backend.DecoderStack), presents and
    per-layer outputs included; a past passed in runs mpt.decoder. All equal NumPy."""
    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4]])
    mask = (ids != 0).astype(np.int64)
    w = weights()
    outs = []
    for backend in ("numpy", "cuda"):
        model = reference.build(CONFIG, w, task="causal-lm", backend=backend)
        first = model(
            ids,
            attention_mask=mask,
            use_cache=True,
            output_hidden_states=True,
            output_attentions=True,
        )
        mask2 = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
        second = model(
            np.array([[9], [10]]), past_key_values=first.past_key_values, attention_mask=mask2
        )
        outs.append({**first.to_dict(), "next": second.logits})
    for name, array in outs[0].items():
        diff = np.abs(outs[1][name] - array).max()
        assert diff <= 2e-5, f"{name}: max abs error {diff:.3g} (atol 2e-5)"


# On a GPU only: in the simulator, test_mpnet_encoder_runs_device_resident_and_equals_numpy covers
# this path.
MPNET_CASES = (
    [] if SIMULATED else [c for c in CUDA_CASES if c.family == "mpnet" and not c.expect_error]
)


@pytest.mark.parametrize("case", MPNET_CASES, ids=[c.id for c in MPNET_CASES])
def test_mpnet_golden_outputs_without_per_layer_outputs(case):
    """The golden cases ask for every layer's hidden states, so they run layer by layer; asked again
    without them, the cuda backend downloads only the last hidden state (EncoderStack), and the
    final outputs must still match upstream's."""
    options = {
        **case.options,
        "profile": case.profile,
        "output_hidden_states": False,
        "output_attentions": False,
    }
    impl = ReferenceImplementation("cuda")
    actual = impl.run(case.family, case.task, case.config, case.weights, case.inputs, options)
    tol = tolerance_for(case.meta)
    expected = case.expected
    names = [n for n in case.meta["outputs"] if not n.startswith(("hidden_states.", "attentions."))]
    assert names, "the case has no final outputs"
    for name in names:
        c = compare(name, actual.get(name), expected[name], tol["atol"], tol["rtol"])
        assert c.ok, c.describe()


def test_beam_search_on_the_cuda_backend_equals_numpy():
    """Beam search runs in the cuda decode session, its cache rows gathered on the device as the
    beams are copied (DecodeSession.reorder), twice in a row: the second gathers back into the
    first buffers."""
    w = weights(2)
    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4]])
    args = dict(attention_mask=(ids != 0).astype(np.int64), max_new_tokens=4, num_beams=2)
    want = reference.build(CONFIG, w, task="causal-lm").generate(ids, **args)
    model = reference.build(CONFIG, w, task="causal-lm", backend="cuda")
    assert hasattr(model.decode_session(4, 8), "reorder")
    np.testing.assert_array_equal(model.generate(ids, **args), want)


def test_prompt_lookup_on_the_cuda_session_equals_numpy():
    """Prompt lookup on the cuda session: extend runs a prompt and guesses (a step each), rewind
    forgets the guesses not kept; the tokens and each pass's logits are the NumPy model's."""
    w = weights(3)
    ids = np.array([[5, 6, 5, 6, 5]])
    numpy_model = reference.build(CONFIG, w, task="causal-lm")
    model = reference.build(CONFIG, w, task="causal-lm", backend="cuda")
    session = model.decode_session(1, 10)
    full = numpy_model(np.array([[5, 6, 5, 6, 5, 6, 7, 8]])).logits
    first = session.extend(ids, np.ones((1, 5), np.int64), last=2)
    np.testing.assert_allclose(first, full[:, 3:5], atol=1e-4, rtol=1e-4)
    guesses = session.extend(np.array([[6, 7, 9]]))  # 9 is not the text: forgotten below
    np.testing.assert_allclose(guesses[:, :2], full[:, 5:7], atol=1e-4, rtol=1e-4)
    session.rewind(7)
    np.testing.assert_allclose(session.step(np.array([8])), full[:, 7], atol=1e-4, rtol=1e-4)
    args = dict(max_new_tokens=5, eos_token_id=19, use_cache=True, prompt_lookup_num_tokens=3)
    np.testing.assert_array_equal(model.generate(ids, **args), numpy_model.generate(ids, **args))


@pytest.mark.parametrize("beams", [1, 2])
def test_the_cuda_sessions_returned_cache_equals_numpy(beams):
    """generate()'s past_key_values from the cuda session (cache(): keys brought back from the
    [D, T] layout the device keeps them in), greedy and after beam search's last reorder."""
    w = weights(4)
    ids = np.array([[5, 6, 7, 8], [0, 0, 3, 4]])
    args = dict(
        attention_mask=(ids != 0).astype(np.int64),
        max_new_tokens=3,
        num_beams=beams,
        use_cache=True,
        return_dict_in_generate=True,
    )
    want = reference.build(CONFIG, w, task="causal-lm").generate(ids, **args)
    got = reference.build(CONFIG, w, task="causal-lm", backend="cuda").generate(ids, **args)
    np.testing.assert_array_equal(got.sequences, want.sequences)
    assert got.past_key_values[0][0].shape == (2 * beams, 2, 6, 4)
    for layer, (a, b) in enumerate(zip(got.past_key_values, want.past_key_values)):
        for name, x, y in zip(("key", "value"), a, b):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-4, err_msg=f"{layer} {name}")


def test_the_cuda_session_goes_on_from_a_given_cache_as_numpy():
    """generate(past_key_values=) on the cuda session: the cache uploaded (load), the tokens after
    it run a step each, the same tokens and cache as the NumPy model's."""
    w = weights(5)
    ids = np.array([[5, 6, 7, 8, 9, 10], [0, 0, 3, 4, 5, 6]])
    mask = (ids != 0).astype(np.int64)
    numpy_model = reference.build(CONFIG, w, task="causal-lm")
    past = numpy_model(ids[:, :4], attention_mask=mask[:, :4], use_cache=True).past_key_values
    args = dict(
        attention_mask=mask,
        past_key_values=past,
        max_new_tokens=3,
        use_cache=True,
        return_dict_in_generate=True,
    )
    want = numpy_model.generate(ids, **args)
    got = reference.build(CONFIG, w, task="causal-lm", backend="cuda").generate(ids, **args)
    np.testing.assert_array_equal(got.sequences, want.sequences)
    for layer, (a, b) in enumerate(zip(got.past_key_values, want.past_key_values)):
        for name, x, y in zip(("key", "value"), a, b):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-4, err_msg=f"{layer} {name}")
