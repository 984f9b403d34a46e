#!/usr/bin/env bash
# The benchmark environment: the engines users pick instead of this project, next to it.
#
#   bash tools/bench_env.sh [/tmp/bench-env]          # build the environment (about 15 minutes:
#                                                     # llama-cpp-python compiles llama.cpp)
#   /tmp/bench-env/bin/python tools/bench_engines.py prepare /tmp/bench-models
#   /tmp/bench-env/bin/python tools/bench.py --engines /tmp/bench-models --threads 2
#   /tmp/bench-env/bin/python -m conformance run --impl llama-cpp --family mpt   # the engines as
#   /tmp/bench-env/bin/python -m conformance run --impl ctranslate2 --family mpt # ports, checked
#   /tmp/bench-env/bin/python -m pytest tests/test_engine_ports.py
#
# Never part of the project's dependencies: the project needs none of these to run or to test.
# Pins: torch 2.13.0 (CPU build) and transformers 4.37.2, as for the goldens (HF torch column and
# the exports); llama-cpp-python is built from source for this machine's CPU (GGML_NATIVE), as a
# user installing it with pip gets it. ctranslate2 4.5.0: later converters pass from_pretrained(dtype=),
# which transformers 4.37.2 does not take. NumPy 2, as `pip install` of this project gets it: its
# OpenBLAS (0.3.31 in numpy 2.4) runs the encoder's GEMMs at about 200 GFLOP/s on the Zen 4 VM,
# numpy 1.26's (0.3.23) at 154-180.
set -euo pipefail
ENV=${1:-/tmp/bench-env}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$ENV"
"$ENV/bin/pip" install -q "numpy>=2" numba safetensors tokenizers hypothesis pytest \
    "torch==2.13.0" "transformers==4.37.2" onnx "onnxruntime>=1.17" "ctranslate2==4.5.0" gguf \
    "sentence-transformers==2.7.0" "fastembed==0.9.1"
CMAKE_ARGS="-DGGML_NATIVE=ON" "$ENV/bin/pip" install -q llama-cpp-python
"$ENV/bin/pip" install -q --no-deps -e "$ROOT"
"$ENV/bin/python" -c "import llama_cpp, ctranslate2, onnxruntime, torch, transformers; print('bench env ready:', \
'llama-cpp-python', llama_cpp.__version__, '| ctranslate2', ctranslate2.__version__, '| onnxruntime', \
onnxruntime.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
