"""Known variants, tried where a port fails a golden case: is the port's output what the
reference gives with one upstream behaviour swapped for a common porting variant?

A port that gives only final outputs cannot be told at which layer it diverges; but most ports
that diverge do so in one of a few known ways, and trying them says which. Each suspect runs the
NumPy reference on the case with one change (SUSPECTS: the GELU by its tanh approximation, or by
ggml's fp16 table of it; MPT's attention scaled by 1 / sqrt(head size) whatever softmax_scale
says, or its ALiBi slopes as if the head count were a power of two; MPNet's position ids counted
without the padding offset, or with padding, or its attention without the relative position
bias; the attention mask ignored; the other profile's semantics), and its outputs are compared
with the port's, output by output, at the case's tolerances. A suspect within them explains the
failure; one within them for most of the port's outputs, where upstream is not, is the closest
known variant (explain). Either is added to the result's diagnosis. Found this way
(tests/test_engine_ports.py): llama.cpp's MPT computes GELU from ggml's fp16 table, and
CTranslate2's MPT converter drops softmax_scale. The suspects patch the reference's modules while
they run, so they run one at a time in a process.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

CLOSER = 10  # a suspect this many times closer to the port than upstream is worth naming


def ggml_gelu(x):
    """GELU as ggml's CPU backend computes it (GGML_GELU_FP16): the input rounded to fp16, the
    tanh approximation at that value, stored as fp16; 0 below -10 and x itself above 10."""
    x = np.asarray(x, np.float32)
    h = x.astype(np.float16).astype(np.float32)
    tanh = np.tanh(np.float32(math.sqrt(2 / math.pi)) * h * (1 + np.float32(0.044715) * h * h))
    table = (np.float32(0.5) * h * (1 + tanh)).astype(np.float16).astype(np.float32)
    return np.where(x <= -10, np.float32(0), np.where(x >= 10, x, table)).astype(x.dtype)


@contextmanager
def _patched(*changes):  # (object, attribute or key, value): each set, then put back
    saved = []
    try:
        for target, name, value in changes:
            if isinstance(target, dict):
                saved.append((target, name, target[name]))
                target[name] = value
            else:
                saved.append((target, name, getattr(target, name)))
                setattr(target, name, value)
        yield
    finally:
        for target, name, value in reversed(saved):
            if isinstance(target, dict):
                target[name] = value
            else:
                setattr(target, name, value)


def _gelu(replacement):  # -> the patches that put ``replacement`` wherever the reference's GELU is
    from reference import mpnet, mpt, ops

    return [
        (ops.ACTIVATIONS, "gelu", replacement),  # MPNet's intermediate layers (hidden_act)
        (mpnet, "gelu", replacement),  # MPNet's masked-LM head
        (mpt, "gelu", replacement),
    ]


def _tanh_gelu():
    from reference.ops import gelu_new

    return _gelu(gelu_new)


def _table_gelu():
    return _gelu(ggml_gelu)


def _unscaled():
    from reference import mpt

    return [(mpt, "softmax_scale", lambda config: 1 / math.sqrt(config.head_size))]


def _positions(first):  # MPNet's position ids first, first + 1, ... for every token, pad or not
    from reference import mpnet

    def positions(ids):
        return np.zeros_like(ids) + first + np.arange(ids.shape[1])

    return [(mpnet, "position_ids_from_input_ids", positions)]


def _slopes_as_powers_of_two():  # ALiBi slopes 2^(-k max / H), k = 1..H, whatever H is
    from reference import mpt

    def slopes(n_heads, alibi_bias_max=mpt.HF_ALIBI_BIAS_MAX):
        k = np.arange(1, n_heads + 1, dtype=np.float32)
        return np.float32(1) / np.power(np.float32(2), k * np.float32(alibi_bias_max / n_heads))

    return [(mpt, "alibi_slopes", slopes)]


def _no_relative_bias():  # MPNet attention without its relative position bias, as BERT's
    from reference import mpnet

    def bias(table, seq_len, num_buckets):
        return np.zeros((table.shape[1], seq_len, seq_len), table.dtype)

    return [(mpnet, "relative_position_bias", bias)]


def _unmasked(inputs):  # every token attended, the mask given ignored (None: no mask to ignore)
    if "attention_mask" not in inputs:
        return None
    return {**inputs, "attention_mask": np.ones_like(inputs["attention_mask"])}


@dataclass(frozen=True)
class Suspect:
    name: str
    what: str  # the variant, in a few words, for the diagnosis
    families: tuple
    patches: Callable = list  # -> the (object, attribute or key, value) changes to make
    profile: dict | None = None  # the case's profile -> the one to run instead
    inputs: Callable | None = None  # the case's inputs -> those to run instead (None: not this)


OTHER_PROFILE = {"pt": "tf", "tf": "pt", "hf": "mosaic", "mosaic": "hf"}
SUSPECTS = (
    Suspect("gelu-tanh", "GELU by its tanh approximation", ("mpnet", "mpt"), _tanh_gelu),
    Suspect(
        "gelu-fp16-table",
        "ggml's GELU, the tanh approximation from an fp16 table",
        ("mpnet", "mpt"),
        _table_gelu,
    ),
    Suspect(
        "softmax-scale-ignored",
        "attention scaled by 1 / sqrt(head size), softmax_scale ignored",
        ("mpt",),
        _unscaled,
    ),
    Suspect(
        "positions-from-zero",
        "position ids 0, 1, ... without the padding offset",
        ("mpnet",),
        lambda: _positions(0),
    ),
    Suspect(
        "positions-with-padding",
        "position ids 2, 3, ... counting padding tokens too",
        ("mpnet",),
        lambda: _positions(2),
    ),
    Suspect(
        "alibi-slopes-power-of-two",
        "ALiBi slopes 2^(-8 k / H) whatever the head count H, not MPT's interleaved ones",
        ("mpt",),
        _slopes_as_powers_of_two,
    ),
    Suspect(
        "relative-bias-missing",
        "no relative position bias in attention, as in BERT",
        ("mpnet",),
        _no_relative_bias,
    ),
    Suspect(
        "attention-mask-ignored",
        "the attention mask ignored: padding attended",
        ("mpnet", "mpt"),
        inputs=_unmasked,
    ),
    Suspect(
        "other-profile", "the other profile's semantics", ("mpnet", "mpt"), profile=OTHER_PROFILE
    ),
)


def _typical(outputs, against, names, case):  # -> the median element's margin, or inf
    """The median over every element of ``names`` of |output - against| over its tolerance
    (atol + rtol |against|): how far most of the outputs are, where the worst may be one
    element; inf where an output is missing or of another shape."""
    from .tolerances import tolerance_for

    ratios = []
    for name in names:
        a, b = outputs.get(name), against.get(name)
        if a is None or b is None or np.shape(a) != np.shape(b):
            return math.inf
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        tol = tolerance_for(case.meta, name)
        with np.errstate(invalid="ignore"):
            ratio = np.abs(a - b) / (tol["atol"] + tol["rtol"] * np.abs(b))
        same_nan = np.isnan(a) & np.isnan(b)
        ratios.append(np.where(same_nan, 0.0, np.where(np.isnan(ratio), math.inf, ratio)).ravel())
    return float(np.median(np.concatenate(ratios))) if ratios else math.inf


def explain(case, request, actual, margin):
    """A sentence naming the known variant that explains a failed case (the port's outputs
    ``actual``, its worst ``margin`` to upstream), or None. A suspect explains it where all of
    the port's outputs are within the case's tolerances of the suspect's; short of that, the
    closest is named where most of the port's outputs are out of tolerance of upstream's (the
    median element's margin over 1) but within tolerance of the suspect's, CLOSER times nearer,
    and the worst nearer too (a variant such as a table lookup can put a few elements a step
    away, which the worst element shows and the median does not)."""
    from conformance.adapters.reference import ReferenceImplementation

    from .compare import compare
    from .tolerances import tolerance_for

    reference = ReferenceImplementation()
    names = [n for n in request.compared if actual.get(n) is not None]
    found = []  # (worst margin, median margin, suspect)
    for suspect in SUSPECTS:
        if case.family not in suspect.families or not names:
            continue
        options, inputs = dict(request.options), request.inputs
        if suspect.profile is not None:
            options["profile"] = suspect.profile[case.profile]
        if suspect.inputs is not None:
            inputs = suspect.inputs(inputs)
            if inputs is None:  # the variant changes nothing here
                continue
        try:
            with _patched(*suspect.patches()), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. weights the other profile does not use
                theirs = reference.run(
                    case.family, case.task, case.config, case.weights, inputs, options
                )
        except Exception:  # noqa: BLE001 - a variant that cannot run the case explains nothing
            continue
        comparisons = [
            compare(n, actual[n], theirs.get(n), **tolerance_for(case.meta, n)) for n in names
        ]
        # an output of another shape, or missing, or NaN where the other is not: not explained
        worst = max(math.inf if c.problem else c.margin for c in comparisons)
        found.append((worst, _typical(actual, theirs, names, case), suspect))
    explained = [f for f in found if f[0] <= 1]
    if explained:
        suspect = min(explained, key=lambda f: f[0])[2]
        return (
            f"explained by a known variant: {suspect.name} ({suspect.what}), within tolerance of it"
        )
    upstream = _typical(actual, case.expected, names, case)
    close = [
        f for f in found if f[1] <= 1 < upstream and f[1] * CLOSER <= upstream and f[0] < margin
    ]
    if close:
        worst, typical, suspect = min(close, key=lambda f: f[1])
        return (
            f"closest known variant: {suspect.name} ({suspect.what}), the median output"
            f" {typical:.2g}x the tolerance from it against {upstream:.2g}x from upstream (the"
            f" worst {worst:.3g}x against {margin:.3g}x)"
        )
    return None
