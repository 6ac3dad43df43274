#!/usr/bin/env bash
# CI: scoring on the oldest transformers the project declares (the `hf` extra's floor in pyproject.toml, which
# scoring_paths.PACKED_TRANSFORMERS_FLOOR matches), in a small venv of its own: torch==2.13.0 (CPU, local disk),
# transformers==<floor>, accelerate, the core and test dependencies. Runs the reward-model, packing, scoring-path
# and score-precision tests there; the main venv runs them on the latest transformers.
# Usage: bash .ci/transformers_floor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
floor=$(python3 - <<'PY'
import re, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["hf"]
print(next(re.fullmatch(r"transformers>=([\d.]+)", d)[1] for d in extras if d.startswith("transformers")))
PY
)
python3 - "$floor" <<'PY'
import re, sys
source = open("src/codescaler_rerank/scoring_paths.py").read()
declared = tuple(int(x) for x in re.search(r"PACKED_TRANSFORMERS_FLOOR = \((\d+), (\d+)\)", source).groups())
wanted = tuple(int(x) for x in sys.argv[1].split(".")[:2])
sys.exit(0 if declared == wanted else f"pyproject's floor {wanted} != PACKED_TRANSFORMERS_FLOOR {declared}")
PY

echo "== venv with transformers==$floor"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q torch==2.13.0
"$work/venv/bin/pip" install -q -c .ci/constraints.txt "transformers==$floor" "accelerate>=1.0" -e ".[test]"
"$work/venv/bin/python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

echo "== scoring tests on transformers $floor"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_reward_model.py tests/test_packing.py \
  tests/test_scoring_paths.py tests/test_score_precision.py
