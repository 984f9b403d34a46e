"""Benchmarks: the reference backends side by side with Hugging Face PyTorch, in one process.

    python tools/bench.py                       # both workloads, every backend available
    python tools/bench.py --workload decode --repeats 3 --threads 2

Workloads (random weights of the real shapes; the speed does not depend on the values):
  encode  MPNet-base (12 layers, hidden 768, 12 heads, intermediate 3072) encoding a batch of 8 x
  128
  decode  MPT of ~125M parameters (d_model 768, 12 layers, 12 heads, vocab 50368) greedily decoding
          128 new tokens after a 32-token prompt, batch 1
  long    the same after a 1024-token prompt, with the time to the first token (the prefill) and
          the steps' rate after it; against the engines only (--engines)
  gemm    the encoder's four projections at 1024 rows, numba_gemm's packed product against BLAS
          (GFLOP/s): which one EncoderStack should pick on this CPU
  bf16    the bf16 decode with each matvec kernel (split activations with vdpbf16ps, or widening
          each weight), alternating processes: which one numba_bf16dot should pick on this CPU
  search  the decode model's searches (SEARCHES: greedy, sampling with top-k 50 or top-p 0.9,
          beam search, beam sampling, constrained beam search, prompt lookup), 64 new tokens
          after 32, numba fp32 against HF's generate()
          with the same settings; the time of a forward pass of 1 to 11 tokens over the cache
          (prompt lookup checks its guesses so) against a step's; and a next turn (TURN) given
          the whole text again or the cache the first turn returned (past_key_values)
  qa      question answering over a document of QA_WORDS words with the MPNet-base shape and a QA
          head: reference.answer_question (windows of 384 tokens sharing 128, those of one
          length in one batch) on numba against transformers' question-answering pipeline
          (each window alone), the same answers checked
Columns: numpy, numba (fp32), numba-bf16 and numba-q8 (decode only; bf16 or q8 weight storage),
and hf-torch when torch
and transformers are importable, all with the same thread count. Each run is repeated; medians and
ratios against hf-torch (or numpy) are printed. Repeats run round-robin across the backends. Peak
resident memory during decoding, the
memory of a process before any weight (the floor under that peak) and the time to the first token
on a warm start (Numba cache hit) are measured in fresh subprocesses, since a process holding
several models cannot attribute its memory to one of them.
With --engines, the encode, decode, long and embed workloads run against the engines users pick
instead (ONNX Runtime, llama.cpp, CTranslate2, sentence-transformers, fastembed; ENGINE_COLUMNS),
each column in a process of its own; the decode columns include numba-bf16-kvbf16, bf16 weights
with the bf16 KV cache (kv_cache="bf16"), the pair for llama.cpp's f16 cache. Under the encode and
decode tables, each of issue 16's targets (TARGETS) is printed as met or not on this run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

ENCODER = dict(
    model_type="mpnet",
    vocab_size=30527,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    layer_norm_eps=1e-5,
)
DECODER = dict(
    model_type="mpt", d_model=768, n_heads=12, n_layers=12, vocab_size=50368, max_seq_len=2048
)
MPT_125M = dict(DECODER)  # DECODER's shape unless a resized decoder is taken (use_decoder_of)
PROMPT, NEW_TOKENS, ENC_BATCH, ENC_LEN = 32, 128, 8, 128
LONG_PROMPT = 1024  # the long workload's prompt: where the prefill, not the steps, sets the pace


def tune_process(workload="encode"):
    """The numba backend's process-wide settings (reference/backends/numba_cpu.py), made
    explicitly; "decode" where the process only decodes."""
    from reference.backends.numba_cpu import tune_process as tune

    tune(workload)


def encode_ids():  # the encode workload's token ids [ENC_BATCH, ENC_LEN]
    return np.random.default_rng(1).integers(3, ENCODER["vocab_size"], (ENC_BATCH, ENC_LEN))


def prompt_ids(n=PROMPT):  # the decode workload's prompt [1, n]
    return np.random.default_rng(2).integers(0, DECODER["vocab_size"], (1, n))


def random_weights(family, config, task, seed=0):
    from reference import mpnet_model, mpt_model

    module = {"mpnet": mpnet_model, "mpt": mpt_model}[family]
    shapes = module.param_shapes(module.Config.from_dict(config), task)
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        out[name] = (
            w + np.float32(1.0)
            if ("norm" in name.lower() and name.endswith("weight") and len(shape) == 1)
            else w
        )
    return out


def interleaved_times(runs, repeats):
    """name -> (median, times) for name -> fn, run round-robin: repeat r of every backend happens
    before repeat r + 1 of any, so drift in the machine's speed (these VMs have plenty) falls on all
    backends alike instead of on whichever ran during a slow stretch."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), t) for name, t in times.items()}


