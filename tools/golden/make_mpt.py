"""Generate the MPT golden cases by running the real upstream code.

    python tools/golden/make_mpt.py --profile hf       # transformers 4.37.2 + torch (the pt
    environment)
    python tools/golden/make_mpt.py --profile mosaic   # llm-foundry 0.22 + torch (the mosaic
    environment)
    FOUNDRY_04=/path/to/llm-foundry-0.4.0 python tools/golden/make_mpt.py --profile mosaic-0.4   #
    the pt environment

See tools/README.md. Each case's model is built by the upstream class, given seeded weights, saved
with save_pretrained (safetensors) and reloaded with from_pretrained before it runs in eval mode.
Nothing here imports the reference implementation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, flatten, random_weights, tuple_layout, write_case  # noqa: E402
from conformance.golden import generate_outputs, split_past, upstream_generate_kwargs, write_manifest  # noqa: E402
from mpt_cases import cases  # noqa: E402

HF_CLASSES = {
    "base": "MptModel",
    "causal-lm": "MptForCausalLM",
    "sequence-classification": "MptForSequenceClassification",
    "token-classification": "MptForTokenClassification",
    "question-answering": "MptForQuestionAnswering",
}


class HFRunner:
    """transformers 4.37.2 on PyTorch (CPU, fp32)."""

    profile = "hf"

    def __init__(self):
        import torch
        import transformers

        self.torch, self.tr = torch, transformers
        torch.set_num_threads(1)
        self.provenance = {
            "library": "transformers",
            "version": transformers.__version__,
            "framework": "torch",
            "framework_version": torch.__version__,
        }

    def build(self, spec, directory):
        torch, tr = self.torch, self.tr
        cls = getattr(tr, HF_CLASSES[spec["task"]])
        model = cls(tr.MptConfig(**spec["config"])).eval()
        state = model.state_dict()
        weights = random_weights({k: tuple(v.shape) for k, v in state.items()}, spec["seed"])
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        model.tie_weights()
        model.save_pretrained(directory, safe_serialization=True)
        return cls.from_pretrained(directory).eval()

    def tensor(self, x):
        return self.torch.from_numpy(np.ascontiguousarray(x))

    def numpy(self, t):
        if t is None:
            return None
        if isinstance(t, (tuple, list)):
            return tuple(self.numpy(x) for x in t)
        return t.detach().numpy()

    def call(self, model, inputs, return_dict, **kw):
        kwargs = {k: self.tensor(v) for k, v in inputs.items()}
        with self.torch.no_grad():
            out = model(
                **kwargs,
                **kw,
                output_hidden_states=True,
                output_attentions=True,
                return_dict=return_dict,
            )
        return {k: self.numpy(v) for k, v in out.items()} if return_dict else self.numpy(out)

    def prefill(self, model, ids, mask):
        kw = {} if mask is None else {"attention_mask": self.tensor(mask)}
        with self.torch.no_grad():
            out = model(self.tensor(ids), **kw, use_cache=True, return_dict=True)
        return out.past_key_values

    def reload(self, spec, directory):
        """The model saved in directory, loaded again (with any generation_config.json written
        there since)."""
        return getattr(self.tr, HF_CLASSES[spec["task"]]).from_pretrained(directory).eval()

    def generate_configured(self, model, inputs, **kwargs):
        """generate() with only the case's keyword arguments (and inputs: the prompt, its mask, a
        negative prompt): the rest comes from the model's generation config."""
        with self.torch.no_grad():
            return generated(
                model.generate(
                    self.tensor(inputs["input_ids"]),
                    **{k: self.tensor(v) for k, v in inputs.items() if k != "input_ids"},
                    **kwargs,
                ),
                {**model.generation_config.to_dict(), **kwargs},
                model,
            )

    def generate(self, model, inputs, max_new_tokens, eos_token_id=None, do_sample=False, **more):
        more = upstream_generate_kwargs(more)
        plain, past = split_past(inputs)
        if past is not None:  # a case with a split: the cache of the prompt's first tokens
            more["past_key_values"] = tuple((self.tensor(k), self.tensor(v)) for k, v in past)
        with self.torch.no_grad():
            seq = model.generate(
                self.tensor(plain["input_ids"]),
                **{k: self.tensor(v) for k, v in plain.items() if k != "input_ids"},
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                eos_token_id=eos_token_id,
                pad_token_id=model.config.pad_token_id,
                **more,
            )
        return generated(seq, more, model)


