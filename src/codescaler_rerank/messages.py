"""Chat messages to the texts the reward model sees: the prompt is the last user message, the answer the last reply."""

from __future__ import annotations

from typing import Any, Sequence


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_text(messages: Sequence[dict[str, Any]], role: str) -> str | None:
    """The text of the last message of `role` that has text, or None."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == role:
            text = message_text(message.get("content"))
            if text.strip():
                return text
    return None
