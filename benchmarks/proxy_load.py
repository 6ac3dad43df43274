"""Proxy under load (issues 10, 15): 200 concurrent requests, slow and idle connections; baseline vs current, same run.

    python benchmarks/proxy_load.py            # prints a markdown report
    python benchmarks/proxy_load.py --write    # also replaces the section in RESULTS.md

Each variant is `codescaler-rerank serve` (default limits) in its own process, its open files limited to 1024 (a
common default), over the scripted OpenAI server of tests/ on 127.0.0.1 (its `slow` model answers after
`--upstream-seconds`) and a tiny random-weight Qwen3 RM built offline. The baseline is src/ as of commit 17dc0cf
(before these issues), taken from git. Phases, one after the other:

1. load: `--requests` chat requests at once (n=4, each of `--timeouts` s per request on the server, a fresh
   server per value; 60 s on the client): statuses counted; no answer after 60 s is "hung". `/health` is polled.
2. after: `/health`, how long until its `in_flight` is back to 0, how many programs the RM scored in all (work
   for timed-out requests shows here), and one more request.
3. slowloris: `--slow` connections trickle header bytes and `--slow` more a request body (one byte per second,
   no API key) for `--hold` s: how many the server closed, and whether `/health` answered meanwhile.
4. idle flood: 1,100 connections that send nothing, then `/health` (5 s timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from openai_server import OpenAIServer  # noqa: E402  (the scripted upstream of the test suite)

BASELINE_COMMIT = "17dc0cf"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Proxy under load (issues 10, 15)"
ANSWERS = [
    "```python\ndef add(a, b):\n    return a + b\n```",
    "Just add them.",
    "```python\ndef add(a, b):\n    return sum([a, b])\n```",
    "```python\ndef add(a, b)\n    return a - b\n```",
]
MESSAGES = [{"role": "user", "content": "Write a Python function add(a, b)."}]
IDLE_FLOOD = 1100


def baseline_src(tmp: Path) -> Path:
    """src/ of the baseline commit, extracted from git."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_COMMIT, "src"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp)
    return tmp / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Proxy:
    """`codescaler-rerank serve` from `src` in a child process with RLIMIT_NOFILE 1024."""

    def __init__(self, src: Path, upstream: str, rm: Path, timeout: float) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "codescaler_rerank", "serve", "--generator", "litellm:openai/slow",
            "--api-base", upstream, "--rm", str(rm), "--n", "4", "--port", str(self.port),
            "--timeout", str(timeout), "--max-pending", "64",
        ]
        env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        self.process = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)),
        )
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the proxy did not come up")
            try:
                if httpx.get(f"{self.root}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def health(self, timeout: float = 5.0) -> tuple[str, float]:
        """(status or 'timeout', seconds)."""
        start = time.monotonic()
        try:
            answer = httpx.get(f"{self.root}/health", timeout=timeout)
            return str(answer.status_code), time.monotonic() - start
        except httpx.HTTPError as exc:
            return type(exc).__name__, time.monotonic() - start

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def load(proxy: Proxy, requests: int) -> dict[str, Any]:
    """`requests` chat requests at once, with /health polled meanwhile."""
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    health: list[float] = []
    limits = httpx.Limits(max_connections=requests + 10, max_keepalive_connections=requests + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        done = asyncio.Event()

        async def one() -> None:
            start = time.monotonic()
            try:
                answer = await client.post(f"{proxy.root}/v1/chat/completions", json={"messages": MESSAGES})
                key = str(answer.status_code)
            except httpx.TimeoutException:
                key = "hung"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1
            if key == "200":
                latencies.append(time.monotonic() - start)

        async def poll() -> None:
            async with httpx.AsyncClient(timeout=10) as own:
                while not done.is_set():
                    start = time.monotonic()
                    try:
                        await own.get(f"{proxy.root}/health")
                    except httpx.HTTPError:
                        pass
                    health.append(time.monotonic() - start)
                    await asyncio.sleep(0.1)

        poller = asyncio.create_task(poll())
        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(requests)))
        wall = time.monotonic() - start
        done.set()
        await poller
    latencies.sort()
    return {
        "statuses": statuses, "wall": wall,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
        "health_max": max(health, default=float("nan")),
    }


