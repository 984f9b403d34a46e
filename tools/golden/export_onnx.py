"""Export the MPNet golden models (profile pt) to ONNX with torch.onnx, for the onnxruntime adapter.

    python tools/golden/export_onnx.py        # in the PyTorch golden environment (tools/README.md),
                                              # with onnx and onnxruntime added

This is the most common MPNet "port" in the field: transformers' model traced by torch.onnx and run
by ONNX Runtime. Each distinct golden model (cases share models) is loaded from its case directory
with transformers' own from_pretrained, wrapped so that the graph takes input_ids (int64) and
attention_mask (float32, so non-binary masks keep their values) with dynamic batch and sequence
axes, and returns the final outputs and every layer's hidden states and attention maps under the
golden output names. Written: golden/onnx/<first case name>.onnx and golden/onnx/manifest.json,
which maps each file to its model (conformance.golden.model_digest of the case's config and
weights), the cases that use it, its inputs and outputs, and its SHA-256. Each export is run once by
ONNX Runtime against torch on the case's own inputs; the largest difference is printed and recorded.
Nothing here imports the reference implementation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402
from conformance.golden import iter_cases, model_digest, read_tensors, sha256  # noqa: E402
from make_mpnet import CLASS_NAMES  # noqa: E402

OPSET = 17
FINAL = {
    "base": ["last_hidden_state", "pooler_output"],
    "question-answering": ["start_logits", "end_logits"],
}


def output_names(task, layers):
    per_layer = [f"hidden_states.{i}" for i in range(layers + 1)] + [
        f"attentions.{i}" for i in range(layers)
    ]
    return FINAL.get(task, ["logits"]) + per_layer


def in_order(out, names) -> list:
    """A transformers output's arrays in the graph's output order (output_names)."""
    return (
        [out[n] for n in names if "." not in n]
        + list(out["hidden_states"])
        + list(out["attentions"])
    )


def export(case, path: Path):
    import torch
    import transformers

    model = getattr(transformers, CLASS_NAMES[case.task]).from_pretrained(case.path).eval()
    names = output_names(case.task, model.config.num_hidden_layers)

    class Graph(torch.nn.Module):
        """input_ids, attention_mask -> the golden output names, in that order."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=True,
                output_attentions=True,
                return_dict=True,
            )
            return tuple(in_order(out, names))

    ids = torch.from_numpy(case.inputs["input_ids"])
    mask = torch.ones(ids.shape, dtype=torch.float32)
    axes = {0: "batch", ids.ndim - 1: "sequence"} | ({1: "choices"} if ids.ndim == 3 else {})
    torch.onnx.export(
        Graph().eval(),
        (ids, mask),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input_ids", "attention_mask"],
        output_names=names,
        dynamic_axes={"input_ids": axes, "attention_mask": axes},
    )
    return model, names


def verify(model, names, path, case) -> float:
    """Run the export with ONNX Runtime on a case's inputs and compare it with torch."""
    import onnxruntime
    import torch

    ids = case.inputs["input_ids"]
    mask = case.inputs.get("attention_mask", np.ones(ids.shape)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(names, {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            output_hidden_states=True,
            output_attentions=True,
        )
    return max(float(np.max(np.abs(g - w.numpy()))) for g, w in zip(got, in_order(out, names)))


def exportable(case) -> bool:
    """Cases whose inputs the graph takes: ids and a per-token mask (no head mask, embeddings, 3D
    mask)."""
    inputs = case.inputs
    mask = inputs.get("attention_mask")
    return (
        "input_ids" in inputs
        and (mask is None or mask.shape == inputs["input_ids"].shape)
        and not ({"head_mask", "inputs_embeds"} & set(inputs))
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--golden", type=Path, default=ROOT / "golden")
    args = parser.parse_args()
    import onnx
    import onnxruntime
    import torch
    import transformers

    out_dir = args.golden / "onnx"
    out_dir.mkdir(exist_ok=True)
    for old in out_dir.glob("*.onnx"):
        old.unlink()
    groups = {}
    for case in iter_cases(args.golden, family="mpnet", profile="pt"):
        if exportable(case):
            key = model_digest(case.config, read_tensors(case.path / "model.safetensors"))
            groups.setdefault(key, []).append(case)
    models = []
    for key, cases in groups.items():
        values = [c for c in cases if not c.expect_error]
        if not values:
            print(f"{cases[0].id}: only upstream-error cases use this model; not exported")
            continue
        path = out_dir / f"{values[0].id.split('/')[-1]}.onnx"
        model, names = export(values[0], path)
        worst = max(verify(model, names, path, c) for c in values)
        models.append(
            {
                "file": path.name,
                "task": values[0].task,
                "model_digest": key,
                "cases": [c.id for c in cases],
                "inputs": ["input_ids", "attention_mask"],
                "outputs": names,
                "max_abs_vs_torch": worst,
                "sha256": sha256(path),
            }
        )
        print(
            f"{path.name}: {values[0].task}, {len(cases)} cases, {len(names)} outputs, "
            f"{path.stat().st_size / 1024:.0f} KiB, ONNX Runtime vs torch max abs {worst:.2e}"
        )
    manifest = {
        "format": 1,
        "opset": OPSET,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "provenance": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "generator": "tools/golden/export_onnx.py",
        },
        "models": sorted(models, key=lambda m: m["file"]),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum((out_dir / m["file"]).stat().st_size for m in models)
    print(f"{len(models)} models, {total / 2**20:.2f} MiB in {out_dir}")


if __name__ == "__main__":
    main()
