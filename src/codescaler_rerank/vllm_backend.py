"""Offline vLLM backends: a policy that samples N answers per prompt, and a reward model scored by vLLM pooling."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Sequence

from ._deps import require
from .formatting import RMPreset, encode_rm_inputs, resolve_preset
from .generators.base import Completion, GenerationOutput
from .reward_model import RewardModelError, ScoredInput, scored_inputs


def _shutdown(llm: Any) -> None:
    """Stop a `vllm.LLM`'s engine processes and free their memory (vLLM has no public call for it)."""
    llm.llm_engine.engine_core.shutdown()


class VLLMGenerator:
    """Samples `n` answers per prompt with an in-process `vllm.LLM`: one request per prompt, `SamplingParams(n=n)`.

    `model` is a model name or path, or a `vllm.LLM` built elsewhere (then `llm_kwargs` must be empty).

    Prompts are chat-templated by `LLM.chat` (with `system` first when given). Sampling knobs are
    `SamplingParams` fields (temperature, top_p, top_k, max_tokens, stop, seed, ...); per-call knobs override
    `sampling`. Without `max_tokens` a sample runs to eos or the end of the context, as under `vllm serve`.
    `llm_kwargs` go to `vllm.LLM` (dtype, tensor_parallel_size, max_model_len, gpu_memory_utilization, ...).
    """

    def __init__(
        self,
        model: Any,
        *,
        system: str | None = None,
        sampling: dict[str, Any] | None = None,
        **llm_kwargs: Any,
    ) -> None:
        vllm = require("vllm", "vllm")
        if isinstance(model, vllm.LLM):
            if llm_kwargs:
                raise ValueError(f"engine arguments {sorted(llm_kwargs)} cannot apply to an existing vllm.LLM")
            self.llm = model
        else:
            self.llm = vllm.LLM(model=model, **llm_kwargs)
        self.model = self.llm.model_config.model
        self.system = system
        self.default_sampling = dict(sampling or {})
        self._model_sampling = self.llm.model_config.get_diff_sampling_param()  # from generation_config.json
        self._lock = threading.Lock()  # vllm.LLM is not thread-safe

    def __repr__(self) -> str:
        return f"VLLMGenerator({self.model!r}, system={self.system!r}, sampling={self.default_sampling!r})"

    def close(self) -> None:
        """Stop the vLLM engine (also one passed in); the generator is unusable afterwards."""
        _shutdown(self.llm)

    def generate(self, prompt: str, n: int, **sampling: Any) -> GenerationOutput:
        """Sample `n` completions of one prompt."""
        return self.generate_batch([prompt], n, **sampling)[0]

    async def agenerate(self, prompt: str, n: int, **sampling: Any) -> GenerationOutput:
        """`generate` on a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.generate, prompt, n, **sampling)

    def generate_batch(self, prompts: Sequence[str], n: int, **sampling: Any) -> list[GenerationOutput]:
        """Sample `n` completions of each prompt, all in one `LLM.chat` call (vLLM batches them)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if not prompts:
            return []
        vllm = require("vllm", "vllm")
        params = vllm.SamplingParams(
            **{
                "max_tokens": None,
                **self._model_sampling,
                **self.default_sampling,
                **sampling,
                "n": n,
            }
        )
        system = [{"role": "system", "content": self.system}] if self.system is not None else []
        conversations = [[*system, {"role": "user", "content": p}] for p in prompts]
        with self._lock:
            started = time.perf_counter()
            outputs = self.llm.chat(conversations, params, use_tqdm=False)
            latency = time.perf_counter() - started
        return [
            GenerationOutput(
                completions=[
                    Completion(
                        text=sample.text,
                        finish_reason=sample.finish_reason,
                        prompt_tokens=len(out.prompt_token_ids or []),
                        completion_tokens=len(sample.token_ids),
                        latency=latency,
                    )
                    for sample in sorted(out.outputs, key=lambda s: s.index)
                ]
            )
            for out in outputs
        ]


