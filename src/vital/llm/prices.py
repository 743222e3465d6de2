"""Estimated cost from token usage, with prices per model that a run may override.

Prices are US dollars per million tokens (input, output).  The defaults are
OpenAI's published list prices for a few vision models at the time of writing;
they change, so ``--prices FILE`` (JSON ``{"model": {"input": x, "output": y}}``)
replaces or extends them.  A model without a price has no cost estimate
rather than a wrong one.
"""

from __future__ import annotations

import json
from pathlib import Path

from vital.errors import InputError

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4-vision-preview": (10.00, 30.00),
}


def load_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """Read a prices file: ``{"model": {"input": dollars_per_million, "output": dollars_per_million}}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected an object of model -> {input, output}", path=path)
    prices = {}
    for model, entry in data.items():
        try:
            prices[model] = (float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError):
            problem = 'expected {"input": number, "output": number}'
            raise InputError(problem, path=path, field=model) from None
    return prices


def price_for(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """Exact model name first, then the longest known prefix (``gpt-4o-2024-08-06`` -> ``gpt-4o``)."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int,
                  prices: dict[str, tuple[float, float]]) -> float | None:
    price = price_for(model, prices)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
