"""Training pipelines run from a checkout: `python -m train.curate`, `train.reward_model`, `train.grpo` (see README)."""
