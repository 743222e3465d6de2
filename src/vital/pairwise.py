"""Judging two things in both orders, where a verdict that flips with the order is a tie.

Language-model judges prefer a position.  Every pairwise judgement in vital
(``vital judge --pairwise`` over candidates, ``vital eval winrate`` over two
models' answers) therefore asks twice, ``a`` shown first and ``b`` shown
first, and accepts a winner only when both orders name it; any other pair of
verdicts (a flip, or a win and a tie) is a tie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

Shown = Literal["A", "B", "tie"]
"""A verdict as the judge gives it: the answer shown first (A) or second (B)."""
Outcome = Literal["a", "b", "tie"]
"""The result in terms of the two things compared."""

T = TypeVar("T")


@dataclass(frozen=True)
class BothOrders:
    outcome: Outcome
    verdicts: tuple[Shown, Shown]
    """The judge's verdicts with ``a`` shown first, then with ``b`` shown first."""
    rationales: tuple[str, str]

    @property
    def order_agreed(self) -> bool:
        """Did the two orders give the same result (including both saying tie)?"""
        return _in_terms(self.verdicts[0], a_first=True) == _in_terms(self.verdicts[1], a_first=False)


def _in_terms(verdict: Shown, *, a_first: bool) -> Outcome:
    if verdict == "tie":
        return "tie"
    return "a" if (verdict == "A") == a_first else "b"


def combine(a_first: Shown, b_first: Shown) -> Outcome:
    """The outcome from the verdicts in the two orders: a winner only when both orders name it."""
    first, second = _in_terms(a_first, a_first=True), _in_terms(b_first, a_first=False)
    return first if first == second else "tie"


async def judge_both_orders(
    prefer: Callable[[T, T], Awaitable[tuple[Shown, str]]], a: T, b: T
) -> BothOrders:
    """Ask ``prefer(first, second)`` with ``a`` first and with ``b`` first (concurrently); combine."""
    (a_first, why_a_first), (b_first, why_b_first) = await asyncio.gather(prefer(a, b), prefer(b, a))
    return BothOrders(combine(a_first, b_first), (a_first, b_first), (why_a_first, why_b_first))