def generated(out, settings, model):
    """A generate() result as a case's outputs (conformance.golden.generate_outputs). Diverse beam
    search's beam_indices, and the transition scores read with them, are left out: upstream's
    are inconsistent there (a later group's finished hypotheses take group 0's history), and the
    reference does not reproduce them."""
    flat = generate_outputs(out, model)
    if settings.get("num_beam_groups", 1) > 1:
        flat.pop("beam_indices", None)
        flat.pop("transition_scores", None)
    return flat


class MosaicRunner(HFRunner):
    """MosaicML llm-foundry's MPT (attn_impl torch) on PyTorch, fp32. Only causal LM exists there.

    llm-foundry keeps cached keys transposed, [B, H, D, K]; cases store every cache in the HF layout
    [B, H, K, D], so keys are transposed on the way out and back on the way in.
    """

    profile = "mosaic"

    def __init__(self):
        import llmfoundry
        import torch
        from llmfoundry.models.mpt import MPTConfig, MPTForCausalLM

        self.torch, self.config_cls, self.model_cls = torch, MPTConfig, MPTForCausalLM
        torch.set_num_threads(1)
        self.provenance = {
            "library": "llm-foundry",
            "version": llmfoundry.__version__,
            "framework": "torch",
            "framework_version": torch.__version__,
        }

    def build(self, spec, directory):
        torch = self.torch
        model = self.model_cls(self.config_cls(**spec["config"], init_device="cpu")).eval()
        state = model.state_dict()
        weights = random_weights({k: tuple(v.shape) for k, v in state.items()}, spec["seed"])
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        model.save_pretrained(directory, safe_serialization=True)
        return self.model_cls.from_pretrained(directory).eval()

    def call(self, model, inputs, return_dict, past_key_values=None, **kw):
        if not return_dict:
            raise NotImplementedError("llm-foundry MPT has no tuple outputs")
        kwargs = {k: self.tensor(v) for k, v in inputs.items()}
        if past_key_values is not None:
            kw["past_key_values"] = tuple((k.transpose(2, 3), v) for k, v in past_key_values)
        with self.torch.no_grad():
            out = model(**kwargs, **kw, output_hidden_states=True, output_attentions=True)
        result = {k: self.numpy(v) for k, v in out.items()}
        if result.get("past_key_values") is not None:
            result["past_key_values"] = tuple(
                (k.swapaxes(2, 3), v) for k, v in result["past_key_values"]
            )
        return result

    def prefill(self, model, ids, mask):
        kw = {} if mask is None else {"attention_mask": self.tensor(mask)}
        with self.torch.no_grad():
            out = model(self.tensor(ids), **kw, use_cache=True)
        return tuple((k.transpose(2, 3), v) for k, v in out.past_key_values)


class Mosaic04Runner(MosaicRunner):
    """llm-foundry 0.4.0, the last release with prefix_lm, in the transformers 4.37.2 environment.
    Its training framework (composer 0.17) needs an older torch, and the MPT modules use it only for
    wrapper classes and metrics, so tools/golden/foundry04.py stands those imports in with inert
    ones.
    """

    source = "0.4"

    def __init__(self):
        import foundry04  # noqa: F401 - makes llmfoundry 0.4.0's MPT modules importable
        import torch
        from llmfoundry.models.mpt.configuration_mpt import MPTConfig
        from llmfoundry.models.mpt.modeling_mpt import MPTForCausalLM

        self.torch, self.config_cls, self.model_cls = torch, MPTConfig, MPTForCausalLM
        torch.set_num_threads(1)
        self.provenance = {
            "library": "llm-foundry",
            "version": "0.4.0",
            "framework": "torch",
            "framework_version": torch.__version__,
        }


def prepare(runner, model, spec):
    """Inputs as the case stores them, and the extra call arguments (past, use_cache)."""
    inputs, options, extra = dict(spec["inputs"]), spec["options"], {}
    split = spec["split"]
    if split is not None:
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        past = runner.prefill(model, ids[:, :split], None if mask is None else mask[:, :split])
        inputs["input_ids"] = ids[:, split:]
        if mask is not None and options.get("short_mask"):
            inputs["attention_mask"] = mask[:, -1:]
        for i, (k, v) in enumerate(past):
            inputs[f"past.{i}.key"], inputs[f"past.{i}.value"] = runner.numpy(k), runner.numpy(v)
    if "use_cache" in options:
        extra["use_cache"] = options["use_cache"]
    return inputs, extra


