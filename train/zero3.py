"""DeepSpeed ZeRO-3 helpers for the pipelines: no-ops unless ZeRO-3 is on, so deepspeed stays optional.

Under `accelerate launch` with ZeRO-3, building a `TrainingArguments` (`RewardConfig`, `GRPOConfig`) registers the
DeepSpeed config with transformers, and from then on every `from_pretrained` partitions the weights it loads across
processes (`is_deepspeed_zero3_enabled()`). That suits the model the trainer wraps, not a model used outside any
DeepSpeed engine (a reward model that scores), and partitioned weights must be gathered before they are read whole.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def gathered(module: Any) -> Iterator[None]:
    """All of `module`'s parameters whole on every process while inside. Under ZeRO-3 this is a collective (every
    process must enter it) and changes made inside are not written back to the partitions."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        yield


@contextmanager
def whole_weights() -> Iterator[None]:
    """Models loaded inside keep whole weights on their own device even after a ZeRO-3 training config exists."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref  # transformers keeps the active config only here
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved
