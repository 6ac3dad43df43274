"""Adapters for outside frameworks; each module imports its framework only when used.

- `rewards`: `score_responses`, the bulk extract -> dedup -> score -> shape path the RL adapters share with `rerank()`
- `trl`: `CodeScalerReward` / `AsyncCodeScalerReward`, `reward_funcs` for TRL's GRPOTrainer
- `verl_reward`: `compute_score` / `compute_score_batch`, a verl `custom_reward_function` file
- `openrlhf_reward`: `reward_func`, an OpenRLHF `--remote_rm_url` file
"""