def with_past(runner, model, inputs, split, gen):
    """A generate case's inputs with upstream's cache of the prompt's first ``split`` tokens
    (past.<layer>.key / .value), a row for each row generate() decodes (each prompt's repeated
    num_beams or num_return_sequences times, as upstream's generate() does not repeat it)."""
    beams = gen.get("num_beams", 1)
    times = beams if beams > 1 else gen.get("num_return_sequences", 1)
    ids = np.repeat(inputs["input_ids"][:, :split], times, axis=0)
    mask = np.repeat(inputs["attention_mask"][:, :split], times, axis=0)
    inputs = dict(inputs)
    for i, (k, v) in enumerate(runner.prefill(model, ids, mask)):
        inputs[f"past.{i}.key"], inputs[f"past.{i}.value"] = runner.numpy(k), runner.numpy(v)
    return inputs


def generate(runner, out_root: Path, only=None):
    for spec in cases():
        if runner.profile not in spec["profiles"] or (only and spec["name"] not in only):
            continue
        if spec["source"] != getattr(runner, "source", None):
            continue
        meta = {
            "family": "mpt",
            "task": spec["task"],
            "profile": runner.profile,
            "purpose": spec["purpose"],
            "dtype": "fp32",
            "options": {"output_hidden_states": True, "output_attentions": True},
            "provenance": {
                **runner.provenance,
                "weight_seed": spec["seed"],
                "generator": "tools/golden/make_mpt.py",
            },
        }
        with tempfile.TemporaryDirectory() as tmp:
            model = runner.build(spec, tmp)
            gen = spec["options"].get("generate")
            file = spec["options"].get("generation_config")
            if file is not None:  # generate() as the checkpoint's generation_config.json says
                inputs = spec["inputs"]
                free = runner.generate(model, inputs, 8)["sequences"]
                S = inputs["input_ids"].shape[1]

                def token(e):  # "row-R-token-I": the I-th new token of row R in greedy decoding
                    if isinstance(e, list):
                        return [token(x) for x in e]
                    if isinstance(e, str) and e.startswith("row-"):
                        _, r, _, i = e.split("-")
                        return int(free[int(r), S + int(i)])
                    return e

                file = {k: token(v) for k, v in file.items()}
                (Path(tmp) / "generation_config.json").write_text(json.dumps(file, indent=2))
                model = runner.reload(spec, tmp)
                meta["options"] = {"generate": gen, "generation_config": file}

                def run():
                    return runner.generate_configured(model, inputs, **gen), None, {}

            elif gen:
                inputs = spec["inputs"]
                if spec["split"] is not None:  # past_key_values: a prefill of the first tokens
                    inputs = with_past(runner, model, inputs, spec["split"], gen)
                if (
                    gen.get("eos_token_id") == "first-token-of-row-0"
                ):  # an eos that row 0 emits at step 3
                    free = runner.generate(model, inputs, gen["max_new_tokens"])["sequences"]
                    gen = {**gen, "eos_token_id": int(free[0, inputs["input_ids"].shape[1] + 2])}
                meta["options"] = {"generate": gen}

                def run():
                    return runner.generate(model, inputs, **gen), None, {}

            else:
                try:
                    inputs, extra = prepare(runner, model, spec)
                except Exception:  # noqa: BLE001 - e.g. a prefill already over the limit
                    inputs, extra = dict(spec["inputs"]), {}
                meta["options"].update(extra)

                def run():
                    plain, past = split_past(inputs)
                    kw = dict(
                        extra,
                        **(
                            {
                                "past_key_values": tuple(
                                    (runner.tensor(k), runner.tensor(v)) for k, v in past
                                )
                            }
                            if past
                            else {}
                        ),
                    )
                    outputs = flatten(runner.call(model, plain, True, **kw))
                    if runner.profile == "mosaic":  # llm-foundry refuses return_dict=False
                        return outputs, None, {}
                    layout, more = tuple_layout(runner.call(model, plain, False, **kw), outputs)
                    return outputs, layout, more

            write_case(out_root, f"mpt/{runner.profile}/{spec['name']}", tmp, meta, inputs, run)
    write_manifest(out_root)


