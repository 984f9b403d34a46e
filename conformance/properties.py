"""Property tier: invariants checked on hypothesis-drawn inputs, through the implementation
protocol.

Each property runs the implementation under test (never the reference) on a tiny model taken from a
golden case (its upstream config and weights) and states one invariant. It asks only for what it
reads (Property.outputs and .inputs; one the declaration lacks is a skip that says so), and compares
with the tolerance of conformance/tolerances.py for the declared compute dtype. The checker's own
arithmetic (a cross-entropy to check loss rules) is plain NumPy written here, independent of the
reference package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .capabilities import Capabilities
from .golden import group_members, iter_cases, tuple_leaves
from .tolerances import TOLERANCES

MPNET_PAD = 1  # MPNet's hard-coded padding index


@dataclass
class Property:
    id: str
    family: str
    profiles: tuple
    model_cases: (
        tuple  # golden case names (under <family>/<profile>/) whose config and weights may be used;
    )
    # the first whose task the implementation declares is taken (empty: MPT_MODEL)
    statement: str
    check: Callable  # check(impl, model, data) where data is a hypothesis DataObject
    outputs: tuple = ("final",)  # output groups the check reads (conformance/capabilities.py)
    inputs: tuple = ()  # optional input features it sends
    tuple_: bool = False  # whether it asks for return_dict=False tuples

    def unmet(self, caps) -> str:
        """Why a declaration cannot run this property, or ''."""
        missing = caps.missing_outputs(self.outputs) + sorted(set(self.inputs) - caps.inputs)
        if self.tuple_ and not caps.tuple:
            missing.append("return_dict=False tuples")
        return (
            f"needs {', '.join(missing)}, which the implementation does not declare"
            if missing
            else ""
        )


class Model:
    """A golden case's model, bound to the implementation under test; asks only for what a check
    needs."""

    def __init__(self, impl, case, tol):
        self.impl, self.case, self.tol = impl, case, tol
        self.config, self.weights, self.profile = case.config, case.weights, case.profile
        self.family, self.task = case.family, case.task

    def __call__(self, task=None, tuple_=False, need=(), **inputs):
        options = {
            "profile": self.profile,
            "output_hidden_states": "hidden_states" in need,
            "output_attentions": "attentions" in need,
            "return_tuple": tuple_,
        }
        arrays = {k: np.asarray(v) for k, v in inputs.items() if not k.startswith("_")}
        return self.impl.run(
            self.family, task or self.task, self.config, self.weights, arrays, options
        )

    def close(self, actual, expected, what):
        close(actual, expected, what, self.tol)

    @property
    def vocab(self):
        return self.config["vocab_size"]


def close(actual, expected, what, tol):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape}, expected {expected.shape}"
    )
    diff = np.abs(actual - expected)
    ok = (diff <= tol["atol"] + tol["rtol"] * np.abs(expected)) | (
        np.isnan(actual) & np.isnan(expected)
    )
    assert ok.all(), _mismatch(actual, expected, diff, what, tol)


def _mismatch(actual, expected, diff, what, tol):  # the message of a failed close()
    numbers = diff[~np.isnan(diff)]
    worst = f"{numbers.max():.3g}" if numbers.size else "-"
    one_nan = int((np.isnan(actual) != np.isnan(expected)).sum())
    return f"{what}: max abs error {worst} (atol {tol['atol']}, rtol {tol['rtol']})" + (
        f"; {one_nan} value(s) NaN on one side only" if one_nan else ""
    )


def cross_entropy(logits, labels):  # [N, C], [N] -> [N]
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


# ----------------------------------------------------------------------------------------- draws


def draw_ids(data, vocab, B=(1, 3), S=(2, 12), low=2):
    b = data.draw(st.integers(*B), label="batch")
    s = data.draw(st.integers(*S), label="length")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    return np.random.default_rng(seed).integers(low, vocab, size=(b, s)).astype(np.int64)


def draw_lengths(data, B, S):
    return [data.draw(st.integers(1, S), label=f"length of row {b}") for b in range(B)]


def right_padded(ids, lengths, pad):
    mask = (np.arange(ids.shape[1])[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return np.where(mask == 1, ids, pad), mask


def left_padded(ids, lengths, pad):
    S = ids.shape[1]
    mask = (np.arange(S)[None, :] >= S - np.array(lengths)[:, None]).astype(np.int64)
    shifted = np.stack([np.roll(row, S - n) for row, n in zip(ids, lengths)])
    return np.where(mask == 1, shifted, pad), mask


# --------------------------------------------------------------------------------------- MPNet


def mpnet_batching(impl, model, data):
    ids = draw_ids(data, model.vocab)
    lengths = draw_lengths(data, *ids.shape)
    padded, mask = right_padded(ids, lengths, MPNET_PAD)
    together = model(input_ids=padded, attention_mask=mask)["last_hidden_state"]
    for b, n in enumerate(lengths):
        alone = model(input_ids=ids[b : b + 1, :n])["last_hidden_state"]
        model.close(together[b, :n], alone[0], f"row {b} in a batch vs alone")


def mpnet_padding_side(impl, model, data):
    ids = draw_ids(data, model.vocab)
    lengths = draw_lengths(data, *ids.shape)
    right = model(
        **dict(zip(("input_ids", "attention_mask"), right_padded(ids, lengths, MPNET_PAD)))
    )
    left = model(**dict(zip(("input_ids", "attention_mask"), left_padded(ids, lengths, MPNET_PAD))))
    S = ids.shape[1]
    for b, n in enumerate(lengths):
        model.close(
            left["last_hidden_state"][b, S - n :],
            right["last_hidden_state"][b, :n],
            f"row {b}: left vs right padding",
        )


def mpnet_masked_content(impl, model, data):
    ids = draw_ids(data, model.vocab)
    lengths = draw_lengths(data, *ids.shape)
    padded, mask = right_padded(ids, lengths, MPNET_PAD)
    noise = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1))).integers(
        0, model.vocab, ids.shape
    )
    a = model(input_ids=padded, attention_mask=mask)["last_hidden_state"]
    b = model(input_ids=np.where(mask == 1, padded, noise), attention_mask=mask)[
        "last_hidden_state"
    ]
    for row, n in enumerate(lengths):
        model.close(b[row, :n], a[row, :n], f"row {row}: trailing masked tokens changed")


def bookkeeping(impl, model, data):
    ids = draw_ids(data, model.vocab, S=(1, 10))
    out = model(input_ids=ids, need=("hidden_states", "attentions"))
    cfg = model.config
    L = cfg.get("num_hidden_layers", cfg.get("n_layers"))
    H = cfg.get("num_attention_heads", cfg.get("n_heads"))
    C = cfg.get("hidden_size", cfg.get("d_model"))
    B, S = ids.shape
    hs, att = group_members(out, "hidden_states"), group_members(out, "attentions")
    assert len(hs) == L + 1, f"{len(hs)} hidden_states, expected L+1 = {L + 1}"
    assert len(att) == L, f"{len(att)} attentions, expected L = {L}"
    for name in hs:
        assert np.shape(out[name]) == (
            B,
            S,
            C,
        ), f"{name} has shape {np.shape(out[name])}, expected {(B, S, C)}"
    for name in att:
        assert np.shape(out[name]) == (
            B,
            H,
            S,
            S,
        ), f"{name} has shape {np.shape(out[name])}, expected {(B, H, S, S)}"
        model.close(np.sum(out[name], axis=-1), np.ones((B, H, S)), f"{name} rows sum to 1")


def tuple_matches_dict(impl, model, data):
    layout = model.case.meta.get("tuple_layout")
    ids = draw_ids(data, model.vocab, S=(2, 10))
    inputs = {"input_ids": ids, **label_inputs(model, ids, data)}
    need = ("hidden_states", "attentions")
    named, got = model(need=need, **inputs), model(tuple_=True, need=need, **inputs)["tuple"]
    assert len(got) == len(layout), f"tuple has {len(got)} entries, upstream layout is {layout}"
    for i, (entry, value) in enumerate(zip(layout, got)):
        if entry == "none" or entry.startswith("tuple."):
            continue
        parts = group_members(named, entry)
        items = tuple_leaves(value)
        assert len(items) == len(parts), (
            f"entry {i} should be {entry} ({len(parts)} arrays), has {len(items)}"
        )
        for name, item in zip(parts, items):
            model.close(item, named[name], f"tuple entry {i} vs {name}")


def label_inputs(model, ids, data):
    B, S = ids.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1), label="label seed"))
    if model.task == "question-answering":
        return {"start_positions": rng.integers(0, S, B), "end_positions": rng.integers(0, S, B)}
    if model.task in ("token-classification", "masked-lm", "causal-lm"):
        classes = model.config.get("num_labels", len(model.config.get("id2label", {})) or 2)
        classes = model.vocab if model.task != "token-classification" else classes
        return {"labels": rng.integers(0, classes, (B, S))}
    return {}


def mpnet_inputs_embeds(impl, model, data):
    ids = draw_ids(
        data, model.vocab
    )  # no pad id (1) is drawn, so positions are sequential either way
    table = model.weights.get(
        "mpnet.embeddings.word_embeddings.weight",
        model.weights.get("embeddings.word_embeddings.weight"),
    )
    model.close(
        model(inputs_embeds=table[ids])["last_hidden_state"],
        model(input_ids=ids)["last_hidden_state"],
        "inputs_embeds vs input_ids",
    )


def mpnet_head_mask(impl, model, data):
    ids = draw_ids(data, model.vocab)
    H = model.config["num_attention_heads"]
    head = data.draw(st.integers(0, H - 1), label="masked head")
    hm = np.ones(H, np.float32)
    hm[head] = 0
    out = model(input_ids=ids, head_mask=hm, need=("attentions",))
    for name in group_members(out, "attentions"):
        assert np.all(out[name][:, head] == 0), (
            f"{name}: head {head} is masked but its attention is not zero"
        )


def token_loss_rule(impl, model, data):
    """pt: mean CE over labels != -100; tf: shape (1,), every negative label ignored."""
    ids = draw_ids(data, model.vocab)
    B, S = ids.shape
    C = len(model.config.get("id2label") or {}) or model.config.get("num_labels", 2)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    labels = rng.integers(0, C, (B, S))
    ignore = rng.random((B, S)) < 0.4
    ignored_value = -100 if model.profile == "pt" else data.draw(st.sampled_from([-100, -1, -7]))
    labels = np.where(ignore, ignored_value, labels)
    out = model(input_ids=ids, labels=labels)
    keep = ~ignore.reshape(-1)
    per_item = cross_entropy(
        out["logits"].reshape(-1, C).astype(np.float64)[keep], labels.reshape(-1)[keep]
    )
    expected = per_item.mean() if keep.any() else np.nan
    shape = () if model.profile == "pt" else (1,)
    assert np.shape(out["loss"]) == shape, (
        f"loss shape {np.shape(out['loss'])}, expected {shape} for {model.profile}"
    )
    model.close(np.reshape(out["loss"], ()), expected, f"{model.profile} token-classification loss")


def qa_position_rule(impl, model, data):
    """pt: positions clamped to [0, S], S ignored, negatives count as 0; tf: per-example (B,)
    losses."""
    ids = draw_ids(data, model.vocab)
    B, S = ids.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    if model.profile == "pt":
        start, end = rng.integers(-3, S + 4, B), rng.integers(-3, S + 4, B)
    else:
        start, end = rng.integers(0, S, B), rng.integers(0, S, B)
    out = model(input_ids=ids, start_positions=start, end_positions=end)
    terms = []
    for logits, pos in ((out["start_logits"], start), (out["end_logits"], end)):
        logits = np.asarray(logits, np.float64)
        if model.profile == "pt":
            pos = np.clip(pos, 0, S)
            keep = pos != S
            terms.append(cross_entropy(logits[keep], pos[keep]).mean() if keep.any() else np.nan)
        else:
            terms.append(cross_entropy(logits, pos))
    model.close(out["loss"], (terms[0] + terms[1]) / 2, f"{model.profile} QA loss")


# ----------------------------------------------------------------------------------------- MPT


def mpt_cache_equivalence(impl, model, data):
    S_max = min(12, model.config["max_seq_len"])
    ids = draw_ids(data, model.vocab, S=(2, S_max), low=0)
    B, S = ids.shape
    full = model(input_ids=ids)["logits"]
    P = data.draw(st.integers(1, S - 1), label="prefill length")
    run = lambda inputs: model.impl.run(
        model.family,
        model.task,
        model.config,
        model.weights,
        inputs,  # noqa: E731
        {"profile": model.profile, "use_cache": True},
    )
    out = run({"input_ids": ids[:, :P]})
    model.close(out["logits"], full[:, :P], "prefill logits")
    pos = P
    while pos < S:
        step = data.draw(st.integers(1, S - pos), label="chunk")
        past = {
            k.replace("present.", "past."): v for k, v in out.items() if k.startswith("present.")
        }
        assert past, "use_cache=True returned no present.<layer>.key/value outputs"
        out = run({"input_ids": ids[:, pos : pos + step], **past})
        model.close(
            out["logits"], full[:, pos : pos + step], f"{step} new tokens after {pos} cached"
        )
        pos += step


def mpt_generate_cache(impl, model, data):
    """Greedy generate() from a given cache (the implementation's own, from a forward over the
    prompt's first P tokens) writes the tokens it writes from the whole prompt; the cache it
    returns (past_key_values, with use_cache) is a forward's over the text but its last token,
    either way."""
    # no token 0: generate() takes pad_token_id 0 in a prompt as padding, a forward without a mask
    ids = draw_ids(data, model.vocab, S=(2, min(8, model.config["max_seq_len"] - 4)), low=1)
    S = ids.shape[1]
    P = data.draw(st.integers(1, S - 1), label="cached tokens")
    greedy = dict(
        max_new_tokens=data.draw(st.integers(1, 4), label="new tokens"),
        use_cache=True,
        eos_token_id=None,
        pad_token_id=0,
        return_dict_in_generate=True,
    )

    def run(inputs, **options):
        return model.impl.run(
            model.family,
            model.task,
            model.config,
            model.weights,
            inputs,
            {"profile": model.profile, **options},
        )

    prefill = run({"input_ids": ids[:, :P]}, use_cache=True)
    past = {
        k.replace("present.", "past."): v for k, v in prefill.items() if k.startswith("present.")
    }
    assert past, "use_cache=True returned no present.<layer>.key/value outputs"
    whole = run({"input_ids": ids}, generate=greedy)
    cached = run({"input_ids": ids, **past}, generate=greedy)
    tokens = np.asarray(whole["sequences"])
    assert np.array_equal(np.asarray(cached["sequences"]), tokens), (
        f"generate() from a cache of {P} tokens wrote {np.asarray(cached['sequences']).tolist()},"
        f" from the whole prompt {tokens.tolist()}"
    )
    forward = run({"input_ids": tokens[:, :-1]}, use_cache=True)
    names = sorted(k for k in forward if k.startswith("present."))
    for way, out in (("from the whole prompt", whole), (f"from a cache of {P}", cached)):
        missing = [n for n in names if n not in out]
        assert not missing, f"generate() {way} returned no {missing[0]} (past_key_values)"
        for name in names:
            model.close(out[name], forward[name], f"generate() {way}: its returned {name}")


def mpt_causality(impl, model, data):
    ids = draw_ids(data, model.vocab, B=(1, 1), S=(2, min(12, model.config["max_seq_len"])), low=0)
    j = data.draw(st.integers(1, ids.shape[1] - 1), label="changed position")
    changed = ids.copy()
    changed[0, j] = (ids[0, j] + 1) % model.vocab
    model.close(
        model(input_ids=changed)["logits"][:, :j],
        model(input_ids=ids)["logits"][:, :j],
        f"logits before position {j} after changing token {j}",
    )


def mpt_left_padding(impl, model, data):
    ids = draw_ids(data, model.vocab, S=(2, min(12, model.config["max_seq_len"])), low=0)
    B, S = ids.shape
    pads = [data.draw(st.integers(0, S - 1), label=f"pads in row {b}") for b in range(B)]
    mask = (np.arange(S)[None, :] >= np.array(pads)[:, None]).astype(np.int64)
    out = model(input_ids=np.where(mask == 1, ids, 0), attention_mask=mask)["logits"]
    for b, n in enumerate(pads):
        alone = model(input_ids=ids[b : b + 1, n:])["logits"]
        model.close(out[b, n:], alone[0], f"row {b} with {n} left pads vs unpadded")


def mpt_loss_rule(impl, model, data):
    """Causal LM: mean CE of logits[:, :-1] against labels[:, 1:], ignoring -100."""
    ids = draw_ids(data, model.vocab, S=(2, min(10, model.config["max_seq_len"])), low=0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    labels = np.where(rng.random(ids.shape) < 0.3, -100, ids)
    out = model(input_ids=ids, labels=labels)
    V = out["logits"].shape[-1]
    shifted = labels[:, 1:].reshape(-1)
    keep = shifted != -100
    per = cross_entropy(
        np.asarray(out["logits"], np.float64)[:, :-1].reshape(-1, V)[keep], shifted[keep]
    )
    model.close(out["loss"], per.mean() if keep.any() else np.nan, "shifted causal-LM loss")


BASE, MASK, HS_ATT = ("base-right-padding",), ("attention_mask",), ("hidden_states", "attentions")
PROPERTIES = [
    Property(
        "mpnet.batching",
        "mpnet",
        ("pt", "tf"),
        BASE,
        "a padded batch row equals the same sequence run alone",
        mpnet_batching,
        inputs=MASK,
    ),
    Property(
        "mpnet.padding-side",
        "mpnet",
        ("pt", "tf"),
        BASE,
        "left and right padding give the same outputs at real tokens",
        mpnet_padding_side,
        inputs=MASK,
    ),
    Property(
        "mpnet.masked-content",
        "mpnet",
        ("pt", "tf"),
        BASE,
        "changing masked tokens after the last real one changes no real output",
        mpnet_masked_content,
        inputs=MASK,
    ),
    Property(
        "mpnet.bookkeeping",
        "mpnet",
        ("pt", "tf"),
        BASE,
        "L+1 hidden states [B, S, C], L attention maps [B, H, S, S] whose rows sum to 1",
        bookkeeping,
        outputs=HS_ATT,
    ),
    Property(
        "mpnet.inputs-embeds",
        "mpnet",
        ("pt", "tf"),
        BASE,
        "looking up the word embeddings and passing inputs_embeds equals passing input_ids",
        mpnet_inputs_embeds,
        inputs=("inputs_embeds",),
    ),
    Property(
        "mpnet.head-mask",
        "mpnet",
        ("pt",),
        BASE,
        "a head masked with 0 has all-zero attention",
        mpnet_head_mask,
        outputs=("attentions",),
        inputs=("head_mask",),
    ),
    Property(
        "mpnet.tuple-order",
        "mpnet",
        ("pt", "tf"),
        ("token-classification",) + BASE,
        "the return_dict=False tuple repeats the dict outputs in the upstream order",
        tuple_matches_dict,
        outputs=("final", "loss") + HS_ATT,
        inputs=("labels",),
        tuple_=True,
    ),
    Property(
        "mpnet.token-loss-rule",
        "mpnet",
        ("pt", "tf"),
        ("token-classification",),
        "the token-classification loss is the mean CE over kept labels, in the profile's shape",
        token_loss_rule,
        outputs=("final", "loss"),
        inputs=("labels",),
    ),
    Property(
        "mpnet.qa-position-rule",
        "mpnet",
        ("pt", "tf"),
        ("question-answering",),
        "the QA loss follows the profile's clamping and reduction",
        qa_position_rule,
        outputs=("final", "loss"),
        inputs=("labels",),
    ),
    Property(
        "mpt.cache-equivalence",
        "mpt",
        ("hf", "mosaic"),
        (),
        "prefill plus chunks over the cache equals the full forward at every new position",
        mpt_cache_equivalence,
        outputs=("final", "presents"),
        inputs=("past",),
    ),
    Property(
        "mpt.generate-cache",
        "mpt",
        ("hf",),
        (),
        "greedy generate() from a given cache writes the whole prompt's tokens, and the cache it"
        " returns is a forward's over the text but its last token",
        mpt_generate_cache,
        outputs=("final", "presents", "sequences"),
        inputs=("past",),
    ),
    Property(
        "mpt.causality",
        "mpt",
        ("hf", "mosaic"),
        (),
        "changing token j changes no logit before j",
        mpt_causality,
    ),
    Property(
        "mpt.left-padding",
        "mpt",
        ("hf", "mosaic"),
        (),
        "left padding leaves the logits at real tokens unchanged",
        mpt_left_padding,
        inputs=MASK,
    ),
    Property(
        "mpt.bookkeeping",
        "mpt",
        ("hf", "mosaic"),
        (),
        "L+1 hidden states [B, S, C], L attention maps [B, H, S, S] whose rows sum to 1",
        bookkeeping,
        outputs=HS_ATT,
    ),
    Property(
        "mpt.tuple-order",
        "mpt",
        ("hf",),
        ("causal-lm-loss-ignore",),
        "the return_dict=False tuple repeats the dict outputs in the upstream order",
        tuple_matches_dict,
        outputs=("final", "loss") + HS_ATT,
        inputs=("labels",),
        tuple_=True,
    ),
    Property(
        "mpt.loss-rule",
        "mpt",
        ("hf", "mosaic"),
        (),
        "the causal-LM loss is the mean CE of shifted labels, ignoring -100",
        mpt_loss_rule,
        outputs=("final", "loss"),
        inputs=("labels",),
    ),
]
MPT_MODEL = {"hf": "causal-lm-heads-3", "mosaic": "mosaic-defaults-left-padding"}


def property_checks(family=None, profile=None, golden_dir=None, caps=None):
    """(check id, Property, golden case) for every property and profile selected; the model is the
    first of the property's candidate cases whose task the declaration includes."""
    caps = caps or Capabilities()
    cases = {c.id: c for c in iter_cases(golden_dir, family=family, profile=profile)}
    checks = []
    for prop in PROPERTIES:
        for prof in prop.profiles:
            if (family and prop.family != family) or (profile and prof != profile):
                continue
            found = [
                cases[k]
                for n in prop.model_cases or (MPT_MODEL[prof],)
                if (k := f"{prop.family}/{prof}/{n}") in cases
            ]
            declared = [c for c in found if not caps.refuses(c.task)]
            if found:
                check_id = f"property/{prop.family}/{prof}/{prop.id.split('.', 1)[1]}"
                checks.append((check_id, prop, (declared or found)[0]))
    return checks


def run_property(impl, prop, case, max_examples, caps):
    """Run one property with hypothesis at the tolerance of the declared compute dtype; raises on
    failure."""
    if not __debug__:
        raise RuntimeError(
            "the property checks are assert statements, which python -O removes: run the"
            " conformance suite without -O"
        )
    model = Model(impl, case, TOLERANCES[caps.compute_dtype])

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    )  # no 'explain' coverage notes
    @given(st.data())
    def test(data):
        prop.check(impl, model, data)

    test()
