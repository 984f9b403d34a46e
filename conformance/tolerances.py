"""Tolerances per dtype, in one place. A value passes when |actual - expected| <= atol + rtol * |expected|.

fp32: the golden models are tiny (hidden 32, 2 layers) with deliberately large weights, so
  activations reach ~10 and attention is peaked. Reordering fp32 sums (BLAS blocking, a different
  softmax or LayerNorm formula) moves results by a few ulps per op; measured differences between the
  NumPy reference and PyTorch/TensorFlow are below 5e-6. atol 2e-5 leaves 4x headroom for other ports
  while still failing on any real semantic slip (a wrong bucket, mask value or GELU form changes
  outputs by 1e-3 or more). rtol 1e-4 covers large logits and losses.
fp16 / bf16: one rounding of the 10- and 7-bit mantissas is 2^-11 and 2^-8 relative; outputs that
  pass through a few rounded ops are allowed a few of those units.
"""

TOLERANCES = {
    "fp32": {"atol": 2e-5, "rtol": 1e-4},
    "fp16": {"atol": 2e-3, "rtol": 4e-3},
    "bf16": {"atol": 1.6e-2, "rtol": 3.2e-2},
}


def tolerance_for(case_meta: dict) -> dict:
    """The case's own tolerance for its dtype, else the table's."""
    dtype = case_meta.get("dtype", "fp32")
    return case_meta.get("tolerance", {}).get(dtype, TOLERANCES[dtype])
