"""The anchors of tools/bench.py: the same models in the engines users pick instead (benchmark
environment only).

    python tools/bench_engines.py prepare DIR     # write the models, exports and conversions into
    DIR
    python tools/bench_engines.py run ENGINE DIR --threads 2 --repeats 3    # one engine, timed
    (JSON)

``prepare`` builds, from the random weights tools/bench.py uses (same shapes, same seed):
  mpnet/           an HF MPNet-base directory (config, safetensors, a WordPiece tokenizer.json of
  its
                   vocabulary, sentence-transformers' modules.json / pooling config)
  mpnet.onnx       torch.onnx.export of transformers' MPNetModel (input_ids, attention_mask ->
                   last_hidden_state), as users export it for ONNX Runtime
  mpnet-fastembed/ that export with the tokenizer files, as fastembed loads a local model
                   (specific_model_path), registered as a custom mean-pooled, normalised model
  mpt/             an HF MPT-125M directory (with a word-level tokenizer of its vocabulary, t0 t1
  ...)
  mpt-f32.gguf, mpt-bf16.gguf, mpt-q8_0.gguf
                   the same MPT as llama.cpp reads it: arch "mpt", fused qkv, tied output, ALiBi
                   max bias 8, written with the gguf package (the f32 and bf16 tensors bit for bit,
                   q8_0 with gguf's own quantizer: blocks of 32 weights, one fp16 scale each)
  mpt-ct2-float32/, mpt-ct2-int8/
                   CTranslate2's conversion of the HF directory (ctranslate2.converters)

``prepare DIR --decoder-layers N --decoder-vocab V`` writes only the MPT models, of N blocks and a
vocabulary of V (either may be left at MPT-125M's): a decoder whose weights fit this CPU's last
cache level, or are some multiple of it, to see how the engines compare where the step's weights
are read from that cache rather than from memory. tools/bench.py --engines DIR takes the shape from
DIR/mpt/config.json (the decode and long workloads; the others need a full prepare).

``run`` times one engine on the bench workload in this process, after a warm-up, and prints
{"times": [...]} (seconds per workload run). tools/bench.py --engines DIR starts it once per round,
alternating with the other columns, so every engine runs in a process of its own. For the decode
engines ``--prompt N`` sets the prompt's length, and ``--first-token`` also times a run that
generates one token (the prompt's prefill), as {"first": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench  # noqa: E402  (the workload shapes and the random weights)
from make_demo_models import MPNET_SPECIAL_TOKENS  # noqa: E402

from conformance.adapters.ct2 import convert_ct2, write_wordlevel_tokenizer  # noqa: E402
from conformance.adapters.llama_cpp import write_gguf  # noqa: E402  (the ports' conversions)

# ------------------------------------------------------------------------------------ prepare


def write_hf_dir(family, target: Path):
    from safetensors.numpy import save_file

    config = bench.ENCODER if family == "mpnet" else bench.DECODER
    task = "base" if family == "mpnet" else "causal-lm"
    weights = bench.random_weights(family, config, task)
    prefix = (
        "" if family == "mpnet" else "transformer."
    )  # the names transformers saves for these classes
    named = {(k if k.startswith("lm_head") else prefix + k): v for k, v in weights.items()}
    target.mkdir(parents=True, exist_ok=True)
    save_file(named, str(target / "model.safetensors"), metadata={"format": "pt"})
    architectures = ["MPNetModel"] if family == "mpnet" else ["MptForCausalLM"]
    (target / "config.json").write_text(json.dumps({**config, "architectures": architectures}))
    return weights


def write_wordpiece_tokenizer(target: Path, vocab_size: int):
    """The demo models' WordPiece tokenizer (tools/make_demo_models.py) with all-mpnet-base-v2's
    lowercasing normalizer, and sentence-transformers' files beside it."""
    from make_demo_models import write_tokenizer
    from tokenizers import normalizers

    write_tokenizer(target, vocab_size, normalizers.BertNormalizer(lowercase=True))
    (target / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
    (target / "1_Pooling").mkdir(exist_ok=True)
    (target / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True})
    )
    (target / "2_Normalize").mkdir(exist_ok=True)
    (target / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 384, "do_lower_case": False})
    )
    (target / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "MPNetTokenizerFast",
                "model_max_length": 512,
                **MPNET_SPECIAL_TOKENS,
                "mask_token": "<mask>",
            }
        )
    )


