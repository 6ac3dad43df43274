"""Extraction under hostile input: counted limits (too_long), parse-worker crashes (parse_failed), no clock."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from codescaler_rerank import _ts_client
from codescaler_rerank.extraction import MAX_BLOCKS, MAX_RESPONSE_BYTES, extract_code, normalize_code

CPP = "#include <cstdio>\nint main() {\n    int n = 0;\n    std::printf(\"%d\\n\", n);\n    return 0;\n}"
PY = "def add(a, b):\n    return a + b"
SOUP = "a<a." * 4000  # issue 15: 4 kB took 0.9 s / 356 MB in-process, 16 kB segfaulted


def fenced(code: str, tag: str) -> str:
    return f"Here is the solution:\n\n```{tag}\n{code}\n```\n\nIt runs in O(n)."


@pytest.mark.parametrize(
    ("text", "language", "mode"),
    [
        pytest.param(fenced(SOUP, "cpp"), "cpp", "strict", id="cpp-fenced-strict"),
        pytest.param(fenced(SOUP, "cpp"), "cpp", "lenient", id="cpp-fenced-lenient"),
        pytest.param(fenced(SOUP, "cpp"), None, "strict", id="detect-cpp-fence-strict"),
        pytest.param(fenced(SOUP, "cpp"), None, "lenient", id="detect-cpp-fence-lenient"),
        pytest.param(SOUP, "cpp", "lenient", id="cpp-unfenced"),
        pytest.param(fenced("a<a." * 16_000, "cpp"), "cpp", "lenient", id="cpp-64kB-was-oom"),
    ],
)
def test_tree_sitter_blowup_fails_cleanly_and_the_process_survives(text: str, language: str | None, mode: str) -> None:
    result = extract_code(text, language=language, mode=mode)
    assert (result.valid, result.reason) == (False, "parse_failed")
    # the worker was replaced: ordinary code still parses
    assert extract_code(fenced(CPP, "cpp"), language="cpp", mode=mode).valid


def test_one_crash_per_response_then_the_rest_is_not_tried() -> None:
    text = fenced(CPP, "cpp") + "\n" + "".join(fenced(SOUP, "cpp") for _ in range(5))
    assert extract_code(text, language="cpp").reason == "parse_failed"


def test_typical_100kB_program_passes_and_oversized_is_too_long() -> None:
    functions = "\n".join(f"int f{i}(int x) {{ return x * {i} + 1; }}" for i in range(3000))
    assert 100_000 < len(functions) < 256 << 10
    assert extract_code(fenced(functions, "cpp"), language="cpp", mode="strict").valid
    huge = functions * 3
    assert extract_code(fenced(huge, "cpp"), language="cpp", mode="strict").reason == "too_long"
    big_python = "\n".join(f"x{i} = {i}" for i in range(4000))  # > 32 KiB: Python's per-block limit
    for mode in ("paper", "strict", "lenient"):
        assert extract_code(fenced(big_python, "python"), mode=mode).reason == "too_long"
    assert extract_code(fenced(big_python[:20_000].rsplit("\n", 1)[0], "python"), mode="strict").valid


def test_response_and_block_count_limits() -> None:
    assert extract_code("x" * (MAX_RESPONSE_BYTES + 1)).reason == "too_long"
    assert extract_code("é" * (MAX_RESPONSE_BYTES // 2 + 1)).reason == "too_long"  # counted in UTF-8 bytes
    many = "".join(fenced(PY, "python") for _ in range(MAX_BLOCKS + 1))
    assert extract_code(many).reason == "too_long"
    assert extract_code("".join(fenced(PY, "python") for _ in range(MAX_BLOCKS))).valid


def test_response_parse_budget_is_shared_by_its_blocks() -> None:
    block = "\n".join(f"x{i} = {i}" for i in range(2500))  # ~24 kB: under the block limit
    assert extract_code(fenced(block, "python") + fenced(block + "\n(", "python")).code == block
    # three broken 24 kB blocks after it spend the response's Python budget: the first is never tried
    text = fenced(block, "python") + "".join(fenced(block + "\n(", "python") for _ in range(3))
    assert (extract_code(text).valid, extract_code(text).reason) == (False, "syntax_error")


def test_normalize_code_is_bounded() -> None:
    big = "x = 1  # c\n" * 5_000
    assert normalize_code(big, "python") == " ".join(big.split())
    assert normalize_code("x=1  # c\n", "python") == "x = 1"
    soup = "a<a." * 16_000
    assert normalize_code(soup, "cpp") == soup  # the worker crashed: whitespace form
    assert normalize_code("int main(){return 0;}", "cpp") == normalize_code("int main() {\n  return 0;\n}", "cpp")


RESPONSES = [
    fenced(PY, "python"),
    fenced(CPP, "cpp"),
    fenced(SOUP, "cpp"),
    SOUP,
    "```java\nclass A { void f() { int x = 1; } }\n```",
    "```go\npackage main\nfunc main() {}\n```\n```rust\nfn main() { let v = vec![1; 3]; }\n```",
    "<think>\n```python\nx=\n```\n</think>\n" + fenced(PY, "py"),
    fenced("\n".join(f"x{i} = {i}" for i in range(4000)), "python"),
    "".join(fenced(PY, "python") for _ in range(MAX_BLOCKS + 1)),
]


def _all_results() -> list[tuple]:
    out = []
    for text, (language, mode) in itertools.product(RESPONSES, [(None, "lenient"), ("cpp", "strict"), ("python", "lenient"), ("python", "strict"), ("python", "paper")]):
        out.append(extract_code(text, language=language, mode=mode))
    out.append(normalize_code(CPP, "cpp"))
    out.append(normalize_code(PY * 3000, "python"))
    return out


def test_results_do_not_depend_on_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run everything once normally and once with a clock that jumps three hours at every call."""
    expected = _all_results()
    ticks = itertools.count()
    for name in ("monotonic", "perf_counter", "time"):
        monkeypatch.setattr(time, name, lambda: next(ticks) * 10_800.0)
        monkeypatch.setattr(time, name + "_ns", lambda: next(ticks) * 10_800 * 10**9)
    assert _all_results() == expected


def test_threads_share_one_worker_and_a_crash_fails_only_its_own_request() -> None:
    texts = [fenced(SOUP, "cpp") if i % 7 == 0 else fenced(CPP, "cpp") for i in range(40)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        reasons = list(pool.map(lambda t: extract_code(t, language="cpp").reason, texts))
    assert reasons == ["parse_failed" if i % 7 == 0 else "ok" for i in range(40)]


def test_forked_child_gets_its_own_worker() -> None:
    assert extract_code(fenced(CPP, "cpp"), language="cpp").valid  # the parent's worker is running
    pid = os.fork()
    if pid == 0:
        ok = extract_code(fenced(CPP, "cpp"), language="cpp").valid and _ts_client._worker is not _ts_client._inherited[0]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert extract_code(fenced(CPP, "cpp"), language="cpp").valid


def test_worker_ends_with_its_caller() -> None:
    script = (
        "from codescaler_rerank import extract_code, _ts_client\n"
        "assert extract_code('```cpp\\nint main(){}\\n```', language='cpp').valid\n"
        "print(_ts_client._worker.proc.pid)\n"
    )
    for ending in ("", "import os; os._exit(0)\n"):  # a normal exit, and one that skips atexit
        pid = int(subprocess.run([sys.executable, "-c", script + ending], capture_output=True, text=True, check=True).stdout)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"worker {pid} outlived its caller")
