#!/usr/bin/env bash
# The GPU check of issue 12 (benchmarks/gpu_check.py): parity, latency, warm-up and compile counts, forced
# fallback and out-of-memory, on a random-weight Qwen3-8B-architecture classifier; writes its section of
# benchmarks/RESULTS.md. Needs only torch and transformers (nothing is downloaded); under 8 minutes on one
# H100/H200. `--tiny` runs the same checks on CPU with the tiny model. Other flags: see gpu_check.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout "${GPU_CHECK_TIMEOUT:-470}" "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
