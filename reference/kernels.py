"""Which implementation of the hot operations a model uses: NumPy (the reference) or a fast backend.

A kernel set provides ``linear``, ``layer_norm``, ``gelu`` and ``attention`` with the signatures of
the NumPy functions in reference/ops.py, which they must equal (tests/test_numba_kernels.py).

Three compositions in every MPNet layer are methods: ``linears`` (several projections of one input),
``linear_gelu`` (gelu(linear(x, w, b))) and ``add_layer_norm`` (layer_norm(x + residual, ...)). A
backend may supply a fused version (one GEMM for q, k and v; one pass over the activations instead
of two or three), and otherwise they are exactly the composition.

``encoder_stack`` (optional) runs all of MPNet's layers at once, for a backend whose activations
should stay where the weights are (the cuda backend); the model uses it only when nothing per layer
is asked for (hidden states, attentions, head mask, dropout). ``decode_session`` (optional) opens
an MPT decode session over a preallocated cache: (config, params, features, batch, total_len) ->
a session with ``prefill(ids, mask)`` and ``step(token)``, or None where it does not apply.

The backends build these records (reference/backends/, which also holds the registry by name);
this module and the models only read them, so no reference module imports a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import ops


@dataclass(frozen=True)
class Kernels:
    name: str
    linear: Callable
    layer_norm: Callable
    gelu: Callable
    attention: Callable
    fused_linear_gelu: Callable | None = None
    fused_add_layer_norm: Callable | None = None
    fused_linears: Callable | None = None
    # (params, config, x, position_bias, mask_bias) -> MPNet's last hidden state after every layer,
    # or None where it does not apply; a device backend keeps the activations on the device.
    encoder_stack: Callable | None = None
    decode_session: Callable | None = None

    def linears(self, x, weights, biases):  # [..., I], [O_k, I], [O_k] -> one [..., O_k] per k
        """[linear(x, w, b) for each w, b]."""
        if self.fused_linears is not None:
            return self.fused_linears(x, weights, biases)
        return [self.linear(x, w, b) for w, b in zip(weights, biases)]

    def linear_gelu(self, x, weight, bias):  # [..., I], [O, I], [O] -> [..., O]
        """gelu(linear(x, weight, bias))."""
        if self.fused_linear_gelu is not None:
            return self.fused_linear_gelu(x, weight, bias)
        return self.gelu(self.linear(x, weight, bias))

    def add_layer_norm(self, x, residual, weight, bias, eps):  # [..., C], [..., C] -> [..., C]
        """layer_norm(x + residual, weight, bias, eps)."""
        if self.fused_add_layer_norm is not None:
            return self.fused_add_layer_norm(x, residual, weight, bias, eps)
        return self.layer_norm(x + residual, weight, bias, eps)


NUMPY = Kernels("numpy", ops.linear, ops.layer_norm, ops.gelu, ops.attention)
