"""Token-budget batching: sort by length, pack batches whose padded size fits a budget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plan_batches"]


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Group indices into batches, longest texts first.

    A batch is charged ``max_len * rows`` tokens, padding included, and kept at or under
    ``batch_tokens``. A text longer than the budget gets a batch of its own. Longest-first
    makes an out-of-memory error happen on the first batch rather than the last.

    Returns:
        Lists of indices into ``lengths``; every index appears exactly once.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    current_max = 0
    for index in order.tolist():
        length = int(lengths[index])
        width = max(current_max, length)
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, width = [], length
        current.append(index)
        current_max = width
    if current:
        batches.append(current)
    return batches
