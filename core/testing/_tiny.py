"""Build a tiny random Mistral-architecture embedder with the real Mistral tokenizer.

Model hubs are unreachable in CI, so tests, examples and benchmarks run on a model built
here: random weights in the e5-mistral architecture (``MistralModel``) at toy size, next
to the Mistral-7B-v0.1 SentencePiece model that ``mistral-common`` ships. The directory
written is a normal Hugging Face model directory, so the code under test loads it through
exactly the same path as ``intfloat/e5-mistral-7b-instruct``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TinyModelSpec", "build_tiny_model", "mistral_sentencepiece_path"]

#: sha256 of the Mistral-7B-v0.1 SentencePiece model (the one e5-mistral-7b-instruct uses).
MISTRAL_SP_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
_MARKER = "e5_tiny_model.json"
#: The tokenizer_config.json class of the real e5-mistral-7b-instruct.
_SHIPPED_TOKENIZER_CLASS = "LlamaTokenizer"


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture of the test model; the defaults build an 8.5 MB model."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 8192
    seed: int = 0


def mistral_sentencepiece_path() -> Path:
    """Locate ``tokenizer.model.v1`` inside the installed ``mistral-common`` package.

    Raises:
        ImportError: ``mistral-common`` is not installed.
        FileNotFoundError: the package does not ship the expected file.
    """
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Building the test model needs the Mistral SentencePiece model from 'mistral-common'; "
            "install it with: pip install 'e5-integrations[test]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise FileNotFoundError(
            f"mistral-common is installed but {path} is missing; reinstall mistral-common"
        )
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_tiny_model(
    directory: str | Path,
    spec: TinyModelSpec | None = None,
    *,
    tokenizer_model: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a tiny random ``MistralModel`` and the real Mistral tokenizer to ``directory``.

    The result loads with ``AutoModel.from_pretrained`` / ``AutoTokenizer.from_pretrained``
    and with :class:`e5_integrations.E5Encoder`. Building is deterministic for a given
    ``spec.seed``. If ``directory`` already holds a model built from the same spec it is
    reused unless ``overwrite`` is true.

    Args:
        directory: where to write the model.
        spec: architecture and seed; defaults to :class:`TinyModelSpec()`.
        tokenizer_model: a SentencePiece ``tokenizer.model``; defaults to the one shipped
            by ``mistral-common``.
        overwrite: rebuild even if an identical model is already there.

    Returns:
        The directory, as a :class:`~pathlib.Path`.
    """
    import json

    import torch
    from tokenizers import normalizers
    from transformers import AutoTokenizer, MistralConfig, MistralModel

    spec = spec or TinyModelSpec()
    out = Path(directory)
    sp_path = Path(tokenizer_model) if tokenizer_model else mistral_sentencepiece_path()
    sp_sha = _sha256(sp_path)
    marker = {"spec": asdict(spec), "tokenizer_sha256": sp_sha, "tokenizer_class": _SHIPPED_TOKENIZER_CLASS}
    if not overwrite and (out / _MARKER).is_file() and json.loads((out / _MARKER).read_text()) == marker:
        return out
    out.mkdir(parents=True, exist_ok=True)

    config = MistralConfig(
        vocab_size=32000,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(spec.seed)
        model = MistralModel(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(out)

    shutil.copyfile(sp_path, out / "tokenizer.model")
    tokenizer = AutoTokenizer.from_pretrained(out, add_bos_token=True)
    # transformers 5 converts tokenizer.model without SentencePiece's dummy prefix; the
    # Mistral/e5-mistral tokenizer.json has it (Prepend "▁" before replacing spaces).
    tokenizer.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = 32768
    tokenizer.save_pretrained(out)
    # As intfloat/e5-mistral-7b-instruct ships it: transformers 5 reads LlamaTokenizer from a
    # Mistral folder's tokenizer.json as it is, but rebuilds it for other architectures (the
    # encoder loads tokenizer.json as it is either way; tests check both).
    tokenizer_config = out / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text())
    settings["tokenizer_class"] = _SHIPPED_TOKENIZER_CLASS
    tokenizer_config.write_text(json.dumps(settings, indent=2))
    (out / _MARKER).write_text(json.dumps(marker, indent=2))
    return out