def export_onnx(mpnet_dir: Path, path: Path):
    import torch
    import transformers

    model = transformers.MPNetModel.from_pretrained(str(mpnet_dir)).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Encoder().eval(),
        (ids, torch.ones_like(ids)),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
    )


def prepare(out: Path, layers=None, vocab=None):
    """Every model into ``out``; with ``layers`` or ``vocab``, only the MPT ones, of that many
    blocks or tokens (the rest of MPT-125M's shape kept)."""
    out.mkdir(parents=True, exist_ok=True)
    if layers is not None or vocab is not None:
        resized = {"n_layers": layers, "vocab_size": vocab}
        bench.DECODER.update({k: v for k, v in resized.items() if v is not None})
        return prepare_decoder(out)
    write_hf_dir("mpnet", out / "mpnet")
    write_wordpiece_tokenizer(out / "mpnet", bench.ENCODER["vocab_size"])
    export_onnx(out / "mpnet", out / "mpnet.onnx")
    fastembed_dir = out / "mpnet-fastembed"
    fastembed_dir.mkdir(exist_ok=True)
    shutil.copy(out / "mpnet.onnx", fastembed_dir / "model.onnx")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(out / "mpnet" / name, fastembed_dir / name)
    print("wrote", out / "mpnet", out / "mpnet.onnx", fastembed_dir, flush=True)
    prepare_decoder(out)


def prepare_decoder(out: Path):  # the MPT of bench.DECODER's shape, for every decode engine
    weights = write_hf_dir("mpt", out / "mpt")
    write_wordlevel_tokenizer(out / "mpt", bench.DECODER["vocab_size"])
    for kind in ("f32", "bf16", "q8_0"):
        write_gguf(bench.DECODER, weights, out / f"mpt-{kind}.gguf", kind)
        print("wrote", out / f"mpt-{kind}.gguf", flush=True)
    for q in ("float32", "int8"):
        convert_ct2(out / "mpt", out / f"mpt-ct2-{q}", q)
        print("wrote", out / f"mpt-ct2-{q}", flush=True)


# ---------------------------------------------------------------------------------------- run


