"""Tiny random decoder models of several architectures, built offline for the recipe tests.

Mistral, Llama and Gemma2 use the real Mistral-7B SentencePiece tokenizer (shipped by
``mistral-common``, the same file as the e5 test model); Qwen2 and Qwen3 use a small byte-level
BPE trained here, whose post-processor appends ``<|endoftext|>`` as Qwen3-Embedding's
``tokenizer.json`` does. Each model is a few hundred KB and runs a batch in milliseconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "how much protein should a female eat",
    "As a general guideline, the CDC's average requirement of protein for women is 46 grams per day.",
    'Definition of summit: "the highest point of a mountain"? Yes.',
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Instruct: Given a web search query, retrieve relevant passages\nQuery:",
] * 4

ARCHITECTURES = ("mistral", "llama", "gemma2", "qwen2", "qwen3")


def _qwen_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    end = tokenizer.token_to_id("<|endoftext|>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>",
        pair="$A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|endoftext|>", end)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(out)


def build(arch: str, out: Path, mistral_dir: Path) -> Path:
    """Write a tiny random ``{arch}`` model and its tokenizer to ``out``."""
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    small = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
    }
    if arch in ("qwen2", "qwen3"):
        _qwen_tokenizer(out)
        vocab = 600
        ids = {"bos_token_id": None, "eos_token_id": 2, "pad_token_id": 0}
    else:
        for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (mistral_dir / name).is_file():
                shutil.copyfile(mistral_dir / name, out / name)
        vocab = 32000
        ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    classes = {
        "mistral": ("MistralConfig", "MistralModel", {}),
        "llama": ("LlamaConfig", "LlamaModel", {}),
        "gemma2": ("Gemma2Config", "Gemma2Model", {"head_dim": 8, "sliding_window": 4096}),
        "qwen2": ("Qwen2Config", "Qwen2Model", {}),
        "qwen3": ("Qwen3Config", "Qwen3Model", {"head_dim": 8}),
    }
    config_name, model_name, extra = classes[arch]
    config = getattr(transformers, config_name)(vocab_size=vocab, **small, **extra, **ids)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(ARCHITECTURES.index(arch) + 1)
        model = getattr(transformers, model_name)(config)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(out)
    return out