class VLLMRewardModel:
    """A 1-logit classifier served by an in-process `vllm.LLM(runner="pooling")`; scores are raw logits.

    Inputs are the token ids of the library's formatter (`encode_rm_inputs` with the RM's own Hugging Face
    tokenizer), so chat template and right truncation at `max_length` are those of `RewardModel`. vLLM pools
    the last token of each unpadded sequence, as `RewardModel` pools the last non-pad one: the scores agree.
    Activation is off (`PoolingParams(use_activation=False)`): vLLM would otherwise return sigmoid(logit).
    Prefix caching is on by default, since the N candidates of a prompt share its tokens. The score head runs in
    fp32 (`hf_overrides={"head_dtype": "float32"}`, vLLM's default for pooling models, made explicit): in bf16,
    logits 3.01 and 3.02 would both come back as 3.015625.
    `preset`: the input preset (`formatting.RMPreset` or its name; None: from the model's name).
    `llm_kwargs` go to `vllm.LLM` (dtype, max_model_len, tensor_parallel_size, gpu_memory_utilization, ...).
    """

    def __init__(
        self,
        model: str,
        *,
        tokenizer: Any = None,
        max_length: int = 4096,
        trust_remote_code: bool = False,
        preset: str | RMPreset | None = None,
        **llm_kwargs: Any,
    ) -> None:
        vllm = require("vllm", "vllm")
        transformers = require("transformers", "hf")
        try:  # checked before vLLM starts: that takes a while
            config = transformers.AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
            if tokenizer is None or isinstance(tokenizer, str):  # the formatter needs the Hugging Face tokenizer
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    tokenizer or model, trust_remote_code=trust_remote_code
                )
        except (OSError, ValueError) as exc:
            raise RewardModelError(f"cannot load reward model {model!r}: {exc}") from exc
        if getattr(config, "num_labels", None) != 1:
            raise RewardModelError(
                f"{model} has num_labels={getattr(config, 'num_labels', None)}; "
                "a CodeScaler-style reward model is a sequence classifier with exactly one logit"
            )
        self.tokenizer = tokenizer
        llm_kwargs.setdefault("enable_prefix_caching", True)
        overrides = llm_kwargs.pop("hf_overrides", None) or {}
        if isinstance(overrides, dict):  # a callable override is the caller's own
            overrides = {"head_dtype": "float32", **overrides}
        self.llm = vllm.LLM(
            model=model, runner="pooling", trust_remote_code=trust_remote_code, hf_overrides=overrides, **llm_kwargs
        )
        self.max_length = min(max_length, self.llm.model_config.max_model_len)
        self.name = model
        self.preset = resolve_preset(preset, model)
        self._lock = threading.Lock()  # vllm.LLM is not thread-safe

    def __repr__(self) -> str:
        return f"VLLMRewardModel({self.name!r}, max_length={self.max_length})"

    def close(self) -> None:
        """Stop the vLLM engine; the reward model is unusable afterwards."""
        _shutdown(self.llm)

    def score(self, prompt: str, codes: Sequence[str]) -> list[float]:
        """Raw scores of `codes` as answers to `prompt`, in the order given."""
        return [s.score for s in self.score_pairs([(prompt, code) for code in codes])]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Score (prompt, code) pairs, across any number of prompts, in one `LLM.classify` call."""
        if not pairs:
            return []
        vllm = require("vllm", "vllm")
        encoded = encode_rm_inputs(self.tokenizer, pairs, self.max_length, self.preset)
        prompts = [{"prompt_token_ids": e.input_ids} for e in encoded]  # vllm.inputs.TokensPrompt
        with self._lock:
            outputs = self.llm.classify(
                prompts, pooling_params=vllm.PoolingParams(use_activation=False), use_tqdm=False
            )
        return scored_inputs([float(out.outputs.probs[0]) for out in outputs], encoded)
