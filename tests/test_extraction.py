"""Tests for codescaler_rerank.extraction: fence selection, validity, reasons and normalisation."""

from __future__ import annotations

import random
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codescaler_rerank.extraction import (
    SUPPORTED_LANGUAGES,
    VALID_REASONS,
    Extraction,
    canonical_language,
    extract_code,
    normalize_code,
)

# --- programs -------------------------------------------------------------------------------------


def src(text: str) -> str:
    """A program written as an indented triple-quoted string."""
    return textwrap.dedent(text).strip("\n")


PY = src("""
    def two_sum(nums, target):
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i
        return []
""")
PY_V2 = src("""
    def two_sum(nums, target):
        index = {x: i for i, x in enumerate(nums)}
        return next([i, index[target - x]] for i, x in enumerate(nums) if index.get(target - x, i) != i)
""")
PY2 = src("""
    n = int(raw_input())
    print "answer:", n * 2
""")
C = src(r"""
    #include <stdio.h>

    int main(void) {
        int a, b;
        scanf("%d %d", &a, &b);
        printf("%d\n", a + b);
        return 0;
    }
""")
C_BAD = src(r"""
    #include <stdio.h>

    int main(void) {
        printf("%d\n", 42)
        return 0;
    }
""")
CPP = src("""
    #include <bits/stdc++.h>
    using namespace std;

    int main() {
        int n;
        cin >> n;
        vector<long long> a(n);
        for (auto &x : a) cin >> x;
        cout << accumulate(a.begin(), a.end(), 0LL) << endl;
    }
""")
CPP_BAD = src("""
    #include <vector>
    int main() {
        std::vector<int> v = {1, 2, 3;
        return v.size();
    }
""")
JAVA = src("""
    import java.util.*;

    public class Main {
        public static void main(String[] args) {
            Scanner sc = new Scanner(System.in);
            int n = sc.nextInt();
            System.out.println(n * (n + 1) / 2);
        }
    }
""")
JAVA_BAD = src("""
    public class Main {
        public static void main(String[] args) {
            System.out.println("hi");
        }
""")
JS = src("""
    const readline = require('readline');
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      const [a, b] = line.split(' ').map(Number);
      console.log(a + b);
    });
""")
JS_BAD = src("""
    function add(a, b) {
      return a + ;
    }
""")
TS = src("""
    function maxProfit(prices: number[]): number {
      let best = 0;
      let low = Infinity;
      for (const p of prices) {
        low = Math.min(low, p);
        best = Math.max(best, p - low);
      }
      return best;
    }
""")
TSX = src("""
    type Props = { name: string };
    export const Hello = ({ name }: Props) => <h1>Hello, {name}!</h1>;
""")
TS_BAD = src("""
    function f(x: number): {
      return x
    }
""")
GO = src("""
    package main

    import "fmt"

    func main() {
    \tvar n int
    \tfmt.Scan(&n)
    \tfmt.Println(n * 2)
    }
""")
GO_BAD = src("""
    package main

    func main() {
    \tfmt.Println("unterminated)
    }
""")
RUST = src("""
    use std::io::*;

    fn main() {
        let mut s = String::new();
        stdin().read_line(&mut s).unwrap();
        let n: i64 = s.trim().parse().unwrap();
        println!("{}", n * 2);
    }
""")
RUST_BAD = src("""
    fn main() {
        let v = vec![1, 2, 3]
        println!("{:?}", v);
""")

INTRO = "Sure! Let's think about the problem. We need an O(n) pass, so we keep a hash map of seen values.\n\n"
OUTRO = "\n\nThis runs in O(n) time and O(n) extra space."


def answer(code: str, tag: str) -> str:
    """A typical single-block answer: prose, one fenced block, closing remark."""
    return f"{INTRO}```{tag}\n{code}\n```{OUTRO}"


def full_answer(code: str, tag: str) -> str:
    """A chatty answer: solution, a bash usage example, sample output in a text block."""
    return (
        f"{INTRO}Here is the full solution:\n\n```{tag}\n{code}\n```\n\n"
        "Compile and run it like this:\n\n```bash\n$ make solution && ./solution < input.txt\n```\n\n"
        "For the sample input it prints:\n\n```text\n6\n```\n\nLet me know if you need more help!"
    )


SHOW_MARKDOWN = src("""
    def show(code):
        print("```python")
        print(code)
        print("```")
""")
FOUR_BACKTICKS = f"Here is a helper that prints markdown:\n\n````python\n{SHOW_MARKDOWN}\n````\n"
SOLVE = src("""
    def solve(a, b):
        if a > b:
            return a - b
        return b - a
""")
LIST_ITEMS = src("""
    Steps:

    1. Save this as `solution.py`:

       ```python
       def solve(a, b):
           if a > b:
               return a - b
           return b - a
       ```

    2. Run it:

       ```bash
       python solution.py
       ```
""")
NESTED_LIST = src("""
    - Approach: nothing to compute.
      - Code:
        ```cpp
        int main() {
            return 0;
        }
        ```
""")
BLOCKQUOTE = src("""
    > Quoted from the editorial:
    > ```python
    > for i in range(3):
    >     print(i)
    > ```
""")
INDENTED_FENCE = "Code:\n  ```python\n  x = int(input())\n  if x:\n      print(x)\n  ```\n"
OTHER_TAGS_ONLY = src("""
    Install and check:
    ```bash
    ls -la
    ```
    ```json
    {"a": 1}
    ```
    ```yaml
    a: 1
    ```
    ```console
    $ echo hi
    ```
    ```output
    3
    ```
    ```markdown
    # Title
    ```
""")


# --- table ----------------------------------------------------------------------------------------


def case(id_: str, text: str, *, language: str | None = "python", mode: str = "lenient", **expected: Any) -> Any:
    """One table row: the response, the call arguments, and the Extraction fields expected."""
    return pytest.param(text, language, mode, expected, id=id_)


LANGUAGE_CASES = [
    # Python
    case("py-lenient-ok", full_answer(PY, "python"), code=PY, valid=True, reason="ok", language="python"),
    case("py-lenient-py2-syntax", full_answer(PY2, "python"), code=PY2, valid=False, reason="syntax_error"),
    case("py-strict-ok", answer(PY, "python"), mode="strict", code=PY, valid=True, reason="ok"),
    case("py-strict-py2-syntax", answer(PY2, "py"), mode="strict", code="", valid=False, reason="syntax_error"),
    # C
    case("c-lenient-ok", full_answer(C, "c"), language="c", code=C, valid=True, reason="ok", language_out="c"),
    case(
        "c-lenient-missing-semicolon",
        full_answer(C_BAD, "c"),
        language="c",
        code=C_BAD,
        valid=False,
        reason="syntax_error",
    ),
    case("c-strict-ok", answer(C, "C"), language="c", mode="strict", code=C, valid=True, reason="ok"),
    case(
        "c-strict-missing-semicolon",
        answer(C_BAD, "c"),
        language="c",
        mode="strict",
        code="",
        valid=False,
        reason="syntax_error",
    ),
    # C++
    case("cpp-lenient-ok", full_answer(CPP, "cpp"), language="cpp", code=CPP, valid=True, reason="ok"),
    case("cpp-lenient-alias-c++", full_answer(CPP, "c++"), language="c++", code=CPP, valid=True, language_out="cpp"),
    case(
        "cpp-lenient-bad-brace",
        full_answer(CPP_BAD, "cpp"),
        language="cpp",
        code=CPP_BAD,
        valid=False,
        reason="syntax_error",
    ),
    case("cpp-strict-ok-cxx", answer(CPP, "cxx"), language="cpp", mode="strict", code=CPP, valid=True, reason="ok"),
    case("cpp-strict-bad", answer(CPP_BAD, "cpp"), language="cpp", mode="strict", valid=False, reason="syntax_error"),
    # Java
    case("java-lenient-ok", full_answer(JAVA, "java"), language="java", code=JAVA, valid=True, reason="ok"),
    case(
        "java-lenient-missing-brace",
        full_answer(JAVA_BAD, "java"),
        language="java",
        code=JAVA_BAD,
        valid=False,
        reason="syntax_error",
    ),
    case("java-strict-ok", answer(JAVA, "Java"), language="java", mode="strict", code=JAVA, valid=True),
    case("java-strict-bad", answer(JAVA_BAD, "java"), language="java", mode="strict", code="", reason="syntax_error"),
    # JavaScript
    case("js-lenient-ok", full_answer(JS, "js"), language="javascript", code=JS, valid=True, reason="ok"),
    case(
        "js-lenient-node-alias", full_answer(JS, "node"), language="js", code=JS, valid=True, language_out="javascript"
    ),
    case(
        "js-lenient-bad", full_answer(JS_BAD, "javascript"), language="javascript", code=JS_BAD, reason="syntax_error"
    ),
    case("js-strict-ok", answer(JS, "javascript"), language="javascript", mode="strict", code=JS, valid=True),
    case("js-strict-bad", answer(JS_BAD, "js"), language="javascript", mode="strict", code="", reason="syntax_error"),
    # TypeScript (tsx blocks parse with the tsx grammar)
    case("ts-lenient-ok", full_answer(TS, "ts"), language="typescript", code=TS, valid=True, reason="ok"),
    case("ts-lenient-tsx", full_answer(TSX, "tsx"), language="typescript", code=TSX, valid=True, reason="ok"),
    case(
        "ts-lenient-bad",
        full_answer(TS_BAD, "typescript"),
        language="ts",
        code=TS_BAD,
        reason="syntax_error",
        language_out="typescript",
    ),
    case("ts-strict-ok", answer(TS, "typescript"), language="typescript", mode="strict", code=TS, valid=True),
    case("ts-strict-bad", answer(TS_BAD, "ts"), language="typescript", mode="strict", code="", reason="syntax_error"),
    # Go
    case("go-lenient-ok", full_answer(GO, "go"), language="go", code=GO, valid=True, reason="ok"),
    case(
        "go-lenient-golang-alias", full_answer(GO, "golang"), language="golang", code=GO, valid=True, language_out="go"
    ),
    case("go-lenient-bad", full_answer(GO_BAD, "go"), language="go", code=GO_BAD, reason="syntax_error"),
    case("go-strict-ok", answer(GO, "go"), language="go", mode="strict", code=GO, valid=True),
    case("go-strict-bad", answer(GO_BAD, "go"), language="go", mode="strict", code="", reason="syntax_error"),
    # Rust
    case("rust-lenient-ok", full_answer(RUST, "rust"), language="rust", code=RUST, valid=True, reason="ok"),
    case("rust-lenient-rs-alias", full_answer(RUST, "rs"), language="rs", code=RUST, valid=True, language_out="rust"),
    case("rust-lenient-bad", full_answer(RUST_BAD, "rust"), language="rust", code=RUST_BAD, reason="syntax_error"),
    case("rust-strict-ok", answer(RUST, "rust"), language="rust", mode="strict", code=RUST, valid=True),
    case("rust-strict-bad", answer(RUST_BAD, "rs"), language="rust", mode="strict", code="", reason="syntax_error"),
]

STRICT_CASES = [
    case(
        "strict-multiple-blocks",
        full_answer(PY, "python"),
        mode="strict",
        code="",
        valid=False,
        reason="multiple_code_blocks",
    ),
    case(
        "strict-two-python-blocks",
        f"First attempt:\n```python\n{PY}\n```\nBetter:\n```python\n{PY_V2}\n```",
        mode="strict",
        reason="multiple_code_blocks",
    ),
    case(
        "strict-unclosed",
        f"{INTRO}```python\n{PY}\n",
        mode="strict",
        code="",
        valid=False,
        reason="unclosed_code_block",
    ),
    case(
        "strict-wrong-language", answer(JS, "javascript"), mode="strict", code="", valid=False, reason="wrong_language"
    ),
    case(
        "strict-wrong-language-c-vs-cpp",
        answer(CPP, "cpp"),
        language="c",
        mode="strict",
        reason="wrong_language",
        language_out="c",
    ),
    case("strict-bash-only", "Run:\n```bash\npip install numpy\n```", mode="strict", reason="wrong_language"),
    case("strict-untagged-ok", f"Solution:\n```\n{PY}\n```", mode="strict", code=PY, valid=True, reason="ok"),
    case(
        "strict-no-block",
        "The answer is to use a hash map; iterate once and look up the complement.",
        mode="strict",
        reason="no_code_block",
    ),
    case("strict-unfenced-code-is-not-enough", PY, mode="strict", code="", reason="no_code_block"),
    case("strict-empty-block", "Here:\n```python\n```\n", mode="strict", reason="syntax_error"),
    case("strict-empty-response", "", mode="strict", code="", valid=False, reason="empty_response"),
    case("strict-tilde-fence", f"~~~python\n{PY}\n~~~", mode="strict", code=PY, valid=True),
    case("strict-closing-fence-at-eof", f"```python\n{PY}\n```", mode="strict", code=PY, valid=True),
]

DETECTION_CASES = [
    case("detect-rust", answer(RUST, "rust"), language=None, code=RUST, valid=True, reason="ok", language_out="rust"),
    case("detect-cpp-alias-hpp", answer(CPP, "hpp"), language=None, valid=True, language_out="cpp"),
    case(
        "detect-untagged-python",
        f"Try this:\n```\n{PY}\n```",
        language=None,
        code=PY,
        valid=True,
        language_out="python",
    ),
    case(
        "detect-untagged-not-python",
        f"Try this:\n```\n{C}\n```",
        language=None,
        code=C,
        valid=False,
        reason="unknown_language",
        language_out=None,
    ),
    case(
        "detect-last-block-wins",
        f"{answer(GO, 'go')}\nOr in Rust:\n```rust\n{RUST}\n```",
        language=None,
        code=RUST,
        language_out="rust",
    ),
    case(
        "detect-skips-unknown-and-shell",
        f"```haskell\nmain = print 1\n```\n```bash\nghc main.hs\n```\n```java\n{JAVA}\n```",
        language=None,
        code=JAVA,
        language_out="java",
    ),
    case(
        "detect-only-unknown",
        "```haskell\nmain = print 1\n```\n```bash\nrunghc main.hs\n```",
        language=None,
        code="",
        reason="no_code_block",
        language_out=None,
    ),
    case("detect-tagged-syntax-error", answer(GO_BAD, "go"), language=None, reason="syntax_error", language_out="go"),
    case("detect-unfenced-python", PY, language=None, code=PY, valid=True, language_out="python"),
    case(
        "detect-strict-rust",
        answer(RUST, "rs"),
        language=None,
        mode="strict",
        code=RUST,
        valid=True,
        language_out="rust",
    ),
    case(
        "detect-strict-untagged-python",
        f"```\n{PY}\n```",
        language=None,
        mode="strict",
        valid=True,
        language_out="python",
    ),
    case(
        "detect-strict-untagged-c",
        f"```\n{C}\n```",
        language=None,
        mode="strict",
        code="",
        reason="unknown_language",
        language_out=None,
    ),
    case(
        "detect-strict-haskell",
        "```haskell\nmain = print 1\n```",
        language=None,
        mode="strict",
        reason="unknown_language",
        language_out=None,
    ),
]

FENCE_CASES = [
    case("crlf", full_answer(PY, "python").replace("\n", "\r\n"), code=PY, valid=True),
    case("bare-cr", full_answer(PY, "python").replace("\n", "\r"), code=PY, valid=True),
    case("crlf-strict", answer(C, "c").replace("\n", "\r\n"), language="c", mode="strict", code=C, valid=True),
    case("tilde-fence", f"{INTRO}~~~python\n{PY}\n~~~\n\nOutput:\n~~~\n[0, 1]\n~~~", code=PY, valid=True),
    case("four-backticks-wrap-inner-fence", FOUR_BACKTICKS, code=SHOW_MARKDOWN, valid=True),
    case("five-backticks", f"`````py\n{PY}\n`````", code=PY, valid=True),
    case("long-closing-fence", f"```python\n{PY}\n``````\nDone.", code=PY, valid=True),
    case("list-item-fence-dedented", LIST_ITEMS, code=SOLVE, valid=True),
    case("nested-list-fence", NESTED_LIST, language="cpp", code="int main() {\n    return 0;\n}", valid=True),
    case("blockquote-fence", BLOCKQUOTE, code="for i in range(3):\n    print(i)", valid=True),
    case("indented-top-level-fence", INDENTED_FENCE, code="x = int(input())\nif x:\n    print(x)", valid=True),
    case("unclosed-final-fence-parses", f"{INTRO}```python\n{PY}\n", code=PY, valid=True, reason="ok"),
    case(
        "unclosed-final-fence-truncated",
        f"{INTRO}```python\ndef f(n):\n    return [i for i in",
        code="def f(n):\n    return [i for i in",
        valid=False,
        reason="syntax_error",
    ),
    case(
        "truncated-last-falls-back-to-earlier",
        f"Draft:\n```python\n{PY}\n```\nA cleaner version (cut off):\n```python\n{PY_V2[:60]}",
        code=PY,
        valid=True,
    ),
    case(
        "last-that-parses-wins",
        f"First idea:\n```python\n{PY}\n```\nSimpler:\n```python\n{PY_V2}\n```\nBoth work.",
        code=PY_V2,
        valid=True,
    ),
    case(
        "later-broken-block-loses",
        f"Solution:\n```python\n{PY}\n```\nOr, in one line:\n```python\n{PY2}\n```",
        code=PY,
        valid=True,
    ),
    case(
        "all-blocks-broken-returns-last",
        f"```python\n{PY2}\n```\n```python\ndef f(:\n    pass\n```",
        code="def f(:\n    pass",
        valid=False,
        reason="syntax_error",
    ),
    case("untagged-block-used", f"Here you go:\n```\n{PY}\n```", code=PY, valid=True),
    case(
        "untagged-output-is-not-code",
        f"```python\n{PY}\n```\nSample output:\n```\n[0, 1]\n```\n```\n42\n```",
        code=PY,
        valid=True,
    ),
    case("info-string-with-attributes", f"```python title=solution.py linenums=1\n{PY}\n```", code=PY, valid=True),
    case("info-string-braces", f"```{{.python}}\n{PY}\n```", code=PY, valid=True),
    case("info-string-uppercase", f"```PY\n{PY}\n```", code=PY, valid=True),
    case("info-string-python3", f"```python3\n{PY}\n```", code=PY, valid=True),
    case("info-string-filename", f"```main.py\n{PY}\n```", code=PY, valid=True),
    case("other-tags-ignored", OTHER_TAGS_ONLY, code="", valid=False, reason="no_code_block"),
    case(
        "other-language-ignored-for-target",
        f"```javascript\n{JS}\n```\n```haskell\nmain = print 1\n```",
        code="",
        reason="no_code_block",
    ),
    case(
        "python-amid-shell-and-output",
        f"```sh\npip install numpy\n```\n```py\n{PY}\n```\n```shell\npython a.py\n```\n```text\ndone\n```",
        code=PY,
        valid=True,
    ),
    case("blank-block-ignored", f"```python\n\n```\n```python\n{PY}\n```", code=PY, valid=True),
    case("only-blank-block", "```python\n   \n```", code="", valid=False, reason="no_code_block"),
    case(
        "inline-backticks-are-not-fences",
        "Use ```sorted(xs)``` here, it returns a new list.",
        code="",
        reason="no_code_block",
    ),
]

THINK_CASES = [
    case(
        "think-block-dropped",
        f"<think>\nMaybe:\n```python\nprint('draft')\n```\nNo, use a dict.\n</think>\n{answer(PY, 'python')}",
        code=PY,
        valid=True,
    ),
    case(
        "think-block-dropped-strict",
        f"<think>Let me try\n```python\nx = 1\n```\n</think>\n\n{answer(PY, 'python')}",
        mode="strict",
        code=PY,
        valid=True,
    ),
    # issue 16 item 3: reasoning cut off before the answer (an unclosed <think>) is not an empty response in
    # lenient mode: its code is what there is, flagged. strict (the RL rule) still finds no answer.
    case(
        "think-unclosed-code-in-reasoning",
        f"<think>\nOkay, the user wants two-sum. Draft:\n```python\nx =\n```\nBetter:\n```python\n{PY}\n```\nhmm",
        code=PY,
        valid=True,
        reason="code_in_reasoning",
    ),
    case(  # without an entry point, unfenced code counts only if the whole text parses (as in an answer)
        "think-unclosed-unfenced-in-prose",
        f"<think>\nLet me write it.\n\n{PY}\n\nNow check the edge cases",
        code="",
        valid=False,
        reason="empty_response",
    ),
    case(
        "think-unclosed-strict-is-all-reasoning",
        f"<think>\nOkay, the user wants two-sum. Let me write\n```python\n{PY}\n```\nhmm",
        mode="strict",
        code="",
        valid=False,
        reason="empty_response",
    ),
    case(
        "think-unclosed-without-code-is-empty",
        "<think>\nOkay, the user wants two-sum. Let me think about hash maps\n```python\nx =\n```",
        code="",
        valid=False,
        reason="empty_response",
    ),
    case(
        "think-stray-close-qwen3",
        f"Okay, I should use a dict.\n```python\nprint('scratch')\n```\n</think>\n\n{answer(PY, 'python')}",
        mode="strict",
        code=PY,
        valid=True,
    ),
    case("think-only", "<think>I am not sure.</think>", code="", valid=False, reason="empty_response"),
    case(
        "think-several-leading",
        f"<think>a</think>\n<think>b ```python\nx=\n```</think>\n```python\n{PY}\n```",
        mode="strict",
        code=PY,
        valid=True,
    ),
]

SPLIT_THINK = src("""
    def final_answer(text):
        return text.split("</think>")[-1].strip()
""")
THINK_CASES += [
    # issue 11 item 3: a </think> inside code is code; reasoning is only stripped when it cannot be code
    case("think-close-in-code-lenient", f"Use this:\n```python\n{SPLIT_THINK}\n```", code=SPLIT_THINK, valid=True),
    case(
        "think-close-in-code-strict", f"Use this:\n```python\n{SPLIT_THINK}\n```", mode="strict", code=SPLIT_THINK
    ),
    case("think-close-in-code-paper", f"```python\n{SPLIT_THINK}\n```", mode="paper", code=SPLIT_THINK, valid=True),
    case(
        "think-stray-close-before-fence",
        f"I will use a dict. </think> {answer(PY, 'python')}",
        mode="strict",
        code=PY,
        valid=True,
    ),
    case(
        "think-leading-then-close-in-code",
        f"<think>plan</think>\n```python\n{SPLIT_THINK}\n```",
        mode="strict",
        code=SPLIT_THINK,
        valid=True,
    ),
    case(
        "think-in-the-middle-after-a-fence-is-kept",
        f"```python\n{PY}\n```\nLater <think>maybe</think> more.",
        mode="strict",
        code=PY,
        valid=True,
    ),
]

