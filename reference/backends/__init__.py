"""Fast backends and their registry. Only this subpackage imports Numba; the reference modules never
do.

A backend plugs in at whole stacks, not single operations. Per model family it offers a factory that
loading calls once with the model's config and nested params, and that returns the stack the model
then uses in place of the NumPy layers:

* ``mpnet_encoder(config, params)`` -> a callable ``(x, position_bias, mask_bias, head_masks, rng,
  per_layer)`` returning what ``mpnet.encoder`` returns (the last hidden state, every hidden state
  and every attention map; with per_layer False the lists may be None);
* ``mpt_decoder(config, features, params, weight_storage)`` -> an object with ``embed(ids)``,
  ``__call__(x, past, masked, bias, rng, per_layer)`` (what ``mpt.decoder`` returns),
  ``lm_logits(x, logit_scale)`` and ``decode_session(batch, total_len)`` (a session with
  ``prefill(ids, mask)`` and ``step(token)``, or None where its features are not covered).

A stack may prepare what it needs at binding (one q/k/v block, bf16 copies, device copies) and owns
it. Where a backend lists a family in ``defers``, its stack gets the checkpoint's matrices as
``checkpoint.DeferredTensor`` objects to read (rows, or all of one) straight into its own layout,
and whatever it leaves unread is read into arrays after binding. Where a request is outside what
a stack covers it runs the NumPy function itself. ``kernels`` is the backend's single operations,
the twins of reference/ops.py that the conformance op tier and the unit tests check one by one.

Imports go one way: a backend imports the reference (ops.py for the twins it must equal, mpnet.py
and mpt.py for the functions its stacks must equal and fall back to), and no model module imports a
backend. Loading (reference/loading.py) asks this registry once, by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..kernels import NUMPY, Kernels

BACKENDS = ("numpy", "numba", "cuda")


@dataclass(frozen=True)
class Backend:
    name: str
    kernels: Kernels
    mpnet_encoder: Callable | None = None  # None: the model runs mpnet.encoder
    mpt_decoder: Callable | None = None  # None: the model runs mpt.decoder
    weight_storages: tuple = ("fp32",)
    kv_caches: tuple = ("fp32",)  # mpt_model.KV_CACHES this backend's MPT stack computes
    # the model_types whose stack takes checkpoint.DeferredTensor matrices and reads each into a
    # layout of its own (from_pretrained then never holds a float32 copy of them all beside it)
    defers: tuple = ()


REFERENCE = Backend("numpy", NUMPY, kv_caches=("fp32", "bf16"))


def get_backend(name) -> Backend:
    """The backend of a name (a Backend passes through); a clear ValueError when its optional
    dependency or its device is missing."""
    if isinstance(name, Backend):
        return name
    if name == "numpy":
        return REFERENCE
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; accepted: {list(BACKENDS)}")
    if name == "numba":
        try:
            from .numba_stacks import NUMBA_BACKEND
        except ImportError as e:
            raise ValueError(
                f"backend='numba' needs Numba: pip install 'mpnet-mpt-reference[numba]' ({e})"
            ) from None
        return NUMBA_BACKEND
    try:
        from . import cuda_ops
    except ImportError as e:
        raise ValueError(
            f"backend='cuda' needs numba-cuda: pip install 'mpnet-mpt-reference[cuda]' ({e})"
        ) from None
    cuda_ops.require_cuda()
    from .cuda_backend import CUDA_BACKEND

    return CUDA_BACKEND


def get_kernels(name) -> Kernels:
    """The single operations of a backend (the conformance op tier checks them against
    reference/ops.py)."""
    return get_backend(name).kernels
