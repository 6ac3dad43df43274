"""codescaler-rerank: best-of-N selection for code assistants with the CodeScaler reward model.

Importing the package is light: torch, transformers and litellm load only when a feature needs them.
"""

from ._deps import MissingExtraError
from .extraction import Extraction, extract_code
from .generators.base import Completion, GenerationError, GenerationFailure, GenerationOutput, Generator
from .generators.static import StaticGenerator
from .reranker import Reranker, rerank
from .results import Candidate, NoCandidatesError, RerankResult, Timings, Usage
from .reward_model import RewardModel, RewardModelError
from .shaping import shape_reward

__version__ = "0.1.0"

# Backends whose modules pull optional dependencies in: imported on first access.
_LAZY = {
    "LiteLLMGenerator": "generators.litellm_generator",
    "RemoteRewardModel": "remote_reward_model",
    "VLLMGenerator": "vllm_backend",
    "VLLMRewardModel": "vllm_backend",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Candidate",
    "Completion",
    "Extraction",
    "GenerationError",
    "GenerationFailure",
    "GenerationOutput",
    "Generator",
    "LiteLLMGenerator",
    "MissingExtraError",
    "NoCandidatesError",
    "RemoteRewardModel",
    "RerankResult",
    "Reranker",
    "RewardModel",
    "RewardModelError",
    "StaticGenerator",
    "Timings",
    "Usage",
    "VLLMGenerator",
    "VLLMRewardModel",
    "extract_code",
    "rerank",
    "shape_reward",
]
