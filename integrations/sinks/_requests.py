"""Splitting sink work into requests that respect a store's count and size limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from e5_integrations.sinks import Record

__all__ = ["by_count", "by_size", "last_per_id"]

T = TypeVar("T")
R = TypeVar("R", bound=Record)


def by_count(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def by_size(items: Sequence[T], budget: int, size_of: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive groups whose summed ``size_of`` stays under ``budget`` bytes; an item
    larger than the budget on its own goes alone (the store then reports it)."""
    group: list[T] = []
    total = 0
    for item in items:
        item_size = size_of(item)
        if group and total + item_size > budget:
            yield group
            group, total = [], 0
        group.append(item)
        total += item_size
    if group:
        yield group


def last_per_id(records: Sequence[R]) -> list[R]:
    """``records`` with one record per id, the last copy of each (what an upsert of the
    same id twice in a row leaves); stores disagree when one request repeats an id."""
    latest = {record.id: record for record in records}
    if len(latest) == len(records):
        return list(records)
    return list(latest.values())
