"""A fast deterministic embedding backend that reports where it ran, for the Ray multi-node
tests.

It plugs into each embedding actor through ``ingest_ray(backend_factory=GatedBackends(...))``
(the ``E5Encoder(backends=...)`` seam):

- the vectors are a fixed function of each chunk's token ids (no model: fast, and the same
  chunk gets the same vector in every process);
- after each call the backend appends its row count to ``GATE/embedded-{node id}-{pid}``, so
  the test sees which node embedded what;
- with ``first_node``, an actor on any other node waits, before its first call, until an
  actor on ``first_node`` has embedded a batch: the test knows that node has done work
  before it is taken away, whatever order Ray starts the actors in.

The test cluster puts the repository on its nodes' ``PYTHONPATH``, so the actors import
this module by name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Buckets of the token-id histogram each vector is a projection of.
_BUCKETS = 509


class GatedBackend:
    """A :class:`~e5_integrations._backend.Backend` on the CPU: token-id histograms times a
    fixed random matrix (see the module's docstring)."""

    def __init__(self, dim: int, gate: Path, first_node: str | None) -> None:
        import ray
        import torch

        self._torch = torch
        self._dim = dim
        self._gate = gate
        self._first_node = first_node
        self._node = ray.get_runtime_context().get_node_id()
        self._projection = np.random.default_rng(7).standard_normal((_BUCKETS, dim)).astype(np.float32)

    @property
    def device(self) -> Any:
        return self._torch.device("cpu")

    @property
    def hidden_size(self) -> int:
        return self._dim

    def embed(self, batch: Sequence[Sequence[int]]) -> Any:
        if self._first_node is not None and self._node != self._first_node:
            while not any(self._gate.glob(f"embedded-{self._first_node}-*")):
                time.sleep(0.05)
            self._first_node = None
        counts = np.zeros((len(batch), _BUCKETS), dtype=np.float32)
        for row, ids in enumerate(batch):
            np.add.at(counts[row], np.asarray(list(ids), dtype=np.int64) % _BUCKETS, 1.0)
        vectors = counts @ self._projection + 1e-3  # never the zero vector
        with (self._gate / f"embedded-{self._node}-{os.getpid()}").open("a", encoding="utf-8") as marker:
            marker.write(f"{len(batch)}\n")
        return self._torch.from_numpy(vectors)


@dataclass(frozen=True)
class GatedBackends:
    """The picklable ``backend_factory``: one :class:`GatedBackend` per actor."""

    dim: int
    gate: str
    first_node: str | None = None

    def __call__(self) -> list[GatedBackend]:
        return [GatedBackend(self.dim, Path(self.gate), self.first_node)]


def embedded_by_node(gate: Path) -> dict[str, int]:
    """Rows embedded so far, per node id, from the markers under ``gate``."""
    rows: dict[str, int] = {}
    for marker in gate.glob("embedded-*"):
        node = marker.name.split("-")[1]
        counts = [int(line) for line in marker.read_text(encoding="utf-8").split()]
        rows[node] = rows.get(node, 0) + sum(counts)
    return rows