def torch_available():
    """Checked without importing: torch brings its own OpenMP runtime, loaded only when HF runs
    (last)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def hf_model(family, config, weights, task):
    import torch
    import transformers

    if family == "mpnet":
        model = transformers.MPNetModel(transformers.MPNetConfig(**config))
        prefix = ""
    else:
        model = transformers.MptForCausalLM(transformers.MptConfig(**config))
        prefix = "transformer."
    state = {
        prefix + k if not k.startswith(("lm_head", "pooler")) else k: torch.from_numpy(v)
        for k, v in weights.items()
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if not k.endswith(("position_ids", "lm_head.weight"))]
    if real_missing or unexpected:
        raise RuntimeError(f"HF weights mismatch: missing {real_missing}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval()


# ------------------------------------------------------------------------------------ workloads


def bench_encode(repeats, threads):
    import reference

    weights = random_weights("mpnet", ENCODER, "base")
    ids = encode_ids()
    runs = {}
    for backend in ("numpy", "numba"):
        model = reference.build(ENCODER, weights, backend=backend)
        model(ids)  # warm-up (JIT compile or cache load)
        runs[backend] = lambda model=model: model(ids)
    if torch_available():
        import torch

        torch.set_num_threads(threads)
        hf = hf_model("mpnet", ENCODER, weights, "base")
        t = torch.from_numpy(ids)

        def run_hf():
            with torch.no_grad():
                hf(t)

        run_hf()
        runs["hf-torch"] = run_hf
    return interleaved_times(runs, repeats)


QA_WORDS = 3000  # the qa workload's document: about 3,000 tokens, a dozen windows of 384


def bench_qa(repeats, threads):
    """(times, answers): reference.answer_question on numba and transformers' pipeline, one
    question over a document of QA_WORDS random words of the demo vocabulary."""
    import tempfile
    from pathlib import Path

    import reference
    from reference.question_answering import answer_question

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_demo_models import MPNET_SPECIAL_TOKENS, write_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-qa-"))
    write_tokenizer(folder, ENCODER["vocab_size"])
    tok = reference.Tokenizer(str(folder))
    rng = np.random.default_rng(5)
    context = " ".join(f"w{i}" for i in rng.integers(0, ENCODER["vocab_size"] - 5, QA_WORDS))
    question = "w12 w345 w6789"
    weights = random_weights("mpnet", ENCODER, "question-answering")
    model = reference.build(ENCODER, weights, task="question-answering", backend="numba")
    ours = functools.partial(answer_question, model, tok, question, context, top_k=3)
    answers = {"numba": ours()}  # warm-up (JIT compile or cache load)
    runs = {"numba": ours}
    if torch_available():
        import torch
        import transformers

        torch.set_num_threads(threads)
        hf = transformers.MPNetForQuestionAnswering(transformers.MPNetConfig(**ENCODER))
        state = {
            (k if k.startswith("qa_outputs") else "mpnet." + k): torch.from_numpy(v)
            for k, v in weights.items()
            if not k.startswith("pooler")  # upstream's QA model has none
        }
        missing, unexpected = hf.load_state_dict(state, strict=False)
        if [k for k in missing if not k.endswith("position_ids")] or unexpected:
            raise RuntimeError(f"HF weights mismatch: missing {missing}, unexpected {unexpected}")
        hf_tok = transformers.PreTrainedTokenizerFast(
            tokenizer_file=str(folder / "tokenizer.json"),
            model_max_length=512,
            model_input_names=["input_ids", "attention_mask"],
            **MPNET_SPECIAL_TOKENS,
        )
        pipe = transformers.pipeline("question-answering", model=hf.eval(), tokenizer=hf_tok)

        def run_hf():
            with torch.no_grad():
                return pipe(question=question, context=context, top_k=3)

        answers["hf-torch"] = run_hf()
        runs["hf-torch"] = run_hf
    return interleaved_times(runs, repeats), answers


def report_qa(times, answers):
    report(
        f"qa: MPNet-base with a QA head, a question over {QA_WORDS} words (ratio = speed over"
        " hf-torch)",
        times,
        "docs/s",
        1,
    )
    spans = {name: [(a["start"], a["end"]) for a in found] for name, found in answers.items()}
    same = len({tuple(v) for v in spans.values()}) == 1
    print(f"  the same top-3 spans: {same} ({spans})")


def bench_decode(repeats, threads):
    import reference

    weights = random_weights("mpt", DECODER, "causal-lm")
    ids = prompt_ids()
    runs = {}
    for name, backend, storage in (
        ("numpy", "numpy", "fp32"),
        ("numba", "numba", "fp32"),
        ("numba-bf16", "numba", "bf16"),
        ("numba-q8", "numba", "q8"),
    ):
        model = reference.build(
            DECODER, weights, task="causal-lm", backend=backend, weight_storage=storage
        )
        model.generate(ids, max_new_tokens=2)  # warm-up
        runs[name] = lambda model=model: model.generate(ids, max_new_tokens=NEW_TOKENS)
    if torch_available():
        import torch

        torch.set_num_threads(threads)
        hf = hf_model("mpt", DECODER, weights, "causal-lm")
        t = torch.from_numpy(ids)
        kw = dict(
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )

        def run_hf(**override):
            with torch.no_grad():
                hf.generate(t, **{**kw, **override})

        run_hf(max_new_tokens=2, min_new_tokens=2)
        runs["hf-torch"] = run_hf
    return interleaved_times(runs, repeats)


# generate() settings of the search workload: each as ours and as HF's generate() take them
SEARCHES = {
    "greedy": {},
    "sample top-k": dict(do_sample=True),  # generate()'s default top_k, 50
    "sample top-p": dict(do_sample=True, top_k=0, top_p=0.9),  # the nucleus alone
    "beam 4": dict(num_beams=4),
    "sample beam 4": dict(num_beams=4, do_sample=True),
    "constrain 4": dict(num_beams=4, force_words_ids=[[101, 202], [[303], [404, 505]], [606]]),
    "lookup 10": dict(prompt_lookup_num_tokens=10, eos_token_id=0),
    # the echo model (embeddings x ECHO_SCALE: it writes its last token again, so its text repeats
    # and every guess holds): prompt lookup's best case, against greedy decoding of the same text
    "echo greedy": dict(echo=True),
    "echo lookup 10": dict(prompt_lookup_num_tokens=10, eos_token_id=0, echo=True),
}
ECHO_SCALE = 50
PASS_SIZES = (1, 2, 4, 8, 11)  # tokens a forward pass over the cache runs (prompt lookup's)
# the next-turn rows: a text of TURN[0] tokens, TURN[1] written after it, then TURN[2] more
# tokens (the next turn's words) and TURN[1] written again, from the whole text or from the cache
# the first call returned (generate(past_key_values=))
TURN = (512, 32, 16)


def bench_search(repeats, threads):
    """Each of SEARCHES on the decode model, 64 new tokens after 32 (every one made: no eos), on
    the numba backend (fp32 weights) and, where torch is importable, HF's generate(); the same
    rounds for all, alternating."""
    import reference

    weights = random_weights("mpt", DECODER, "causal-lm")
    echo = {**weights, "wte.weight": weights["wte.weight"] * np.float32(ECHO_SCALE)}
    ids = prompt_ids()
    if torch_available():
        import torch

        torch.set_num_threads(threads)
    models = {  # (ours, HF's or None), for the plain weights and the echo model's
        made: (
            reference.build(DECODER, w, task="causal-lm", backend="numba"),
            hf_model("mpt", DECODER, w, "causal-lm") if torch_available() else None,
        )
        for made, w in ((False, weights), (True, echo))
    }

    def run_hf(hf, kw):
        with torch.no_grad():
            hf.generate(torch.from_numpy(ids), **kw)

    runs = {}
    for label, settings in SEARCHES.items():
        settings = dict(settings)
        model, hf = models[settings.pop("echo", False)]
        kw = dict(settings, max_new_tokens=64, min_new_tokens=64, pad_token_id=0, use_cache=True)
        model.generate(ids, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        runs[label] = lambda kw=kw, model=model: model.generate(ids, seed=0, **kw)
        if hf is not None:
            runs[f"hf {label}"] = lambda kw={"do_sample": False, **kw}, hf=hf: run_hf(hf, kw)
    model = models[False][0]
    session = model.decode_session(1, 96 + max(PASS_SIZES))
    session.prefill(np.concatenate([ids, ids, ids], axis=1), None)  # 96 cached positions
    tokens = np.arange(1, 1 + max(PASS_SIZES))[None]

    def one_pass(n):  # n tokens after the 96 cached, then forgotten again
        session.extend(tokens[:, :n])
        session.rewind(96)

    for n in PASS_SIZES:
        one_pass(n)  # warm-up; a pass takes milliseconds: 20 a round
        runs[f"pass {n}"] = lambda n=n: [one_pass(n) for _ in range(20)]
    runs.update(next_turn_runs(model, models[False][1]))
    return interleaved_times(runs, repeats)


def next_turn_runs(model, hf):
    """The next-turn rows (TURN): generate() given the whole text again, and given the cache the
    first turn's call returned, ours and (hf not None) HF's; the first turn runs once here."""
    before, written, more = TURN
    history = prompt_ids(before)
    kw = dict(max_new_tokens=written, min_new_tokens=written, pad_token_id=0, use_cache=True)
    first = model.generate(history, return_dict_in_generate=True, **kw)
    words = np.random.default_rng(3).integers(1, DECODER["vocab_size"], (1, more))
    text = np.concatenate([first.sequences, words], axis=1)
    runs = {
        "turn whole": lambda: model.generate(text, **kw),
        "turn cache": lambda: model.generate(text, past_key_values=first.past_key_values, **kw),
    }
    runs["turn cache"]()  # warm-up: the passes over a cache compile their own kernels
    if hf is not None:
        import torch

        with torch.no_grad():
            hf_first = hf.generate(
                torch.from_numpy(history), return_dict_in_generate=True, do_sample=False, **kw
            )
        hf_text = torch.from_numpy(text)

        def run_hf(past=None):
            extra = {} if past is None else {"past_key_values": past}
            with torch.no_grad():
                hf.generate(hf_text, do_sample=False, **kw, **extra)

        runs["hf turn whole"] = run_hf
        runs["hf turn cache"] = lambda: run_hf(hf_first.past_key_values)
    return runs


def report_search(rows):
    print("\nsearches: MPT-125M, 64 new tokens after 32, batch 1 (ratio: hf's time / ours)")
    print(f"  {'search':<14} {'ours':>9} {'steps/s':>8} {'hf':>9} {'ratio':>7}")
    for label in SEARCHES:
        ours = rows[label][0]
        theirs = rows.get(f"hf {label}", (None,))[0]
        ratio = f"{theirs / ours:>6.2f}x" if theirs else "      -"
        hf = f"{theirs:>8.3f}s" if theirs else "        -"
        print(f"  {label:<14} {ours:>8.3f}s {64 / ours:>8.1f} {hf} {ratio}")
    print(
        "\nprompt lookup's passes: n tokens run over 96 cached in one pass (numba fp32); 'x steps':"
        " its time over one step's, 'tokens/s': the rate if all n are kept"
    )
    step = rows["pass 1"][0] / 20
    for n in PASS_SIZES:
        t = rows[f"pass {n}"][0] / 20
        print(f"  {n:>2} tokens {t * 1e3:>7.2f} ms {t / step:>6.2f}x steps {n / t:>8.1f} tokens/s")
    before, written, more = TURN
    print(
        f"\nthe next turn: {before} tokens, {written} written, {more} more, then {written} written"
        " again: generate() given the whole text, or the cache the first call returned"
    )
    for who, prefix in (("ours", ""), ("hf", "hf ")):
        if f"{prefix}turn whole" not in rows:
            continue
        whole, cached = rows[f"{prefix}turn whole"][0], rows[f"{prefix}turn cache"][0]
        print(
            f"  {who:<5} whole text {whole:>7.3f}s   from the cache {cached:>7.3f}s"
            f"   {cached / whole:>5.2f}x the time"
        )


def bench_gemm(repeats):
    """The encoder's four projections at ENC_BATCH x ENC_LEN rows, each both ways the encoder can
    run it: numba_gemm's packed product (what EncoderStack picks on AVX-512 CPUs) and BLAS on the
    input-major layout (what it picks elsewhere), bias included in both, alternating. A session on
    a new CPU can check in half a minute which of the two it should pick there."""
    from reference.backends import numba_gemm
    from reference.backends.numba_cpu import linear
    from reference.backends.numba_stacks import AVX512, transposed_layout

    C, I, M = ENCODER["hidden_size"], ENCODER["intermediate_size"], ENC_BATCH * ENC_LEN
    rng = np.random.default_rng(4)
    rows = []
    for name, n_in, n_out in (("q, k, v", C, 3 * C), ("o", C, C), ("up", C, I), ("down", I, C)):
        x = rng.standard_normal((M, n_in), dtype=np.float32)
        dense = {
            "weight": rng.standard_normal((n_out, n_in), dtype=np.float32),
            "bias": rng.standard_normal(n_out, dtype=np.float32),
        }
        packed = numba_gemm.pack(dense["weight"]) if AVX512 else None
        transposed_layout(dense)
        runs = {"blas": lambda x=x, d=dense: linear(x, **d)}
        if packed is not None:
            b = dense["bias"]
            runs["numba_gemm"] = lambda x=x, w=packed, b=b: numba_gemm.packed_linear(x, w, b)
        for fn in runs.values():
            fn()
        flop = 2 * M * n_in * n_out
        rates = {k: flop / m / 1e9 for k, (m, _) in interleaved_times(runs, repeats).items()}
        rows.append((f"{name} {n_in} -> {n_out}", rates))
    print(
        f"\nencoder projections, {M} rows (GFLOP/s, medians; the encoder picks numba_gemm:"
        f" {AVX512})"
    )
    for name, rates in rows:
        cells = ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
        print(f"  {name:<18} {cells}")


# ------------------------------------------------------------------------- machine limits


def encode_flops():
    """Multiply-adds x 2 of one encode workload: the projections and the MLP per token, the two
    attention products per (query, key) pair; the embeddings and norms are noise beside them."""
    C, I, L = ENCODER["hidden_size"], ENCODER["intermediate_size"], ENCODER["num_hidden_layers"]
    tokens = ENC_BATCH * ENC_LEN
    return 2 * L * (tokens * (4 * C * C + 2 * C * I) + 2 * ENC_BATCH * ENC_LEN * ENC_LEN * C)


def decode_weight_bytes(bytes_per_weight):
    """What one decode step streams: every block matrix and the tied head (wte), at this storage."""
    C, L, V = DECODER["d_model"], DECODER["n_layers"], DECODER["vocab_size"]
    return (L * 12 * C * C + V * C) * bytes_per_weight


# Bytes per weight of each storage: q8_0 is 32 int8 weights and one fp16 scale per block, our q8
# the same with a float32 scale; CTranslate2's int8 has one float scale per row (under 0.6% here,
# left out).
STORAGE_BYTES = {"fp32": 4, "bf16": 2, "q8_0": 34 / 32, "q8": 36 / 32, "int8": 1}


@functools.cache
def _bandwidth_kernels():  # -> (triad, read), compiled on first use, once per process
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=False)
    def triad(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    @njit(parallel=True, fastmath=True, cache=False)
    def read(x):
        total = 0.0
        for i in prange(x.shape[0]):
            total += x[i]
        return total

    return triad, read


@functools.cache
def _fma_kernel():  # -> (kernel, lanes, accumulators), compiled on first use, once per process
    """Independent fused multiply-adds on registers only, one chain per accumulator, in the widest
    vector type Numba compiles for here: the machine's float32 arithmetic peak, the bound no
    GEMM can pass (OpenBLAS's own sgemm may sit well under it, as it does on Zen 5)."""
    from numba import njit, prange

    from reference.backends.numba_vec16 import AVX512

    # 12 chains: more than an FMA's latency times the FMAs a core starts per cycle (4 x 2 on Zen 5),
    # and with the two operands within AVX2's 16 registers (16 chains measured the same on Zen 5)
    if AVX512:
        from reference.backends.numba_vec16 import add16 as add
        from reference.backends.numba_vec16 import fma16 as fma
        from reference.backends.numba_vec16 import hsum16 as hsum
        from reference.backends.numba_vec16 import splat16 as splat
    else:
        from reference.backends.numba_vec8 import add8 as add
        from reference.backends.numba_vec8 import fma8 as fma
        from reference.backends.numba_vec8 import hsum8 as hsum
        from reference.backends.numba_vec8 import splat8 as splat

    @njit(parallel=True, cache=False)
    def chains(out, x, y, steps):  # out[t] = the sum of thread t's chains
        for t in prange(out.shape[0]):
            u, v = splat(x[t]), splat(y[t])
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = splat(out[t])
            for _ in range(steps):
                a0, a1, a2, a3 = fma(a0, u, v), fma(a1, u, v), fma(a2, u, v), fma(a3, u, v)
                a4, a5, a6, a7 = fma(a4, u, v), fma(a5, u, v), fma(a6, u, v), fma(a7, u, v)
                a8, a9, a10, a11 = fma(a8, u, v), fma(a9, u, v), fma(a10, u, v), fma(a11, u, v)
            left = add(add(add(a0, a1), add(a2, a3)), add(a4, a5))
            right = add(add(add(a6, a7), add(a8, a9)), add(a10, a11))
            out[t] = hsum(add(left, right))

    return chains, 16 if AVX512 else 8, 12


def fma_peak(threads, steps=20_000_000):  # -> GFLOP/s of float32 FMAs on `threads` threads
    kernel, lanes, chains = _fma_kernel()
    out = np.zeros(threads, np.float32)
    x, y = np.full(threads, 0.5, np.float32), np.full(threads, 1e-8, np.float32)
    kernel(out, x, y, 1000)
    seconds = min(timed(lambda: kernel(out, x, y, steps)) for _ in range(3))
    return 2 * threads * steps * chains * lanes / seconds / 1e9


def weight_sized_buffers():  # storage -> a float32 buffer the size of its decode weights
    return {
        s: np.ones(int(decode_weight_bytes(STORAGE_BYTES[s]) // 4), np.float32)
        for s in ("fp32", "bf16")
    }


def read_rates(buffers, read, passes):  # -> storage -> [GB/s of each pass]
    return {
        s: [buf.nbytes / timed(lambda buf=buf: read(buf)) / 1e9 for _ in range(passes)]
        for s, buf in buffers.items()
    }


def machine_limits(threads):
    """This machine's measured bounds: its float32 FMA peak and numpy's sgemm (2048^3) in GFLOP/s,
    a STREAM-style triad (a = b + s c) in GB/s, and the read bandwidth over a buffer the size of
    the fp32 and bf16 decode weights (a parallel sum: what a decode step at best moves; a buffer
    near the L3's size is partly served from it, as the weights are). Each is the best of five (the
    FMA peak of three)."""
    triad, read = _bandwidth_kernels()

    def best(fn, repeats=5):
        fn()
        return min(timed(fn) for _ in range(repeats))

    a = np.ones((2048, 2048), np.float32)
    sgemm = 2 * 2048**3 / best(lambda: a @ a) / 1e9
    n = 64 << 20  # 3 x 256 MiB: beyond any cache
    arrays = [np.ones(n, np.float32) for _ in range(3)]
    triad_gbs = 3 * 4 * n / best(lambda: triad(*arrays, np.float32(2.0))) / 1e9
    arrays.clear()
    buffers = weight_sized_buffers()
    read(buffers["bf16"])
    reads = {s: max(r) for s, r in read_rates(buffers, read, 5).items()}
    return {
        "fma_gflops": fma_peak(threads),
        "sgemm_gflops": sgemm,
        "triad_gbs": triad_gbs,
        "read_gbs": reads,
        "threads": threads,
    }


def describe_limits(limits):
    return (
        f"FMA peak {limits['fma_gflops']:.0f} GFLOP/s; numpy sgemm 2048^3"
        f" {limits['sgemm_gflops']:.0f} GFLOP/s; STREAM triad"
        f" {limits['triad_gbs']:.1f} GB/s; read over the decode weights' size: fp32"
        f" {limits['read_gbs']['fp32']:.1f} GB/s, bf16 {limits['read_gbs']['bf16']:.1f} GB/s"
    )


def higher_limits(a, b):
    """Each limit at the higher of two measurements: the most this machine showed during a run,
    since a shared VM's bandwidth drifts by a quarter within minutes."""
    return {
        "fma_gflops": max(a["fma_gflops"], b["fma_gflops"]),
        "sgemm_gflops": max(a["sgemm_gflops"], b["sgemm_gflops"]),
        "triad_gbs": max(a["triad_gbs"], b["triad_gbs"]),
        "read_gbs": {k: max(a["read_gbs"][k], b["read_gbs"][k]) for k in a["read_gbs"]},
        "threads": a["threads"],
    }


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_model():
    """The CPU model and the vector flags that matter here, as lscpu / /proc/cpuinfo give them."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown CPU"
    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")),
        [],
    )
    wanted = [
        f
        for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
        if f in flags
    ]
    return f"{name} ({os.cpu_count()} CPUs; {' '.join(wanted) or 'no AVX2'}{last_level_cache()})"


def last_level_cache():  # "; L3 32768K" as sysfs gives it for CPU 0, or "" where it does not
    base = "/sys/devices/system/cpu/cpu0/cache"
    levels = {}
    for index in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(f"{base}/{index}/level") as f, open(f"{base}/{index}/size") as g:
                levels[int(f.read())] = g.read().strip()
        except (OSError, ValueError):
            continue
    return f"; L{max(levels)} {levels[max(levels)]}" if levels else ""


def use_decoder_of(out):
    """Take the decoder's shape from the MPT that tools/bench_engines.py prepare wrote to ``out``
    (it may be made smaller or larger than MPT-125M, to set its weights against this CPU's last
    cache level), so that the weight bytes, the read buffers and the prompt's ids match it."""
    path = os.path.join(out, "mpt", "config.json")
    if os.path.exists(path):
        with open(path) as f:
            config = json.load(f)
        DECODER.update({k: config[k] for k in DECODER if k in config})


def decoder_name():  # "MPT-125M", or the shape of another size
    if DECODER == MPT_125M:
        return "MPT-125M"
    return f"MPT of {DECODER['n_layers']} layers, vocab {DECODER['vocab_size']}"


# --------------------------------------------------------------------------- child processes


def memory_bytes(field):
    """VmRSS (now) or VmHWM (peak since the last reset) from /proc/self/status; where there is no
    /proc, the peak resident size getrusage reports (KiB on Linux, the only place it is used here).
    """
    if os.path.exists("/proc/self/status"):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_decode_memory(backend, storage):
    """Peak RSS while decoding, in a process that holds only this model."""
    import reference

    weights = random_weights("mpt", DECODER, "causal-lm")
    weight_bytes = sum(w.nbytes for w in weights.values())
    # after the fp32 weights exist: their memory goes back to the system once converted to bf16
    tune_process("decode")
    model = reference.build(
        DECODER, weights, task="causal-lm", backend=backend, weight_storage=storage
    )
    del weights
    ids = prompt_ids()
    model.generate(ids, max_new_tokens=2)  # compile or load the kernels outside the measured window
    if os.path.exists(
        "/proc/self/clear_refs"
    ):  # Linux: restart the high-water mark, so building the weights is not counted
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    model.generate(ids, max_new_tokens=NEW_TOKENS)
    print(json.dumps({"peak_rss": memory_bytes("VmHWM"), "fp32_weight_bytes": weight_bytes}))


def child_base_memory(backend):
    """RSS of a process that has imported the package and, for numba, loaded one cached kernel
    (which sets up LLVM), before any weight exists: the floor under the decoding peak. A process of
    its own, since the numba backend's tune_process() changes how the C heap keeps freed memory."""
    import reference  # noqa: F401

    if backend == "numba":
        from reference.backends import numba_cpu

        tune_process()
        numba_cpu.gelu(np.ones(8, np.float32))
    print(json.dumps({"base_rss": memory_bytes("VmRSS")}))


def child_first_token(backend):
    """Seconds from a fresh interpreter (imports, Numba cache load) to the first generated token,
    weights already in memory (building random weights is not part of a real start)."""
    start = time.perf_counter()
    import reference

    config = dict(DECODER, n_layers=2, vocab_size=1024)  # the start-up cost, not the model size
    weights = random_weights("mpt", config, "causal-lm")
    start_model = time.perf_counter()
    tune_process("decode")
    model = reference.build(config, weights, task="causal-lm", backend=backend)
    next(model.stream(np.arange(PROMPT)[None], max_new_tokens=1))
    now = time.perf_counter()
    print(json.dumps({"first_token_s": now - start_model, "including_imports_s": now - start}))


def child_bf16_decode(repeats):
    """Seconds to generate NEW_TOKENS with bf16 weights, each of `repeats` runs, and the kernel the
    bf16 matvec used in this process (numba_bf16dot.SPLIT_DOTS, set by this process's
    environment)."""
    import reference
    from reference.backends.numba_bf16dot import SPLIT_DOTS
    from reference.backends.numba_vec16 import target_cpu

    tune_process("decode")
    weights, ids = random_weights("mpt", DECODER, "causal-lm"), prompt_ids()
    model = reference.build(
        DECODER, weights, task="causal-lm", backend="numba", weight_storage="bf16"
    )
    model.generate(ids, max_new_tokens=2)
    times = [
        timed(lambda: model.generate(ids, max_new_tokens=NEW_TOKENS)) for _ in range(int(repeats))
    ]
    print(json.dumps({"times": times, "split": SPLIT_DOTS, "cpu": target_cpu()}))


def bench_bf16_kernels(repeats):
    """The bf16 decode both ways the matvec can run on an AVX512-BF16 CPU, each in processes of its
    own, alternating: vdpbf16ps over split activations (on matrices interleaved four rows at a
    time), and widening each weight (on plain [O, I] matrices; this host's features less
    avx512bf16, nothing else changed). Where this host takes the widening kernel
    (numba_bf16dot.WIDENING_FASTER), the split one runs under NUMBA_CPU_NAME=znver4, which also
    retunes LLVM's scheduling for every kernel. The faster one is what numba_bf16dot should pick
    here."""
    from llvmlite import binding

    from reference.backends.numba_bf16dot import BF16_DOT, SPLIT_DOTS

    if not BF16_DOT:
        print("this CPU (as Numba compiles for it) lacks AVX512-BF16: widening is the only kernel")
        return
    features = binding.get_host_cpu_features()
    features["avx512bf16"] = False
    envs = {
        "widen": {"NUMBA_CPU_FEATURES": features.flatten()},
        "split": {} if SPLIT_DOTS else {"NUMBA_CPU_NAME": "znver4"},
    }
    times, seen = {k: [] for k in envs}, {}
    for _ in range(repeats):
        for kernel, env in envs.items():
            out = run_child("bf16-decode", "2", env=env)
            assert out["split"] == (kernel == "split"), (kernel, out)
            times[kernel] += out["times"]
            seen[kernel] = out["cpu"]
    chosen = "split" if SPLIT_DOTS else "widen"
    print(
        f"\nbf16 decode, {NEW_TOKENS} tokens after {PROMPT} (medians over {2 * repeats} runs in"
        f" {repeats} alternating rounds; this CPU takes the {chosen} kernel)"
    )
    base = statistics.median(times["split"])
    for kernel, t in times.items():
        m = statistics.median(t)
        print(
            f"  {kernel:<6} {m:8.3f}s {NEW_TOKENS / m:8.1f} tokens/s {m / base:6.2f}x split's time"
            f"  (LLVM CPU {seen[kernel]})   {', '.join(f'{x:.3f}' for x in t)}"
        )


def corpus(n=512, seed=3):
    """Texts for the embedding workload: n sentences of 4 to 120 words (w0 w1 ... of the demo
    vocabulary), lengths spread as in a typical retrieval corpus (many short, a long tail)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(3.0, 0.7, n).astype(int), 4, 120)
    return [" ".join(f"w{w}" for w in rng.integers(0, 30000, k)) for k in lengths]


ENGINE_COLUMNS = {  # workload -> (columns, anchor, storage per column for the bandwidth bound)
    "encode": (["numba", "onnxruntime", "hf-torch-encode"], "onnxruntime", {}),
    "decode": (
        [
            "numba-fp32",
            "llama.cpp-f32",
            "ctranslate2-float32",
            "numba-bf16",
            "numba-bf16-kvbf16",
            "llama.cpp-bf16",
            "numba-q8",
            "llama.cpp-q8_0",
            "ctranslate2-int8",
            "hf-torch-decode",
        ],
        "llama.cpp-f32",
        {
            "numba-fp32": "fp32",
            "llama.cpp-f32": "fp32",
            "ctranslate2-float32": "fp32",
            "hf-torch-decode": "fp32",
            "numba-bf16": "bf16",
            "numba-bf16-kvbf16": "bf16",
            "llama.cpp-bf16": "bf16",
            "numba-q8": "q8",
            "llama.cpp-q8_0": "q8_0",
            "ctranslate2-int8": "int8",
        },
    ),
    "embed": (["numba-embed", "sentence-transformers", "fastembed"], "sentence-transformers", {}),
}
# long: the same columns after a LONG_PROMPT prompt, where the KV cache's bytes matter most: with
# the bf16 KV cache the last step reads 42 MB of keys and values (1152 positions, 12 layers) where
# fp32's reads 85 MB, on top of the bf16 weights' 250 MB
ENGINE_COLUMNS["long"] = ENGINE_COLUMNS["decode"]


def engine_table(workload, out, threads, repeats, limits):
    """Every column in a process of its own, round-robin over the repeats (tools/bench_engines.py
    run)."""
    columns, anchor, storage = ENGINE_COLUMNS[workload]
    times = {c: [] for c in columns}
    script = os.path.join(os.path.dirname(__file__), "bench_engines.py")
    # decode: the read bandwidth is also sampled in every round, between the columns, so that each
    # column can be set against reads of the same minutes (these VMs drift) by the same statistic
    buffers = weight_sized_buffers() if workload == "decode" else {}
    read = _bandwidth_kernels()[1] if buffers else None
    if read:
        read(buffers["bf16"])  # compiled before any pass is timed
    rates = {s: [] for s in buffers}
    rounds = []  # per round: column -> its median time
    # decode and long: the prompt and one token alone, before each run, so that the steps after
    # the first token can be timed apart from the prompt's prefill (compute-bound, not a stream)
    firsts = {c: [] for c in columns}
    extra = {
        "decode": ["--first-token"],
        "long": ["--prompt", str(LONG_PROMPT), "--first-token"],
    }.get(workload, [])
    for _ in range(repeats):
        rounds.append({})
        for c in columns:
            for s, r in read_rates(buffers, read, 3).items():
                rates[s] += r
            res = subprocess.run(
                [sys.executable, script, "run", c, out, "--threads", str(threads), *extra],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode
                print(f"  {c}: failed ({why})")
                continue
            got = json.loads(res.stdout.strip().splitlines()[-1])
            times[c] += got["times"]
            firsts[c] += got.get("first", [])
            rounds[-1][c] = statistics.median(got["times"])
    times = {c: t for c, t in times.items() if t}
    if workload in ("encode", "decode"):  # the columns judged against a bound
        after = machine_limits(threads)
        print(f"  limits after these rounds: {describe_limits(after)}")
        print("  (of bound: against the higher of the best-of-five measurements before and after)")
        if rates:
            print("  (of read: against the median of the reads sampled between the columns)")
        limits = higher_limits(limits, after)
    if anchor not in times:
        anchor = next(iter(times))
    per = {"encode": ENC_BATCH, "embed": len(corpus())}.get(workload, NEW_TOKENS)
    unit = {"encode": "seq/s", "embed": "sentences/s"}.get(workload, "tokens/s")
    base = statistics.median(times[anchor])
    extra_heads = {
        "encode": ["of bound", "of FMA"],
        "decode": ["first tok", "steps t/s", "of bound", "of read"],
        "long": ["first tok", "steps t/s"],
    }.get(workload, ["of bound"])
    shares = {}  # decode: column -> its steps' weight bytes a second over the sampled reads
    head = f"  {'column':<22} {'median':>9} {unit:>12} {'vs ' + anchor:>22}"
    print(head + "".join(f" {h:>9}" for h in extra_heads) + "   runs")
    for c, t in times.items():
        m = statistics.median(t)
        if workload == "encode":  # of numpy's sgemm GFLOP/s, then of the FMA peak
            rate = encode_flops() / m / 1e9
            cells = [f"{rate / limits['sgemm_gflops']:.0%}", f"{rate / limits['fma_gflops']:.0%}"]
        elif workload in ("decode", "long"):  # the first token (the prefill), the steps after it
            f = statistics.median(firsts[c])
            steps = (per - 1) / (m - f)  # tokens a second after the first
            cells = [f"{f:.3f}s", f"{steps:.1f}"]
            if workload == "decode":  # the weight bytes each step streams, over the read bandwidth
                s = storage[c]
                # q8_0 and int8 weights are smaller still: the bf16-sized buffer is the nearest
                nearest = "fp32" if s == "fp32" else "bf16"
                moved = decode_weight_bytes(STORAGE_BYTES[s]) * steps / 1e9
                shares[c] = moved / statistics.median(rates[nearest])
                cells += [f"{moved / limits['read_gbs'][nearest]:.0%}", f"{shares[c]:.0%}"]
        else:
            cells = ["-"]
        print(
            f"  {c:<22} {m:>8.3f}s {per / m:>12.1f} {base / m:>21.2f}x"
            + "".join(f" {x:>9}" for x in cells)
            + f"   {', '.join(f'{x:.3f}' for x in t)}"
        )
    for s, r in rates.items():
        q = statistics.quantiles(r, n=4)
        print(
            f"  read over the {s} weights' size, sampled between the columns: median"
            f" {statistics.median(r):.1f} GB/s (quartiles {q[0]:.1f}, {q[2]:.1f}; {len(r)} passes)"
        )
    print_paired(rounds)
    print_targets(target_verdicts(workload, times, rounds, shares))


# our column -> the engine it is judged against, in the same storage where that applies
PAIRED = {
    "numba": "onnxruntime",
    "numba-fp32": "llama.cpp-f32",
    "numba-bf16": "llama.cpp-bf16",
    "numba-bf16-kvbf16": "llama.cpp-bf16",  # its KV cache is f16 by default
    "numba-q8": "llama.cpp-q8_0",
    "numba-embed": "sentence-transformers",
}


def paired_ratios(rounds, ours, theirs):  # -> [their time / ours in each round both ran]
    return [r[theirs] / r[ours] for r in rounds if ours in r and theirs in r]


def print_paired(rounds):
    """Our columns against their anchors round by round: on a VM whose speed drifts within minutes,
    the ratio of two processes run one after the other can be steadier than the ratio of two
    medians over the whole run. (Each run set against the reads sampled just before it was tried
    too, and dropped: on the Zen 4 VM the read bandwidth flips between about 33 and 55-65 GB/s
    within seconds, so one run's share of the read before it ranged over 54%-144%.)"""
    pairs = [(o, t) for o, t in PAIRED.items() if any(o in r and t in r for r in rounds)]
    if pairs:
        print("  paired by round (each round's ratio of the two processes; median, then rounds):")
    for ours, theirs in pairs:
        ratios = paired_ratios(rounds, ours, theirs)
        each = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"    {ours} vs {theirs}: {statistics.median(ratios):.2f}x  ({each})")


# the targets of issue 16, per workload: (our column, measure, bound). "time": our median time
# over the anchor's (PAIRED), at most the bound; "speed": the anchor's over ours, at least the
# bound; "read": the steps' weight bytes a second over the reads sampled between the columns
# ("of read"), at least the bound
TARGETS = {
    "encode": [("numba", "time", 0.9)],
    "decode": [
        ("numba-fp32", "speed", 1.1),
        ("numba-bf16", "speed", 1.1),
        ("numba-fp32", "read", 0.85),
        ("numba-bf16", "read", 0.85),
    ],
}


def target_verdicts(workload, times, rounds, shares):
    """-> [(line, met)] for the workload's TARGETS whose columns ran: each judged by the ratio of
    the medians (or the read share), the per-round pairing given beside it."""
    out = []
    for ours, measure, bound in TARGETS.get(workload, []):
        theirs = PAIRED[ours]
        if measure == "read":
            if ours in shares:
                share = shares[ours]
                line = f"{ours} {share:.1%} of the read (at least {bound:.0%})"
                out.append((line, share >= bound))
            continue
        if ours not in times or theirs not in times:
            continue
        speeds = paired_ratios(rounds, ours, theirs)  # per round, their time over ours
        if measure == "time":
            ratio = statistics.median(times[ours]) / statistics.median(times[theirs])
            paired = statistics.median([1 / x for x in speeds]) if speeds else None
            line = f"{ours} {ratio:.3f}x {theirs}'s time, paired {_times(paired)}"
            out.append((f"{line} (at most {bound}x)", ratio <= bound))
        else:  # as print_paired gives it: the median of the rounds' speed ratios
            ratio = statistics.median(times[theirs]) / statistics.median(times[ours])
            paired = statistics.median(speeds) if speeds else None
            line = f"{ours} {ratio:.3f}x {theirs}'s speed, paired {_times(paired)}"
            out.append((f"{line} (at least {bound}x)", ratio >= bound))
    return out


def _times(x):  # a ratio as printed, or "-" where there is none (never in one round)
    return "-" if x is None else f"{x:.3f}x"


def print_targets(verdicts):
    if verdicts:
        print("  targets on this CPU (judged by the medians; the pairing beside them):")
    for line, met in verdicts:
        print(f"    {line}: {'met' if met else 'NOT met'}")


def run_child(*args, env=None):
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------- report


def report(title, rows, unit, per):
    base = "hf-torch" if "hf-torch" in rows else "numpy"
    print(f"\n{title}")
    print(f"  {'backend':<12} {'median':>10} {unit:>12} {'vs ' + base:>12}   runs")
    for name, (median, times) in rows.items():
        rate = per / median
        ratio = median / rows[base][0] if unit == "s" else rows[base][0] / median
        print(
            f"  {name:<12} {median:>9.3f}s {rate:>12.1f} {ratio:>11.2f}x  "
            f" {', '.join(f'{t:.3f}' for t in times)}"
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workload",
        choices=["encode", "decode", "long", "embed", "gemm", "bf16", "search", "qa", "all"],
        default="all",
        help="all: encode, decode and embed (long only when asked; with --engines only)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument(
        "--engines",
        metavar="DIR",
        help=(
            "also run the anchor engines on the models that tools/bench_engines.py prepare wrote to"
            " DIR (benchmark environment: tools/bench_env.sh)"
        ),
    )
    args = parser.parse_args()
    if args.workload == "long" and not args.engines:
        parser.error("--workload long runs against the engines: give --engines DIR")
    if args.child:
        kind, *rest = args.child
        return {
            "memory": child_decode_memory,
            "base": child_base_memory,
            "first-token": child_first_token,
            "bf16-decode": child_bf16_decode,
        }[kind](*rest)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    if args.engines and args.workload not in ("gemm", "bf16", "search", "qa"):  # no engine columns
        use_decoder_of(args.engines)
        print(
            f"CPU: {cpu_model()}; threads {args.threads}; medians over {args.repeats} alternating"
            " rounds, each column in a process of its own"
        )
        limits = machine_limits(args.threads)
        print(f"limits: {describe_limits(limits)}")
        for workload in (
            ("encode", "decode", "embed") if args.workload == "all" else (args.workload,)
        ):
            what = {
                "encode": (
                    f"MPNet-base encode {ENC_BATCH} x {ENC_LEN} (of bound: of numpy's sgemm"
                    " rate; of FMA: of the FMA peak; "
                    f"{encode_flops() / 1e9:.0f} GFLOP a run)"
                ),
                "decode": (
                    f"{decoder_name()} greedy decode, {NEW_TOKENS} tokens after {PROMPT} ("
                    f"{decode_weight_bytes(STORAGE_BYTES['bf16']) / 2**20:.0f} MiB of bf16"
                    " weights; first tok: the"
                    " prompt and one token alone; steps t/s: the tokens after it a second; of"
                    " bound: the weight bytes those steps stream a second over the read bandwidth"
                    " of a buffer their size)"
                ),
                "long": (
                    f"{decoder_name()} greedy decode, {NEW_TOKENS} tokens after {LONG_PROMPT}"
                    " (first tok: the prompt and one token alone; steps t/s: the tokens after it"
                    " a second)"
                ),
                "embed": (
                    f"sentence embedding, {len(corpus())} texts of 4-120 words, batch 32, max"
                    " length 384"
                ),
            }
            print(f"\n{what[workload]}")
            engine_table(workload, args.engines, args.threads, args.repeats, limits)
        return
    # the numba backend's process-wide settings, before any parallel launch or torch import
    tune_process("decode" if args.workload in ("decode", "search") else "encode")
    print(
        f"threads {args.threads}, repeats {args.repeats}, numpy {np.__version__},"
        f" torch+transformers: {torch_available()}"
    )
    if args.workload == "gemm":
        print(f"CPU: {cpu_model()}; threads {args.threads}")
        return bench_gemm(max(args.repeats, 10))
    if args.workload == "bf16":
        print(f"CPU: {cpu_model()}; threads {args.threads}")
        return bench_bf16_kernels(args.repeats)
    if args.workload == "search":
        print(f"CPU: {cpu_model()}; threads {args.threads}")
        return report_search(bench_search(args.repeats, args.threads))
    if args.workload == "qa":
        print(f"CPU: {cpu_model()}; threads {args.threads}")
        return report_qa(*bench_qa(args.repeats, args.threads))
    if args.workload in ("encode", "all"):
        report(
            f"encode: MPNet-base, batch {ENC_BATCH} x {ENC_LEN} tokens (ratio = speed over"
            " hf-torch: its time / ours)",
            bench_encode(args.repeats, args.threads),
            "seq/s",
            ENC_BATCH,
        )
    if args.workload in ("decode", "all"):
        report(
            f"decode: MPT-125M, {NEW_TOKENS} new tokens after {PROMPT} (ratio = tokens/s over"
            " hf-torch)",
            bench_decode(args.repeats, args.threads),
            "tokens/s",
            NEW_TOKENS,
        )
        print("\ndecode memory (fresh process per backend; peak RSS / fp32 weight bytes):")
        base = run_child("base", "numba")["base_rss"]
        for backend, storage in (("numba", "fp32"), ("numba", "bf16"), ("numba", "q8")):
            m = dict(run_child("memory", backend, storage), base_rss=base)
            print(
                f"  {backend}-{storage}: peak {m['peak_rss'] / 2**20:.0f} MiB ="
                f" {m['peak_rss'] / m['fp32_weight_bytes']:.2f}x the"
                f" {m['fp32_weight_bytes'] / 2**20:.0f} MiB of fp32 weights;"
                f" {m['base_rss'] / 2**20:.0f} MiB of it is the process before any weight"
            )
        run_child("first-token", "numba")  # populate the Numba cache
        warm = run_child("first-token", "numba")
        print(
            f"\nwarm start (Numba cache hit): first token {warm['first_token_s']:.2f}s after the"
            f" weights are in memory, {warm['including_imports_s']:.2f}s including imports"
        )


if __name__ == "__main__":
    main()
