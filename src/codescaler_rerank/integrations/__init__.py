"""Adapters for outside frameworks; each module imports its framework only when used.

- `rewards`: `score_responses`, the bulk extract -> dedup -> score -> shape path the RL adapters share with `rerank()`
- `trl`: `CodeScalerReward` / `AsyncCodeScalerReward`, `reward_funcs` for TRL's GRPOTrainer
- `verl_reward`: `compute_score` / `compute_score_batch`, a verl `custom_reward_function` file
- `openrlhf_reward`: `reward_func`, an OpenRLHF `--remote_rm_url` file
- `langgraph`: `select_best_node` and `fan_out`, best-of-N selection after a LangGraph fan-out
- `dspy`: `codescaler_reward` for `dspy.BestOfN` / `dspy.Refine`, and `ParallelBestOfN`
- `openai_agents`: `BestOfNModel`, an OpenAI Agents SDK `Model` that samples N and returns the best
- `smolagents`: `BestOfNModel` and `codescaler_final_answer_check` for smolagents agents
"""