UNFENCED_CASES = [
    case(
        "prose-only",
        "You can solve this with two pointers after sorting; the overall complexity is O(n log n).",
        code="",
        valid=False,
        reason="no_code_block",
    ),
    case("prose-one-word", "hello", code="", reason="no_code_block"),
    case("prose-number", "42", code="", reason="no_code_block"),
    case("prose-string", '"a string"', code="", reason="no_code_block"),
    case("program-output-list", "[0, 1]", code="", reason="no_code_block"),
    case("program-output-js", "-5", language="javascript", code="", reason="no_code_block"),
    case("raw-python", f"\n\n{PY}\n\n", code=PY, valid=True, reason="ok"),
    case("raw-python-call", "print(sum(map(int, input().split())))", valid=True, reason="ok"),
    case("raw-python-indented", "    x = 1\n    print(x)\n", code="x = 1\nprint(x)", valid=True),
    case("raw-python-broken", "def f(:\n    return 1", code="", valid=False, reason="no_code_block"),
    case(  # issue 16: a leading space the tokenizer gave the first line (can-ai-code answers)
        "raw-python-first-line-indented",
        "\n def f(x):\n    return x\n\nprint(f(1))",
        code="def f(x):\n    return x\n\nprint(f(1))",
        valid=True,
    ),
    case(
        "raw-python-first-line-indented-strict",
        " def f(x):\n    return x\nprint(f(1))",
        mode="strict",
        code="",
        reason="no_code_block",
    ),
    case("raw-js", JS, language="javascript", code=JS, valid=True),
    case("raw-js-word", "Sure", language="javascript", code="", reason="no_code_block"),
    case("raw-cpp", CPP, language="cpp", code=CPP, valid=True),
    case("raw-cpp-prose", "Here is the answer.", language="cpp", reason="no_code_block"),
    case("empty", "", code="", valid=False, reason="empty_response"),
    case("whitespace", "  \n\t \r\n", code="", valid=False, reason="empty_response", language_out="python"),
]


@pytest.mark.parametrize(
    ("text", "language", "mode", "expected"),
    LANGUAGE_CASES + STRICT_CASES + DETECTION_CASES + FENCE_CASES + THINK_CASES + UNFENCED_CASES,
)
def test_extract_code(text: str, language: str | None, mode: str, expected: dict[str, Any]) -> None:
    result = extract_code(text, language=language, mode=mode)
    got = result.model_dump()
    got["language_out"] = got.pop("language")
    expected.setdefault("language_out", canonical_language(language))
    assert {key: got[key] for key in expected} == expected
    assert result.valid == (result.reason in VALID_REASONS)


# --- API contract ---------------------------------------------------------------------------------


def test_supported_languages() -> None:
    assert set(SUPPORTED_LANGUAGES) >= {"python", "c", "cpp", "java", "javascript", "typescript", "go", "rust"}
    assert all(canonical_language(lang) == lang for lang in SUPPORTED_LANGUAGES)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("py", "python"),
        ("python3", "python"),
        ("Python", "python"),
        ("PY", "python"),
        ("c++", "cpp"),
        ("cpp", "cpp"),
        ("cxx", "cpp"),
        ("h", "cpp"),
        ("hpp", "cpp"),
        ("js", "javascript"),
        ("javascript", "javascript"),
        ("node", "javascript"),
        ("jsx", "javascript"),
        ("mjs", "javascript"),
        ("ts", "typescript"),
        ("typescript", "typescript"),
        ("tsx", "typescript"),
        ("rs", "rust"),
        ("rust", "rust"),
        ("golang", "go"),
        ("go", "go"),
        ("java", "java"),
        ("c", "c"),
        (" Rust ", "rust"),
        ("haskell", None),
        ("bash", None),
        ("", None),
        (None, None),
    ],
)
def test_canonical_language(alias: str | None, canonical: str | None) -> None:
    assert canonical_language(alias) == canonical


def test_unknown_language_raises_listing_supported() -> None:
    with pytest.raises(ValueError, match=r"python.*rust"):
        extract_code("print(1)", language="haskell")


def test_unknown_mode_raises() -> None:
    with pytest.raises(ValueError, match="mode"):
        extract_code("print(1)", mode="fast")


def test_returns_extraction_model() -> None:
    result = extract_code(answer(PY, "python"))
    assert isinstance(result, Extraction)
    assert result == Extraction(code=PY, language="python", valid=True, reason="ok")


# --- hostile input --------------------------------------------------------------------------------

_rng = random.Random(1234)
RANDOM_BYTES = bytes(_rng.getrandbits(8) for _ in range(20_000)).decode("utf-8", "surrogateescape")

