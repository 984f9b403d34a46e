"""Hugging Face transformers on PyTorch (profiles pt for MPNet, hf for MPT), as an implementation
under test. Optional: needs torch and transformers (tools/README.md has the pinned versions)."""

from __future__ import annotations

import numpy as np

from ..protocol import Unsupported
from ._hf_common import checkpoint_dir, flatten, split_past

CLASSES = {
    ("mpnet", "base"): "MPNetModel", ("mpnet", "masked-lm"): "MPNetForMaskedLM",
    ("mpnet", "sequence-classification"): "MPNetForSequenceClassification",
    ("mpnet", "multiple-choice"): "MPNetForMultipleChoice",
    ("mpnet", "token-classification"): "MPNetForTokenClassification",
    ("mpnet", "question-answering"): "MPNetForQuestionAnswering",
    ("mpt", "base"): "MptModel", ("mpt", "causal-lm"): "MptForCausalLM",
    ("mpt", "sequence-classification"): "MptForSequenceClassification",
    ("mpt", "token-classification"): "MptForTokenClassification",
    ("mpt", "question-answering"): "MptForQuestionAnswering",
}
PROFILES = {"mpnet": "pt", "mpt": "hf"}


class TransformersPyTorch:
    def __init__(self):
        self._dirs, self._models = {}, {}

    @property
    def name(self):
        return "transformers (PyTorch)"

    @property
    def version(self):
        import transformers

        return transformers.__version__

    def _model(self, family, task, config, weights):
        import transformers

        directory = checkpoint_dir(config, weights, self._dirs)
        key = (directory, task)
        if key not in self._models:
            self._models[key] = getattr(transformers, CLASSES[family, task]).from_pretrained(directory).eval()
        return self._models[key]

    def run(self, family, task, config, weights, inputs, options):
        import torch

        if options.get("profile", PROFILES[family]) != PROFILES[family]:
            raise Unsupported(f"transformers on PyTorch is the {PROFILES[family]} profile of {family}")
        model = self._model(family, task, config, weights)
        model.config.problem_type = config.get("problem_type")  # upstream makes it stick across calls; cases are independent
        plain, past = split_past(inputs)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        kwargs = {k: t(v) for k, v in plain.items()}
        with torch.no_grad():
            if "generate" in options:
                seq = model.generate(**kwargs, do_sample=False, **options["generate"],
                                     pad_token_id=options["generate"].get("pad_token_id", model.config.pad_token_id))
                return {"sequences": seq.numpy()}
            if past is not None:
                kwargs["past_key_values"] = tuple((t(k), t(v)) for k, v in past)
            if "use_cache" in options:
                kwargs["use_cache"] = options["use_cache"]
            out = model(**kwargs, output_hidden_states=options.get("output_hidden_states"),
                        output_attentions=options.get("output_attentions"),
                        return_dict=not options.get("return_tuple"))
        convert = lambda x: None if x is None else (tuple(convert(i) for i in x) if isinstance(x, (tuple, list)) else x.numpy())  # noqa: E731
        if options.get("return_tuple"):
            return {"tuple": convert(out)}
        return flatten({k: convert(v) for k, v in out.items()})


implementation = TransformersPyTorch()
