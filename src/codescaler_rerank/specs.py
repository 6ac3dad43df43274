"""Turn spec strings into generators and reward models, the way litellm and `rerankers` take model names."""

from __future__ import annotations

from typing import Any

from .generators.base import Generator
from .pipeline import RewardScorer
from .reward_model import DEFAULT_REWARD_MODEL, RewardModel

GENERATOR_SCHEMES = ("litellm:", "vllm:")
REWARD_MODEL_SCHEMES = ("vllm:", "http://", "https://")


def load_generator(spec: str | Generator, **kwargs: Any) -> Generator:
    """`"litellm:<provider/model>"` or `"vllm:<model or path>"` (kwargs go to the generator), or a Generator."""
    if not isinstance(spec, str):
        return spec
    if spec.startswith("litellm:"):
        from .generators.litellm_generator import LiteLLMGenerator

        return LiteLLMGenerator(spec.removeprefix("litellm:"), **kwargs)
    if spec.startswith("vllm:"):
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(spec.removeprefix("vllm:"), **kwargs)
    raise ValueError(f"unknown generator spec {spec!r}: expected one of {', '.join(s + '<model>' for s in GENERATOR_SCHEMES)}")


def load_reward_model(spec: str | RewardScorer = DEFAULT_REWARD_MODEL, **kwargs: Any) -> RewardScorer:
    """A reward model from a spec (kwargs go to its class), or a scorer instance as is.

    - a Hugging Face model name or local path: `RewardModel.from_pretrained`
    - `"vllm:<model or path>"`: `VLLMRewardModel`, in-process vLLM pooling
    - `"http://host:port"` or `"https://..."`: `RemoteRewardModel`, a `vllm serve <rm> --runner pooling` server;
      comma-separated URLs (`"http://a:8000,http://b:8000"`) are replicas of one model
    """
    if not isinstance(spec, str):
        return spec
    if spec.startswith("vllm:"):
        from .vllm_backend import VLLMRewardModel

        return VLLMRewardModel(spec.removeprefix("vllm:"), **kwargs)
    if spec.startswith(("http://", "https://")):
        from .remote_reward_model import RemoteRewardModel

        return RemoteRewardModel(spec, **kwargs)
    if ":" in spec.split("/")[0]:
        raise ValueError(
            f"reward model spec {spec!r} is not supported: give a Hugging Face model name, a local path, "
            f"or one of {', '.join(s + '...' for s in REWARD_MODEL_SCHEMES)}"
        )
    return RewardModel.from_pretrained(spec, **kwargs)
