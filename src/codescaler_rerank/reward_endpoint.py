"""OpenRLHF's remote reward API on the `codescaler-rerank serve` app: `POST /get_reward`.

OpenRLHF 0.11 (`--reward.remote_url http://host:port/get_reward`, several URLs comma-separated) posts
`{"query": [...], "prompts": [...], "labels": [...]}` (prompt + response with the chat template, the templated
prompts, the labels; one sample per request, possibly none) and reads `{"rewards", "scores", "extra_logs"}`.
Scoring is `integrations.openrlhf_reward.openrlhf_rewards` (the recipe's extraction, exact dedup) through the
app's batching scorer, so concurrent reward and chat requests share bulk RM calls.

With an API key, send `Authorization: Bearer <key>`; OpenRLHF's client sends no headers, but it passes the
credentials of a URL such as `http://rl:<key>@host:port/get_reward` as HTTP Basic auth, which is accepted too.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any

from ._deps import require
from ._http_api import ProxyError, bearer_matches, parse_json, read_body
from .integrations.openrlhf_reward import openrlhf_rewards
from .pipeline import RewardScorer

fastapi = require("fastapi", "server")
from fastapi import Request  # noqa: E402  (a module global, so FastAPI resolves the endpoint annotations)

PATH = "/get_reward"  # the path of OpenRLHF's own `serve_rm`


def authorized(header: str | None, api_key: str | None) -> bool:
    """Whether an Authorization header carries `api_key`: as a Bearer token, or as a Basic-auth password."""
    if api_key is None:
        return True
    header = header or ""
    if header.startswith("Basic "):
        try:  # ValueError: not base64, non-ASCII, or not UTF-8
            password = base64.b64decode(header[6:], validate=True).decode().partition(":")[2]
        except ValueError:
            return False
        return secrets.compare_digest(password.encode(), api_key.encode())
    return bearer_matches(header, api_key)


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, read up to `limit` bytes (413 beyond, 400 if not JSON or nested too deeply)."""
    return parse_json(await read_body(request, limit))


def parse_reward_request(body: Any) -> tuple[list[str], list[str], list[Any] | None]:
    """(queries, prompts, labels) of an OpenRLHF reward request, checked."""
    if not isinstance(body, dict):
        raise ProxyError(400, "request body must be a JSON object")
    queries, prompts, labels = body.get("query"), body.get("prompts"), body.get("labels")
    for name, value in (("query", queries), ("prompts", prompts)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProxyError(400, f"'{name}' must be a list of strings", param=name)
    if len(queries) != len(prompts):
        raise ProxyError(400, f"{len(queries)} queries but {len(prompts)} prompts", param="prompts")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(prompts)):
        raise ProxyError(400, "'labels' must be a list with one label per prompt, or null", param="labels")
    return queries, prompts, labels


def reward_router(
    scorer: RewardScorer, *, api_key: str | None = None, max_body_bytes: int = 1 << 20
) -> fastapi.APIRouter:
    """`POST /get_reward` scoring with `scorer` (call it from threads: a `BatchingScorer` must be running)."""
    router = fastapi.APIRouter()

    @router.post(PATH)
    async def get_reward(request: Request) -> Any:
        if not authorized(request.headers.get("authorization"), api_key):
            raise ProxyError(401, "invalid or missing API key (Bearer token or Basic-auth password)", "authentication_error")
        queries, prompts, labels = parse_reward_request(await read_json(request, max_body_bytes))
        return await asyncio.to_thread(openrlhf_rewards, scorer, queries, prompts, labels)

    return router
