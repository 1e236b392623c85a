"""Fixtures: Qdrant targets for the Qdrant sink tests.

Every test runs in qdrant-client's local mode, both in memory and in a folder. When
``QDRANT_URL`` is set (e.g. ``http://127.0.0.1:6333``, the docker-compose stack) the same
tests also run against that server (``QDRANT_API_KEY`` is read by the sink).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.stores._common import SinkFactory, sink_factory

if TYPE_CHECKING:
    from e5_integrations.sinks.qdrant import QdrantSink

__all__ = ["qdrant_sink", "qdrant_uri"]

_TARGETS = ["memory", "path"] + (["server"] if os.environ.get("QDRANT_URL") else [])


@pytest.fixture(params=_TARGETS)
def qdrant_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``:memory:``, a fresh local folder, or ``$QDRANT_URL``."""
    if request.param == "memory":
        return ":memory:"
    if request.param == "path":
        return str(tmp_path / "qdrant")
    return os.environ["QDRANT_URL"]


@pytest.fixture
def qdrant_sink(qdrant_uri: str) -> Iterator[SinkFactory[QdrantSink]]:
    """Factory of QdrantSink on fresh collections; drops and closes them after the test."""
    from e5_integrations.sinks.qdrant import QdrantSink

    yield from sink_factory(QdrantSink, qdrant_uri)
