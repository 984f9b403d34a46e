"""Tolerances per dtype, in one place. A value passes when |actual - expected| <= atol + rtol *
|expected|.

fp32 (every case unless it says otherwise): the golden models are tiny (hidden 32, 2 layers) with
  deliberately large weights, so activations reach ~10 and attention is peaked. Reordering fp32 sums
  (BLAS blocking, a different softmax or LayerNorm formula) moves results by a few ulps per op;
  measured differences between the NumPy reference and PyTorch/TensorFlow are below 5e-6. atol 2e-5
  leaves 4x headroom for other ports while still failing on any real semantic slip (a wrong bucket,
  mask value or GELU form changes outputs by 1e-3 or more). rtol 1e-4 covers large logits and
  losses.

bf16 / fp16 (the ``-bf16`` / ``-fp16`` cases, judged only for ports that declare that compute
dtype):
  calibrated from upstream's own spread, not guessed. tools/golden/make_low_precision.py runs
  transformers 4.37.2 (torch 2.13 CPU) twice on the same rounded weights and inputs, in the low
  precision and in float32, and stores both; the difference is how far low-precision compute moves
  each output. Another low-precision port rounds in other places, so its distance from upstream's
  low-precision run is of the same order as that spread, and up to about twice it when the two
  roundings add up. Each number below is therefore twice the measured spread: rtol is 8 units of
  the format's rounding (2 x 4: bf16 8 x 2^-8, fp16 8 x 2^-11), and atol per output group is twice
  the largest max(|low - fp32| - 4 units x |expected|) over every element of the 14 cases
  (7 MPNet pt and MPT hf cases x 2 dtypes). Measured (that largest value; worst case and output):

    bf16  attentions     0.0229  mpnet/pt/masked-lm-bf16 attentions.1          -> atol 0.05
          hidden_states  0.1456  mpt/hf/question-answering-bf16 hidden_states.1 (|expected| up to
          14.8) -> 0.3
          final, loss    0.1107  mpnet/pt/masked-lm-bf16 logits (up to 6.1)    -> 0.25
    fp16  attentions     0.0024  mpnet/pt/token-classification-fp16 attentions.1 -> 0.005
          hidden_states  0.0158  mpt/hf/causal-lm-left-padding-fp16 hidden_states.1 -> 0.035
          final, loss    0.0141  mpnet/pt/masked-lm-fp16 logits                -> 0.03

  The spread grows with the scale of the activations (about 1% of the largest |value| in bf16,
  0.1% in fp16), which is why hidden states get the largest atol. tests/test_low_precision.py
  recomputes these spreads from the stored runs and fails if the table stops covering twice them,
  or covers more than four times them (a table loosened by hand). Properties compare a port with
  itself; for a low-precision port they use the dtype's loosest group (TOLERANCES).
"""

from __future__ import annotations

from .capabilities import output_group

BF16_RTOL, FP16_RTOL = 8 * 2.0**-8, 8 * 2.0**-11
BY_GROUP = {
    "bf16": {
        "attentions": {"atol": 0.05, "rtol": BF16_RTOL},
        "hidden_states": {"atol": 0.3, "rtol": BF16_RTOL},
        "final": {"atol": 0.25, "rtol": BF16_RTOL},
        "loss": {"atol": 0.25, "rtol": BF16_RTOL},
    },
    "fp16": {
        "attentions": {"atol": 0.005, "rtol": FP16_RTOL},
        "hidden_states": {"atol": 0.035, "rtol": FP16_RTOL},
        "final": {"atol": 0.03, "rtol": FP16_RTOL},
        "loss": {"atol": 0.03, "rtol": FP16_RTOL},
    },
}
TOLERANCES = {
    "fp32": {"atol": 2e-5, "rtol": 1e-4},
    "fp16": BY_GROUP["fp16"]["hidden_states"],
    "bf16": BY_GROUP["bf16"]["hidden_states"],
}


def tolerance_for(case_meta: dict, output: str = None) -> dict:
    """The tolerance for one output of a case: the case's own for its dtype, else the table's (per
    output group for bf16 and fp16)."""
    dtype = case_meta.get("dtype", "fp32")
    own = case_meta.get("tolerance", {}).get(dtype)
    if own is not None:
        return {"atol": own["atol"], "rtol": own["rtol"]}  # a case may also say why (its "reason")
    if dtype in BY_GROUP and output is not None:
        return BY_GROUP[dtype].get(output_group(output), TOLERANCES[dtype])
    return TOLERANCES[dtype]
