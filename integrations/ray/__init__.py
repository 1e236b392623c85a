"""Distributed ingestion on Ray Data: ``ingest_ray`` and ``e5 ingest --engine ray``.

Needs ``pip install 'e5-integrations[ray]'``; Ray is imported only when a job runs.
"""

from e5_integrations.ray._engine import E5StoreDatasink, ingest_ray, is_shared_store

__all__ = ["E5StoreDatasink", "ingest_ray", "is_shared_store"]
