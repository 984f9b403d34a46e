"""llama.cpp (through llama-cpp-python) running GGUF conversions of the MPT golden models: the
engine people run MPT with on a CPU, checked as a port.

Each golden model is converted as a llama.cpp user converts a checkpoint (write_gguf: arch "mpt",
fused qkv, tied output, ALiBi with max bias 8, LayerNorm without bias), into a temporary folder,
in f32 (``llama-cpp``) or with its matrices in bf16 (``llama-cpp-bf16``, judged by the bf16
cases). HF 4.37.2's MPT honours one attention setting GGUF has no field for, softmax_scale: the
conversion folds it into the query rows of Wqkv (llama.cpp scales by 1 / sqrt(head size)), as a
porter would. llama.cpp gives the logits of every position of one sequence, and its own KV cache
for the steps after them, so the declaration is: final outputs and generate()'s sequences (greedy
decoding, a row at a time); causal-lm, profile hf; an attention mask only where every token is
real (no padding); keys and values kept in f32 (llama.cpp's default is f16), so that the cache is
not what is being measured.

Optional: needs llama-cpp-python and gguf, which the benchmark environment holds (bash
tools/bench_env.sh); neither is a dependency of the project.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np

from ..capabilities import Capabilities
from ..golden import model_digest
from ..protocol import Unsupported

ALIBI_BIAS_MAX = 8.0  # HF 4.37.2 always builds ALiBi with 8 (SPEC 2.1)
GGML_TYPE_F32 = 0  # llama.cpp's KV cache type: f32 rather than its default f16
GREEDY_SETTINGS = {"max_new_tokens", "max_length", "eos_token_id", "pad_token_id", "use_cache"}
GGUF_NAMES = {  # HF MPT's per-block weights -> llama.cpp's
    "norm_1.weight": "attn_norm.weight",
    "attn.Wqkv.weight": "attn_qkv.weight",
    "attn.out_proj.weight": "attn_output.weight",
    "norm_2.weight": "ffn_norm.weight",
    "ffn.up_proj.weight": "ffn_up.weight",
    "ffn.down_proj.weight": "ffn_down.weight",
}


def write_gguf(config: dict, weights: dict, path, kind: str = "f32"):
    """An MPT checkpoint (HF config.json dict, HF-named weights, with or without the
    "transformer." prefix) as llama.cpp's "mpt" architecture reads it, written to ``path``: f32,
    bf16 or q8_0 matrices (the norms stay f32), no vocabulary (tokenizer model "none": token ids
    are fed). HF 4.37.2's MPT is bias-free with an MLP of 4 x d_model whatever the config says;
    an attn_config softmax_scale is folded into the query rows of Wqkv."""
    import gguf

    C, H, L = config["d_model"], config["n_heads"], config["n_layers"]
    w = {name.removeprefix("transformer."): value for name, value in weights.items()}
    writer = gguf.GGUFWriter(str(path), "mpt")
    writer.add_context_length(config["max_seq_len"])
    writer.add_embedding_length(C)
    writer.add_block_count(L)
    writer.add_feed_forward_length(4 * C)
    writer.add_head_count(H)
    writer.add_layer_norm_eps(config.get("layer_norm_epsilon", 1e-5))
    writer.add_max_alibi_bias(ALIBI_BIAS_MAX)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_tokenizer_model("none")
    file_type, quant = {
        "f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
        "bf16": (gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16),
        "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
    }[kind]
    writer.add_file_type(file_type)
    names = {"wte.weight": "token_embd.weight", "norm_f.weight": "output_norm.weight"}
    for i in range(L):
        names.update({f"blocks.{i}.{k}": f"blk.{i}.{v}" for k, v in GGUF_NAMES.items()})
    scale = (config.get("attn_config") or {}).get("softmax_scale")
    for name, gguf_name in names.items():
        data = np.array(w[name], np.float32)
        if scale is not None and name.endswith("attn.Wqkv.weight"):
            data[:C] *= np.float32(scale * np.sqrt(C // H))  # q . k * scale, as llama.cpp scales
        if data.ndim == 1 or kind == "f32":
            writer.add_tensor(gguf_name, data)
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, quant), raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


class LlamaCppPort:
    def __init__(self, kind="f32", threads=1):
        self.kind, self.threads = kind, threads
        self.name = "llama-cpp" if kind == "f32" else f"llama-cpp-{kind}"
        self._models, self._folder = {}, None

    @property
    def version(self):
        import llama_cpp

        return llama_cpp.__version__

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            outputs=frozenset({"final", "sequences"}),
            tasks=frozenset({"causal-lm"}),
            profiles=frozenset({"hf"}),
            inputs=frozenset({"attention_mask"}),
            compute_dtype="fp32" if self.kind == "f32" else self.kind,
            tuple=False,
            target={"kind": "cpu", "device": platform.processor() or platform.machine()},
        )

    def check_available(self):
        try:
            import gguf  # noqa: F401
            import llama_cpp  # noqa: F401
        except ImportError:
            raise ValueError(
                "the llama-cpp adapter needs llama-cpp-python and gguf: the benchmark environment"
                " has them (bash tools/bench_env.sh)"
            ) from None

    def model(self, config, weights):
        """The llama.cpp model of a golden model, converted on first use."""
        import llama_cpp

        key = model_digest(config, weights)
        if key not in self._models:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="llama-cpp-port-")
            path = Path(self._folder.name) / f"{key[:16]}-{self.kind}.gguf"
            write_gguf(config, weights, path, self.kind)
            self._models[key] = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=config["max_seq_len"],
                n_batch=config["max_seq_len"],
                logits_all=True,
                n_threads=self.threads,
                type_k=GGML_TYPE_F32,
                type_v=GGML_TYPE_F32,
                flash_attn=False,
                verbose=False,
            )
        return self._models[key]

    def rows(self, config, inputs, generating):  # -> [B, S] ids, [B] where each row's text starts
        """input_ids checked the way a port checks them, and each row's first real token: a
        serving engine runs each prompt alone, so generate() takes left padding (the prompt's
        real tokens run), but the logits of padding positions are not llama.cpp's to give."""
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
            raise Unsupported(f"an attention mask of shape {mask.shape} (llama.cpp takes none)")
        starts = np.argmax(mask == 1, axis=1)
        left_padded = all(
            row[start:].all() and not row[:start].any() for row, start in zip(mask, starts)
        )
        if not np.all(mask == 1) and not (generating and left_padded and mask[:, -1].all()):
            raise Unsupported(
                "llama.cpp runs each sequence alone: no padding (generate(): left padding only)"
            )
        return ids, starts

    def run(self, family, task, config, weights, inputs, options):
        if family != "mpt" or options.get("profile", "hf") != "hf" or task != "causal-lm":
            raise Unsupported("the GGUF conversions are MPT causal-lm, profile hf")
        extra = sorted(set(inputs) - {"input_ids", "attention_mask"})
        if extra:
            raise Unsupported(f"llama.cpp takes token ids alone, not {extra}")
        generating = "generate" in options
        (ids, starts), llm = self.rows(config, inputs, generating), self.model(config, weights)
        if generating:
            return {"sequences": self.greedy(llm, config, ids, starts, options["generate"])}
        logits = []
        for row in ids:
            llm.reset()
            llm.eval(row.tolist())
            logits.append(np.array(llm.scores[: len(row)], np.float32))
        return {"logits": np.stack(logits)}

    def greedy(self, llm, config, ids, starts, settings):
        """generate()'s greedy decoding, a row at a time (from its first real token) over
        llama.cpp's own cache: each step the highest logit (the first of equal ones); a finished
        row is padded to the longest."""
        other = sorted(k for k, v in settings.items() if k not in GREEDY_SETTINGS and v)
        if other or settings.get("do_sample"):
            raise Unsupported(f"greedy decoding only, not {other or ['do_sample']}")
        S = ids.shape[1]
        new = settings.get("max_new_tokens")
        new = settings.get("max_length", 20) - S if new is None else new
        if new < 1 or S + new > config["max_seq_len"]:
            raise Unsupported(f"{new} new tokens after {S} (llama.cpp makes at least one)")
        eos = settings.get("eos_token_id", config.get("eos_token_id"))
        eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
        pad = settings.get("pad_token_id", config.get("pad_token_id"))
        pad = eos[0] if pad is None and eos else pad
        texts = []
        for row, start in zip(ids, starts):
            llm.reset()
            llm.eval(row[start:].tolist())
            made = []
            while len(made) < new:
                made.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
                if made[-1] in eos or len(made) == new:
                    break
                llm.eval(made[-1:])
            texts.append(made)
        longest = max(len(t) for t in texts)
        if any(len(t) < longest for t in texts) and pad is None:
            raise ValueError("a row finished before the others, and there is no pad id")
        padded = [t + [pad] * (longest - len(t)) for t in texts]
        return np.concatenate([ids, np.array(padded, np.int64).reshape(len(ids), -1)], axis=1)


implementation = LlamaCppPort()
bf16_implementation = LlamaCppPort("bf16")
