"""PEFT (LoRA) adapter folders: a model given as an adapter on a base model (RepLLaMA).

``castorini/repllama-v1-7b-lora-passage`` ships only ``adapter_config.json`` and the adapter's
weights; its ``base_model_name_or_path`` names the model they apply to (Llama-2-7b). The
encoder reads the base's configuration and tokenizer (unless the adapter folder has a
tokenizer of its own), loads the base's weights, and merges the adapter into them with
``peft`` (``PeftModel.from_pretrained(base, adapter).merge_and_unload()``, as the RepLLaMA
model card does), so the forward pass is the plain model's.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any

from e5_integrations._errors import ModelLoadError

__all__ = ["ADAPTER_CONFIG", "find_model_file", "merge_adapter", "model_files_source", "peft_base_model"]

#: The file that makes a folder (or hub repository) a PEFT adapter.
ADAPTER_CONFIG = "adapter_config.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")  # a tokenizer_config.json alone is not one


def find_model_file(model: str, filename: str) -> str | None:
    """The local path of ``filename`` in ``model`` (a folder, or a hub id through the Hugging
    Face cache), or ``None`` when the model has no such file."""
    if os.path.isdir(model):
        path = Path(model) / filename
        return str(path) if path.is_file() else None
    try:
        from transformers.utils import cached_file

        return cached_file(
            model,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def peft_base_model(model: str) -> str | None:
    """The base model of a PEFT adapter (its ``base_model_name_or_path``), or ``None`` when
    ``model`` is not an adapter. Looked up once per process and model (a hub id costs a
    request to the hub's cache).

    Raises:
        ModelLoadError: the adapter's configuration is unreadable or names no base model.
    """
    path = find_model_file(model, ADAPTER_CONFIG)
    if path is None:
        return None
    try:
        base = json.loads(Path(path).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{path} is not a valid PEFT adapter configuration ({exc})") from exc
    if not isinstance(base, str) or not base.strip():
        raise ModelLoadError(
            f"{path} names no base model (base_model_name_or_path); write the base model's id or folder there"
        )
    return base


def model_files_source(model: str, kind: str) -> str:
    """Where ``model``'s ``kind`` files are read from (``"config"`` or ``"tokenizer"``): the
    model itself, or the base model of an adapter that does not ship them."""
    base = peft_base_model(model)
    if base is None:
        return model
    if kind == "tokenizer" and any(find_model_file(model, name) for name in _TOKENIZER_FILES):
        return model
    return base


def merge_adapter(base_model: Any, adapter: str) -> Any:
    """``base_model`` with the PEFT adapter at ``adapter`` merged into its weights.

    Raises:
        ImportError: ``peft`` is not installed (the message names the extra).
        ModelLoadError: the adapter does not fit the base model.
    """
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ImportError(
            f"{adapter!r} is a PEFT adapter; loading it needs peft: pip install 'e5-integrations[peft]'"
        ) from exc
    try:
        with warnings.catch_warnings():
            # peft 0.21 reads transformers 5's deprecated ``is_gradient_checkpointing``: its noise, not the user's
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            return PeftModel.from_pretrained(base_model, adapter).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"could not merge the PEFT adapter {adapter!r} into {type(base_model).__name__} "
            f"({type(exc).__name__}: {exc}); check that adapter_config.json names the base model the "
            "adapter was trained on"
        ) from exc
