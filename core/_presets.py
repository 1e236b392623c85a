"""Which recipe a model gets: explicit ``recipe=``, else a preset by model id, else the model
folder's sentence-transformers prompts, else e5-mistral's.

The preset table lists the embedders built like e5-mistral (and their siblings) whose
recipe is known; a model id matches case-insensitively, and a local directory matches by its
last path component (``/models/Qwen3-Embedding-8B`` gets ``qwen3-embedding``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from e5_integrations._errors import ConfigurationError
from e5_integrations._recipe import E5_MISTRAL, Recipe, Template, get_recipe

__all__ = ["MODEL_PRESETS", "preset_for", "recipe_from_sentence_transformers", "resolve_recipe"]

logger = logging.getLogger("e5_integrations")

#: Model ids (regular expressions over the lower-cased id) and their recipe names.
MODEL_PRESETS: tuple[tuple[str, str], ...] = (
    (r"intfloat/e5-mistral-7b-instruct", "e5-mistral"),
    (r"salesforce/sfr-embedding-mistral", "e5-mistral"),
    (r"salesforce/sfr-embedding-2_r", "e5-mistral"),
    (r"linq-ai-research/linq-embed-mistral", "e5-mistral"),
    (r"qwen/qwen3-embedding-(0\.6b|4b|8b)", "qwen3-embedding"),
    (r"alibaba-nlp/gte-qwen2-(1\.5b|7b)-instruct", "gte-qwen2"),
    (r"gritlm/gritlm-(7b|8x7b)", "gritlm"),
    (r"jspringer/echo-mistral-7b-instruct-lasttoken", "echo-last"),
    (r"muennighoff/sgpt-[\w.]+-weightedmean-[\w-]*specb[\w-]*", "sgpt"),
    (r"muennighoff/sgpt-[\w.]+-weightedmean-[\w-]*", "sgpt-nobrackets"),
    (r"castorini/repllama-v1-[\w-]*lora-passage", "repllama"),
    (r"izhx/udever-bloom-(560m|1b1|3b|7b1)", "udever"),
)

_ST_POOLING = {
    "pooling_mode_lasttoken": "last_token",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_weightedmean_tokens": "weighted_mean",
}
_INSTRUCT = re.compile(r"^Instruct: (?P<task>.+)\nQuery:(?P<space> ?)$", re.DOTALL)


def preset_for(model: str) -> str | None:
    """The recipe name preset for ``model`` (a hub id or a directory), or ``None``."""
    key = model.strip().rstrip("/").lower()
    tail = key.rsplit("/", 1)[-1]
    for pattern, name in MODEL_PRESETS:
        if re.fullmatch(pattern, key) or re.fullmatch(pattern.split("/", 1)[1], tail):
            return name
    return None


def recipe_from_sentence_transformers(directory: str | Path) -> Recipe | None:
    """A recipe from a model folder's ``config_sentence_transformers.json`` prompts (and its
    ``1_Pooling/config.json``), or ``None`` when the folder has no prompts.

    The query prompt is the ``query`` key (else the first key ending in ``query``); a prompt
    of the form ``Instruct: ...\nQuery:`` keeps its separator and takes the caller's
    instruction, any other prompt is used as it is. Documents get the ``document`` (or
    ``passage``, ``text``) prompt, else none. As sentence-transformers up to 5.2 runs the
    model (the version such folders were written with): the tokenizer's own special tokens,
    nothing appended, the prompt and text stripped together before tokenizing (5.4 and later
    no longer strip), and ``max_seq_length`` from ``sentence_bert_config.json`` (else the
    smaller of the model's positions and the tokenizer's ``model_max_length``, as
    sentence-transformers infers it).

    Raises:
        ConfigurationError: a config file is not valid JSON, or asks for lower-casing.
    """
    folder = Path(directory)
    config = folder / "config_sentence_transformers.json"
    if not config.is_file():
        return None
    prompts = _read_json(config).get("prompts") or {}
    if not isinstance(prompts, dict) or not prompts:
        return None
    query_key = (
        "query" if "query" in prompts else next((k for k in prompts if str(k).endswith("query")), None)
    )
    if query_key is None:
        return None
    query_prompt = str(prompts[query_key])
    match = _INSTRUCT.match(query_prompt)
    query = "Instruct: {instruction}\nQuery:" + match["space"] if match else _escape(query_prompt)
    document_prompt = next((str(prompts[k]) for k in ("document", "passage", "text") if k in prompts), "")
    pooling, include_prompt = _st_pooling(folder)
    span = "all" if include_prompt else "after_prompt"
    settings = folder / "sentence_bert_config.json"
    transformer = _read_json(settings) if settings.is_file() else {}
    if transformer.get("do_lower_case"):
        raise ConfigurationError(
            f"{settings} asks for lower-cased inputs (do_lower_case), which the sentence-transformers "
            "recipe does not reproduce; pass recipe= with a Recipe that fits the model"
        )
    max_seq_length = transformer.get("max_seq_length")
    return Recipe(
        name="sentence-transformers",
        query_template=Template(query + "{text}", pool_span=span),
        document_template=Template(_escape(document_prompt) + "{text}", pool_span=span),
        pooling=pooling,
        append_eos=False,
        strip_input=True,
        max_length=max_seq_length if isinstance(max_seq_length, int) and max_seq_length > 1 else None,
        source=f"{config} (prompts[{query_key!r}]), as sentence-transformers 5.2 encodes",
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path} is not valid JSON ({exc}); fix it or pass recipe=") from exc
    return data if isinstance(data, dict) else {}


def _escape(prompt: str) -> str:
    return prompt.replace("{", "{{").replace("}", "}}")


def _st_pooling(folder: Path) -> tuple[str, bool]:
    """(pooling, include_prompt) from the model's sentence-transformers Pooling module."""
    for candidate in sorted(folder.glob("*_Pooling/config.json")):
        try:
            settings = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for flag, pooling in _ST_POOLING.items():
            if settings.get(flag):
                return pooling, bool(settings.get("include_prompt", True))
    return "last_token", True


def resolve_recipe(model: str, recipe: str | Recipe | None) -> Recipe:
    """The recipe for ``model``: ``recipe`` when given (a name or a :class:`Recipe`), else the
    preset for the model id, else the folder's sentence-transformers prompts, else e5-mistral.

    Raises:
        ConfigurationError: an unknown recipe name (the message lists the valid ones).
    """
    if recipe is not None:
        return get_recipe(recipe)
    preset = preset_for(model)
    if preset is not None:
        return get_recipe(preset)
    derived = recipe_from_sentence_transformers(model) if Path(model).is_dir() else None
    if derived is not None:
        logger.info("recipe for %s from its config_sentence_transformers.json prompts", model)
        return derived
    return E5_MISTRAL
