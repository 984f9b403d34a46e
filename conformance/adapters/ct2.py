"""CTranslate2 running its own conversions of the MPT golden models: the other engine people run
MPT decoding with on a CPU, checked as a port.

Each golden model is written out as an HF directory (its config.json and weights, and a
word-level tokenizer whose tokens t0, t1, ... are the ids, since CTranslate2 takes token strings)
and converted with CTranslate2's own converter (convert_ct2), in float32: CTranslate2 has no bf16
compute on a CPU, and its int8 has no golden of its precision. It gives the logits of every
position of one sequence (Generator.forward_batch) and greedy decoding over its own cache
(generate_batch with top-k 1), so the declaration is that of every engine port
(conformance/adapters/_engines.py).

Optional: needs ctranslate2 4.5.0 and, for the conversion, transformers 4.37.2 with torch, which
the benchmark environment holds (bash tools/bench_env.sh); none is a dependency of the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._engines import EnginePort


def write_wordlevel_tokenizer(target: Path, vocab_size: int):
    """A tokenizer.json whose tokens t0 .. t{vocab_size - 1} are the ids (t0 also the unknown,
    bos and eos token), with the tokenizer_config.json transformers reads it by."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(target / "tokenizer.json"))
    (target / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "t0",
                "eos_token": "t0",
                "unk_token": "t0",
            }
        )
    )


def convert_ct2(mpt_dir: Path, target: Path, quantization: str):
    """CTranslate2's own MPT conversion of an HF directory. Its loader is registered for
    MosaicML's remote-code ``MPTConfig``; transformers' ``MptForCausalLM`` has the same modules
    (wte, blocks[i].norm_1, attn.Wqkv, attn.out_proj, norm_2, ffn.up_proj / down_proj, norm_f),
    so the same loader is registered for its ``MptConfig`` too."""
    import ctranslate2
    from ctranslate2.converters import transformers as ct2_transformers

    loaders = ct2_transformers._MODEL_LOADERS
    loaders.setdefault("MptConfig", loaders["MPTConfig"])
    ctranslate2.converters.TransformersConverter(str(mpt_dir)).convert(
        str(target), quantization=quantization, force=True
    )


def tokens(ids):  # ids -> the word-level tokenizer's token strings
    return [f"t{int(i)}" for i in ids]


class CTranslate2Port(EnginePort):
    name = "ctranslate2"
    packages = ("ctranslate2", "transformers", "torch")

    def __init__(self, threads=1):
        super().__init__("f32", threads)

    @property
    def version(self):
        import ctranslate2

        return ctranslate2.__version__

    def load(self, config, weights, folder):
        import ctranslate2
        from safetensors.numpy import save_file

        hf = folder / "hf"
        hf.mkdir(parents=True, exist_ok=True)
        (hf / "config.json").write_text(json.dumps(config))
        save_file(  # with the format transformers' from_pretrained looks for
            {k: np.ascontiguousarray(v) for k, v in weights.items()},
            hf / "model.safetensors",
            metadata={"format": "pt"},
        )
        write_wordlevel_tokenizer(hf, config["vocab_size"])
        convert_ct2(hf, folder / "ct2", "float32")
        return ctranslate2.Generator(
            str(folder / "ct2"), device="cpu", compute_type="float32", intra_threads=self.threads
        )

    def row_logits(self, generator, row):
        return np.array(generator.forward_batch([tokens(row)]), np.float32)[0]

    def row_greedy(self, generator, row, new, eos):
        result = generator.generate_batch(
            [tokens(row)],
            max_length=new,
            sampling_topk=1,
            include_prompt_in_result=False,
            end_token=tokens(eos),
            return_end_token=True,
        )
        return result[0].sequences_ids[0]


implementation = CTranslate2Port()
