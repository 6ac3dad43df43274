"""Entry-point aware, dependency-aware lenient extraction for C, C++, Java, JavaScript, TypeScript, Go and
Rust (issue 16 item 2): the parse worker assembles the answer from the response's blocks (`_ts_assembly`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from codescaler_rerank import _ts_client
from codescaler_rerank.assembly import detect_entry_point
from codescaler_rerank.extraction import extract_code
from codescaler_rerank.pipeline import extract_all
from codescaler_rerank.reranker import Reranker
from test_assembly import RecordingScorer


def fenced(*blocks: tuple[str, str], prose: str = "Here:\n") -> str:
    """A response with one fenced block per (tag, code), prose between them."""
    return "".join(f"{prose}```{tag}\n{code}\n```\n" for tag, code in blocks)


CPP_SPLIT = fenced(
    ("cpp", "#include <iostream>\n#include <vector>\nusing namespace std;"),
    ("cpp", "const int LIMIT = 10;\n\nint helper(int x) {\n    return x < LIMIT ? x * 2 : x;\n}"),
    ("cpp", "int unused(int x) { return x; }\n\nint solve(vector<int> v) {\n    int s = 0;\n"
     "    for (int x : v) s += helper(x);\n    return s;\n}"),
    ("cpp", 'int main() {\n    cout << solve({1, 2, 3}) << endl;\n    cout << "done" << endl;\n    return 0;\n}'),
)  # fmt: skip
CPP_ASSEMBLED = (
    "#include <iostream>\n#include <vector>\nusing namespace std;\n\nconst int LIMIT = 10;\n\n"
    "int helper(int x) {\n    return x < LIMIT ? x * 2 : x;\n}\n\nint unused(int x) { return x; }\n\n"
    "int solve(vector<int> v) {\n    int s = 0;\n    for (int x : v) s += helper(x);\n    return s;\n}"
)


def test_cpp_blocks_assembled_and_main_dropped() -> None:
    found = extract_code(CPP_SPLIT, language="cpp", entry_point="solve")
    assert (found.valid, found.reason, found.language) == (True, "ok", "cpp")
    assert found.code == CPP_ASSEMBLED  # `unused` is a companion in the answer block (its tests may call it)
    assert extract_code(CPP_SPLIT, language="cpp").code.startswith("int main()")  # no entry point: as today
    assert extract_code(CPP_SPLIT, language="cpp", mode="strict", entry_point="solve").reason == "multiple_code_blocks"


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_assembled_cpp_compiles_with_a_test_main(tmp_path: Path) -> None:
    code = extract_code(CPP_SPLIT, language="cpp", entry_point="solve").code
    source = tmp_path / "t.cpp"
    source.write_text(code + "\nint main() { return solve({1, 2, 3}) == 12 ? 0 : 1; }\n")
    subprocess.run(["g++", "-std=c++17", "-o", str(tmp_path / "t"), str(source)], check=True, timeout=120)
    assert subprocess.run([str(tmp_path / "t")], timeout=30).returncode == 0


def test_cpp_helper_from_a_later_block_moves_before_its_use() -> None:
    response = fenced(
        ("cpp", "#include <string>\n\nstd::string shout(std::string s) {\n    return upper(s) + \"!\";\n}"),
        ("cpp", "std::string upper(std::string s) {\n    for (auto &c : s) c = toupper(c);\n    return s;\n}"),
        ("cpp", "int main() { return shout(\"a\").size(); }"),
    )
    assert extract_code(response, language="cpp", entry_point="shout").code == (
        "#include <string>\n\nstd::string upper(std::string s) {\n    for (auto &c : s) c = toupper(c);\n"
        "    return s;\n}\n\nstd::string shout(std::string s) {\n    return upper(s) + \"!\";\n}"
    )


def test_main_is_kept_when_it_is_the_entry_point_and_class_methods_count() -> None:
    found = extract_code(CPP_SPLIT, language="cpp", entry_point="main")
    assert found.code.startswith("#include <iostream>") and "int main()" in found.code and "helper" in found.code
    leetcode = fenced(
        ("cpp", "class Solution {\npublic:\n    int twoSum(int a) { return twice(a); }\n};"),
        ("cpp", "int main() { Solution s; return s.twoSum(1); }"),
        prose="",
    )
    assert extract_code(leetcode, language="cpp", entry_point="twoSum").code == (
        "class Solution {\npublic:\n    int twoSum(int a) { return twice(a); }\n};"
    )


JS_WITH_EXAMPLE = fenced(
    ("javascript", "const fs = require('fs');\n\nfunction square(x) {\n  return x * x;\n}\n\n"
     "function sumOfSquares(xs) {\n  return xs.map(square).reduce((a, b) => a + b, 0);\n}\n\n"
     "console.log(sumOfSquares([1, 2]));"),
    ("javascript", "// Example usage\nconst result = sumOfSquares([3, 4]);\nconsole.log(result); // 25"),
)  # fmt: skip


def test_js_usage_example_and_console_log_dropped() -> None:
    assert extract_code(JS_WITH_EXAMPLE, language="javascript").code.startswith("// Example usage")  # today
    found = extract_code(JS_WITH_EXAMPLE, language="javascript", entry_point="sumOfSquares")
    assert found.valid and found.code == (
        "const fs = require('fs');\n\nfunction square(x) {\n  return x * x;\n}\n\n"
        "function sumOfSquares(xs) {\n  return xs.map(square).reduce((a, b) => a + b, 0);\n}"
    )


def test_a_block_of_includes_without_a_final_newline_counts() -> None:
    includes, function = "#include <string>\n#include <cctype>", "bool up(char c) { return isupper(c); }"
    response = fenced(("cpp", includes), ("cpp", function))
    assert extract_code(response, language="cpp", entry_point="up").code == (
        f"{includes}\n\n{function}"
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_assembled_js_runs(tmp_path: Path) -> None:
    code = extract_code(JS_WITH_EXAMPLE, language="javascript", entry_point="sumOfSquares").code
    script = tmp_path / "t.js"
    script.write_text(code + "\nprocess.exit(sumOfSquares([3, 4]) === 25 ? 0 : 1);\n")
    run = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == ""  # the example's console.log is gone


def test_alternative_after_the_answer_and_stub_signature() -> None:
    response = (
        "```typescript\nfunction median(xs: number[]): number {\n  // your code here\n}\n```\n"
        "Solution:\n```typescript\nimport { sortBy } from './util';\n\n"
        "function median(xs: number[]): number {\n  const s = sortBy(xs);\n  return s[s.length >> 1];\n}\n```\n"
        "Alternatively, without the helper:\n```typescript\nconst median = (xs: number[]): number =>\n"
        "  [...xs].sort((a, b) => a - b)[xs.length >> 1];\nconsole.log(median([3, 1, 2]));\n```\n"
        "Test:\n```typescript\nimport { median } from './median';\nconsole.assert(median([1]) === 1);\n```\n"
    )
    found = extract_code(response, language="typescript", entry_point="median")
    # The last block defining it (an alternative, complete in itself) wins; the test block and its import go.
    assert found.code == "const median = (xs: number[]): number =>\n  [...xs].sort((a, b) => a - b)[xs.length >> 1];"
    stub_last = response.split("Alternatively")[0] + "```ts\nfunction median(xs: number[]): number {\n}\n```\n"
    assert extract_code(stub_last, language="typescript", entry_point="median").code == (
        "import { sortBy } from './util';\n\n"
        "function median(xs: number[]): number {\n  const s = sortBy(xs);\n  return s[s.length >> 1];\n}"
    )


@pytest.mark.parametrize(
    ("language", "code", "entry_point", "expected"),
    [
        (  # Java: the `main` method is cut from the kept class
            "java",
            "import java.util.*;\n\nclass Solution {\n    public int add(int a, int b) { return a + b; }\n\n"
            "    public static void main(String[] args) {\n        System.out.println(new Solution().add(1, 2));\n"
            "    }\n}",
            "add",
            "import java.util.*;\n\nclass Solution {\n    public int add(int a, int b) { return a + b; }\n\n}",
        ),
        (  # Java: a class around `main` that never names the entry point is no companion
            "java",
            "class Solution {\n    int twice(int a) { return 2 * a; }\n}\n\n"
            "public class Main {\n    public static void main(String[] args) {\n        System.out.println(0);\n"
            "    }\n}",
            "twice",
            "class Solution {\n    int twice(int a) { return 2 * a; }\n}",
        ),
        (  # Go: only the imports the kept code names (an unused import does not compile)
            "go",
            'package main\n\nimport (\n    "fmt"\n    "strings"\n)\n\n'
            "func Shout(s string) string {\n    return strings.ToUpper(s) + Bang\n}\n\n"
            'const Bang = "!"\n\nfunc main() {\n    fmt.Println(Shout("hi"))\n}',
            "Shout",
            'package main\nimport "strings"\n\nfunc Shout(s string) string {\n    return strings.ToUpper(s) + Bang\n}'
            '\n\nconst Bang = "!"',
        ),
    ],
)
def test_main_and_unused_imports_dropped(language: str, code: str, entry_point: str, expected: str) -> None:
    response = fenced((language, code))
    assert extract_code(response, language=language, entry_point=entry_point).code == expected
    assert extract_code(response, language=language).code == code  # without the entry point: as written


@pytest.mark.parametrize(
    ("blocks", "language", "entry_point", "expected"),
    [
        (  # Rust: impls and attributes follow their type
            [("rust", "use std::collections::HashMap;\n\n#[derive(Debug)]\nstruct Counter { m: HashMap<i32, i32> }\n\n"
              "impl Counter {\n    fn top(&self) -> i32 { *self.m.keys().max().unwrap_or(&0) }\n}"),
             ("rust", "fn most(c: &Counter) -> i32 {\n    c.top()\n}\n\nfn main() {\n    println!(\"{}\", 1);\n}")],
            "rust", "most",
            "use std::collections::HashMap;\n\n#[derive(Debug)]\nstruct Counter { m: HashMap<i32, i32> }\n\n"
            "impl Counter {\n    fn top(&self) -> i32 { *self.m.keys().max().unwrap_or(&0) }\n}\n\n"
            "fn most(c: &Counter) -> i32 {\n    c.top()\n}",
        ),
        (  # JS: exports of kept items stay (once), from any block; one naming a dropped statement goes
            [("js", "function f(x) {\n  return x + 1;\n}\nconsole.log(f(1));\nmodule.exports = { f };\n"
              "module.exports.demo = () => console.log(f(2));"),
             ("js", "module.exports = { f };\nexports.g = f;")],
            "javascript", "f",
            "function f(x) {\n  return x + 1;\n}\n\nmodule.exports = { f };\n\nexports.g = f;",
        ),
    ],
)  # fmt: skip
def test_multi_block_assembly(blocks: list[tuple[str, str]], language: str, entry_point: str, expected: str) -> None:
    assert extract_code(fenced(*blocks), language=language, entry_point=entry_point).code == expected


def test_without_a_defining_block_or_an_entry_point_the_choice_is_todays() -> None:
    for response, language in ((CPP_SPLIT, "cpp"), (JS_WITH_EXAMPLE, "javascript")):
        today = extract_code(response, language=language)
        assert extract_code(response, language=language, entry_point="nowhere") == today
        assert extract_code(response, language=language, entry_point=None) == today
    # An answer block alone, assembled back into itself, is returned as written (its comments too).
    single = fenced(("c", "/* sum */\nint sum(int a, int b) { return a + b; }"))
    assert extract_code(single, language="c", entry_point="sum").code == single.split("```c\n")[1][:-5]


def test_result_that_does_not_parse_falls_back() -> None:
    # Each block parses in one TypeScript grammar (`<number>x` only in typescript, JSX only in tsx); the
    # assembly needs both blocks and parses in neither, so today's choice (the last block) is returned.
    response = fenced(
        ("ts", "function f(x: any): number {\n  return <number>x + g();\n}"),
        ("tsx", "function g() {\n  return <div/>;\n}"),
    )
    both = b"function f(x: any) { return <number>x; }\nconst d = <div/>;"
    assert _ts_client.check(both, "typescript") == "syntax_error"
    found = extract_code(response, language="typescript", entry_point="f")
    assert found == extract_code(response, language="typescript") and found.code.startswith("function g()")
    for response, language, entry in ((CPP_SPLIT, "cpp", "solve"), (JS_WITH_EXAMPLE, "javascript", "sumOfSquares")):
        code = extract_code(response, language=language, entry_point=entry).code
        assert _ts_client.check(code.encode(), language) == "code"


@pytest.mark.parametrize(
    ("code", "language", "reason"),
    [
        # The GLR blow-up that kills the worker: the assembly fails, today's check crashes too.
        ("int solve() { return 1; }\n" + "a<a." * 40_000, "cpp", "parse_failed"),
        # Nested past the walk's depth cap, inside the definition: not assembled, the worker lives on.
        ("function solve() {\n  return " + "[" * 100_000 + "]" * 100_000 + ";\n}", "javascript", "ok"),
        ("int solve() { return 0; }\n" * 20_000, "c", "ok"),  # over the byte cap: not assembled
    ],
)
def test_hostile_input_with_an_entry_point_stays_bounded(code: str, language: str, reason: str) -> None:
    first = "function solve() {}" if language == "javascript" else "int solve() { return 1; }"
    response = fenced((language, first), (language, code))
    assert _ts_client.check(b"int x;", "c") == "code"
    worker = _ts_client._worker.proc
    found = extract_code(response, language=language, entry_point="solve")
    # Past the depth cap the assembly gives up without crashing the worker; the soup crashes it.
    assert (_ts_client._worker.proc is worker) == (reason == "ok")
    assert found == extract_code(response, language=language)  # the verdict of today's choice
    assert found.reason == reason
    assert extract_code(fenced(("cpp", "int solve() { return 1; }")), language="cpp", entry_point="solve").valid


def test_reranker_passes_the_prompts_entry_point_for_other_languages() -> None:
    prompt = "Write a C++ function `solve(v)` that returns the sum of helper(x) over v."
    scorer = RecordingScorer()
    best = Reranker(reward_model=scorer, language="cpp").select(prompt, [CPP_SPLIT]).best
    assert (best.code, best.valid) == (CPP_ASSEMBLED, True) and scorer.pairs == [(prompt, CPP_ASSEMBLED)]
    assert extract_all([CPP_SPLIT], "cpp", "lenient", "Sum things.") == [extract_code(CPP_SPLIT, language="cpp")]
    assert extract_all([CPP_SPLIT], "cpp", "strict", prompt) == [extract_code(CPP_SPLIT, language="cpp", mode="strict")]


def test_deep_example_statement_is_dropped_without_being_walked() -> None:
    response = fenced(("js", "function solve() { return 1; }\nx = " + "[" * 100_000 + "]" * 100_000 + ";"))
    assert extract_code(response, language="javascript", entry_point="solve").code == "function solve() { return 1; }"


@pytest.mark.parametrize(
    ("prompt", "language", "expected"),
    [
        ("class Solution {\npublic:\n    vector<int> twoSum(vector<int>& nums, int target) {\n        \n    }\n};",
         "cpp", "twoSum"),
        ("/**\n * struct ListNode {\n *     ListNode(int x) : val(x), next(NULL) {}\n * };\n */\nclass Solution {\n"
         "public:\n    ListNode* reverseList(ListNode* head) {\n    }\n};", "cpp", "reverseList"),
        ("class Solution {\n    public int[] twoSum(int[] nums, int target) {\n    }\n}", "java", "twoSum"),
        ("/**\n * @param {number[]} nums\n */\nvar twoSum = function(nums, target) {\n};", "javascript", "twoSum"),
        ("function twoSum(nums: number[], target: number): number[] {\n\n};", "typescript", "twoSum"),
        ("func twoSum(nums []int, target int) []int {\n    \n}", "go", "twoSum"),
        ("impl Solution {\n    pub fn two_sum(nums: Vec<i32>, target: i32) -> Vec<i32> {\n    }\n}", "rust", "two_sum"),
        ("Write a C++ function `solve(v)` that sums v.", "cpp", "solve"),  # prose, as for Python
        ("Read n and print n*2.\nint main() {\n}", "cpp", None),  # main is never the function to write
        ("Explain this: if (x) {", "cpp", None),
        ("int twoSum(int a) {\n}", "python", None),  # Python prompts: unchanged (a `def` or the prose)
    ],
)  # fmt: skip
def test_entry_point_from_starter_code_of_other_languages(prompt: str, language: str, expected: str | None) -> None:
    assert detect_entry_point(prompt, language) == expected


def test_reranker_uses_the_starter_codes_entry_point() -> None:
    prompt = "Complete:\n```cpp\nint solve(vector<int> v) {\n}\n```"
    best = Reranker(reward_model=RecordingScorer(), language="cpp").select(prompt, [CPP_SPLIT]).best
    assert best.code == CPP_ASSEMBLED
