"""Generate the MPNet golden cases by running the real transformers 4.37.2 models.

    python tools/golden/make_mpnet.py --framework pt   # in the PyTorch environment (profile pt)
    python tools/golden/make_mpnet.py --framework tf   # in the TensorFlow environment (profile tf)

See tools/README.md for the two environments. Each case's model is initialised from a fixed seed
with weights large enough that attention is peaked (so biases, masks and buckets visibly matter),
saved in the PyTorch checkpoint layout, reloaded through the library's own from_pretrained, and run
in eval mode. Nothing here imports the reference implementation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, flatten, random_weights, tuple_layout, write_case  # noqa: E402
from conformance.golden import write_manifest, write_tensors  # noqa: E402
from mpnet_cases import cases  # noqa: E402

CLASS_NAMES = {
    "base": "MPNetModel",
    "masked-lm": "MPNetForMaskedLM",
    "sequence-classification": "MPNetForSequenceClassification",
    "multiple-choice": "MPNetForMultipleChoice",
    "token-classification": "MPNetForTokenClassification",
    "question-answering": "MPNetForQuestionAnswering",
}


# ------------------------------------------------------------------------------------ PyTorch


class TorchRunner:
    profile = "pt"

    def __init__(self):
        import torch
        import transformers

        self.torch, self.transformers = torch, transformers
        torch.set_num_threads(1)
        self.provenance = {
            "library": "transformers",
            "version": transformers.__version__,
            "framework": "torch",
            "framework_version": torch.__version__,
        }

    def build(self, spec, directory):
        torch, tr = self.torch, self.transformers
        config = tr.MPNetConfig(**spec["config"])
        model = getattr(tr, CLASS_NAMES[spec["task"]])(config).eval()
        state = model.state_dict()
        shapes = {k: tuple(v.shape) for k, v in state.items() if v.dtype.is_floating_point}
        weights = random_weights(shapes, spec["seed"])
        model.load_state_dict({**state, **{k: torch.from_numpy(v) for k, v in weights.items()}})
        model.tie_weights()
        model.save_pretrained(directory, safe_serialization=True)
        return getattr(tr, CLASS_NAMES[spec["task"]]).from_pretrained(directory).eval()

    def buckets(self, relative, num_buckets):
        from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

        rel = self.torch.from_numpy(relative)
        return MPNetEncoder.relative_position_bucket(rel, num_buckets=num_buckets).numpy()

    def run(self, model, inputs, return_dict):
        torch = self.torch
        kwargs = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}
        with torch.no_grad():
            out = model(
                **kwargs, output_hidden_states=True, output_attentions=True, return_dict=return_dict
            )
        convert = lambda t: (
            None
            if t is None
            else (tuple(convert(x) for x in t) if isinstance(t, (tuple, list)) else t.numpy())
        )
        return {k: convert(v) for k, v in out.items()} if return_dict else convert(out)


# ------------------------------------------------------------------------------------ TensorFlow


class TensorFlowRunner:
    profile = "tf"

    def __init__(self):
        import tensorflow as tf
        import transformers

        self.tf, self.transformers = tf, transformers
        self.provenance = {
            "library": "transformers",
            "version": transformers.__version__,
            "framework": "tensorflow",
            "framework_version": tf.__version__,
        }

    def build(self, spec, directory):
        from safetensors.numpy import save_file
        from transformers.modeling_tf_pytorch_utils import (
            TransposeType,
            convert_tf_weight_name_to_pt_weight_name,
        )

        tr = self.transformers
        config = tr.MPNetConfig(**spec["config"])
        cls = getattr(tr, "TF" + CLASS_NAMES[spec["task"]])
        model = cls(config)
        model(model.dummy_inputs, training=False)  # build every variable
        names = {}
        for w in model.weights:
            pt_name, transpose = convert_tf_weight_name_to_pt_weight_name(
                w.name, tf_weight_shape=w.shape
            )
            names[w.name] = (pt_name, transpose)
        pt_shapes = {
            pt: tuple(w.shape)[::-1] if t is TransposeType.SIMPLE else tuple(w.shape)
            for w in model.weights
            for pt, t in [names[w.name]]
        }
        weights = random_weights(pt_shapes, spec["seed"])
        for w in model.weights:
            pt_name, transpose = names[w.name]
            value = weights[pt_name]
            w.assign(value.T if transpose is TransposeType.SIMPLE else value)
        config.save_pretrained(directory)
        save_file(weights, str(Path(directory) / "model.safetensors"), metadata={"format": "pt"})
        reloaded, info = cls.from_pretrained(directory, output_loading_info=True)
        if info["missing_keys"] or info["unexpected_keys"]:
            raise RuntimeError(f"TF reload of the converted checkpoint lost weights: {info}")
        return reloaded

    def buckets(self, relative, num_buckets):
        from transformers.models.mpnet.modeling_tf_mpnet import TFMPNetEncoder

        rel = self.tf.constant(relative.astype(np.int32))
        return TFMPNetEncoder._relative_position_bucket(rel, num_buckets=num_buckets).numpy()

    def run(self, model, inputs, return_dict):
        tf = self.tf
        kwargs = {k: tf.constant(np.asarray(v)) for k, v in inputs.items()}
        first = kwargs.pop("input_ids", None)  # TF needs the first argument, even as None
        out = model(
            first,
            **kwargs,
            output_hidden_states=True,
            output_attentions=True,
            return_dict=return_dict,
            training=False,
        )
        convert = lambda t: (
            None
            if t is None
            else (tuple(convert(x) for x in t) if isinstance(t, (tuple, list)) else t.numpy())
        )
        return {k: convert(v) for k, v in out.items()} if return_dict else convert(out)


def generate(runner, out_root: Path, only=None):
    for spec in cases():
        if runner.profile not in spec["profiles"] or (only and spec["name"] not in only):
            continue
        meta = {
            "family": "mpnet",
            "task": spec["task"],
            "profile": runner.profile,
            "purpose": spec["purpose"],
            "dtype": "fp32",
            "options": {"output_hidden_states": True, "output_attentions": True},
            "provenance": {
                **runner.provenance,
                "weight_seed": spec["seed"],
                "generator": "tools/golden/make_mpnet.py",
            },
        }
        if runner.profile in spec["tolerance"]:
            meta["tolerance"] = {"fp32": spec["tolerance"][runner.profile]}
        with tempfile.TemporaryDirectory() as tmp:
            model = runner.build(spec, tmp)

            def run():
                outputs = flatten(runner.run(model, spec["inputs"], return_dict=True))
                layout, extra = tuple_layout(
                    runner.run(model, spec["inputs"], return_dict=False), outputs
                )
                return outputs, layout, extra

            write_case(
                out_root, f"mpnet/{runner.profile}/{spec['name']}", tmp, meta, spec["inputs"], run
            )
    write_bucket_ops(runner, out_root)
    write_manifest(out_root)


# Distances checked for the bucket op: PT over -1000..1000, TF over -300..300 (SPEC 1.4).
BUCKET_RANGE = {"pt": 1000, "tf": 300}


def write_bucket_ops(runner, out_root: Path):
    """Op-level golden: upstream's own bucket function over a range of relative distances."""
    reach = BUCKET_RANGE[runner.profile]
    relative = np.arange(-reach, reach + 1, dtype=np.int64)
    case_id = f"mpnet/{runner.profile}/op-relative-position-bucket"
    case_dir = out_root / case_id
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir(parents=True)
    outputs = {
        f"buckets.{nb}": np.asarray(runner.buckets(relative, nb)).astype(np.int64)
        for nb in (16, 32, 64)
    }
    write_tensors(case_dir / "inputs.safetensors", {"relative_position": relative})
    write_tensors(case_dir / "outputs.safetensors", outputs)
    meta = {
        "id": case_id,
        "family": "mpnet",
        "tier": "op",
        "op": "relative_position_bucket",
        "profile": runner.profile,
        "purpose": (
            "upstream relative_position_bucket for num_buckets 16, 32, 64 (max_distance 128)"
        ),
        "dtype": "int64",
        "inputs": ["relative_position"],
        "outputs": sorted(outputs),
        "tolerance": {"int64": {"atol": 0, "rtol": 0}},
        "provenance": {**runner.provenance, "generator": "tools/golden/make_mpnet.py"},
    }
    (case_dir / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{case_id}: {len(outputs)} outputs")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--framework", choices=["pt", "tf"], required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "golden")
    parser.add_argument("--only", nargs="*", help="case names to regenerate (default: all)")
    args = parser.parse_args()
    runner = TorchRunner() if args.framework == "pt" else TensorFlowRunner()
    generate(runner, args.out, args.only)


if __name__ == "__main__":
    main()
