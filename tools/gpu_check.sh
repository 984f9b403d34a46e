#!/usr/bin/env bash
# The whole real-GPU check in one run, for a machine with an NVIDIA GPU, numba-cuda and PyTorch (with
# transformers for the HF columns), started from the project root:
#
#     bash tools/gpu_check.sh [OUTPUT_DIR]        # a few minutes on an H100/H200
#
# 1. the compiler's resource report for every kernel (sm_90), 2. tests/cuda on the GPU (every golden
# case through the kernels), 3. the conformance suite on the cuda kernel set, 4. tools/bench_cuda.py.
# Each step's output goes to OUTPUT_DIR (default: gpu-check/) and its last lines to the terminal; a
# failing step does not stop the later ones. The exit status is the number of failed steps.
set -u
out="${1:-gpu-check}"
mkdir -p "$out"
# Some numba releases still call numpy.row_stack, which NumPy 2.5 removed: alias it for this run only.
site="$(mktemp -d)"
printf 'import numpy\nif not hasattr(numpy, "row_stack"):\n    numpy.row_stack = numpy.vstack\n' >"$site/sitecustomize.py"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
failed=0
step() {  # name, time limit in seconds, command...
    local name="$1" limit="$2"
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    tail -n 12 "$out/$name.txt"
    echo "== $name: exit $rc"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}
nvidia-smi -L >"$out/device.txt" 2>&1; "$py" -c "import numba, numba_cuda, numpy; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)" >>"$out/device.txt" 2>&1
cat "$out/device.txt"
step resources 120 "$py" tools/cuda_resources.py --arch 90
step tests 300 "$py" -m pytest -q -x tests/cuda
step conformance 300 "$py" -m conformance run --impl reference-cuda
step bench 300 "$py" tools/bench_cuda.py --repeats 10
exit "$failed"
