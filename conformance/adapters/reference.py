"""The project's own NumPy reference, exposed through the implementation protocol."""

from __future__ import annotations

import os
import platform

import reference
from conformance.golden import generate_outputs, split_past  # noqa: F401  (split_past: re-exported, tests import it from here)
from reference.backends import get_backend
from reference.generation import warp_logits
from reference.mpnet import relative_position_bucket
from reference.mpt import alibi_bias, alibi_slopes
from reference.precision import low_precision_layer_norm


class ReferenceImplementation:
    def __init__(self, backend="numpy"):
        self.backend = backend
        self.name = f"reference[{backend}]"
        self.version = reference.__version__

        self.ops = {
            "relative_position_bucket": relative_position_bucket,
            "alibi_bias": lambda n_heads, key_len: alibi_bias(alibi_slopes(n_heads), key_len),
            "low_precision_layer_norm": low_precision_layer_norm,
            "logits_warper": warp_logits,
        }

    def check_available(self):
        """ValueError, with what is missing, when this backend cannot run on this machine."""
        get_backend(self.backend)

    @property
    def target(self):
        """Where the checks run, for the report: the CPU, or the GPU (or simulator) of the cuda
        backend."""
        if self.backend == "cuda":
            return {"kind": "gpu", "device": _gpu_name()}
        return {"kind": "cpu", "device": platform.processor() or platform.machine()}

    def run(self, family, task, config, weights, inputs, options):
        model = reference.build(
            config,
            weights,
            task=task,
            profile=options.get("profile"),
            backend=self.backend,
            generation_config=options.get("generation_config"),
        )
        plain, past = split_past(inputs)
        extra = {} if past is None else {"past_key_values": past}
        if "generate" in options:
            out = model.generate(**plain, **extra, **options["generate"])
            return generate_outputs(out, model)
        if "use_cache" in options:
            extra["use_cache"] = options["use_cache"]
        out = model(
            **plain,
            **extra,
            output_hidden_states=options.get("output_hidden_states"),
            output_attentions=options.get("output_attentions"),
            return_dict=not options.get("return_tuple", False),
        )
        if options.get("return_tuple"):
            return {"tuple": out}
        return out.to_dict()


implementation = ReferenceImplementation()
numba_implementation = ReferenceImplementation(
    "numba"
)  # Numba is imported only when a model is built
cuda_implementation = ReferenceImplementation("cuda")


def _gpu_name():
    """The GPU the cuda backend runs on, named lazily (or the simulator)."""
    try:
        from numba import cuda

        if cuda.is_available():
            name = cuda.get_current_device().name
            return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - no numba-cuda or no driver: the run itself will say so
        pass
    return "CUDA simulator" if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else "unavailable"
