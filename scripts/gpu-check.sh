#!/usr/bin/env bash
# The GPU check (kwlab's issues 13, 20 and 27): on a CUDA machine, every path of the mixing engine on CUDA in fp32
# and bf16 against the float64 reference (KW layers, and CondConv, DY-Conv and ODConv layers in both memory modes,
# `combined` included), small compiled models against eager (Inductor, and CUDA graphs with mode reduce-overhead), a
# one-epoch trial with bf16 + channels_last + torch.compile, a 2-worker DDP trial when there are two GPUs, then
# `kwlab bench` for resnet18 at 224 px, batch 64, bf16, channels_last: static, KW 1x and 4x, CondConv 8, DY-Conv 4,
# ODConv 1x and 4x in memory modes fast and lean, forward+backward, each against its roofline (the GPU's measured
# rate and bandwidth), with and without torch.compile (default and reduce-overhead, with compile times), and the
# cost model's path choice against the measured one. Without CUDA it says so and skips, exiting 0.
#
# Usage (from the repository root, on the GPU machine): scripts/gpu-check.sh [OUT_DIR]
#   A package the machine lacks (e.g. pydantic) can travel as wheels in .whl/ (see the device tool's README); they
#   are installed into /tmp/site first. Results (pytest log, bench JSON and tables) go to OUT_DIR (default $OUT or
#   gpu-check/).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
python="${PYTHON:-python3}"
if [ -d .whl ] && compgen -G ".whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu-check: torch sees no CUDA device; skipping the GPU tests and the GPU bench"
  "$python" -m pytest -q -p no:cacheprovider -m gpu tests/gpu 2>&1 | tee "$out/pytest.log" | tail -3
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$python" -m pytest -q -p no:cacheprovider -m gpu tests/gpu 2>&1 | tee "$out/pytest.log" | tail -15
bench=("$python" -m kwlab.cli bench --model resnet18 --size 224 --batch 64 --device cuda --dtype bfloat16
       --channels-last --variants static,1x,4x,condconv8,dyconv4,odconv1x,odconv4x --memory fast,lean
       --repeats 10 --warmup 3)
"${bench[@]}" | tee "$out/bench.txt"
"${bench[@]}" --memory fast --choice auto,measured | tee "$out/bench-measured.txt"
"${bench[@]}" --memory fast --compile | tee "$out/bench-compile.txt"
"${bench[@]}" --memory fast --compile --compile-mode reduce-overhead | tee "$out/bench-cudagraphs.txt"
"${bench[@]}" --json > "$out/bench.json"