HOSTILE = [
    pytest.param("\x00", id="nul"),
    pytest.param("```python\nx = 1\x00\n```", id="nul-in-block"),
    pytest.param("\x00" * 1000 + "```", id="nuls-and-fence"),
    pytest.param(RANDOM_BYTES, id="random-bytes-surrogateescape"),
    pytest.param("```python\nx = '\udc80'\n```\n```\n\ud800\n```", id="lone-surrogates"),
    pytest.param("(" * 100_000, id="100k-open-parens"),
    pytest.param("```python\n" + "(" * 100_000 + ")" * 100_000 + "\n```", id="100k-nested-parens-fenced"),
    pytest.param("```python\nx = " + "-" * 20_000 + "1\n```", id="ast-deep-unary"),
    pytest.param("```python\nx = a" + ".b" * 20_000 + "\n```", id="ast-recursionerror"),
    pytest.param("```cpp\n" + "{[(" * 30_000 + "\n```", id="cpp-100k-open-brackets"),
    pytest.param("```java\n" + "a<" * 1_000 + "\n```", id="java-unclosed-generics"),
    pytest.param(">" * 5_000 + " ```python\nx = 1\n```", id="deep-blockquote-nesting"),
    pytest.param("- " * 5_000 + "```python\nx = 1\n```", id="deep-list-nesting"),
    pytest.param("".join("  " * i + "- x\n" for i in range(400)) + "```py\nx=1\n```", id="deep-indented-lists"),
    pytest.param("<think>" * 10_000 + "</think>" * 3, id="many-think-tags"),
    pytest.param("```" * 10_000, id="many-backticks"),
    pytest.param("~~~\n" * 10_000, id="many-tilde-fences"),
    pytest.param("\n" * 200_000 + "```py\nprint(1)\n```", id="many-blank-lines"),
    pytest.param("```python\n" + "if x:\n" * 200 + "  pass\n```", id="too-deep-indentation"),
]


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_hostile_input_never_raises(text: str, mode: str) -> None:
    for language in (None, "python", "java", "cpp", "typescript"):
        result = extract_code(text, language=language, mode=mode)
        assert result.valid == (result.reason in VALID_REASONS)
        normalize_code(result.code, result.language)


def test_one_megabyte_answer() -> None:
    """1 MB of prose around one answer is fine; 1 MB of repeated answers has more than MAX_BLOCKS fences."""
    prose = "The quick brown fox jumps over the lazy dog while we compute prefix sums. " * 13_000
    assert extract_code(prose + answer(PY, "python")) == Extraction(code=PY, language="python", valid=True, reason="ok")
    assert extract_code(answer(PY, "python") + prose, mode="strict").code == PY
    chunk = full_answer(PY, "python") + "\n\n"
    text = chunk * (1_000_000 // len(chunk))
    assert extract_code(text) == Extraction(code="", language="python", valid=False, reason="too_long")
    assert extract_code(text, mode="strict").reason == "multiple_code_blocks"


def test_five_megabyte_answer_is_too_long() -> None:
    prose = "The quick brown fox jumps over the lazy dog while we compute prefix sums. " * 70_000
    for mode in ("paper", "strict", "lenient"):
        assert extract_code(prose + answer(PY, "python"), mode=mode).reason == "too_long"


# --- normalize_code -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "language"),
    [
        pytest.param("x=1  # hi\n\n\ny = 1", "x = 1\ny = 1\n", "python", id="py-spaces-comments-blank-lines"),
        pytest.param("if a:\n  b()\n", "if a:\n    b()  # call\n", "python", id="py-indent-width"),
        pytest.param("def f(a,b):\n    return a+b", "def f(a, b):\n\n    return a + b\n", "py", id="py-alias"),
        pytest.param("x = (1,\n     2)", "x = (1, 2)", "python", id="py-continuation-lines"),
        pytest.param("x=1\r\ny=2\r\n", "x = 1\ny = 2", "python", id="py-crlf"),
        pytest.param(
            "int main(){return 0;} // done",
            "int main() {\n  /* entry */\n  return 0;\n}\n",
            "cpp",
            id="cpp-layout-comments",
        ),
        pytest.param('int main(){puts("a  b");}', 'int main() {\n    puts("a  b");\n}', "c", id="c-string-kept"),
        pytest.param("class A{int f(){return 1;}}", "class A {\n  // c\n  int f() { return 1; }\n}", "java", id="java"),
        pytest.param("const x=[1,2]; // c", "const x = [1, 2];", "javascript", id="js"),
        pytest.param("let x:number=1", "let x: number = 1 /* c */", "typescript", id="ts"),
        pytest.param("package main\nfunc main(){}\n", "package main\n\n// entry\nfunc main() {\n}", "go", id="go"),
        pytest.param(
            "fn main(){let v=vec![1,2];}", "fn main() {\n    // make v\n    let v = vec![1, 2];\n}", "rust", id="rust"
        ),
        pytest.param("a   b\n\nc", "a b c", None, id="no-language-collapses-whitespace"),
        pytest.param("x  =  '''oops", "x = '''oops", "python", id="py-untokenisable-falls-back"),
        pytest.param("int main( {", "int  main(\n{", "cpp", id="cpp-unparsable-falls-back"),
    ],
)
def test_normalize_code_equal(a: str, b: str, language: str | None) -> None:
    assert normalize_code(a, language) == normalize_code(b, language)


