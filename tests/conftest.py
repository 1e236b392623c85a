"""Shared fixtures: the tiny offline test model and an encoder on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from e5_integrations import E5Encoder

REPO = Path(__file__).resolve().parents[1]


def _model_dir() -> Path:
    return Path(os.environ.get("E5_TEST_MODEL_DIR") or REPO / ".cache" / "e5-tiny")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A tiny random Mistral-architecture model with the real Mistral tokenizer (built once)."""
    from e5_integrations.testing import build_tiny_model

    return build_tiny_model(_model_dir())


@pytest.fixture(scope="session")
def encoder(tiny_model_dir: Path) -> E5Encoder:
    """A CPU fp32 encoder on the tiny model, shared by the whole session."""
    from e5_integrations import E5Encoder

    return E5Encoder.shared(str(tiny_model_dir), device="cpu", dtype="fp32")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run on a GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
