"""Fixtures for the LangChain and LlamaIndex adapter tests (all on the tiny test model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: Short passages of different lengths, one non-ASCII, used across the adapter tests.
DOCS = [
    "Paris is the capital and largest city of France.",
    "The mitochondrion is the powerhouse of the cell; it produces most of the ATP.",
    "Python 3.12 removed the distutils module from the standard library.",
    "Le Mont Blanc culmine à 4 806 mètres d'altitude.",
    "Photosynthesis converts light energy into chemical energy stored in glucose, "
    "releasing oxygen as a by-product. " * 4,
    "Rust's borrow checker rejects data races at compile time.",
]
QUERY = "What is the capital of France?"
#: Parity threshold from the issue: adapter vectors equal the core's.
MIN_COSINE = 0.9999


def row_cosines(a: object, b: object) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    x = np.atleast_2d(x)
    y = np.atleast_2d(y)
    assert x.shape == y.shape, f"shapes differ: {x.shape} vs {y.shape}"
    return (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


@pytest.fixture(scope="session")
def tiny_model_name(tiny_model_dir: Path) -> str:
    """The tiny model directory as the ``model_name`` string the adapters take."""
    return str(tiny_model_dir)
