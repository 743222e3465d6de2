"""Reading judge replies: a score out of 10, or a verdict A / B / tie, from JSON or from prose.

Both parsers raise :class:`~vital.llm.ReplyError` when the reply holds no
usable answer, which makes the engine retry the call.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vital.llm import ReplyError
from vital.pairwise import Shown


def _json_object(text: str) -> dict[str, Any] | None:
    """The outermost ``{...}`` in ``text`` as a dict (a reply may wrap it in prose or a code fence)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


_NUMBER = r"(\d+(?:\.\d+)?)"
_SCORE_PATTERNS = (
    re.compile(rf"\b(?:overall\s+)?(?:score|rating)\b[^0-9\n]{{0,12}}{_NUMBER}", re.IGNORECASE),
    re.compile(rf"{_NUMBER}\s*(?:/|out of)\s*10\b", re.IGNORECASE),
    re.compile(rf"^\W*{_NUMBER}\W*$", re.MULTILINE),
)


def parse_score(text: str) -> tuple[float, str]:
    """``(score, rationale)`` from a judge's reply; raises :class:`~vital.llm.ReplyError` without a score."""
    data = _json_object(text)
    if data is not None:
        value = next((data[key] for key in ("score", "rating", "overall") if key in data), None)
        if value is not None:
            try:
                score = float(value)
            except (TypeError, ValueError):
                raise ReplyError(f"the score {value!r} is not a number") from None
            return _in_range(score), str(data.get("rationale") or data.get("reason") or "").strip()
    for pattern in _SCORE_PATTERNS:
        match = pattern.search(text)
        if match:
            return _in_range(float(match.group(1))), text.strip()
    raise ReplyError("no score in the reply")


def _in_range(score: float) -> float:
    if not 0 <= score <= 10:
        raise ReplyError(f"score {score:g} is outside 0-10")
    return score


_VERDICT_PATTERNS = (
    re.compile(r"\b(?:winner|verdict|better|choice|answer)\b\W{0,6}(?:conversation\s+)?\[?\[?(A|B|tie)\b",
               re.IGNORECASE),
    re.compile(r"\[\[(A|B|tie)\]\]", re.IGNORECASE),
    re.compile(r"\b(?:conversation|option)\s+(A|B)\s+is\s+(?:better|preferable|superior)", re.IGNORECASE),
    re.compile(r"^\W*(A|B|tie)\W*$", re.IGNORECASE | re.MULTILINE),
)


def _shown(word: str) -> Shown:
    return "tie" if word.lower() == "tie" else "A" if word.upper() == "A" else "B"


def parse_verdict(text: str) -> tuple[Shown, str]:
    """``("A" | "B" | "tie", rationale)``; raises :class:`~vital.llm.ReplyError` without a verdict."""
    data = _json_object(text)
    if data is not None:
        value = next((data[k] for k in ("winner", "verdict", "better", "choice") if k in data), None)
        if isinstance(value, str) and value.strip().lower() in ("a", "b", "tie"):
            return _shown(value.strip()), str(data.get("rationale") or "").strip()
    for pattern in _VERDICT_PATTERNS:
        match = pattern.search(text)
        if match:
            return _shown(match.group(1)), text.strip()
    raise ReplyError("no verdict (A, B or tie) in the reply")