def settle(proxy: Proxy, limit: float = 60) -> float:
    """Seconds until /health reports nothing in flight."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if httpx.get(f"{proxy.root}/health", timeout=5).json()["in_flight"] == 0:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return float("inf")


def slowloris(proxy: Proxy, count: int, hold: float) -> dict[str, Any]:
    """`count` connections trickling headers and `count` trickling a body, one byte per second, for `hold` s."""
    heads = [b"GET /health HTTP/1.1\r\nHost: proxy\r\nX-Slow: "] * count + [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Length: 100000\r\n\r\n{"
    ] * count
    socks = []
    for head in heads:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(head)
        sock.setblocking(False)
        socks.append(sock)
    closed_at: dict[int, float] = {}
    start, health, next_health = time.monotonic(), [], 0.0
    while time.monotonic() - start < hold:
        readable, _, _ = select.select([s for i, s in enumerate(socks) if i not in closed_at], [], [], 1.0)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data or b"408" in data:
                closed_at[socks.index(sock)] = time.monotonic() - start
        for i, sock in enumerate(socks):
            if i not in closed_at:
                try:
                    sock.send(b"x")
                except OSError:
                    closed_at[i] = time.monotonic() - start
        if time.monotonic() - start >= next_health:
            health.append(proxy.health()[0])
            next_health += 5.0
    for sock in socks:
        sock.close()
    headers_closed = [t for i, t in closed_at.items() if i < count]
    bodies_closed = [t for i, t in closed_at.items() if i >= count]
    return {
        "headers_closed": len(headers_closed), "bodies_closed": len(bodies_closed),
        "headers_after": max(headers_closed, default=float("nan")), "bodies_after": max(bodies_closed, default=float("nan")),
        "health_ok": sum(h == "200" for h in health), "health_polls": len(health),
    }


def idle_flood(proxy: Proxy) -> tuple[str, float]:
    """/health while `IDLE_FLOOD` connections that send nothing are open."""
    socks = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(IDLE_FLOOD)]
    try:
        time.sleep(1.0)
        return proxy.health(timeout=5.0)
    finally:
        for sock in socks:
            sock.close()


def scored_programs(proxy: Proxy, quiet: float = 3.0, limit: float = 60.0) -> int:
    """Programs the RM has scored (`codescaler_score_batch_pairs_sum`), once the count stopped moving for `quiet` s."""
    last, since, start = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - start < limit:
        text = httpx.get(f"{proxy.root}/metrics", timeout=5).text
        value = next(
            (int(float(line.split()[-1])) for line in text.splitlines() if line.startswith("codescaler_score_batch_pairs_sum")),
            0,
        )
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.5)
    return last


def run_variant(name: str, src: Path, upstream: str, rm: Path, timeout: float, args: argparse.Namespace,
                connections: bool) -> dict[str, Any]:
    """The load phases (and with `connections`, the slowloris and idle-flood phases) on a fresh server."""
    proxy = Proxy(src, upstream, rm, timeout)
    try:
        row: dict[str, Any] = {"variant": name, "timeout": timeout, "rss_start": rss_mb(proxy.process.pid)}
        row.update(asyncio.run(load(proxy, args.requests)))
        row["health_after"] = proxy.health()
        row["settle"] = settle(proxy)
        row["scored"] = scored_programs(proxy)
        row["rss_after"] = rss_mb(proxy.process.pid)
        answer = httpx.post(f"{proxy.root}/v1/chat/completions", json={"messages": MESSAGES}, timeout=60)
        row["next_request"] = answer.status_code
        if connections:
            row.update(slowloris(proxy, args.slow, args.hold))
            row["flood"] = idle_flood(proxy)
            time.sleep(2.0)
            row["health_end"] = proxy.health()
        return row
    finally:
        proxy.close()


def report(rows: list[dict[str, Any]], args: argparse.Namespace, load_before: str, load_after: str) -> str:
    statuses = sorted({k for r in rows for k in r["statuses"]})
    timeouts = " ".join(f"{t:g}" for t in args.timeouts)
    lines = [
        f"`python benchmarks/proxy_load.py --requests {args.requests} --slow {args.slow} --hold {args.hold:g} "
        f"--upstream-seconds {args.upstream_seconds:g} --timeouts {timeouts}` on {os.cpu_count()} cores, "
        f"load average {load_before} before, {load_after} after; python {sys.version.split()[0]}. Server: "
        f"`serve --n 4 --max-pending 64 --timeout T` with default limits, RLIMIT_NOFILE 1024, a fresh one per row; "
        f"upstream answers after {args.upstream_seconds:g} s; baseline = src/ at {BASELINE_COMMIT}. \"hung\": no "
        "answer in 60 s; \"programs scored\": the RM's work, read from /metrics once it stopped moving.",
        "",
        f"| variant | T s | {' | '.join(statuses)} | wall s | 200 p50 / p95 s | /health max during load s "
        "| /health after | in_flight 0 after s | programs scored | next request | RSS MB start / after |",
        "|---|---|" + "---|" * len(statuses) + "---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        counts = " | ".join(str(r["statuses"].get(k, 0)) for k in statuses)
        lines.append(
            f"| {r['variant']} | {r['timeout']:g} | {counts} | {r['wall']:.1f} | {r['p50']:.2f} / {r['p95']:.2f} "
            f"| {r['health_max']:.2f} | {r['health_after'][0]} in {r['health_after'][1]:.2f} s | {r['settle']:.1f} "
            f"| {r['scored']} | {r['next_request']} | {r['rss_start']:.0f} / {r['rss_after']:.0f} |"
        )
    rows = [r for r in rows if "flood" in r]
    lines += [
        "",
        f"| variant | slow-header conns closed (of {args.slow}), last at s | slow-body conns closed (of {args.slow}), "
        f"last at s | /health 200 during slowloris | /health under {IDLE_FLOOD} idle conns | /health at the end |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['headers_closed']}, {r['headers_after']:.1f} | {r['bodies_closed']}, "
            f"{r['bodies_after']:.1f} | {r['health_ok']} of {r['health_polls']} | {r['flood'][0]} in "
            f"{r['flood'][1]:.2f} s | {r['health_end'][0]} |"
        )
    return "\n".join(lines)


def write_section(text: str) -> None:
    content = RESULTS.read_text()
    body = f"{SECTION}\n\n{text}\n"
    if SECTION in content:
        start = content.index(SECTION)
        end = content.find("\n## ", start + len(SECTION))
        content = content[:start] + body + (content[end + 1 :] if end != -1 else "")
    else:
        content = content.rstrip() + "\n\n" + body
    RESULTS.write_text(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--slow", type=int, default=100, help="slow-header and slow-body connections (each)")
    parser.add_argument("--hold", type=float, default=40.0, help="seconds the slow connections trickle")
    parser.add_argument("--upstream-seconds", type=float, default=1.0)
    parser.add_argument("--timeouts", type=float, nargs="+", default=[10.0, 2.0],
                        help="the server's per-request timeout, one load run per value (the first also runs "
                        "the connection phases)")
    parser.add_argument("--variants", nargs="+", default=["baseline", "current"], choices=["baseline", "current"])
    parser.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_FLOOD + 2 * args.slow + args.requests + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(hard, wanted), hard))
    load_before = f"{os.getloadavg()[0]:.1f}"
    from codescaler_rerank.testing import build_tiny_qwen3_classifier

    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(ANSWERS, slow_seconds=args.upstream_seconds) as upstream:
        rm = Path(tmp) / "rm"
        build_tiny_qwen3_classifier(rm)
        sources = {"baseline": baseline_src(Path(tmp) / "baseline"), "current": ROOT / "src"}
        rows = []
        for i, timeout in enumerate(args.timeouts):
            for name in args.variants:
                rows.append(run_variant(name, sources[name], upstream.base_url, rm, timeout, args, connections=i == 0))
                print(f"{name}, timeout {timeout:g}: done", file=sys.stderr)
    text = report(rows, args, load_before, f"{os.getloadavg()[0]:.1f}")
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
