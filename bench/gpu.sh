#!/usr/bin/env bash
# The device check for a machine with a GPU (run through the device tool in one go): trainer tests, then trainer
# throughput on every available device side by side. Needs python3 with torch and numpy on that machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
python3 -m pytest -q trainer/tests
for dtype in f32 q8_0; do PYTHONPATH=trainer python3 bench/trainer_throughput.py --dtype "$dtype"; done