def write_low_precision_layer_norm(out_root: Path):
    """Op golden for MosaicML's LPLayerNorm under autocast: it casts x, weight and bias to the
    autocast dtype and runs layer_norm with autocast disabled. That is reproduced here with torch
    directly: llm-foundry only takes this path when torch.is_autocast_enabled() is true, which on
    torch >= 2.4 reports CUDA autocast only, so on a CPU its LPLayerNorm silently stays in
    float32."""
    import torch
    import torch.nn.functional as F

    from common import write_tensors
    import json

    rng = np.random.default_rng(7)
    C = 48
    scales = np.geomspace(1e-2, 1e2, 64)[:, None]
    x = (rng.normal(size=(64, C)) * scales + rng.normal(size=(64, 1)) * scales).astype(np.float32)
    w = (1 + 0.3 * rng.normal(size=C)).astype(np.float32)
    b = (0.3 * rng.normal(size=C)).astype(np.float32)
    eps = 1e-5
    outputs = {}
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    with torch.no_grad():
        outputs["y.fp32"] = F.layer_norm(t(x), (C,), t(w), t(b), eps).numpy()
        for name, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            outputs[f"y.{name}"] = (
                F.layer_norm(t(x).to(dt), (C,), t(w).to(dt), t(b).to(dt), eps).float().numpy()
            )
            outputs[f"y_no_bias.{name}"] = (
                F.layer_norm(t(x).to(dt), (C,), t(w).to(dt), None, eps).float().numpy()
            )
    case_id = "mpt/mosaic/op-low-precision-layer-norm"
    case_dir = out_root / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(case_dir / "inputs.safetensors", {"x": x, "weight": w, "bias": b})
    write_tensors(case_dir / "outputs.safetensors", outputs)
    meta = {
        "id": case_id,
        "family": "mpt",
        "tier": "op",
        "op": "low_precision_layer_norm",
        "profile": "mosaic",
        "purpose": (
            "LPLayerNorm under bf16/fp16 autocast: inputs and parameters rounded, layer_norm on the"
            " low-precision tensors (float32 accumulation), output in the low-precision type"
        ),
        "eps": eps,
        "inputs": ["bias", "weight", "x"],
        "outputs": sorted(outputs),
        "tolerance": {
            "fp32": {"atol": 2e-6, "rtol": 1e-5},
            "bf16": {"ulps": 1},
            "fp16": {"ulps": 1},
        },
        "provenance": {
            "library": "torch",
            "version": torch.__version__,
            "device": "cpu",
            "generator": "tools/golden/make_mpt.py",
        },
    }
    (case_dir / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{case_id}: {len(outputs)} outputs")


def write_op_case(out_root: Path, case_id, op, purpose, inputs, outputs, tolerance, **extra):
    """One op-tier case directory: inputs and outputs files, and case.json naming transformers
    4.37.2 on torch as the source."""
    import json

    import torch

    from common import write_tensors

    case_dir = out_root / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(case_dir / "inputs.safetensors", inputs)
    write_tensors(case_dir / "outputs.safetensors", outputs)
    meta = {
        "id": case_id,
        "family": "mpt",
        "tier": "op",
        "op": op,
        "profile": "hf",
        "purpose": purpose,
        **extra,
        "inputs": sorted(inputs),
        "outputs": sorted(outputs),
        "tolerance": {"fp32": tolerance},
        "provenance": {
            "library": "transformers",
            "version": "4.37.2",
            "framework": "torch",
            "framework_version": torch.__version__,
            "generator": "tools/golden/make_mpt.py",
        },
    }
    (case_dir / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{case_id}: {len(outputs)} outputs")


def write_alibi_op(out_root: Path):
    """Op golden: HF 4.37.2's build_mpt_alibi_tensor for 1..64 heads over 8 positions
    (alibi_bias_max 8)."""
    from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

    write_op_case(
        out_root,
        "mpt/hf/op-alibi",
        "alibi_bias",
        "the ALiBi tensor [H, 1, K] = slope_h * (j - (K - 1)) for H = 1..64, K = 8",
        {"key_len": np.array(8, np.int64)},
        {f"alibi.{n}": build_mpt_alibi_tensor(n, 8).numpy() for n in range(1, 65)},
        {"atol": 0, "rtol": 1e-6},
    )


# Sampling settings for the warper op case, each run through generate()'s own choice of warpers
WARPER_SETTINGS = [
    dict(temperature=0.7),
    dict(top_k=5),
    dict(top_p=0.8),
    dict(typical_p=0.6),
    dict(epsilon_cutoff=0.03),
    dict(eta_cutoff=0.05),
    dict(temperature=1.5, top_p=0.3),
    dict(temperature=0.8, top_k=20, top_p=0.9, typical_p=0.9, epsilon_cutoff=0.01, eta_cutoff=0.02),
]


def warped(pairs, ties):
    """Float32 scores (random rows, a row of ties where ``ties``, a row partly at -inf) and, for
    each (beams, settings) of ``pairs``, what the warpers transformers 4.37.2's generate() builds
    for those settings make of them (GenerationMixin._get_logits_warper, top_k 0 where a setting
    leaves it out). beams: None, or the num_beams and eos_token_id of beam sampling, whose
    warpers keep more tokens; the settings returned then hold that number, min_tokens_to_keep, as
    upstream's warpers hold it."""
    import torch
    from transformers import GenerationConfig, GenerationMixin

    rng = np.random.default_rng(11)
    scores = (2.0 * rng.normal(size=(5, 48))).astype(np.float32)
    if ties:
        scores[3] = np.round(scores[3] * 2) / 2
    scores[4, rng.choice(48, 20, replace=False)] = -np.inf
    outputs, used = {}, []
    for i, (beams, settings) in enumerate(pairs):
        config = GenerationConfig(do_sample=True, **{"top_k": 0, **settings, **(beams or {})})
        warpers = GenerationMixin._get_logits_warper(None, config)
        dummy = torch.zeros((5, 1), dtype=torch.long)
        outputs[f"warped.{i}"] = warpers(dummy, torch.from_numpy(scores.copy())).numpy()
        kept = {getattr(w, "min_tokens_to_keep", None) for w in warpers} - {None}
        assert beams is None or len(kept) == 1, "each setting needs a warper that says"
        used.append({"top_k": 0, **settings, **({"min_tokens_to_keep": kept.pop()} if beams else {})})
    return scores, outputs, used


# Beam sampling's warpers keep one more token than there are eos ids, two at least
BEAM_WARPER_SETTINGS = [
    ({"num_beams": 4, "eos_token_id": 3}, dict(top_p=0.05)),
    ({"num_beams": 4, "eos_token_id": [3, 7, 9]}, dict(top_k=1, top_p=0.05)),
    ({"num_beams": 2, "eos_token_id": [3, 7]}, dict(typical_p=0.05)),
    ({"num_beams": 3}, dict(epsilon_cutoff=0.3)),
    ({"num_beams": 3, "eos_token_id": [1, 2]}, dict(eta_cutoff=0.3)),
]


def write_warpers_op(out_root: Path, beams=False):
    """Op golden: generate()'s sampling warpers for each of WARPER_SETTINGS; with ``beams``,
    beam sampling's for each of BEAM_WARPER_SETTINGS, settings strict enough that the minimum
    number kept decides (and no ties: which of several equal scores torch's unstable sort keeps
    is its own affair)."""
    pairs = BEAM_WARPER_SETTINGS if beams else [(None, s) for s in WARPER_SETTINGS]
    scores, outputs, used = warped(pairs, ties=not beams)
    write_op_case(
        out_root,
        "mpt/hf/op-logits-warpers-beams" if beams else "mpt/hf/op-logits-warpers",
        "logits_warper",
        "beam sampling's warpers (num_beams > 1): each keeps at least one token more than there"
        " are eos ids, two at least (min_tokens_to_keep in settings[i], read from upstream's"
        " warpers); settings strict enough that the minimum decides; no tied scores"
        if beams
        else "generate()'s sampling warpers (temperature, top-k, top-p, typical, epsilon, eta,"
        " alone and chained in upstream's order) on float32 scores with ties and -inf entries;"
        " settings[i] gives warped.i",
        {"scores": scores},
        outputs,
        {"atol": 1e-6, "rtol": 1e-6},
        settings=used,
    )


OPS = {
    "op-alibi": write_alibi_op,
    "op-logits-warpers": write_warpers_op,
    "op-logits-warpers-beams": lambda out_root: write_warpers_op(out_root, beams=True),
}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile",
        choices=["hf", "mosaic", "mosaic-0.4"],
        required=True,
        help="mosaic-0.4: the prefix_lm cases, from llm-foundry 0.4.0",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "golden")
    parser.add_argument("--only", nargs="*", help="case names to regenerate (default: all)")
    args = parser.parse_args()
    runner = {"hf": HFRunner, "mosaic": MosaicRunner, "mosaic-0.4": Mosaic04Runner}[args.profile]()
    generate(runner, args.out, args.only)
    if args.profile == "hf":
        if not args.only:
            write_low_precision_layer_norm(args.out)
        for name, write in OPS.items():
            if not args.only or name in args.only:
                write(args.out)
        write_manifest(args.out)


if __name__ == "__main__":
    main()
