"""`select` over a JSONL file: one output row per input line, ranked in bulk, nothing lost on bad lines.

Output rows (one per input line, in input order)::

    {"line": 3, "input": <the line's JSON value, unchanged>, "result": <RerankResult>, "error": null}
    {"line": 4, "input": null, "result": null, "error": "invalid JSON: ..."}

All four keys are ours and the record sits whole under `input`, so a record's own keys (`error`, `line`, ...) are
never confused with ours. `error` is null exactly when `result` is set.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import tempfile
from itertools import islice
from typing import Any, BinaryIO, Iterable, Iterator, Sequence, TextIO

from .reranker import Reranker
from .results import RerankResult

Request = tuple[str, list[str], str | None]  # prompt, candidates, tests (for execution-based selectors)


def select_jsonl(
    reranker: Reranker, source: BinaryIO, sink: TextIO, *, batch_lines: int = 32, progress: Any = None
) -> tuple[int, int]:
    """Rank every line of `source` (JSON `{"prompt", "candidates"}`) into `sink`; returns (rows, error rows).

    Lines are read as bytes and decoded one by one (a UTF-8 BOM at the start is accepted); `batch_lines` lines
    share one reward-model call. If a bulk call fails, its lines are ranked one by one, so only the lines that
    fail become error rows. `progress` (a tqdm bar or None) advances by the bytes read.
    """
    if batch_lines < 1:
        raise ValueError(f"batch_lines must be at least 1, got {batch_lines}")
    rows = errors = 0
    lines = _numbered_lines(source, progress)
    while chunk := list(islice(lines, batch_lines)):
        for row in _rank_chunk(reranker, chunk):
            sink.write(_dump(row) + "\n")
            rows += 1
            errors += row["error"] is not None
    return rows, errors


@contextlib.contextmanager
def replaced_on_success(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """A text file that becomes `path` only when the block succeeds: written next to it, then renamed over it.

    Until then `path` is untouched, so it may also be the file being read. The new file keeps an existing
    file's permissions (else the umask's); a symlink at `path` is followed.
    """
    target = os.path.realpath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mode_for(target: str) -> int:
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _numbered_lines(source: BinaryIO, progress: Any) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(source, start=1):
        if progress is not None:
            progress.update(len(raw))
        yield number, raw[len(codecs.BOM_UTF8):] if number == 1 and raw.startswith(codecs.BOM_UTF8) else raw


def _rank_chunk(reranker: Reranker, chunk: Sequence[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """Rows of one chunk of lines: each parsed line's result or error; valid lines ranked in one bulk call."""
    rows, requests = [], []
    for number, raw in chunk:
        row, request = _parse(number, raw)
        rows.append(row)
        if request is not None:
            requests.append((row, request))
    for (row, _), result in zip(requests, _rank_all(reranker, [request for _, request in requests])):
        if isinstance(result, RerankResult):
            row["result"] = result.model_dump(mode="json")
        else:
            row["error"] = _describe(result)
    return rows


def _rank_all(reranker: Reranker, requests: list[Request]) -> Iterable[RerankResult | Exception]:
    try:
        return reranker.select_many(requests)
    except Exception:  # find the lines that fail: rank them one by one
        return [_attempt(reranker, request) for request in requests]


def _attempt(reranker: Reranker, request: Request) -> RerankResult | Exception:
    try:
        prompt, candidates, tests = request
        return reranker.select(prompt, candidates, tests=tests)
    except Exception as exc:
        return exc


def _parse(number: int, raw: bytes) -> tuple[dict[str, Any], Request | None]:
    """The line's row (with `error` set when it cannot be ranked) and its (prompt, candidates, tests) when it can."""
    row: dict[str, Any] = {"line": number, "input": None, "result": None, "error": None}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        row["error"] = f"the line is not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.end]!r})"
        return row, None
    if not text.strip():
        row["error"] = "empty line"
        return row, None
    try:
        record = json.loads(text)
    except RecursionError:
        row["error"] = "invalid JSON: nested too deeply"
        return row, None
    except ValueError as exc:
        row["error"] = f"invalid JSON: {exc}"
        return row, None
    row["input"] = record
    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
        row["error"] = "each line needs a string 'prompt' and a non-empty list 'candidates'"
        return row, None
    candidates = record.get("candidates")
    if not isinstance(candidates, list) or not candidates or not all(isinstance(c, str) for c in candidates):
        row["error"] = "'candidates' must be a non-empty list of strings"
        return row, None
    tests = record.get("tests")
    if tests is not None and not isinstance(tests, str):
        row["error"] = "'tests' must be a string of assertions"
        return row, None
    return row, (record["prompt"], candidates, tests)


def _dump(row: dict[str, Any]) -> str:
    try:
        return json.dumps(row)
    except (RecursionError, ValueError, TypeError) as exc:  # a record too deep to write back: keep the line's row
        return json.dumps({"line": row["line"], "input": None, "result": None, "error": f"cannot write the row: {exc}"})


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
