"""The project's own NumPy reference, exposed through the implementation protocol."""

from __future__ import annotations

import reference


class ReferenceImplementation:
    def __init__(self, backend="numpy"):
        self.backend = backend
        self.name = f"reference[{backend}]"
        self.version = reference.__version__

    def run(self, family, task, config, weights, inputs, options):
        model = reference.build(config, weights, task=task, profile=options.get("profile"))
        out = model(**inputs, output_hidden_states=options.get("output_hidden_states"),
                    output_attentions=options.get("output_attentions"),
                    return_dict=not options.get("return_tuple", False))
        if options.get("return_tuple"):
            return {"tuple": out}
        return out.to_dict()


implementation = ReferenceImplementation()
