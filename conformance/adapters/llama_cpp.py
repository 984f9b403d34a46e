"""llama.cpp (through llama-cpp-python) running GGUF conversions of the MPT golden models: the
engine people run MPT with on a CPU, checked as a port.

Each golden model is converted as a llama.cpp user converts a checkpoint (write_gguf: arch "mpt",
fused qkv, tied output, ALiBi with max bias 8, LayerNorm without bias), into a temporary folder,
in f32 (``llama-cpp``) or with its matrices in bf16 (``llama-cpp-bf16``, judged by the bf16
cases). HF 4.37.2's MPT honours one attention setting GGUF has no field for, softmax_scale: the
conversion folds it into the query rows of Wqkv (llama.cpp scales by 1 / sqrt(head size)), as a
porter would. llama.cpp gives the logits of every position of one sequence, and its own KV cache
for the steps after them, so the declaration is every engine port's (_engines.py: final logits
without padding, greedy generate() a row at a time). Keys and values are kept in f32 (llama.cpp's
default is f16), so that the cache is not what is being measured.

Optional: needs llama-cpp-python and gguf, which the benchmark environment holds (bash
tools/bench_env.sh); neither is a dependency of the project.
"""

from __future__ import annotations

import numpy as np

from ._engines import EnginePort

ALIBI_BIAS_MAX = 8.0  # HF 4.37.2 always builds ALiBi with 8 (SPEC 2.1)
GGML_TYPE_F32 = 0  # llama.cpp's KV cache type: f32 rather than its default f16
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


class LlamaCppPort(EnginePort):
    packages = ("llama_cpp", "gguf")

    def __init__(self, kind="f32", threads=1):
        super().__init__(kind, threads)
        self.name = "llama-cpp" if kind == "f32" else f"llama-cpp-{kind}"

    @property
    def version(self):
        import llama_cpp

        return llama_cpp.__version__

    def load(self, config, weights, folder):
        import llama_cpp

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"model-{self.kind}.gguf"
        write_gguf(config, weights, path, self.kind)
        return llama_cpp.Llama(
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

    def row_logits(self, llm, row):
        llm.reset()
        llm.eval(row.tolist())
        return np.array(llm.scores[: len(row)], np.float32)

    def row_greedy(self, llm, row, new, eos):  # each step the highest logit, the first of equal
        llm.reset()
        llm.eval(row.tolist())
        made = []
        while True:
            made.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            if made[-1] in eos or len(made) == new:
                return made
            llm.eval(made[-1:])


implementation = LlamaCppPort()
bf16_implementation = LlamaCppPort("bf16")
