"""Hugging Face transformers on PyTorch (profiles pt for MPNet, hf for MPT), as an implementation
under test. Optional: needs torch and transformers (tools/README.md has the pinned versions)."""

from __future__ import annotations

import numpy as np

from ..capabilities import Capabilities
from ..golden import generate_outputs, upstream_generate_kwargs
from ..protocol import Unsupported
from ._hf_common import checkpoint_dir, flatten, split_past

CLASSES = {
    ("mpnet", "base"): "MPNetModel",
    ("mpnet", "masked-lm"): "MPNetForMaskedLM",
    ("mpnet", "sequence-classification"): "MPNetForSequenceClassification",
    ("mpnet", "multiple-choice"): "MPNetForMultipleChoice",
    ("mpnet", "token-classification"): "MPNetForTokenClassification",
    ("mpnet", "question-answering"): "MPNetForQuestionAnswering",
    ("mpt", "base"): "MptModel",
    ("mpt", "causal-lm"): "MptForCausalLM",
    ("mpt", "sequence-classification"): "MptForSequenceClassification",
    ("mpt", "token-classification"): "MptForTokenClassification",
    ("mpt", "question-answering"): "MptForQuestionAnswering",
}
PROFILES = {"mpnet": "pt", "mpt": "hf"}


class TransformersPyTorch:
    """dtype "bf16" or "fp16" runs weights and compute in that precision (as the low-precision
    goldens were made), and declares it, so it is judged by the -bf16 / -fp16 cases."""

    def __init__(self, dtype="fp32"):
        self.dtype = dtype
        self._dirs, self._models = {}, {}
        if dtype != "fp32":
            self.capabilities = Capabilities(compute_dtype=dtype)

    @property
    def name(self):
        return "transformers (PyTorch)" + ("" if self.dtype == "fp32" else f", {self.dtype}")

    def _torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype]

    @property
    def version(self):
        import transformers

        return transformers.__version__

    def _model(self, family, task, config, weights):
        import transformers

        directory = checkpoint_dir(config, weights, self._dirs)
        key = (directory, task)
        if key not in self._models:
            model = getattr(transformers, CLASSES[family, task]).from_pretrained(directory).eval()
            self._models[key] = model.to(self._torch_dtype())
        return self._models[key]

    def run(self, family, task, config, weights, inputs, options):
        import torch

        if options.get("profile", PROFILES[family]) != PROFILES[family]:
            raise Unsupported(
                f"transformers on PyTorch is the {PROFILES[family]} profile of {family}"
            )
        model = self._model(family, task, config, weights)
        model.config.problem_type = config.get(
            "problem_type"
        )  # upstream makes it stick across calls; cases are independent
        plain, past = split_past(inputs)
        dtype = self._torch_dtype()
        t = lambda a: (lambda x: x.to(dtype) if x.is_floating_point() else x)(  # noqa: E731
            torch.from_numpy(np.ascontiguousarray(a))
        )
        kwargs = {k: t(v) for k, v in plain.items()}
        if past is not None:
            kwargs["past_key_values"] = tuple((t(k), t(v)) for k, v in past)
        with torch.no_grad():
            if "generate" in options and "generation_config" in options:
                # as from_pretrained reads a checkpoint's generation_config.json; the model is
                # shared between cases, so the config is set for this call
                from transformers import GenerationConfig

                generation = GenerationConfig.from_dict(dict(options["generation_config"]))
                generation._original_object_hash = hash(generation)
                model.generation_config = generation
                try:
                    out = model.generate(**kwargs, **upstream_generate_kwargs(options["generate"]))
                finally:
                    model.generation_config = GenerationConfig.from_model_config(model.config)
                return generate_outputs(out, model)
            if "generate" in options:
                generate = {
                    "do_sample": False,
                    "pad_token_id": model.config.pad_token_id,
                    **upstream_generate_kwargs(options["generate"]),
                }
                out = model.generate(**kwargs, **generate)
                return generate_outputs(out, model)
            if "use_cache" in options:
                kwargs["use_cache"] = options["use_cache"]
            out = model(
                **kwargs,
                output_hidden_states=options.get("output_hidden_states"),
                output_attentions=options.get("output_attentions"),
                return_dict=not options.get("return_tuple"),
            )
        convert = lambda x: (
            None
            if x is None
            else (
                tuple(convert(i) for i in x)
                if isinstance(x, (tuple, list))  # noqa: E731
                else (x.float() if x.is_floating_point() else x).numpy()
            )
        )
        if options.get("return_tuple"):
            return {"tuple": convert(out)}
        return flatten({k: convert(v) for k, v in out.items()})


implementation = TransformersPyTorch()
bf16_implementation = TransformersPyTorch("bf16")
fp16_implementation = TransformersPyTorch("fp16")
