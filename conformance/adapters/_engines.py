"""What the inference-engine ports (llama.cpp, CTranslate2) share: engines that run one sequence
at a time from token ids, converted from each MPT golden model the way their users convert a
checkpoint. Each gives the final logits of an unpadded sequence and greedy generate() over its own
cache (a left-padded prompt runs its real tokens, as a serving engine runs a request alone);
causal-lm, profile hf. A subclass converts and loads a model (``load``), and runs a row
(``row_logits``, ``row_greedy``)."""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np

from ..capabilities import Capabilities
from ..golden import model_digest
from ..protocol import Unsupported

# generate() settings greedy decoding takes, any other given a true value is refused
GREEDY_SETTINGS = {"max_new_tokens", "max_length", "eos_token_id", "pad_token_id", "use_cache"}


class EnginePort:
    name = "engine"
    packages: tuple = ()  # the modules it imports, said by check_available when missing

    def __init__(self, kind, threads=1):
        self.kind, self.threads = kind, threads
        self._models, self._folder = {}, None

    @property
    def compute_dtype(self):  # what the suite judges it by: fp32 unless the kind is bf16 or fp16
        return self.kind if self.kind in ("bf16", "fp16") else "fp32"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            outputs=frozenset({"final", "sequences"}),
            tasks=frozenset({"causal-lm"}),
            profiles=frozenset({"hf"}),
            inputs=frozenset({"attention_mask"}),
            compute_dtype=self.compute_dtype,
            tuple=False,
            target={"kind": "cpu", "device": platform.processor() or platform.machine()},
        )

    def check_available(self):
        import importlib

        try:
            for package in self.packages:
                importlib.import_module(package)
        except ImportError:
            raise ValueError(
                f"the {self.name} adapter needs {', '.join(self.packages)}: the benchmark"
                " environment has them (bash tools/bench_env.sh)"
            ) from None

    def model(self, config, weights):
        """The engine's model of a golden model, converted into a temporary folder on first use."""
        key = model_digest(config, weights)
        if key not in self._models:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix=f"{self.name}-port-")
            self._models[key] = self.load(config, weights, Path(self._folder.name) / key[:16])
        return self._models[key]

    def load(self, config, weights, folder: Path):  # -> the loaded model
        raise NotImplementedError

    def row_logits(self, model, row):  # [S] ids -> [S, V] float32
        raise NotImplementedError

    def row_greedy(self, model, row, new, eos):  # [S] ids -> up to ``new`` tokens, ending at eos
        raise NotImplementedError

    def rows(self, config, inputs, generating):  # -> [B, S] ids, [B] where each row's text starts
        """input_ids checked the way a port checks them, and each row's first real token: a
        serving engine runs each prompt alone, so generate() takes left padding (the prompt's
        real tokens run), but the logits of padding positions are not the engine's to give."""
        ids = np.asarray(inputs["input_ids"])
        if ids.dtype.kind not in "iu" or ids.ndim != 2:
            raise TypeError(
                f"input_ids must be a [B, S] integer array, got {ids.dtype} {ids.shape}"
            )
        vocab = config["vocab_size"]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(
                f"input_ids must lie in [0, {vocab}), got values in [{ids.min()}, {ids.max()}]"
            )
        if ids.shape[1] > config["max_seq_len"]:
            raise ValueError(f"{ids.shape[1]} tokens exceed max_seq_len {config['max_seq_len']}")
        mask = inputs.get("attention_mask")
        mask = np.ones(ids.shape, np.int64) if mask is None else np.asarray(mask)
        if mask.shape != ids.shape:
            raise Unsupported(f"an attention mask of shape {mask.shape} ({self.name} takes none)")
        starts = np.argmax(mask == 1, axis=1)
        left_padded = all(
            row[start:].all() and not row[:start].any() for row, start in zip(mask, starts)
        )
        if not np.all(mask == 1) and not (generating and left_padded and mask[:, -1].all()):
            raise Unsupported(
                f"{self.name} runs each sequence alone: no padding (generate(): left padding only)"
            )
        return ids, starts

    def run(self, family, task, config, weights, inputs, options):
        if family != "mpt" or options.get("profile", "hf") != "hf" or task != "causal-lm":
            raise Unsupported(f"the {self.name} conversions are MPT causal-lm, profile hf")
        extra = sorted(set(inputs) - {"input_ids", "attention_mask"})
        if extra:
            raise Unsupported(f"{self.name} takes token ids alone, not {extra}")
        generating = "generate" in options
        ids, starts = self.rows(config, inputs, generating)
        if generating:  # the settings checked before a model is converted
            plan = self.greedy_plan(config, ids, options["generate"])
            return {"sequences": self.greedy(self.model(config, weights), ids, starts, *plan)}
        model = self.model(config, weights)
        return {"logits": np.stack([self.row_logits(model, row) for row in ids])}

    def greedy_plan(self, config, ids, settings):  # -> new tokens, eos ids, pad id
        """What greedy decoding takes of generate()'s settings, the model's config filling in eos
        and pad as upstream's generation config does; other settings are refused."""
        other = sorted(k for k, v in settings.items() if k not in GREEDY_SETTINGS and v)
        if other:
            raise Unsupported(f"greedy decoding only, not {other}")
        S = ids.shape[1]
        new = settings.get("max_new_tokens")
        new = settings.get("max_length", 20) - S if new is None else new
        if new < 1 or S + new > config["max_seq_len"]:
            raise Unsupported(f"{new} new tokens after {S} (an engine makes at least one)")
        eos = settings.get("eos_token_id", config.get("eos_token_id"))
        eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
        pad = settings.get("pad_token_id", config.get("pad_token_id"))
        pad = eos[0] if pad is None and eos else pad
        return new, eos, pad

    def greedy(self, model, ids, starts, new, eos, pad):
        """generate()'s greedy decoding, a row at a time from its first real token; a row that
        finished is padded to the longest, as upstream pads it."""
        texts = [self.row_greedy(model, row[start:], new, eos) for row, start in zip(ids, starts)]
        longest = max(len(t) for t in texts)
        if any(len(t) < longest for t in texts) and pad is None:
            raise ValueError("a row finished before the others, and there is no pad id")
        padded = [list(t) + [pad] * (longest - len(t)) for t in texts]
        return np.concatenate([ids, np.array(padded, np.int64).reshape(len(ids), -1)], axis=1)
