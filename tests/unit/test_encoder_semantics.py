"""The core reproduces the model card exactly: tokens, template, pooling, normalisation."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

from e5_integrations import DEFAULT_TASK, E5Encoder, InputError
from e5_integrations._recipe import E5_MISTRAL, last_token_pool, tokenize_for_embedding
from tests.model_card_reference import get_detailed_instruct, model_card_embeddings

LONG = "The quick brown fox jumps over the lazy dog. " * 600  # > 4096 tokens
CJK = "機械学習は人工知能の一分野です。深度学习是机器学习的一个分支。한국어 문장도 있습니다."
QUERIES = ["how much protein should a female eat", "summit define", "", CJK, LONG[:3000]]
DOCUMENTS = [
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day.",
    "Definition of summit for English Language Learners. : 1  the highest point of a mountain",
    LONG,
    CJK,
    "",
    "tabs\tand\nnewlines\n\n and  double  spaces",
]
ALL_TEXTS = (
    DOCUMENTS + [get_detailed_instruct(DEFAULT_TASK, q) for q in QUERIES] + ["emoji 🤖 ok", "Ünïcödé façade"]
)
# HF's BPE (tokenizer.json, what the model card and we use) and SentencePiece itself split a
# run of spaces before a word differently ("a  b": HF "▁▁"+"b", SentencePiece "▁"+"▁b"). The
# SentencePiece comparison covers every other text; the model-card comparison covers all.
_SP_DIVERGES = re.compile(r"(^ +|  +)\S")
SP_TEXTS = [t for t in ALL_TEXTS if not _SP_DIVERGES.search(t)]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def sentencepiece(tiny_model_dir):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(tiny_model_dir / "tokenizer.model"))


@pytest.mark.parametrize("max_length", [4096, 16])
def test_token_ids_equal_sentencepiece_with_bos_and_eos(encoder, sentencepiece, max_length):
    ids = tokenize_for_embedding(encoder.tokenizer, SP_TEXTS, max_length, E5_MISTRAL)
    for text, row in zip(SP_TEXTS, ids, strict=False):
        assert row == [1] + sentencepiece.encode(text)[: max_length - 2] + [2], text[:40]
    assert max(len(r) for r in ids) == max_length  # the long text is truncated to exactly max_length


def test_token_ids_equal_model_card_tokenization(encoder, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    card = tokenizer(ALL_TEXTS, max_length=4095, return_attention_mask=False, padding=False, truncation=True)
    expected = [ids + [tokenizer.eos_token_id] for ids in card["input_ids"]]
    assert tokenize_for_embedding(encoder.tokenizer, ALL_TEXTS, 4096, E5_MISTRAL) == expected


def test_sentencepiece_comparison_covers_most_texts():
    assert len(SP_TEXTS) >= len(ALL_TEXTS) - 3


def test_parity_with_model_card_loop(encoder, tiny_model_dir):
    templated = [get_detailed_instruct(DEFAULT_TASK, q) for q in QUERIES]
    reference = model_card_embeddings(str(tiny_model_dir), templated + DOCUMENTS).numpy()
    ours = np.concatenate([encoder.encode_queries(QUERIES), encoder.encode_documents(DOCUMENTS)])
    cos = cosine_rows(ours, reference)
    assert cos.min() >= 0.99999, cos


def test_output_contract(encoder):
    vectors = encoder.encode_documents(["a", "b c"])
    assert vectors.shape == (2, encoder.dimension) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert encoder.encode_documents([]).shape == (0, encoder.dimension)


def test_unnormalized_output_keeps_norm(tiny_model_dir):
    raw = E5Encoder(str(tiny_model_dir), device="cpu", normalize=False).encode_documents(["some text"])
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 1e-3


def test_queries_use_template_and_documents_do_not(encoder):
    q = encoder.encode_queries(["summit define"], task="Retrieve parallel sentences.")
    manual = encoder.encode([get_detailed_instruct("Retrieve parallel sentences.", "summit define")])
    np.testing.assert_allclose(q, manual, atol=1e-6)
    doc = encoder.encode_documents(["summit define"])
    assert cosine_rows(doc, q)[0] < 0.9999


def test_batch_equals_single(encoder):
    batch = encoder.encode_documents(DOCUMENTS)
    single = np.concatenate([encoder.encode_documents([d]) for d in DOCUMENTS])
    assert cosine_rows(batch, single).min() >= 0.99999


def test_left_and_right_padding_agree(tiny_model_dir):
    right = E5Encoder(str(tiny_model_dir), device="cpu", padding_side="right").encode_documents(DOCUMENTS)
    left = E5Encoder(str(tiny_model_dir), device="cpu", padding_side="left").encode_documents(DOCUMENTS)
    assert cosine_rows(left, right).min() >= 0.99999


def test_mask_free_forward_equals_masked_forward(encoder):
    """Right padding in a causal model: the forward pass without a mask gives the same vectors."""
    from e5_integrations import ConfigurationError
    from e5_integrations._backend import TorchBackend

    loaded, pad = encoder._backends[0].loaded, encoder._backends[0].pad_token_id
    ids = tokenize_for_embedding(encoder.tokenizer, ALL_TEXTS, 4096, E5_MISTRAL)  # lengths 2..4096
    free = TorchBackend(loaded, E5_MISTRAL, pad)
    masked = TorchBackend(loaded, E5_MISTRAL, pad, mask_free=False)
    assert free.mask_free and not masked.mask_free
    assert not TorchBackend(loaded, E5_MISTRAL, pad, padding_side="left").mask_free
    cos = cosine_rows(free.embed(ids).numpy(), masked.embed(ids).numpy())
    assert cos.min() >= 0.99999, cos
    with pytest.raises(ConfigurationError, match="needs right padding"):
        TorchBackend(loaded, E5_MISTRAL, pad, padding_side="left", mask_free=True)


def test_last_token_pool_any_padding():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    mixed = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1]])
    assert last_token_pool(hidden, right).tolist() == [hidden[0, 1].tolist(), hidden[1, 3].tolist()]
    assert last_token_pool(hidden, left).tolist() == [hidden[0, 3].tolist(), hidden[1, 3].tolist()]
    assert last_token_pool(hidden, mixed).tolist() == [hidden[0, 2].tolist(), hidden[1, 3].tolist()]


def test_order_is_restored_across_batches(tiny_model_dir):
    rng = np.random.default_rng(0)
    texts = [" ".join(["word"] * int(n)) for n in rng.integers(1, 200, size=60)]
    small_budget = E5Encoder(str(tiny_model_dir), device="cpu", batch_tokens=300)
    together = small_budget.encode_documents(texts)
    one_by_one = np.concatenate([small_budget.encode_documents([t]) for t in texts])
    assert cosine_rows(together, one_by_one).min() >= 0.99999


@pytest.mark.parametrize(
    "bad, index",
    [(["ok", None], 1), ([3, "ok"], 0), (["a", "b", b"bytes"], 2)],
)
def test_non_string_input_names_the_index(encoder, bad, index):
    with pytest.raises(TypeError, match=rf"texts\[{index}\]") as info:
        encoder.encode_documents(bad)
    assert isinstance(info.value, InputError)


def test_single_string_is_rejected_with_a_fix(encoder: E5Encoder) -> None:
    with pytest.raises(TypeError, match=r"wrap it"):
        encoder.encode_queries(
            "a lone query"
        )  # a str is a Sequence[str] to mypy: only the runtime check sees it


def test_empty_instruction_is_rejected(encoder):
    with pytest.raises(ValueError, match="instruction"):
        encoder.encode(["x"], instruction="  ")


def test_head_start_tokenization_keeps_order_and_values(tiny_model_dir, monkeypatch):
    """Inputs of 2 x HEAD_START_TEXTS or more are tokenized in two parts (the bulk on a
    thread); rows still come back in order, equal to one-part encoding."""
    import e5_integrations._encoder as encoder_module

    rng = np.random.default_rng(1)
    texts = [" ".join(["token"] * int(n)) + f" #{i}" for i, n in enumerate(rng.integers(1, 80, size=50))]
    enc = E5Encoder(str(tiny_model_dir), device="cpu", batch_tokens=512)
    whole = enc.encode_token_ids(enc.tokenize(texts))
    monkeypatch.setattr(encoder_module, "HEAD_START_TEXTS", 7)
    parts: list[int] = []
    real = enc._encode_parts

    def counted(n: Any, p: Any) -> Any:
        parts.append(len(p))
        return real(n, p)

    monkeypatch.setattr(enc, "_encode_parts", counted)
    split = enc.encode_documents(texts)
    assert parts == [2]
    assert cosine_rows(split, whole).min() >= 0.99999
