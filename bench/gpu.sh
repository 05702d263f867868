#!/usr/bin/env bash
# The device check for a Linux machine with an NVIDIA GPU, in one go (no network needed; PyTorch, NumPy,
# transformers and peft installed, bitsandbytes not needed; pytest for the trainer tests):
#   1. bench/gpu_compare.py: RepoTune (Q8_0 and Q4_K_M GGUF) against transformers + peft LoRA (bf16) on random models
#      with Qwen2.5-Coder-1.5B's shapes, 30 steps of batch 4 x 2048 tokens, rank 16, gradient checkpointing off
#      and on: tokens/s, peak memory, ratios, PASS/FAIL against the targets;
#   2. the trainer tests;
#   3. trainer throughput per device (tiny models, F32 and Q8_0).
# The comparison comes first because it is what the device time is for. Each part runs even if an earlier one
# failed; the exit code is the first failure's. Budget: about 5 minutes on one H200 (the script prints the time at
# each part; the device session allows 8).
#
# bench/gpu.sh --small: the same comparison with a 2-layer width-256 model on the CPU (the transformers + peft side
# is skipped with a message where they are not installed), then the throughput benchmark; the trainer tests are left
# to `python3 -m pytest -q trainer/tests`. PYTHON=/path/to/python3 picks the interpreter (default python3).
# With $OUT set (the device tool), every JSON line of the comparison is also kept in $OUT/gpu_compare.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
small=""
if [[ "${1:-}" == "--small" ]]; then small="--small"; elif [[ -n "${1:-}" ]]; then
  echo "usage: bench/gpu.sh [--small]" >&2; exit 2
fi
status=0
SECONDS=0
part() { echo; echo "=== [gpu.sh ${SECONDS}s] $*"; }
note_failure() { local rc=$1; echo "=== [gpu.sh ${SECONDS}s] that part failed with exit code $rc"; [[ $status -ne 0 ]] || status=$rc; }

part "environment"
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || note_failure $?
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

part "RepoTune vs transformers + peft${small:+ (small, CPU)}"
"$PY" bench/gpu_compare.py $small ${OUT:+--results "$OUT/gpu_compare.jsonl"} || note_failure $?

if [[ -z "$small" ]]; then
  part "trainer tests"
  if "$PY" -c 'import pytest' 2>/dev/null; then
    "$PY" -m pytest -q trainer/tests || note_failure $?
  else
    echo "pytest is not installed for $PY: trainer tests skipped (pip install pytest to run them)"
  fi
else
  part "trainer tests: skipped with --small (run: $PY -m pytest -q trainer/tests)"
fi

for dtype in f32 q8_0; do
  part "trainer throughput, $dtype"
  PYTHONPATH=trainer "$PY" bench/trainer_throughput.py --dtype "$dtype" || note_failure $?
done

part "done, exit code $status"
exit $status
