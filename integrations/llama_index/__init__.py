"""LlamaIndex integration: ``from e5_integrations.llama_index import E5MistralEmbedding``.

Needs ``llama-index-core``: ``pip install 'e5-integrations[llama-index]'``.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a test that hides llama_index.core
    raise ImportError(
        "e5_integrations.llama_index needs llama-index-core, which is not installed; "
        "install it with: pip install 'e5-integrations[llama-index]'"
    ) from exc

from e5_integrations.llama_index._embedding import E5MistralEmbedding

__all__ = ["E5MistralEmbedding"]
