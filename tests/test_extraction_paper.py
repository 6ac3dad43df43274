"""mode="paper": the released recipe's extraction rule, differentially against the rule written out here."""

from __future__ import annotations

import ast
import re
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codescaler_rerank.extraction import Extraction, extract_code

PY = "def add(a, b):\n    return a + b"


def recipe(text: str) -> str:
    """The recipe's `extract_code_from_model(text, check_ast=True)` as documented: one regex match, stripped,
    ast-checked, else ""."""
    blocks = re.findall(r"```(?:\w+)?\n(.*?)```", text, re.DOTALL)
    if len(blocks) != 1:
        return ""
    code = blocks[0].strip()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    return code


_PIECES = [
    "```", "```python\n", "```py\n", "```python3\n", "``` python\n", "```c++\n", "```\n", "````\n", "~~~\n",
    "~~~python\n", "\n", "\r\n", "\r", " ", "    ", "\t", "<think>", "</think>", "\n</think>\n", "Here:\n",
    "def f(x):\n    return x\n", "    return 1\n", "x = 1\n", 'print("```")\n', "s.split('</think>')\n",
    "if x:\n", "(", ")", "1. ", "> ", "é", "\u00a0", "\x00", "\x1c", "#", ":", "\\",
]
RESPONSES = st.one_of(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join), st.text(max_size=200))


@pytest.mark.parametrize(
    ("text", "code", "reason"),
    [
        pytest.param(f"Sure:\n```python\n{PY}\n```\nDone.", PY, "ok", id="tagged"),
        pytest.param(f"```\n\n  {PY}\n\n```", PY, "ok", id="untagged-stripped"),
        pytest.param(f"```python\r\n{PY}\r\n```", "", "no_code_block", id="crlf-after-tag-is-no-block"),
        pytest.param(f"```\n{PY}\r\n```", PY, "ok", id="crlf-inside-kept-then-stripped"),
        pytest.param(f"~~~python\n{PY}\n~~~", "", "no_code_block", id="tilde-is-not-a-fence"),
        pytest.param(f"``` python\n{PY}\n```", "", "no_code_block", id="space-before-tag"),
        pytest.param(f"```c++\n{PY}\n```", "", "no_code_block", id="tag-with-plus"),
        pytest.param(f"```javascript\n{PY}\n```", PY, "ok", id="any-word-tag"),
        pytest.param(f"```python\n{PY}\n```\n```python\n", PY, "ok", id="unclosed-trailing-fence-ignored"),
        pytest.param(f"```py\n{PY}\n```\n```py\nx = 1\n```", "", "multiple_code_blocks", id="two-blocks"),
        pytest.param("  1. ```python\n     x = 1\n     ```", "x = 1", "ok", id="indented-fence-kept"),
        pytest.param("```python\ndef f(:\n```", "", "syntax_error", id="syntax-error"),
        pytest.param("```python\n\n```", "", "syntax_error", id="empty-block"),
        pytest.param(PY, "", "no_code_block", id="unfenced"),
        pytest.param(" \n\t", "", "empty_response", id="blank"),
        pytest.param(f"<think>\n```python\nx = 1\n```\n</think>\n```python\n{PY}\n```", "", "multiple_code_blocks",
                     id="think-is-not-removed"),
        pytest.param(f"```python\ndef last(s):\n    return s.split('</think>')[-1]\n```", None, "ok",
                     id="close-tag-in-code"),
        pytest.param("```python\nx = '" + "a" * 40_000 + "'\n```", "", "too_long", id="over-32-kib"),
    ],
)
def test_paper_mode_cases(text: str, code: str | None, reason: str) -> None:
    result = extract_code(text, mode="paper")
    assert result.reason == reason
    assert result.valid == (reason == "ok")
    assert result.language == "python"
    if reason != "too_long":
        assert result.code == recipe(text)
    if code is not None:
        assert result.code == code


def test_paper_mode_is_python_only() -> None:
    with pytest.raises(ValueError, match="paper"):
        extract_code("```cpp\nint main(){}\n```", language="cpp", mode="paper")
    assert extract_code(f"```\n{PY}\n```", language=None, mode="paper") == Extraction(
        code=PY, language="python", valid=True, reason="ok"
    )


@settings(max_examples=2_000, deadline=None)
@given(text=RESPONSES)
def test_paper_mode_equals_recipe(text: str) -> None:
    result = extract_code(text, mode="paper")
    assert result.code == recipe(text)
    assert result.valid == (result.code != "")


@pytest.mark.slow
@settings(max_examples=50_000, deadline=None)
@given(text=RESPONSES)
def test_paper_mode_equals_recipe_many(text: str) -> None:
    assert extract_code(text, mode="paper").code == recipe(text)
