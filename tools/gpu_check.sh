#!/usr/bin/env bash
# The whole real-GPU check, for a machine with an NVIDIA GPU, numba-cuda and PyTorch (with
# transformers for the HF columns), started from the project root:
#
#     bash tools/gpu_check.sh [OUTPUT_DIR [STEP ...]]
#
# Steps, in this order unless named: resources (the compiler's report for every kernel, sm_90),
# bench (tools/bench_cuda.py against PyTorch on the same GPU), tests (tests/cuda on the GPU: every
# golden case through the kernels), conformance (the suite on the cuda kernel set). Each step has a
# time limit (90, 240, 240 and 180 s) and its output goes to OUTPUT_DIR (default gpu-check/), its
# last lines to the terminal; a failing step does not stop the later ones. The exit status is the
# number of failed steps. Where one call may not run for 12 minutes, run the steps in two calls.
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
steps="${*:2}"
for name in ${steps:-resources bench tests conformance}; do
    case "$name" in
        resources) step resources 90 "$py" tools/cuda_resources.py --arch 90 ;;
        bench) step bench 240 "$py" tools/bench_cuda.py --repeats 10 ;;
        tests) step tests 240 "$py" -m pytest -q tests/cuda ;;
        conformance) step conformance 180 "$py" -m conformance run --impl reference-cuda ;;
        *) echo "unknown step $name (resources, bench, tests, conformance)"; failed=$((failed + 1)) ;;
    esac
done
exit "$failed"