@pytest.mark.parametrize(
    ("a", "b", "language"),
    [
        pytest.param("if a:\n  b\nc", "if a:\n  b\n  c", "python", id="py-block-structure"),
        pytest.param('x = "a  b"', 'x = "a b"', "python", id="py-string-contents"),
        pytest.param("x = 1", "x = 2", "python", id="py-different-value"),
        pytest.param('char *s = "a  b";', 'char *s = "a b";', "c", id="c-string-contents"),
        pytest.param('let s = r"a  b";', 'let s = r"a b";', "rust", id="rust-raw-string"),
        pytest.param("function f(x) {\n  return\n  x\n}", "function f(x) {\n  return x\n}", "javascript", id="js-asi"),
        pytest.param("func f() int {\n\treturn\n}", "func f() int {\n\treturn 0\n}", "go", id="go-different"),
        pytest.param("let t = `a  ${x}`;", "let t = `a ${x}`;", "typescript", id="ts-template-string"),
    ],
)
def test_normalize_code_different(a: str, b: str, language: str) -> None:
    assert normalize_code(a, language) != normalize_code(b, language)


@pytest.mark.parametrize(
    "code",
    ["", "\x00", "x = '\udc80'", "(" * 100_000, RANDOM_BYTES[:2000], "\t\n  \r", "```", "a<" * 5_000],
)
@pytest.mark.parametrize("language", [None, "haskell", *SUPPORTED_LANGUAGES])
def test_normalize_code_never_raises(code: str, language: str | None) -> None:
    assert isinstance(normalize_code(code, language), str)


def test_normalize_is_stable_on_extracted_code() -> None:
    for text, language in [(answer(PY, "python"), "python"), (answer(RUST, "rust"), "rust")]:
        code = extract_code(text, language=language).code
        assert normalize_code(code, language) == normalize_code(code.replace("\n", "\n\n") + "\n", language)


# --- property-based -------------------------------------------------------------------------------

_MARKDOWNISH = st.lists(
    st.sampled_from(
        [
            "```",
            "~~~",
            "python",
            "py",
            "c++",
            "go",
            "\n",
            "\r\n",
            " ",
            "  ",
            "\t",
            ">",
            "- ",
            "1. ",
            "<think>",
            "</think>",
            "def f():",
            "return 1",
            "(",
            ")",
            "{",
            "}",
            "<",
            "x = 1",
            ";",
            '"',
            "\x00",
            "\udc80",
            "#",
            "é",
        ]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    text=st.one_of(st.text(max_size=300), _MARKDOWNISH),
    language=st.sampled_from([None, *SUPPORTED_LANGUAGES]),
    mode=st.sampled_from(["strict", "lenient"]),
)
def test_extract_code_never_raises(text: str, language: str | None, mode: str) -> None:
    result = extract_code(text, language=language, mode=mode)
    assert result.valid == (result.reason in VALID_REASONS)
    assert result.reason in {
        "ok",
        "code_in_reasoning",
        "empty_response",
        "no_code_block",
        "multiple_code_blocks",
        "unclosed_code_block",
        "wrong_language",
        "syntax_error",
        "unknown_language",
    }
    if result.valid:
        assert result.code.strip()
    if mode == "strict" and not result.valid:
        assert result.code == ""
    if language is not None:
        assert result.language == language


@settings(max_examples=100, deadline=None)
@given(code=st.one_of(st.text(max_size=200), _MARKDOWNISH), language=st.sampled_from([None, *SUPPORTED_LANGUAGES]))
def test_normalize_code_never_raises_property(code: str, language: str | None) -> None:
    assert isinstance(normalize_code(code, language), str)


def test_threads_share_nothing() -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [full_answer(code, tag) for code, tag in [(PY, "python"), (C, "c"), (RUST, "rust"), (GO, "go")] * 10]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: extract_code(t, language=None), texts))
    assert [r.code for r in results] == [PY, C, RUST, GO] * 10


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_a_cpp_block_ending_in_a_preprocessor_line_is_valid(mode):
    """Extraction strips the block's last newline; tree-sitter needs one after `#include <x>` or `#endif`."""
    for code in ("#include <vector>", "int f() { return 1; }\n#endif"):
        extraction = extract_code(f"```cpp\n{code}\n```", language="cpp", mode=mode)
        assert extraction.valid and extraction.code == code, (code, extraction.reason)
