"""Write the outputs folder that ``python -m conformance run --impl outputs`` checks.

This is what a port in another language does (in its own language): walk golden/manifest.json, load
each case's checkpoint and inputs, run the model, and write the named outputs as safetensors under
<outputs dir>/<case id>/outputs.safetensors, or error.json when the input is rejected. Here the
"external program" is the NumPy reference, so the example doubles as a test of the layout.

    python tools/write_outputs_example.py /tmp/outputs
    python -m conformance run --impl outputs --outputs-dir /tmp/outputs --tier golden
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

import reference

ROOT = Path(__file__).resolve().parents[1]


def run_case(case_dir: Path, meta: dict) -> dict:
    config = json.loads((case_dir / "config.json").read_text())
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    model = reference.from_pretrained(case_dir, task=meta["task"], profile=meta["profile"])
    past_names = sorted(k for k in inputs if k.startswith("past."))
    plain = {k: v for k, v in inputs.items() if not k.startswith("past.")}
    options = meta.get("options", {})
    if "generate" in options:
        return {"sequences": model.generate(**plain, **options["generate"])}
    extra = {"use_cache": options["use_cache"]} if "use_cache" in options else {}
    if past_names:
        layers = config.get("n_layers", config.get("num_hidden_layers"))
        extra["past_key_values"] = tuple((inputs[f"past.{i}.key"], inputs[f"past.{i}.value"]) for i in range(layers))
    out = model(**plain, **extra, output_hidden_states=True, output_attentions=True)
    return out.to_dict()


def main(out_dir):
    out_dir = Path(out_dir)
    manifest = json.loads((ROOT / "golden" / "manifest.json").read_text())
    for entry in manifest["cases"]:
        case_dir = ROOT / "golden" / entry["path"]
        meta = json.loads((case_dir / "case.json").read_text())
        if meta.get("tier") == "op":
            continue
        target = out_dir / meta["id"]
        target.mkdir(parents=True, exist_ok=True)
        try:
            with np.errstate(all="ignore"):
                outputs = run_case(case_dir, meta)
        except (ValueError, TypeError) as e:
            (target / "error.json").write_text(json.dumps({"type": type(e).__name__, "message": str(e)}))
            continue
        save_file({k: np.array(v, order="C") for k, v in outputs.items()}, str(target / "outputs.safetensors"))
    print(f"wrote outputs for {len(manifest['cases'])} cases under {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "outputs")
