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

#: The ``tokenizer_class`` each architecture's real checkpoints ship in ``tokenizer_config.json``
#: (Llama-2 and e5-mistral: ``LlamaTokenizer``; Gemma-2: ``GemmaTokenizer``; Qwen2/Qwen3:
#: ``Qwen2Tokenizer``). Under transformers 5 ``AutoTokenizer`` rebuilds some of these from the
#: vocabulary instead of reading ``tokenizer.json``; the tiny models ship them too, so every
#: test loads tokenizers the way real checkpoints make it.
SHIPPED_TOKENIZER_CLASS = {
    "mistral": "LlamaTokenizer",
    "llama": "LlamaTokenizer",
    "gemma2": "GemmaTokenizer",
    "qwen2": "Qwen2Tokenizer",
    "qwen3": "Qwen2Tokenizer",
    "bloom": "BloomTokenizer",
}


def ship_tokenizer_class(folder: Path, arch: str) -> None:
    """Write the ``tokenizer_class`` real ``arch`` checkpoints ship into ``folder``."""
    import json

    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = SHIPPED_TOKENIZER_CLASS[arch]
    config_path.write_text(json.dumps(config, indent=2))


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
    ship_tokenizer_class(out, arch)
    return out


#: UDEVER's added tokens (izhx/udever-bloom-*: begin/end of query and of document).
UDEVER_TOKENS = ["[BOQ]", "[EOQ]", "[BOD]", "[EOD]"]


def build_bloom(out: Path, udever_tokens: bool = True) -> Path:
    """A tiny random ``BloomModel`` with a small byte-level BPE shaped like BLOOM's (``<unk>``,
    ``<s>``, ``</s>``, ``<pad>``, nothing added around a text), plus UDEVER's four added tokens."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BloomConfig, BloomModel, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    if udever_tokens:
        fast.add_special_tokens({"additional_special_tokens": UDEVER_TOKENS})
    fast.save_pretrained(out)
    ship_tokenizer_class(out, "bloom")
    config = BloomConfig(
        vocab_size=len(fast),
        hidden_size=32,
        n_layer=2,
        n_head=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(7)
        BloomModel(config).save_pretrained(out)
    finally:
        torch.random.set_rng_state(state)
    return out


def build_lora_adapter(base: Path, out: Path) -> Path:
    """A random LoRA adapter on the tiny model at ``base`` (RepLLaMA's shape: q/k/v/o and the
    MLP projections of a Llama model), saved as a PEFT adapter folder whose
    ``base_model_name_or_path`` is ``base``. Its B matrices are random (PEFT starts them at
    zero), so merging it changes the vectors."""
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(11)
        model = AutoModel.from_pretrained(str(base), dtype=torch.float32)
        config = LoraConfig(
            r=4,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        with warnings.catch_warnings():  # peft 0.21 asks transformers 5 a deprecated question
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.5)
        peft_model.save_pretrained(str(out))
    finally:
        torch.random.set_rng_state(state)
    import json

    config_path = out / "adapter_config.json"
    adapter = json.loads(config_path.read_text())
    adapter["base_model_name_or_path"] = str(base)
    config_path.write_text(json.dumps(adapter, indent=2))
    return out
