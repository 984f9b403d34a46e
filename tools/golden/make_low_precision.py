"""Low-precision golden cases: upstream itself run in bf16 and fp16 on the CPU.

    python tools/golden/make_low_precision.py     # in the PyTorch golden environment
    (tools/README.md)

For a representative subset of the fp32 cases (MPNet pt: a padded batch and three heads; MPT hf: a
left-padded batch, the LM head with a loss, and a span head), transformers 4.37.2 loads the case's
model, its weights are rounded to the low-precision type (torch's round to nearest even), and the
model runs twice on the case's inputs: with weights and compute in that dtype (the golden, case id
``<fp32 case>-bf16`` or ``-fp16``, ``dtype`` set accordingly) and in float32 on the same rounded
weights (stored beside it as ``fp32.<output>``). The difference between the two runs is upstream's
own spread: how far low-precision compute moves the outputs. conformance/tolerances.py sets the bf16
and fp16 tolerances from it (2x the worst spread, elementwise), and tests/test_low_precision.py
recomputes the spread from these files so the table cannot drift from the measurement.

Weights are stored widened to float32 (every value is exactly representable in the low-precision
type), so any safetensors reader can load them; outputs likewise. MosaicML's low-precision LayerNorm
does not apply here: on torch >= 2.4 llm-foundry takes that path only under CUDA autocast, so on a
CPU its LPLayerNorm computes in float32 (the op case mpt/hf/op-low-precision-layer-norm checks the
kernel itself). Nothing here imports the reference implementation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, flatten, write_case  # noqa: E402
from conformance.golden import iter_cases, write_manifest  # noqa: E402
from make_mpnet import CLASS_NAMES as MPNET_CLASSES  # noqa: E402
from make_mpt import HF_CLASSES as MPT_CLASSES  # noqa: E402

SUBSET = [
    "mpnet/pt/base-right-padding",
    "mpnet/pt/masked-lm",
    "mpnet/pt/token-classification",
    "mpnet/pt/question-answering",
    "mpt/hf/causal-lm-left-padding",
    "mpt/hf/causal-lm-heads-3",
    "mpt/hf/question-answering",
]
DTYPES = ("bf16", "fp16")


def run(model, inputs, torch, dtype):
    kwargs = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}
    kwargs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in kwargs.items()}
    with torch.no_grad():
        out = model(**kwargs, output_hidden_states=True, output_attentions=True, return_dict=True)
    convert = lambda t: (
        None
        if t is None
        else (  # noqa: E731
            tuple(convert(x) for x in t) if isinstance(t, (tuple, list)) else t.float().numpy()
        )
    )
    return flatten({k: convert(v) for k, v in out.items() if k != "past_key_values"})


def spread(low: dict, high: dict) -> dict:
    """Per output: the largest |low - fp32| and the largest |fp32| (for the record in case.json)."""
    return {
        n: {
            "max_abs": float(np.nanmax(np.abs(low[n] - high[n]))) if low[n].size else 0.0,
            "max_abs_expected": float(np.nanmax(np.abs(high[n]))) if high[n].size else 0.0,
        }
        for n in sorted(low)
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "golden")
    args = parser.parse_args()
    import torch
    import transformers

    torch.set_num_threads(1)
    cases = {c.id: c for c in iter_cases(args.out)}
    provenance = {
        "library": "transformers",
        "version": transformers.__version__,
        "framework": "torch",
        "framework_version": torch.__version__,
        "generator": "tools/golden/make_low_precision.py",
    }
    for case_id in SUBSET:
        case = cases[case_id]
        classes = MPNET_CLASSES if case.family == "mpnet" else MPT_CLASSES
        for name in DTYPES:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[name]
            model = (
                getattr(transformers, classes[case.task])
                .from_pretrained(case.path)
                .eval()
                .to(dtype)
            )
            with tempfile.TemporaryDirectory() as tmp:
                rounded = (
                    getattr(transformers, classes[case.task]).from_pretrained(case.path).eval()
                )
                rounded.load_state_dict(
                    {k: v.to(dtype).float() for k, v in rounded.state_dict().items()}
                )
                rounded.save_pretrained(tmp, safe_serialization=True)
                inputs = case.inputs
                meta = {
                    "family": case.family,
                    "task": case.task,
                    "profile": case.profile,
                    "dtype": name,
                    "purpose": (
                        f"{case.meta['purpose']}; upstream computing in {name} (weights rounded to"
                        f" {name})"
                    ),
                    "options": {"output_hidden_states": True, "output_attentions": True},
                    "tolerance": {},
                    "provenance": {**provenance, "from_case": case_id},
                }

                low = run(model, inputs, torch, dtype)
                high = run(rounded, inputs, torch, torch.float32)
                meta["spread_vs_fp32"] = spread(low, high)
                worst = max(meta["spread_vs_fp32"].items(), key=lambda kv: kv[1]["max_abs"])
                print(f"  {name}: worst |{name} - fp32| {worst[1]['max_abs']:.3g} in {worst[0]}")
                write_case(
                    args.out,
                    f"{case_id}-{name}",
                    tmp,
                    meta,
                    inputs,
                    lambda: (low, None, {f"fp32.{k}": v for k, v in high.items()}),
                )
    write_manifest(args.out)


if __name__ == "__main__":
    main()
