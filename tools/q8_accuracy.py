"""How far weight_storage="q8" and "bf16" (and kv_cache="bf16") decoding is from fp32, over a fixed
prompt set.

    python tools/q8_accuracy.py                  # MPT-125M's shape, tools/bench.py's random weights
    python tools/q8_accuracy.py MODEL_DIR        # a real MPT checkpoint directory
    python tools/q8_accuracy.py --prompt-tokens 960 1024   # long prompts, where the cache is large

A variant is a weight storage, with "+kvbf16" for a bf16 KV cache: "q8", "fp32+kvbf16",
"bf16+kvbf16". For each prompt (PROMPTS prompts of 8 to 64 token ids by default, fixed seed) the
fp32 numba model decodes NEW greedy tokens; the variant then reads the same tokens (teacher forcing:
prefill on the prompt, one decode step per fp32 token), so every position compares logits for the
same context. Printed per variant:

* max |logit - fp32 logit| over every position and vocabulary entry, and that over the spread
  (standard deviation) of the fp32 logits;
* top-1 agreement: the share of positions whose argmax equals fp32's;
* free-running agreement: generating on its own, the mean share of the NEW tokens equal to fp32's
  before the first difference.

Random weights (std 0.02, as tools/bench.py) give nearly flat logits, where the argmax turns on tiny
differences: their agreement is a floor, not what a trained checkpoint shows.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

PROMPTS, NEW = 16, 32


def prompts(vocab_size, shortest=8, longest=64, seed=5):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(shortest, longest + 1, PROMPTS)
    return [rng.integers(0, vocab_size, (1, int(n))) for n in lengths]


def variant(name):  # "bf16+kvbf16" -> the from_pretrained / build options
    storage, _, cache = name.partition("+")
    if cache not in ("", "kvbf16"):
        raise SystemExit(f"unknown variant {name!r}: a weight storage, then optionally +kvbf16")
    return {"weight_storage": storage, "kv_cache": "bf16" if cache else "fp32"}


def forced_logits(model, ids, tokens):  # prompt [1, S], continuation [N] -> logits [N, V]
    session = model.decode_session(1, ids.shape[1] + len(tokens))
    out = [session.prefill(ids, np.ones_like(ids))[0]]
    for t in tokens[:-1]:
        out.append(session.step(np.array([t]))[0])
    return np.stack(out)


def greedy(model, ids):  # -> the NEW tokens after the prompt
    return model.generate(ids, max_new_tokens=NEW)[0, ids.shape[1] :]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", nargs="?", help="an MPT checkpoint directory")
    parser.add_argument(
        "--storages",
        nargs="+",
        default=["bf16", "q8", "fp32+kvbf16", "bf16+kvbf16"],
        help="the variants to measure against fp32 (see above)",
    )
    parser.add_argument(
        "--prompt-tokens", nargs=2, type=int, default=[8, 64], metavar=("SHORTEST", "LONGEST")
    )
    args = parser.parse_args()
    options = {name: variant(name) for name in args.storages}
    import bench

    import reference

    bench.tune_process("decode")
    if args.model_dir:

        def build(name):
            return reference.from_pretrained(
                args.model_dir, task="causal-lm", backend="numba", **options.get(name, {})
            )

        what = args.model_dir
    else:
        weights = bench.random_weights("mpt", bench.DECODER, "causal-lm")

        def build(name):
            return reference.build(
                bench.DECODER, weights, task="causal-lm", backend="numba", **options.get(name, {})
            )

        what = "MPT-125M shape, random weights (std 0.02)"
    fp32 = build("fp32")
    shortest, longest = args.prompt_tokens
    if not 1 <= shortest <= longest <= fp32.config.max_seq_len - NEW:
        raise SystemExit(
            f"--prompt-tokens {shortest} {longest}: need 1 <= shortest <= longest <="
            f" max_seq_len - {NEW} = {fp32.config.max_seq_len - NEW}"
        )
    sets = prompts(fp32.config.vocab_size, shortest, longest)
    runs = []
    for ids in sets:
        tokens = greedy(fp32, ids)
        runs.append((ids, tokens, forced_logits(fp32, ids, tokens)))
    print(
        f"{what}: {PROMPTS} prompts of {shortest}-{longest} tokens, {NEW} greedy tokens each,"
        " against fp32"
    )
    print(
        f"  {'variant':<12} {'max |dlogit|':>13} {'/ logit std':>12} {'top-1 agree':>12}"
        f" {'free-run agree':>15}"
    )
    for storage in args.storages:
        model = build(storage)
        err, spread, agree, free = 0.0, [], [], []
        for ids, tokens, want in runs:
            got = forced_logits(model, ids, tokens)
            err = max(err, float(np.abs(got - want).max()))
            spread.append(float(want.std()))
            agree.append(np.mean(got.argmax(-1) == want.argmax(-1)))
            own = greedy(model, ids)
            differ = np.flatnonzero(own != tokens)
            free.append((differ[0] if differ.size else NEW) / NEW)
        print(
            f"  {storage:<12} {err:>13.4g} {err / np.mean(spread):>12.3f} {np.mean(agree):>12.1%}"
            f" {np.mean(free):>15.1%}"
        )
        del model


if __name__ == "__main__":
    main()
