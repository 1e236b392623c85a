"""Cosine scores from collections that another writer made with an L2 or inner-product metric.

E5 embeddings are unit-norm. Between unit vectors, squared Euclidean distance, inner product
and cosine similarity rank identically and convert exactly: ``|a - b|^2 = 2 - 2 cos`` and
``a . b = cos``. So a sink can search a LangChain-made L2 collection and still report cosine
similarities, provided the query is normalised and the stored vectors are unit-norm. These
helpers do the first and check the second, so a collection of other vectors is refused
instead of silently mis-scored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from e5_integrations.sinks import SchemaMismatchError

__all__ = ["UNIT_NORM_TOLERANCE", "check_unit_norm", "unit_query"]

#: How far from 1 a stored vector's norm may be for its L2/IP distance to count as cosine.
UNIT_NORM_TOLERANCE = 1e-3


def unit_query(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to norm 1 (a zero vector is returned as is), as float32."""
    query = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(query))
    return query / norm if norm > 0 else query


def check_unit_norm(vectors: Any, where: str, metric: str) -> None:
    """Raise ``SchemaMismatchError`` unless every vector in ``vectors`` (a search's hits) is
    unit-norm: in an L2 or IP collection, other vectors rank and score unlike cosine.

    Only the vectors given are checked; a collection that mixes unit and other vectors can
    slip through when the others are not among the hits.
    """
    if vectors is None or len(vectors) == 0:
        return
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    if np.all(np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE):
        return
    raise SchemaMismatchError(
        f"{where} uses the {metric!r} metric and holds vectors that are not unit-norm (norms "
        f"{norms.min():.4g} to {norms.max():.4g} among the hits), so its ranking is not the cosine "
        "ranking and e5 search would print wrong scores; it reads such a collection only when its "
        "vectors are unit-norm, as E5 embeddings are. Ingest the texts with `e5 ingest` into a new "
        "--collection (e5 makes it cosine) and search that one"
    )
