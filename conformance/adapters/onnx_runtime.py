"""ONNX Runtime running torch.onnx exports of the MPNet golden models: a real foreign
implementation.

This is how MPNet is most often "ported": transformers' model traced by torch.onnx and run by ONNX
Runtime, which computes every operation itself. The exports live in golden/onnx/ (one .onnx file per
golden model, listed with its SHA-256 in golden/onnx/manifest.json; tools/golden/export_onnx.py
writes them in the golden environment). Each graph takes input_ids and a float attention mask and
returns the final outputs and every layer's hidden states and attention maps, so the declaration
below is what such an export gives: no loss (labels are not graph inputs), no head_mask,
inputs_embeds or 3D masks, no return_dict=False tuples, profile pt only. Like any port, the adapter
checks its inputs before the runtime sees them (ids in the vocabulary, positions within the table),
so a bad input is a ValueError naming the problem rather than an error from inside a kernel.

Optional: needs onnxruntime (``pip install 'mpnet-mpt-reference[onnx]'``).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from ..capabilities import Capabilities, output_group
from ..golden import golden_root, model_digest, sha256
from ..protocol import Unsupported

PAD = 1  # MPNet's padding index: position ids count from it (SPEC 1.2)


class OnnxRuntimePort:
    name = "onnxruntime"

    def __init__(self, golden_dir=None, threads=1):
        self._golden_dir, self.threads = golden_dir, threads
        self._manifest, self._sessions = None, {}

    @property
    def folder(self) -> Path:
        return golden_root(self._golden_dir) / "onnx"

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            path = self.folder / "manifest.json"
            if not path.is_file():
                raise ValueError(
                    f"no ONNX exports: {path} is missing (tools/golden/export_onnx.py writes them)"
                )
            self._manifest = json.loads(path.read_text())
        return self._manifest

    @property
    def version(self):
        import onnxruntime

        return onnxruntime.__version__

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            outputs=frozenset({"final", "hidden_states", "attentions"}),
            tasks=frozenset(m["task"] for m in self.manifest["models"]),
            profiles=frozenset({"pt"}),
            inputs=frozenset({"attention_mask"}),
            compute_dtype="fp32",
            tuple=False,
            target={"kind": "cpu", "device": platform.processor() or platform.machine()},
        )

    def check_available(self):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError(
                "the onnxruntime adapter needs onnxruntime: pip install 'mpnet-mpt-reference[onnx]'"
            ) from None
        self.manifest  # noqa: B018 - a missing manifest is said before the run

    def session(self, config, weights):
        """The ONNX Runtime session for a golden model, found by its config and weights."""
        import onnxruntime

        key = model_digest(config, weights)
        entry = next((m for m in self.manifest["models"] if m["model_digest"] == key), None)
        if entry is None:
            raise Unsupported(
                "no ONNX export of this model (golden/onnx/ holds the MPNet pt golden models)"
            )
        if key not in self._sessions:
            path = self.folder / entry["file"]
            if sha256(path) != entry["sha256"]:
                raise ValueError(
                    f"{path} does not match its SHA-256 in {self.folder / 'manifest.json'}"
                )
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._sessions[key] = (
                onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                ),
                entry,
            )
        return self._sessions[key]

    def feeds(self, config, inputs) -> dict:
        """The graph's inputs, checked the way a port checks them."""
        ids = np.asarray(inputs["input_ids"])
        if ids.dtype.kind not in "iu":
            raise TypeError(f"input_ids must be integers, got {ids.dtype}")
        vocab = config["vocab_size"]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(
                f"input_ids must lie in [0, {vocab}), got values in [{ids.min()}, {ids.max()}]"
            )
        real = (ids != PAD).astype(np.int64)
        positions = np.cumsum(real, axis=-1) * real + PAD
        if positions.size and positions.max() >= config["max_position_embeddings"]:
            raise ValueError(
                f"sequence needs position {positions.max()}, but max_position_embeddings is "
                f"{config['max_position_embeddings']}"
            )
        mask = inputs.get("attention_mask")
        mask = np.ones(ids.shape, np.float32) if mask is None else np.asarray(mask, np.float32)
        if mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask has shape {mask.shape}, expected {ids.shape} (one value per token)"
            )
        return {"input_ids": ids.astype(np.int64), "attention_mask": mask}

    def run(self, family, task, config, weights, inputs, options):
        if family != "mpnet" or options.get("profile", "pt") != "pt":
            raise Unsupported("the ONNX exports are MPNet, profile pt")
        session, entry = self.session(config, weights)
        if entry["task"] != task:
            raise Unsupported(f"this model's export is for {entry['task']}, not {task}")
        asked = {
            "final",
            "hidden_states" if options.get("output_hidden_states") else None,
            "attentions" if options.get("output_attentions") else None,
        }
        wanted = [n for n in entry["outputs"] if output_group(n) in asked]
        return dict(zip(wanted, session.run(wanted, self.feeds(config, inputs))))


implementation = OnnxRuntimePort()
