"""Hugging Face transformers on TensorFlow (MPNet, profile tf) as an implementation under test.
Optional: needs tensorflow-cpu 2.15 and transformers 4.37.2, which load PyTorch-layout safetensors.
"""

from __future__ import annotations

import numpy as np

from ..protocol import Unsupported
from ._hf_common import checkpoint_dir, flatten

CLASSES = {
    "base": "TFMPNetModel",
    "masked-lm": "TFMPNetForMaskedLM",
    "sequence-classification": "TFMPNetForSequenceClassification",
    "multiple-choice": "TFMPNetForMultipleChoice",
    "token-classification": "TFMPNetForTokenClassification",
    "question-answering": "TFMPNetForQuestionAnswering",
}


class TransformersTensorFlow:
    name = "transformers (TensorFlow)"

    def __init__(self):
        self._dirs, self._models = {}, {}

    @property
    def version(self):
        import transformers

        return transformers.__version__

    def run(self, family, task, config, weights, inputs, options):
        import tensorflow as tf
        import transformers

        if family != "mpnet" or options.get("profile", "tf") != "tf":
            raise Unsupported("transformers on TensorFlow implements MPNet, profile tf")
        directory = checkpoint_dir(config, weights, self._dirs)
        if (directory, task) not in self._models:
            self._models[directory, task] = getattr(transformers, CLASSES[task]).from_pretrained(
                directory
            )
        model = self._models[directory, task]
        model.config.problem_type = config.get("problem_type")  # cases are independent calls
        kwargs = {k: tf.constant(np.asarray(v)) for k, v in inputs.items()}
        first = kwargs.pop("input_ids", None)
        out = model(
            first,
            **kwargs,
            output_hidden_states=options.get("output_hidden_states"),
            output_attentions=options.get("output_attentions"),
            return_dict=not options.get("return_tuple"),
            training=False,
        )
        convert = lambda x: (
            None
            if x is None
            else (tuple(convert(i) for i in x) if isinstance(x, (tuple, list)) else x.numpy())
        )  # noqa: E731
        if options.get("return_tuple"):
            return {"tuple": convert(out)}
        return flatten({k: convert(v) for k, v in out.items()})


implementation = TransformersTensorFlow()
