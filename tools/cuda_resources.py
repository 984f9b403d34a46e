"""What the CUDA compiler makes of each kernel, without a GPU: registers per thread, stack frame
(local memory), spills and static shared memory, from nvJitLink for one architecture.

    python tools/cuda_resources.py [--arch 90]

Needs NVVM (pip install 'numba-cuda[cu13]'). A stack frame in a hot kernel means an array the
compiler could not keep in registers; many registers mean fewer threads resident per SM.
"""

from __future__ import annotations

import argparse

from reference.backends import cuda_static


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--arch", default="90", help="compute capability without the dot (default 90: H100/H200)"
    )
    args = parser.parse_args()
    if not cuda_static.nvvm_available():
        raise SystemExit("NVVM is not installed: pip install 'numba-cuda[cu13]'")
    cc = (int(args.arch[:-1]), int(args.arch[-1]))
    print(
        f"sm_{args.arch}: {'kernel':<26} {'registers':>9} {'stack B':>8} {'spills B':>9}"
        f" {'shared B':>9}"
    )
    for name in cuda_static.kernel_names():
        r = cuda_static.resources(name, cc)
        spills = r["spill_stores"] + r["spill_loads"]
        print(
            f"       {name:<26} {r['registers']:>9} {r['stack']:>8} {spills:>9} {r['shared']:>9}"
            f"{'   hot' if name in cuda_static.HOT else ''}"
        )


if __name__ == "__main__":
    main()
