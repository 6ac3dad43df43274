"""`mode="paper"`: the released CodeScaler recipe's extraction rule (`extract_code_from_model`, check_ast=True).

The rule, applied to the response exactly as given (no line-ending normalisation, no reasoning removal):
`re.findall(r"```(?:\\w+)?\\n(.*?)```", text, re.DOTALL)` must find exactly one block; its `.strip()`ped
content must pass `ast.parse`; otherwise the code is "". The code string is the recipe's byte for byte, so the
reward model sees the same tokens. The one addition is the counted size limit of `_syntax` ("too_long").
"""

from __future__ import annotations

import re

from ._syntax import Budget

_BLOCK = re.compile(r"```(?:\w+)?\n(.*?)```", re.DOTALL)


def paper_code(text: str) -> tuple[str, str]:
    """(code, reason): the recipe's code and "ok", or "" and why not."""
    if not text.strip():
        return "", "empty_response"
    blocks = _BLOCK.findall(text)
    if not blocks:
        return "", "no_code_block"
    if len(blocks) > 1:
        return "", "multiple_code_blocks"
    code = blocks[0].strip()
    if not code:  # the recipe returns "" here too: nothing to score
        return "", "syntax_error"
    verdict = Budget().check(code, "python")
    return (code, "ok") if verdict.ok else ("", verdict.reason)
