"""Which way a `RewardModel` scores (packed with FlexAttention, packed with SDPA, or padded), and the way back.

Packed paths are tried in that order. At first use (or `RewardModel.warmup()`), each is checked on a few probe
inputs against the padded path (it must agree to `tolerance(dtype)`); one that fails the check, or later raises
anything but an out-of-memory error, is dropped for good and the call is rescored on the next path, with one
warning naming why. All paths run under one transformers attention implementation, set once when the reward model
is built (`install_dispatch_attention`), so no call switches it while another thread runs a forward pass.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from ._deps import require
from .packing import Batching, Row

PATHS = ("packed-flex", "packed-sdpa", "padded")
# The oldest transformers the packed path works with, as pyproject declares: 4.53 passes 4-D masks and BlockMasks
# as given and registers attention/mask functions, 4.54 adds `set_attn_implementation`, but up to 4.55 its
# FlexAttention asks torch >= 2.9 for `return_lse`, which fails to compile on CPU, and `from_pretrained` has no
# `dtype=` before 4.56. .ci/transformers_floor.sh runs the packing and reward-model tests on it; older versions
# score padded.
PACKED_TRANSFORMERS_FLOOR = (4, 56)
# One implementation for every path: a FlexAttention BlockMask goes to flex, any other mask (packed boolean 4-D,
# padded 2-D) is built and attended as for SDPA.
DISPATCH_ATTENTION = "codescaler_dispatch"
TOLERANCE = {"fp32": 1e-4, "half": 1e-2}  # max |packed - padded| / max(1, |padded|) on the probe
PROBE_GROUPS, PROBE_CANDIDATES, PROBE_PREFIX = 2, 3, 24


def transformers_version() -> tuple[int, int]:
    """(major, minor) of the installed transformers."""
    version = require("transformers", "hf").__version__
    major, minor = (version.split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def candidate_paths(packing: bool | None, attention: str, device: Any, packable: bool) -> list[str]:
    """Paths to try, best first, always ending with "padded".

    CUDA, `attention="auto"`: flex, then SDPA. CPU, `auto`: padded, since a process pays FlexAttention's compile
    (tens of seconds) before its first score, and packed SDPA is slower than padded on bulk work
    (benchmarks/RESULTS.md); `attention="flex"` or `"sdpa"` (or `packing=True`, SDPA) opt in. `packing=False`, a
    model that cannot pack, or a transformers older than `PACKED_TRANSFORMERS_FLOOR` score padded.
    """
    if packing is False or not packable or transformers_version() < PACKED_TRANSFORMERS_FLOOR:
        return ["padded"]
    cuda = device.type == "cuda"
    if attention == "flex":
        paths = list(PATHS) if cuda else ["packed-flex", "padded"]
    elif attention == "sdpa" or not cuda:
        paths = ["packed-sdpa", "padded"] if attention == "sdpa" or packing else ["padded"]
    else:
        paths = list(PATHS)
    flex = require("transformers", "hf").utils.is_torch_flex_attn_available()
    return paths if flex else [p for p in paths if p != "packed-flex"]  # a torch without it: no warning needed


def _dispatch_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
    """FlexAttention for a BlockMask, SDPA for any other mask (or none)."""
    from torch.nn.attention.flex_attention import BlockMask
    from transformers.integrations.flex_attention import flex_attention_forward
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    forward = flex_attention_forward if isinstance(attention_mask, BlockMask) else sdpa_attention_forward
    return forward(module, query, key, value, attention_mask, **kwargs)


def install_dispatch_attention(model: Any) -> None:
    """Register `DISPATCH_ATTENTION` with transformers and set it on `model` (once; padded calls run as SDPA)."""
    transformers = require("transformers", "hf")
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    transformers.AttentionInterface.register(DISPATCH_ATTENTION, _dispatch_attention)
    AttentionMaskInterface.register(DISPATCH_ATTENTION, sdpa_mask)
    if model.config._attn_implementation != DISPATCH_ATTENTION:
        model.set_attn_implementation(DISPATCH_ATTENTION)


def tolerance(dtype: Any) -> float:
    """Probe tolerance: 1e-4 in fp32, 1e-2 in bf16/fp16 (relative above a score of 1)."""
    torch = require("torch", "hf")
    return TOLERANCE["fp32"] if dtype == torch.float32 else TOLERANCE["half"]


def probe_inputs(vocab_size: int, pad_id: int | None) -> tuple[list[tuple[int, ...]], list[int]]:
    """A few deterministic sequences in groups sharing a prefix, as packed scoring sees them."""
    rng = random.Random(0)
    ids = [i for i in range(min(vocab_size, 4096)) if i != pad_id]
    sequences, groups = [], []
    for g in range(PROBE_GROUPS):
        prefix = rng.choices(ids, k=PROBE_PREFIX)
        for c in range(PROBE_CANDIDATES):
            sequences.append(tuple(prefix + rng.choices(ids, k=8 + 11 * c)))
            groups.append(g)
    return sequences, groups


def disagreement(got: Sequence[float], want: Sequence[float]) -> float:
    """Largest |got - want| relative to max(1, |want|)."""
    return max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(got, want, strict=True))


def is_out_of_memory(exc: BaseException) -> bool:
    """An accelerator out-of-memory error, whatever type it is raised as."""
    torch = require("torch", "hf")
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def run_rows(
    path: str,
    count: int,
    budget: int,
    plan: Callable[[Sequence[int], int], list[Row]],
    run: Callable[[Row], list[float]],
    on_oom: Callable[[Row], None],
) -> tuple[list[float], Batching]:
    """Score `count` sequences row by row; a row that runs out of memory is re-planned at half its size
    (`on_oom` is told first). A single sequence that does not fit raises."""
    scores = [0.0] * count
    pending = plan(range(count), budget)[::-1]
    rows = tokens = splits = 0
    while pending:
        row = pending.pop()
        try:
            row_scores = run(row)
        except Exception as exc:
            if not is_out_of_memory(exc) or len(row.members) == 1:
                raise
            on_oom(row)
            splits += 1
            pending.extend(plan(row.members, row.tokens // 2)[::-1])
            continue
        for i, score in zip(row.members, row_scores):
            scores[i] = score
        rows += 1
        tokens += row.tokens
    return scores, Batching(path, rows, tokens, splits, budget)


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far (FlexAttention kernels and block masks among them)."""
    torch = require("torch", "hf")
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
