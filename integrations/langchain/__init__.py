"""LangChain integration: ``from e5_integrations.langchain import E5MistralEmbeddings``.

Needs ``langchain-core``: ``pip install 'e5-integrations[langchain]'``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a test that hides langchain_core
    raise ImportError(
        "e5_integrations.langchain needs langchain-core, which is not installed; "
        "install it with: pip install 'e5-integrations[langchain]'"
    ) from exc

from e5_integrations.langchain._embeddings import E5MistralEmbeddings

__all__ = ["E5MistralEmbeddings"]
