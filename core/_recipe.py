"""The embedding recipe: how texts become model inputs and hidden states become vectors.

This module is the one place where the e5-mistral semantics live (query template, EOS
handling, pooling). A recipe is data plus two small functions, so other decoder-only
recipes (SGPT weighted mean, Echo, PromptEOL) can be added as new :class:`Recipe` values
without touching batching or backends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["E5_MISTRAL", "POOLINGS", "Recipe", "last_token_pool", "tokenize_for_embedding"]


def last_token_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """Hidden state of each row's last real token, whatever the padding side.

    The model card checks whether the whole batch is left padded; this takes, per row, the
    index of the last position whose mask is 1 (flip the mask, argmax, mirror), so a batch
    that mixes paddings, or has none, is handled too.
    """
    import torch

    seq_len = attention_mask.shape[1]
    last = seq_len - 1 - attention_mask.flip(dims=[1]).int().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


#: Pooling functions by name: ``(hidden [B, L, H], attention_mask [B, L]) -> [B, H]``.
POOLINGS: dict[str, Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]] = {
    "last_token": last_token_pool,
}


@dataclass(frozen=True)
class Recipe:
    """How a decoder-only model is used as an embedder.

    Attributes:
        name: identifier.
        query_template: format string with ``{instruction}`` and ``{text}``.
        pooling: a key of :data:`POOLINGS`.
        append_eos: truncate to ``max_length - 1`` tokens, then append EOS by hand (the
            e5-mistral model card does this; tokenizers under transformers 5 no longer add
            EOS themselves).
        causal: the model attends causally (decoder-only, as trained). Then, with right
            padding, no real token ever attends to a padding token, so the forward pass
            needs no attention mask and can use the plain causal attention kernels; the
            mask is still used to pool. ``False`` for bidirectional recipes (LLM2Vec).
    """

    name: str
    query_template: str = "Instruct: {instruction}\nQuery: {text}"
    pooling: str = "last_token"
    append_eos: bool = True
    causal: bool = True

    def format_query(self, instruction: str, text: str) -> str:
        """Apply the instruction template to one text."""
        return self.query_template.format(instruction=instruction, text=text)

    def pool(self, hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
        """Pool hidden states into one vector per row."""
        return POOLINGS[self.pooling](hidden, attention_mask)


#: intfloat/e5-mistral-7b-instruct, exactly as its model card runs it.
E5_MISTRAL = Recipe(name="e5-mistral")


def tokenize_for_embedding(tokenizer: Any, texts: Sequence[str], max_length: int, recipe: Recipe) -> list[list[int]]:
    """Token ids per text, as the model card builds them.

    With ``append_eos``: tokenize with the tokenizer's own special tokens (BOS), truncate to
    ``max_length - 1``, then append the EOS id, so every sequence is at most ``max_length``
    long and ends with EOS (the token whose hidden state is pooled).
    """
    if not texts:
        return []
    limit = max_length - 1 if recipe.append_eos else max_length
    encoded = tokenizer(
        list(texts),
        max_length=limit,
        truncation=True,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    if not recipe.append_eos:
        return [list(ids) for ids in encoded]
    eos = tokenizer.eos_token_id
    return [list(ids) + [eos] for ids in encoded]
