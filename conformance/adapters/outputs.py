"""Check outputs that an external program wrote to disk, so a port in any language can be checked
without Python bindings.

Layout of the outputs folder ($CONFORMANCE_OUTPUTS_DIR, or --outputs-dir)::

    capabilities.json               what the port provides, and its name, version and target
                                    (conformance/capabilities.py); without it, everything upstream
                                    gives is expected
    <case id>/outputs.safetensors   the named outputs of that golden case (same names as the case's
                                    own outputs.safetensors: logits, loss, hidden_states.0, ...,
                                    present.0.key, sequences); only the declared groups are compared
    <case id>/error.json            instead, when the program rejected the input: {"type",
    "message"},
                                    type being the error's class (ValueError for a bad input)

<case id> is the case's id from golden/manifest.json (e.g. mpnet/pt/masked-lm), so the program walks
the manifest, reads each case's config.json, model.safetensors and inputs.safetensors, and writes
one file per case. tools/write_outputs_example.py is a complete example (``--final-only`` writes
what an ONNX export or a serving runtime gives). Cases without a file are skipped and said so; tuple
order checks and the property and op tiers need a live implementation and are skipped too.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from ..capabilities import Capabilities
from ..golden import read_tensors
from ..protocol import PortError, Unsupported


class OutputsFolder:
    def __init__(self, root=None):
        self._root = root
        self._declared = (
            None  # (file key, Capabilities): capabilities.json is read again only when it changes
        )

    @property
    def root(self) -> Path:
        root = self._root or os.environ.get("CONFORMANCE_OUTPUTS_DIR")
        if not root:
            raise ValueError("no outputs folder: pass --outputs-dir or set CONFORMANCE_OUTPUTS_DIR")
        return Path(root)

    def check_available(self):
        if not self.root.is_dir():
            raise ValueError(f"outputs folder {self.root} does not exist")
        self.capabilities  # noqa: B018 - a broken capabilities.json is reported before the run

    @property
    def capabilities(self) -> Capabilities:
        path = self.root / "capabilities.json"
        key = (path, path.stat().st_mtime_ns if path.is_file() else None)
        if self._declared is None or self._declared[0] != key:
            declared = Capabilities.read(path) if key[1] is not None else Capabilities()
            self._declared = (
                key,
                replace(declared, tuple=False),
            )  # files cannot answer a live tuple call
        return self._declared[1]

    name = property(lambda self: self.capabilities.name or "outputs")
    version = property(lambda self: self.capabilities.version)
    target = property(lambda self: self.capabilities.target)

    def run(self, family, task, config, weights, inputs, options):
        case_id = options.get("case_id")
        if case_id is None or options.get("return_tuple"):
            raise Unsupported("only golden-case outputs written to disk can be checked")
        case_dir = self.root / case_id
        if (case_dir / "error.json").is_file():
            error = json.loads((case_dir / "error.json").read_text())
            raise PortError(str(error.get("type")), str(error.get("message")))
        path = case_dir / "outputs.safetensors"
        if not path.is_file():
            raise Unsupported("no outputs.safetensors or error.json was written for this case")
        return read_tensors(path)


implementation = OutputsFolder()
