"""Write the outputs folder that ``python -m conformance run --impl outputs`` checks.

This is what a port in another language does (in its own language): walk golden/manifest.json, load
each case's checkpoint and inputs, run the model, and write the named outputs as safetensors under
<outputs dir>/<case id>/outputs.safetensors, or error.json when the input is rejected, plus one
capabilities.json saying what the port provides (conformance/capabilities.py). Here the "external
program" is the NumPy reference, so the example doubles as a test of the layout.

    python tools/write_outputs_example.py /tmp/outputs               # everything upstream gives
    python tools/write_outputs_example.py --final-only /tmp/minimal  # what an ONNX export or a
    serving
                                                                     # runtime gives: final outputs
                                                                     only
    python -m conformance run --impl outputs --outputs-dir /tmp/minimal --tier golden
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

import reference
from conformance.golden import generate_outputs

ROOT = Path(__file__).resolve().parents[1]
FINAL = ("logits", "last_hidden_state", "pooler_output", "start_logits", "end_logits")
LABELS = ("labels", "start_positions", "end_positions")


def run_case(case_dir: Path, meta: dict, final_only: bool) -> dict:
    config = json.loads((case_dir / "config.json").read_text())
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    if final_only:  # no loss is given, so labels are not taken
        inputs = {k: v for k, v in inputs.items() if k not in LABELS}
    model = reference.from_pretrained(case_dir, task=meta["task"], profile=meta["profile"])
    past_names = sorted(k for k in inputs if k.startswith("past."))
    plain = {k: v for k, v in inputs.items() if not k.startswith("past.")}
    options = meta.get("options", {})
    extra = {}
    if past_names:
        layers = config.get("n_layers", config.get("num_hidden_layers"))
        extra["past_key_values"] = tuple(
            (inputs[f"past.{i}.key"], inputs[f"past.{i}.value"]) for i in range(layers)
        )
    if "generate" in options:  # an array, or with return_dict_in_generate the output object
        out = model.generate(**plain, **extra, **options["generate"])
        # named as the suite names them: scores.N, attentions.N.L, present.L.key, ... and the
        # transition scores compute_transition_scores reads from them
        return generate_outputs(out, model)
    if "use_cache" in options:
        extra["use_cache"] = options["use_cache"]
    out = model(
        **plain, **extra, output_hidden_states=not final_only, output_attentions=not final_only
    )
    return out.to_dict()


def capabilities(final_only: bool) -> dict:
    """The declaration beside the folder: which outputs, tasks, inputs and dtype this program
    gives."""
    declared = {
        "name": "write_outputs_example",
        "version": reference.__version__,
        "target": {"kind": "cpu", "device": "NumPy reference"},
        "compute_dtype": "fp32",
    }
    if final_only:
        declared.update(
            outputs=["final", "sequences"],
            inputs=["attention_mask", "mask_4d", "past", "position_ids"],
        )
    return declared


def main(out_dir, final_only=False):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "capabilities.json").write_text(
        json.dumps(capabilities(final_only), indent=1) + "\n"
    )
    manifest = json.loads((ROOT / "golden" / "manifest.json").read_text())
    written = 0
    for entry in manifest["cases"]:
        case_dir = ROOT / "golden" / entry["path"]
        meta = json.loads((case_dir / "case.json").read_text())
        if meta.get("tier") == "op" or meta.get("dtype", "fp32") != "fp32":
            continue
        if final_only and {"head_mask", "inputs_embeds", "prefix_mask", "sequence_id"} & set(
            meta["inputs"]
        ):
            # this port takes none of these inputs: the suite skips such cases and says why
            continue
        target = out_dir / meta["id"]
        target.mkdir(parents=True, exist_ok=True)
        try:
            with np.errstate(all="ignore"):
                outputs = run_case(case_dir, meta, final_only)
        except (ValueError, TypeError) as e:
            (target / "error.json").write_text(
                json.dumps({"type": type(e).__name__, "message": str(e)})
            )
            continue
        if final_only:
            outputs = {k: v for k, v in outputs.items() if k in FINAL + ("sequences",)}
        save_file(
            {k: np.array(v, order="C") for k, v in outputs.items()},
            str(target / "outputs.safetensors"),
        )
        written += 1
    print(f"wrote outputs for {written} cases under {out_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", nargs="?", default="outputs")
    parser.add_argument(
        "--final-only", action="store_true", help="write only the final outputs, as most ports give"
    )
    args = parser.parse_args()
    main(args.out_dir, args.final_only)
