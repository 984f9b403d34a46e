"""Check outputs that an external program wrote to disk, so a port in any language can be checked
without Python bindings.

Layout of the outputs folder ($CONFORMANCE_OUTPUTS_DIR, or --outputs-dir)::

    <case id>/outputs.safetensors   the named outputs of that golden case (same names as the case's
                                    own outputs.safetensors: logits, loss, hidden_states.0, ...,
                                    present.0.key, sequences)
    <case id>/error.json            instead, when the program rejected the input: {"type", "message"}

<case id> is the case's id from golden/manifest.json (e.g. mpnet/pt/masked-lm), so the program walks
the manifest, reads each case's config.json, model.safetensors and inputs.safetensors, and writes one
file per case. tools/write_outputs_example.py is a complete example. Cases without a file, tuple
order checks and the property and op tiers need a live implementation and are reported as skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..golden import read_tensors
from ..protocol import Unsupported


class OutputsFolder:
    name = "outputs"
    version = None

    def __init__(self, root=None):
        self._root = root

    @property
    def root(self) -> Path:
        root = self._root or os.environ.get("CONFORMANCE_OUTPUTS_DIR")
        if not root:
            raise Unsupported("no outputs folder: pass --outputs-dir or set CONFORMANCE_OUTPUTS_DIR")
        return Path(root)

    def run(self, family, task, config, weights, inputs, options):
        case_id = options.get("case_id")
        if case_id is None or options.get("return_tuple"):
            raise Unsupported("only golden-case outputs written to disk can be checked")
        case_dir = self.root / case_id
        if (case_dir / "error.json").is_file():
            error = json.loads((case_dir / "error.json").read_text())
            raise RuntimeError(f"the program rejected this input: {error.get('type')}: {error.get('message')}")
        path = case_dir / "outputs.safetensors"
        if not path.is_file():
            raise Unsupported(f"no {path}")
        return read_tensors(path)


implementation = OutputsFolder()
