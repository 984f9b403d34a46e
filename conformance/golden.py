"""Golden cases on disk: the language-neutral layout, the manifest, and loading.

Layout (everything under ``golden/``)::

    manifest.json                      {"format": 1, "cases": [{"id", "path", "sha256": {file:
    hex}}]}
    <family>/<profile>/<name>/
        case.json                      id, family, task, profile, purpose, options, tolerance,
                                       provenance, input names, output names, or expect_error
        config.json, model.safetensors the model exactly as the upstream library saved it (HF names,
                                       PyTorch (out, in) layout), so any HF loader can read it
        generation_config.json         only where a generate() case's model has one: the same dict
                                       as its options' generation_config
        inputs.safetensors             named input arrays (input_ids, attention_mask, labels, ...)
        outputs.safetensors            named expected outputs (logits, loss, hidden_states.0, ...,
                                       attentions.0, ..., tuple.0, ... for return_dict=False)

    onnx/                              torch.onnx exports of the MPNet pt models and their manifest
                                       (tools/golden/export_onnx.py;
                                       conformance/adapters/onnx_runtime.py)

A case that upstream rejects has ``expect_error`` ({"type", "message"}) and no outputs file.
``dtype`` is the precision upstream computed in: fp32, or bf16 / fp16 for the ``-bf16`` / ``-fp16``
cases, whose outputs file also holds upstream's float32 run on the same weights as ``fp32.<name>``
(the spread the low-precision tolerances come from; not an output to compare). Attention masks are
stored as upstream was fed them: int64 when they hold only 0 and 1, float32 when they carry other
values (non-binary, 3D and 4D masks). Any language can read these: JSON, and safetensors (a JSON
header followed by raw little-endian data).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = 1
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "golden"
CASE_FILES = (
    "case.json",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "inputs.safetensors",
    "outputs.safetensors",
)


def golden_root(root=None) -> Path:
    """The golden directory: an explicit path, $CONFORMANCE_GOLDEN_DIR, or the repository's
    golden/."""
    return Path(root or os.environ.get("CONFORMANCE_GOLDEN_DIR") or DEFAULT_ROOT)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_digest(config: dict, weights: dict) -> str:
    """One SHA-256 over a model's config and named weights: the key under which an adapter finds its
    converted copy of a golden model (an HF checkpoint directory, an ONNX file)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()


def read_tensors(path) -> dict:
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


def write_tensors(path, arrays: dict) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.array(v, order="C") for k, v in arrays.items()}, str(path))  # keeps 0-d shapes


@dataclass
class GoldenCase:
    """One case: metadata from case.json plus lazily read arrays."""

    id: str
    path: Path
    meta: dict

    family = property(lambda self: self.meta["family"])
    task = property(lambda self: self.meta["task"])
    profile = property(lambda self: self.meta["profile"])
    options = property(lambda self: self.meta.get("options", {}))
    expect_error = property(lambda self: self.meta.get("expect_error"))
    tolerance = property(lambda self: self.meta["tolerance"])

    @property
    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    @property
    def weights(self) -> dict:
        return read_tensors(self.path / "model.safetensors")

    @property
    def inputs(self) -> dict:
        return read_tensors(self.path / "inputs.safetensors")

    @property
    def expected(self) -> dict:
        return {} if self.expect_error else read_tensors(self.path / "outputs.safetensors")


