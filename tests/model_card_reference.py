"""The e5-mistral-7b-instruct model card snippet, run verbatim: the reference behaviour.

Only the model id is a parameter and the final print is replaced by a return; every other
line (pooling, instruction, tokenization, EOS, padding, normalisation) is as on the card.
A benchmark may pass a model it loaded once (fp32, on a GPU) instead of loading it per call;
the computation is the same.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AutoModel, AutoTokenizer


def last_token_pool(last_hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
    left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
    if left_padding:
        return last_hidden_states[:, -1]
    else:
        sequence_lengths = attention_mask.sum(dim=1) - 1
        batch_size = last_hidden_states.shape[0]
        return last_hidden_states[
            torch.arange(batch_size, device=last_hidden_states.device), sequence_lengths
        ]


def get_detailed_instruct(task_description: str, query: str) -> str:
    return f"Instruct: {task_description}\nQuery: {query}"


def model_card_embeddings(
    model_id: str, input_texts: list[str], max_length: int = 4096, model: Any = None
) -> Tensor:
    """Run the card's loop on ``input_texts`` (already templated) in fp32, one batch."""
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    if model is None:
        model = AutoModel.from_pretrained(model_id)

    # Tokenize the input texts
    batch_dict = tokenizer(
        input_texts, max_length=max_length - 1, return_attention_mask=False, padding=False, truncation=True
    )
    # append eos_token_id to every input_ids
    batch_dict["input_ids"] = [input_ids + [tokenizer.eos_token_id] for input_ids in batch_dict["input_ids"]]
    batch_dict = tokenizer.pad(batch_dict, padding=True, return_attention_mask=True, return_tensors="pt")
    batch_dict = batch_dict.to(model.device)

    with torch.no_grad():
        outputs = model(**batch_dict)
    embeddings = last_token_pool(outputs.last_hidden_state, batch_dict["attention_mask"])

    # normalize embeddings
    embeddings = F.normalize(embeddings, p=2, dim=1)
    return embeddings.cpu()
