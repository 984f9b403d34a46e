"""GPU benchmarks for the cuda backend, side by side with PyTorch on the same GPU, in one process.

    python tools/bench_cuda.py [--repeats 10]

1. attention kernel (flash_attention, fp32, no mask) against torch's scaled_dot_product_attention
   at S = 128, 512 and 2048 (12 heads of 64);
2. MPT-125M greedy decoding of 128 tokens after 32 (batch 1): the device-resident cuda backend
against
   HF transformers (PyTorch eager, fp32, use_cache=True);
3. MPNet-base encoding 8 x 128: the cuda backend (every layer on the device, activations kept there)
   against HF transformers on the GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (shapes and random weights shared with the CPU benchmark)


def timed(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def attention_rows(repeats):
    import torch
    from numba import cuda

    from reference.backends import cuda_ops as dev

    rows = []
    for S, B in ((128, 8), (512, 4), (2048, 1)):
        H, D = 12, 64
        q = np.random.default_rng(0).standard_normal((B, S, 3 * H * D), dtype=np.float32)
        dq = dev.to_device(q)
        ours = timed(
            lambda dq=dq, H=H, D=D: dev.attention(dq, dq, dq, (0, H * D, 2 * H * D), H, D, 0.125),
            repeats,
            cuda.synchronize,
        )
        t = torch.from_numpy(q).cuda().view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)
        qt, kt, vt = (x.contiguous() for x in t)
        with torch.no_grad():
            sdpa = timed(
                lambda qt=qt, kt=kt, vt=vt: torch.nn.functional.scaled_dot_product_attention(
                    qt, kt, vt
                ),
                repeats,
                torch.cuda.synchronize,
            )
        rows.append((S, B, ours, sdpa))
    return rows


def decode_rows(repeats):
    import torch

    import reference

    weights = bench.random_weights("mpt", bench.DECODER, "causal-lm")
    ids = np.random.default_rng(2).integers(0, bench.DECODER["vocab_size"], (1, bench.PROMPT))
    model = reference.build(bench.DECODER, weights, task="causal-lm", backend="cuda")
    ours = timed(
        lambda: model.generate(ids, max_new_tokens=bench.NEW_TOKENS), repeats, lambda: None
    )
    hf = bench.hf_model("mpt", bench.DECODER, weights, "causal-lm").cuda()
    t = torch.from_numpy(ids).cuda()
    kw = dict(
        max_new_tokens=bench.NEW_TOKENS,
        min_new_tokens=bench.NEW_TOKENS,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
    )
    with torch.no_grad():
        theirs = timed(lambda: hf.generate(t, **kw), repeats, torch.cuda.synchronize)
    return ours, theirs


def encode_rows(repeats):
    import torch

    import reference

    weights = bench.random_weights("mpnet", bench.ENCODER, "base")
    ids = np.random.default_rng(1).integers(
        3, bench.ENCODER["vocab_size"], (bench.ENC_BATCH, bench.ENC_LEN)
    )
    model = reference.build(bench.ENCODER, weights, backend="cuda")
    ours = timed(lambda: model(ids), repeats, lambda: None)
    hf = bench.hf_model("mpnet", bench.ENCODER, weights, "base").cuda()
    t = torch.from_numpy(ids).cuda()
    with torch.no_grad():
        theirs = timed(lambda: hf(t), repeats, torch.cuda.synchronize)
    return ours, theirs


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import torch

    print(f"device: {torch.cuda.get_device_name(0)}, repeats {args.repeats} (medians)")
    print("\nattention, fp32, 12 heads x 64, no mask: flash_attention vs torch SDPA")
    for S, B, ours, sdpa in attention_rows(args.repeats):
        print(
            f"  S={S:<5} B={B}  ours {ours * 1e3:8.3f} ms   sdpa {sdpa * 1e3:8.3f} ms   ratio"
            f" {ours / sdpa:6.2f}x"
        )
    ours, theirs = decode_rows(max(2, args.repeats // 5))
    n = bench.NEW_TOKENS
    print(
        f"\nMPT-125M greedy decode, {n} tokens after {bench.PROMPT}: cuda backend {n / ours:.1f}"
        f" tokens/s, HF eager {n / theirs:.1f} tokens/s ({theirs / ours:.2f}x)"
    )
    ours, theirs = encode_rows(args.repeats)
    print(
        f"\nMPNet-base encode {bench.ENC_BATCH}x{bench.ENC_LEN}: cuda kernels {ours * 1e3:.1f} ms, "
        f"HF on the GPU {theirs * 1e3:.1f} ms ({ours / theirs:.2f}x its time)"
    )


if __name__ == "__main__":
    main()
