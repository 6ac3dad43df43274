"""Adapters for outside frameworks; each module imports its framework only when used.

- `rewards`: `score_responses`, the bulk extract -> dedup -> score -> shape path the RL adapters share with `rerank()`
- `trl`: `CodeScalerReward` / `AsyncCodeScalerReward`, picklable `reward_funcs` for TRL's (Async)GRPOTrainer
- `verl_reward`: `compute_score` / `compute_score_async` (/ `compute_score_batch`), a verl `custom_reward_function` file
- `openrlhf_reward`: `reward_func`, an OpenRLHF `--reward.remote_url` file (`codescaler-rerank serve` also answers
  OpenRLHF's HTTP `POST /get_reward`, see `reward_endpoint`)
- `langgraph`: `select_best_node` and `fan_out`, best-of-N selection after a LangGraph fan-out
- `dspy`: `codescaler_reward` for `dspy.BestOfN` / `dspy.Refine`, and `ParallelBestOfN`
- `openai_agents`: `BestOfNModel`, an OpenAI Agents SDK `Model` that samples N and returns the best
- `smolagents`: `BestOfNModel` and `codescaler_final_answer_check` for smolagents agents
- `ray`: a Ray Data `RewardScorer` (actor pool), `score_dataset`, a Ray-task `run_many` and `select_jsonl`
"""