def runner(engine, out: Path, threads, prompt_len=bench.PROMPT):
    """A function running the workload once on ``engine``; a decode engine's takes how many tokens
    to generate (bench.NEW_TOKENS unless told), after a prompt of ``prompt_len``."""
    if engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(
            str(out / "mpnet.onnx"), options, providers=["CPUExecutionProvider"]
        )
        feed = {
            "input_ids": bench.encode_ids(),
            "attention_mask": np.ones((bench.ENC_BATCH, bench.ENC_LEN), np.int64),
        }
        return lambda: session.run(None, feed)
    if engine.startswith("llama.cpp-"):
        import llama_cpp

        llm = llama_cpp.Llama(
            str(out / f"mpt-{engine.split('-', 1)[1]}.gguf"),
            n_ctx=prompt_len + bench.NEW_TOKENS + 8,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=min(prompt_len, 512),  # 512 is llama-cpp-python's default
            verbose=False,
        )
        prompt = [int(t) for t in bench.prompt_ids(prompt_len)[0]]

        def greedy(n=bench.NEW_TOKENS):  # llama-cpp-python's own generator, greedy (temperature 0)
            # generate(reset=True) keeps the cached keys and values of the longest prefix it has
            # seen, so from the second run on it would skip the prompt (8 against 48 ms for bf16
            # on Zen 4); reset() empties the cache, and every run evaluates the prompt, as ours do
            llm.reset()
            for made, _ in enumerate(llm.generate(prompt, temp=0.0, top_k=1, reset=True), 1):
                if made == n:
                    break

        return greedy
    if engine.startswith("ctranslate2-"):
        import ctranslate2

        kind = engine.split("-", 1)[1]
        generator = ctranslate2.Generator(
            str(out / f"mpt-ct2-{kind}"),
            device="cpu",
            compute_type=kind,
            intra_threads=threads,
            inter_threads=1,
        )
        tokens = [f"t{i}" for i in bench.prompt_ids(prompt_len)[0]]
        return lambda n=bench.NEW_TOKENS: generator.generate_batch(
            [tokens],
            max_length=n,
            min_length=n,
            sampling_topk=1,
            include_prompt_in_result=False,
        )
    if engine.startswith(
        "numba"
    ):  # this project: numba (encode), numba-fp32 / -bf16 / -q8[-kvbf16] (decode), numba-embed
        import reference
        from reference.backends.numba_cpu import tune_process

        tune_process("encode" if engine in ("numba", "numba-embed") else "decode")
        if engine == "numba":
            model = reference.from_pretrained(str(out / "mpnet"), backend="numba")
            ids = bench.encode_ids()
            return lambda: model(ids)
        if engine == "numba-embed":
            from reference.embedding import embed_corpus
            from reference.tokenizer import Tokenizer

            model, tok = (
                reference.from_pretrained(str(out / "mpnet"), backend="numba"),
                Tokenizer(str(out / "mpnet")),
            )
            texts = bench.corpus()
            return lambda: embed_corpus(model, tok.backend, texts, batch_size=32, max_length=384)
        # numba-STORAGE, or numba-STORAGE-kvbf16 with the bf16 KV cache (llama.cpp's is f16)
        storage, _, cache = engine.split("-", 1)[1].partition("-")
        if cache not in ("", "kvbf16"):
            raise SystemExit(f"unknown engine {engine!r}")
        model = reference.from_pretrained(
            str(out / "mpt"),
            task="causal-lm",
            backend="numba",
            weight_storage=storage,
            kv_cache="bf16" if cache else "fp32",
        )
        ids = bench.prompt_ids(prompt_len)
        return lambda n=bench.NEW_TOKENS: model.generate(ids, max_new_tokens=n)
    if engine.startswith("hf-torch"):
        import torch
        import transformers

        torch.set_num_threads(threads)
        if engine == "hf-torch-encode":
            model = transformers.MPNetModel.from_pretrained(str(out / "mpnet")).eval()
            ids = torch.from_numpy(bench.encode_ids())
            return lambda: model(ids)
        model = transformers.MptForCausalLM.from_pretrained(str(out / "mpt")).eval()
        ids = torch.from_numpy(bench.prompt_ids(prompt_len))
        kw = dict(do_sample=False, use_cache=True, pad_token_id=0)
        return lambda n=bench.NEW_TOKENS: model.generate(
            ids, max_new_tokens=n, min_new_tokens=n, **kw
        )
    if engine == "sentence-transformers":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        model = SentenceTransformer(str(out / "mpnet"), device="cpu")
        texts = bench.corpus()
        return lambda: model.encode(texts, batch_size=32, show_progress_bar=False)
    if engine == "fastembed":  # all-mpnet-base-v2's recipe (mean pooling, L2 norm) on our export
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        name = "local/mpnet-bench"
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=name),  # never fetched: the files are local
            dim=bench.ENCODER["hidden_size"],
            model_file="model.onnx",
        )
        model = TextEmbedding(
            name, specific_model_path=str(out / "mpnet-fastembed"), threads=threads
        )
        texts = bench.corpus()
        return lambda: list(model.embed(texts, batch_size=32))
    raise SystemExit(f"unknown engine {engine!r}")


def run(engine, out: Path, threads, repeats, prompt_len=bench.PROMPT, first_token=False):
    bench.use_decoder_of(out)  # a resized MPT (prepare --decoder-layers / --decoder-vocab)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    fn = runner(engine, out, threads, prompt_len)
    if engine.startswith("hf-torch") or engine == "sentence-transformers":
        import torch

        fn = (lambda f: lambda *n: torch.no_grad()(f)(*n))(fn)
    fn()  # warm-up
    times, first = [], []
    for _ in range(repeats):
        if first_token:  # the prompt and one token: how long a user waits for the first
            start = time.perf_counter()
            fn(1)
            first.append(time.perf_counter() - start)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, **({"first": first} if first_token else {})}))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    p.add_argument(
        "--decoder-layers",
        type=int,
        help="write only the MPT models, with this many blocks (MPT-125M: 12)",
    )
    p.add_argument(
        "--decoder-vocab",
        type=int,
        help="write only the MPT models, with this vocabulary (MPT-125M: 50368)",
    )
    r = sub.add_parser("run")
    r.add_argument("engine")
    r.add_argument("out", type=Path)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--repeats", type=int, default=1)
    r.add_argument("--prompt", type=int, default=bench.PROMPT, help="decode prompt length")
    r.add_argument("--first-token", action="store_true", help="also time the first token alone")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.decoder_layers, args.decoder_vocab)
    else:
        run(args.engine, args.out, args.threads, args.repeats, args.prompt, args.first_token)


if __name__ == "__main__":
    main()
