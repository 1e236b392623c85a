"""Test support: a tiny random e5-mistral-architecture model built offline.

``python -m e5_integrations.testing build-tiny DIR`` writes one to ``DIR``.
"""

from e5_integrations.testing._tiny import TinyModelSpec, build_tiny_model, mistral_sentencepiece_path

__all__ = ["TinyModelSpec", "build_tiny_model", "mistral_sentencepiece_path"]
