"""What an implementation declares it provides, and what that means for each golden case.

A port rarely gives everything upstream does: an ONNX export or a serving runtime returns the final
outputs only, a GGML port has no attention maps, a bf16 port cannot be held to fp32 numbers. It says
so once, and the runner then requests only what is provided, compares every provided output, and
reports per case what was not checked. A Python adapter sets a ``capabilities`` attribute (a
``Capabilities`` or the same dict as the file); a port without Python bindings writes
``capabilities.json`` beside its outputs folder (conformance/adapters/outputs.py)::

    {"name": "my-port", "version": "0.3.1", "target": {"kind": "cpu", "device": "Apple M2"},
     "outputs": ["final"], "tasks": ["base", "token-classification"], "profiles": ["pt"],
     "inputs": ["attention_mask"], "compute_dtype": "fp32", "tuple": false}

Every field is optional; an implementation that declares nothing is taken to provide everything
upstream does (the reference and the transformers adapters), so nothing it used to be checked on
goes unchecked.

outputs      groups of named outputs: final (logits, last_hidden_state, pooler_output,
             start_logits, end_logits), loss, hidden_states (hidden_states.N), attentions
             (attentions.N), presents (present.N.key/value: the KV cache; of generate(), its
             past_key_values at the end), sequences (generate()),
             scores (generate(return_dict_in_generate=True, output_scores=True): scores.N, one
             a step, sequences_scores, beam_indices, and transition_scores: what
             compute_transition_scores(..., normalize_logits=True) makes of them)
tasks        base, masked-lm, sequence-classification, multiple-choice, token-classification,
             question-answering, causal-lm; omitted: every task
profiles     pt, tf (MPNet), hf, mosaic (MPT); omitted: every profile
inputs       optional inputs beyond input_ids: attention_mask (2D, [B, S]), mask_3d ([B, S, S]),
             mask_4d ([B, 1, S, K], additive), head_mask, inputs_embeds, position_ids, labels
             (also start_positions/end_positions), past (past.N.key/value), prefix_mask,
             sequence_id, generation_config (generate() settings from the checkpoint's
             generation_config.json: options["generation_config"], and the file in the case
             directory), negative_prompt (generate()'s negative_prompt_ids and
             negative_prompt_attention_mask, for classifier-free guidance)
compute_dtype fp32, fp16 or bf16: the precision the port computes in. Value cases are judged only
             against goldens of that dtype (upstream run in that dtype, with tolerances calibrated
             from upstream's own fp32-vs-low-precision spread: conformance/tolerances.py)
tuple        whether return_dict=False tuples are produced (the ::tuple checks)
name, version, target   how the report names the port and where it ran ({"kind": cpu|gpu, "device"})
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OUTPUT_GROUPS = (
    "final",
    "loss",
    "hidden_states",
    "attentions",
    "presents",
    "sequences",
    "scores",
)
INPUT_FEATURES = (
    "attention_mask",
    "mask_3d",
    "mask_4d",
    "head_mask",
    "inputs_embeds",
    "position_ids",
    "labels",
    "past",
    "prefix_mask",
    "sequence_id",
    "generation_config",
    "negative_prompt",
)
TASKS = (
    "base",
    "masked-lm",
    "sequence-classification",
    "multiple-choice",
    "token-classification",
    "question-answering",
    "causal-lm",
)
PROFILES = ("pt", "tf", "hf", "mosaic")
DTYPES = ("fp32", "fp16", "bf16")
LABEL_INPUTS = ("labels", "start_positions", "end_positions")
FIELDS = (
    "name",
    "version",
    "target",
    "outputs",
    "tasks",
    "profiles",
    "inputs",
    "compute_dtype",
    "tuple",
)


def output_group(name: str) -> str | None:
    """The group a flat output name belongs to (None for tuple-only arrays such as tuple.2)."""
    if name.startswith("tuple."):
        return None
    for group, prefix in (
        ("hidden_states", "hidden_states."),
        ("attentions", "attentions."),
        ("presents", "present."),
    ):
        if name.startswith(prefix):
            return group
    if name.startswith("scores.") or name in (
        "sequences_scores",
        "beam_indices",
        "transition_scores",
    ):
        return "scores"
    return name if name in ("loss", "sequences") else "final"


def input_features(inputs: dict) -> set:
    """The optional input features a set of named input arrays uses (input_ids is always
    accepted)."""
    used = set()
    tokens = inputs.get("input_ids", inputs.get("inputs_embeds"))
    token_shape = (
        None if tokens is None else tokens.shape[: tokens.ndim - ("input_ids" not in inputs)]
    )
    for name, value in inputs.items():
        if (
            name == "attention_mask"
        ):  # one value per token (multiple-choice: [B, C, S]), or [B, S, S] / 4D
            per_token = value.shape == token_shape or value.ndim == 2
            used.add(
                "attention_mask"
                if per_token
                else {3: "mask_3d", 4: "mask_4d"}.get(value.ndim, "attention_mask")
            )
        elif name in LABEL_INPUTS:
            used.add("labels")
        elif name.startswith("past."):
            used.add("past")
        elif name.startswith("negative_prompt_"):
            used.add("negative_prompt")
        elif name != "input_ids":
            used.add(name)
    return used


@dataclass(frozen=True)
class Capabilities:
    outputs: frozenset = frozenset(OUTPUT_GROUPS)
    tasks: frozenset | None = None  # None: every task
    profiles: frozenset | None = None  # None: every profile
    inputs: frozenset = frozenset(INPUT_FEATURES)
    compute_dtype: str = "fp32"
    tuple: bool = True
    name: str | None = None
    version: str | None = None
    target: dict | None = None

    @classmethod
    def from_dict(cls, data: dict, where: str = "capabilities") -> Capabilities:
        """Validate a declaration (the capabilities.json layout) and say exactly what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known: {list(FIELDS)}")
        kwargs = {}
        for key, allowed in (
            ("outputs", OUTPUT_GROUPS),
            ("tasks", TASKS),
            ("profiles", PROFILES),
            ("inputs", INPUT_FEATURES),
        ):
            if key in data:
                kwargs[key] = _names(data[key], allowed, f"{where}: {key!r}")
        if "compute_dtype" in data:
            if data["compute_dtype"] not in DTYPES:
                raise ValueError(
                    f"{where}: 'compute_dtype' must be one of {list(DTYPES)}, "
                    f"got {data['compute_dtype']!r}"
                )
            kwargs["compute_dtype"] = data["compute_dtype"]
        if "tuple" in data:
            if not isinstance(data["tuple"], bool):
                raise ValueError(f"{where}: 'tuple' must be true or false, got {data['tuple']!r}")
            kwargs["tuple"] = data["tuple"]
        for key in ("name", "version"):
            if key in data:
                if not isinstance(data[key], str):
                    raise ValueError(f"{where}: {key!r} must be a string, got {data[key]!r}")
                kwargs[key] = data[key]
        if "target" in data:
            target = data["target"]
            if not (
                isinstance(target, dict)
                and target.get("kind") in ("cpu", "gpu")
                and isinstance(target.get("device"), str)
            ):
                raise ValueError(
                    f'{where}: \'target\' must be {{"kind": "cpu" or "gpu", "device": "..."}}, '
                    f"got {target!r}"
                )
            kwargs["target"] = {"kind": target["kind"], "device": target["device"]}
        return cls(**kwargs)

    @classmethod
    def read(cls, path) -> Capabilities:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict:
        return {
            "outputs": sorted(self.outputs),
            "tasks": None if self.tasks is None else sorted(self.tasks),
            "profiles": None if self.profiles is None else sorted(self.profiles),
            "inputs": sorted(self.inputs),
            "compute_dtype": self.compute_dtype,
            "tuple": self.tuple,
        }

    def refuses(self, task=None, profile=None) -> str | None:
        """Why a task or profile is outside the declaration, or None."""
        if profile is not None and self.profiles is not None and profile not in self.profiles:
            return (
                f"profile {profile!r} is not declared (declared:"
                f" {', '.join(sorted(self.profiles))})"
            )
        if task is not None and self.tasks is not None and task not in self.tasks:
            return f"task {task!r} is not declared (declared: {', '.join(sorted(self.tasks))})"
        return None

    def missing_inputs(self, inputs: dict, options=None) -> list:
        """The input features of a case (its arrays, and a generation_config in its options) that
        are not declared."""
        used = input_features(inputs) | {"generation_config"} & set(options or ())
        return sorted(used - self.inputs)

    def missing_outputs(self, groups) -> list:
        return sorted(set(groups) - self.outputs)


def _names(value, allowed, where) -> frozenset:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} must be a list of names from {list(allowed)}, got {value!r}")
    bad = sorted(set(value) - set(allowed))
    if bad:
        raise ValueError(f"{where}: unknown name(s) {bad}; known: {list(allowed)}")
    return frozenset(value)


def capabilities_of(impl) -> Capabilities:
    """An implementation's declaration: its ``capabilities`` attribute (object or dict), else
    everything."""
    declared = getattr(impl, "capabilities", None)
    if declared is None:
        return Capabilities()
    if isinstance(declared, Capabilities):
        return declared
    return Capabilities.from_dict(
        declared, f"{getattr(impl, 'name', 'implementation')}.capabilities"
    )


def count_groups(names) -> str:
    """'attentions (2), hidden_states (3)': the groups of a list of output names, counted."""
    counts = {}
    for name in names:
        group = output_group(name) or "tuple"
        counts[group] = counts.get(group, 0) + 1
    return ", ".join(f"{g} ({n})" for g, n in sorted(counts.items()))