def load_manifest(root=None) -> dict:
    path = golden_root(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no golden manifest at {path}")
    return json.loads(path.read_text())


def iter_cases(root=None, family=None, profile=None, tier="golden", verify=True, dtype=None):
    """The manifest's cases of one tier ("golden" model cases or "op" cases), filtered (dtype: the
    precision upstream computed in, "fp32" unless the case says bf16 or fp16); with verify, every
    file's SHA-256 is checked first."""
    root = golden_root(root)
    for entry in load_manifest(root)["cases"]:
        case_dir = root / entry["path"]
        if verify:
            for name, digest in entry["sha256"].items():
                if sha256(case_dir / name) != digest:
                    raise ValueError(
                        f"golden file {case_dir / name} does not match its manifest SHA-256"
                    )
        meta = json.loads((case_dir / "case.json").read_text())
        if (
            meta.get("tier", "golden") != tier
            or family
            and meta["family"] != family
            or profile
            and meta["profile"] != profile
            or dtype
            and meta.get("dtype", "fp32") != dtype
        ):
            continue
        yield GoldenCase(entry["id"], case_dir, meta)


def write_manifest(root=None) -> dict:
    """Rebuild manifest.json from every case.json under root."""
    root = golden_root(root)
    cases = []
    for meta_path in sorted(root.glob("*/*/*/case.json")):
        case_dir = meta_path.parent
        meta = json.loads(meta_path.read_text())
        files = [n for n in CASE_FILES if (case_dir / n).is_file()]
        cases.append(
            {
                "id": meta["id"],
                "path": str(case_dir.relative_to(root)),
                "sha256": {n: sha256(case_dir / n) for n in files},
            }
        )
    manifest = {"format": FORMAT, "cases": cases}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def flatten_outputs(out: dict) -> dict:
    """A framework's output mapping -> the flat names of the layout: tuples become name.i,
    past_key_values become present.i.key / present.i.value; None entries are dropped."""
    flat = {}
    for key, value in out.items():
        if value is None:
            continue
        if key == "past_key_values":
            for i, (k, v) in enumerate(value):
                flat[f"present.{i}.key"], flat[f"present.{i}.value"] = k, v
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                flat[f"{key}.{i}"] = item
        else:
            flat[key] = value
    return flat


def upstream_generate_kwargs(generate: dict) -> dict:
    """A case's generate() keyword arguments as transformers takes them: sequence_bias is stored
    in its JSON form, [[token ids, bias], ...], and upstream wants {tuple of ids: float}."""
    kwargs = dict(generate)
    if "sequence_bias" in kwargs:
        kwargs["sequence_bias"] = {tuple(t): float(b) for t, b in kwargs["sequence_bias"]}
    return kwargs


def generate_outputs(out, model=None) -> dict:
    """What a generate() call returned, as the named arrays a case holds: ``sequences``, and from
    a return_dict_in_generate output its ``scores.N`` (one a step), ``sequences_scores`` and
    ``beam_indices`` where set, ``attentions.N.L`` and ``hidden_states.N.L`` (forward pass N,
    layer L) where recorded, ``present.L.key`` and ``present.L.value`` (past_key_values: the
    cache at the end, with use_cache on), and with a ``model`` (whose compute_transition_scores
    takes them) ``transition_scores``: each new token's log-probability, normalize_logits on.
    ``out``: an array, or an output with those attributes (torch tensors or numpy arrays; bf16
    and fp16 tensors, which numpy cannot hold or a low-precision port returns, widened to
    float32)."""

    def array(x):
        if not hasattr(x, "detach"):
            return np.asarray(x)
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()

    if not hasattr(out, "sequences"):
        return {"sequences": array(out)}
    scores, beams = getattr(out, "scores", None), getattr(out, "beam_indices", None)
    flat = {"sequences": array(out.sequences)}
    for i, step in enumerate(scores or ()):
        flat[f"scores.{i}"] = array(step)
    for name in ("sequences_scores", "beam_indices"):
        if getattr(out, name, None) is not None:
            flat[name] = array(getattr(out, name))
    for name in ("attentions", "hidden_states"):  # a tuple a forward pass, of a tuple a layer
        for i, passes in enumerate(getattr(out, name, None) or ()):
            for layer, value in enumerate(passes):
                flat[f"{name}.{i}.{layer}"] = array(value)
    for layer, (key, value) in enumerate(getattr(out, "past_key_values", None) or ()):
        flat[f"present.{layer}.key"], flat[f"present.{layer}.value"] = array(key), array(value)
    # beam outputs without beam indices (diverse beam search here) have no transition scores
    readable = scores and (beams is not None or len(scores[0]) == len(out.sequences))
    if model is not None and readable:
        transition = model.compute_transition_scores(
            out.sequences, scores, beams, normalize_logits=True
        )
        flat["transition_scores"] = array(transition)
    return flat


def split_past(inputs: dict):
    """Inputs -> (the other inputs, past_key_values or None): past arrays are named past.<layer>.key
    and past.<layer>.value, each [B, H, P, D]."""
    plain = {k: v for k, v in inputs.items() if not k.startswith("past.")}
    layers = sorted({int(k.split(".")[1]) for k in inputs if k.startswith("past.")})
    return (
        plain,
        tuple((inputs[f"past.{i}.key"], inputs[f"past.{i}.value"]) for i in layers) or None,
    )


def tuple_leaves(value) -> list:
    """The arrays of a possibly nested tuple entry (past_key_values holds (key, value) pairs), depth
    first."""
    if isinstance(value, (tuple, list)):
        return [a for item in value for a in tuple_leaves(item)]
    return [value]


def _member_key(name):
    """Order within a group: numeric parts numerically, then key before value."""
    order = {"key": 0, "value": 1}
    return [int(p) if p.isdigit() else order.get(p, 2) for p in name.split(".")[1:]]


GROUP_PREFIX = {"past_key_values": "present"}  # the group name in tuples vs the flat output prefix


def group_members(names, group):
    """The flat output names that make up a group ("hidden_states" -> hidden_states.0, .1, ...;
    "past_key_values" -> present.0.key, present.0.value, ...), in tuple order."""
    prefix = GROUP_PREFIX.get(group, group)
    members = [n for n in names if n == prefix or n.startswith(prefix + ".")]
    return sorted(members, key=_member_key)
