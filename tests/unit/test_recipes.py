"""Every built-in recipe against a reference loop written from its original repository.

Each reference below is rewritten from the file and function it cites (read at the commits
listed in ``shared/research/anchors.md`` §3), run on tiny random models of the matching
architecture in fp32 on CPU, and compared with ``E5Encoder(model, recipe=...)`` at cosine
>= 0.99999. Bidirectional references use the transformers 5 switch the reference models use
(``config.is_causal = False`` plus ``is_causal = False`` on every attention module, as in
LLM2Vec's ``models/bidirectional_*.py``), a different mechanism from our backend's mask.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from e5_integrations import (
    ConfigurationError,
    E5Encoder,
    InputError,
    Piece,
    Recipe,
    Template,
    available_recipes,
)
from e5_integrations._backend import TorchBackend
from e5_integrations._recipe import E5_MISTRAL, get_recipe
from tests.recipe_models import ARCHITECTURES, build

TEXTS = [
    "how much protein should a female eat",
    "summit define?",
    'He said "no" to the offer',
    (
        "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams "
        "per day. But, as you can see from this chart, you'll need to increase that if you're expecting."
    ),
    "Paris is the capital of France.",
    "tabs\tand\nnewlines",
]
TASK = "Given a web search query, retrieve relevant passages that answer the query"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """One tiny random model per architecture, built once per test session."""
    root = tmp_path_factory.mktemp("recipe-models")
    built = {"mistral": Path(tiny_model_dir)}
    for arch in ARCHITECTURES:
        if arch != "mistral":
            built[arch] = build(arch, root / arch, Path(tiny_model_dir))
    return built


def _shipped_tokenizer(path: Path, **kwargs: Any) -> Any:
    """The tokenizer the references ran with. They were written for transformers 4, whose
    ``AutoTokenizer`` loads a fast tokenizer's ``tokenizer.json`` as it is; transformers 5
    rebuilds Llama, Gemma and Qwen2 tokenizers from their vocabulary instead (and the tiny
    models ship the ``tokenizer_class`` the real ones do), so the file is loaded as it is."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path), **kwargs)


def cosine_rows(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return (x * y).sum(axis=1)


def _model(path: Path, bidirectional: bool = False) -> Any:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(path), dtype=torch.float32).eval()
    if bidirectional:
        model.config.is_causal = False
        for module in model.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = False
    return model


def _ours(path: Path, recipe: str | Recipe | None, **options: Any) -> E5Encoder:
    return E5Encoder(str(path), device="cpu", dtype="fp32", recipe=recipe, **options)


def _assert_close(ours: np.ndarray, reference: ArrayLike, floor: float = 0.99999) -> None:
    cos = cosine_rows(ours, reference)
    assert cos.min() >= floor, cos


# -- SGPT: Muennighoff/sgpt README.md, tokenize_with_specb + get_weightedmean_embedding ----


def _sgpt_reference(path: Path, texts: list[str], brackets: tuple[str, str] | None) -> torch.Tensor:
    tokenizer = _shipped_tokenizer(path)
    tokenizer.padding_side = "right"
    model = _model(path)
    batch_tokens = tokenizer(texts, padding=False, truncation=True)
    if brackets is not None:
        bos = tokenizer.encode(brackets[0], add_special_tokens=False)[0]
        eos = tokenizer.encode(brackets[1], add_special_tokens=False)[0]
        for seq, att in zip(batch_tokens["input_ids"], batch_tokens["attention_mask"], strict=False):
            seq.insert(0, bos)
            seq.append(eos)
            att.insert(0, 1)
            att.append(1)
    batch_tokens = tokenizer.pad(batch_tokens, padding=True, return_tensors="pt")
    with torch.no_grad():
        last_hidden_state = model(
            **batch_tokens, output_hidden_states=True, return_dict=True
        ).last_hidden_state
    weights = (
        torch.arange(start=1, end=last_hidden_state.shape[1] + 1)
        .unsqueeze(0)
        .unsqueeze(-1)
        .expand(last_hidden_state.size())
        .float()
    )
    input_mask_expanded = (
        batch_tokens["attention_mask"].unsqueeze(-1).expand(last_hidden_state.size()).float()
    )
    sum_embeddings = torch.sum(last_hidden_state * input_mask_expanded * weights, dim=1)
    sum_mask = torch.sum(input_mask_expanded * weights, dim=1)
    return sum_embeddings / sum_mask


@pytest.mark.parametrize("arch", ["mistral", "llama"])
def test_sgpt_with_bracket_tokens(models, arch):
    enc = _ours(models[arch], "sgpt")
    _assert_close(enc.encode_queries(TEXTS), _sgpt_reference(models[arch], TEXTS, ("[", "]")))
    _assert_close(enc.encode_documents(TEXTS), _sgpt_reference(models[arch], TEXTS, ("{", "}")))


def test_sgpt_without_bracket_tokens(models):
    enc = _ours(models["mistral"], "sgpt-nobrackets")
    reference = _sgpt_reference(models["mistral"], TEXTS, None)
    _assert_close(enc.encode_documents(TEXTS), reference)
    _assert_close(enc.encode_queries(TEXTS), reference)  # symmetric: no template on either side
    assert (
        cosine_rows(enc.encode_documents(TEXTS), _sgpt_reference(models["mistral"], TEXTS, ("{", "}"))).min()
        < 0.999
    )


# -- Echo: jakespringer/echo-embeddings echo_embeddings.py, EchoParser + EchoPooling ------

ECHO_TEMPLATES = {
    "query": "<s>Instruct:{!%%prompt%%,}\nQuery:{!%%text%%}\nQuery again:{%%text%%}{</s>}",
    "document": "<s>Document:{!%%text%%}\nDocument again:{%%text%%}{</s>}",
}


def _echo_reference(
    path: Path, side: str, texts: list[str], strategy: str, prompt: str = TASK, max_length: int | None = None
) -> torch.Tensor:
    tokenizer = _shipped_tokenizer(path, add_bos_token=False, add_eos_token=False)
    tokenizer.padding_side = "right"
    tokenizer.pad_token = "<unk>"
    template = ECHO_TEMPLATES[side]
    # EchoParser._parse_template: literal pieces are tokenized now, brace pieces per text.
    matches = list(re.finditer(r"\{(.|\n|\r|\t)+?\}", template))
    pieces = []
    for i, m in enumerate(matches):
        pieces.append(template[: m.start()] if i == 0 else template[matches[i - 1].end() : m.start()])
        pieces.append(m.group())
    pieces.append(template[matches[-1].end() :])
    parsed = [
        p[1:-1] if p.startswith("{") and p.endswith("}") else tokenizer(p)["input_ids"] for p in pieces if p
    ]
    rows = []
    for text in texts:
        variables = {"prompt": prompt, "text": text}
        ids, embed = [], []
        for piece in parsed:  # EchoParser._tokenize_piece
            if isinstance(piece, str):
                value = 0 if piece.startswith("!") else 1
                piece = piece.removeprefix("!")
                for k, v in variables.items():
                    piece = piece.replace(f"%%{k}%%", v)
                tokens = tokenizer(piece)["input_ids"]
            else:
                value, tokens = 0, piece
            tokens = tokens[:max_length] if max_length is not None else tokens  # per piece
            ids += tokens
            embed += [value] * len(tokens)
        rows.append((ids, embed))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    embed_mask = torch.tensor([e + [0] * (width - len(e)) for _, e in rows])
    with torch.no_grad():
        token_embeddings = _model(path)(input_ids=input_ids, attention_mask=attention).last_hidden_state
    if strategy == "mean":  # EchoPooling.forward
        return torch.sum(token_embeddings * embed_mask.unsqueeze(-1), dim=1) / torch.sum(
            embed_mask, dim=1
        ).unsqueeze(-1)
    last = torch.tensor([int(torch.max((m == 1).nonzero(as_tuple=True)[0])) for m in embed_mask])
    return token_embeddings[torch.arange(len(rows)), last]


@pytest.mark.parametrize("name, strategy", [("echo", "mean"), ("echo-last", "last")])
def test_echo_query_and_document_templates(models, name, strategy):
    enc = _ours(models["mistral"], name)  # default settings: example.py's EchoParser(max_length=300)
    texts = [*TEXTS, LONG]  # LONG's copies are cut at 300 tokens each, as the parser cuts each piece
    path = models["mistral"]
    _assert_close(
        enc.encode_queries(texts, task=TASK), _echo_reference(path, "query", texts, strategy, max_length=300)
    )
    _assert_close(
        enc.encode_documents(texts), _echo_reference(path, "document", texts, strategy, max_length=300)
    )


def test_echo_pools_only_the_second_copy(models):
    """Changing the text's first copy alone is impossible, but the embed mask can be
    checked: the pooled span is the second copy plus </s>, and nothing before it."""
    enc = _ours(models["mistral"], "echo")
    (row,) = enc.recipe.tokenize(enc.tokenizer, ["Paris"], 4096, side="document")
    assert row.span is not None
    start, end = row.span
    assert row[end - 1] == enc.tokenizer.eos_token_id and end == len(row)
    second = enc.tokenizer("Paris", add_special_tokens=False)["input_ids"]
    assert list(row[start : end - 1]) == second
    assert list(row[:start]).count(second[-1]) >= 1  # the first copy is there, not pooled


# -- PromptEOL: kongds/scaling_sentemb evaluation.py, batcher() ---------------------------


def _prompteol_reference(path: Path, sentences: list[str]) -> torch.Tensor:
    tokenizer = _shipped_tokenizer(path)
    tokenizer.pad_token_id = 0
    tokenizer.padding_side = "left"
    template = 'This_sentence_:_"*sent_0*"_means_in_one_word:"'
    template = template.replace("_", " ").replace("*sep+*", "").replace("*cls*", "")
    sentences = list(sentences)
    for i, s in enumerate(sentences):
        if len(s) > 0 and s[-1] not in ".?\"'":
            s += "."
        s = s.replace('"', "'")
        if len(s) > 0 and s[-1] == "?":
            s = s[:-1] + "."
        sentences[i] = template.replace("*sent 0*", s).strip()
    # batch_encode_plus in the original; transformers 5 removed it, __call__ is the same call.
    batch = tokenizer(sentences, return_tensors="pt", padding=True, max_length=None, truncation=False)
    with torch.no_grad():
        hidden_states = _model(path)(output_hidden_states=True, return_dict=True, **batch).hidden_states
    return hidden_states[-1][:, -1, :]


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_prompteol(models, arch):
    enc = _ours(models[arch], "prompteol")
    reference = _prompteol_reference(models[arch], TEXTS)
    _assert_close(enc.encode_documents(TEXTS), reference)
    _assert_close(enc.encode_queries(TEXTS), reference)  # the template applies to every text


# -- LLM2Vec: McGill-NLP/llm2vec llm2vec/llm2vec.py, _convert_to_str + tokenize + get_pooling


def _llm2vec_reference(path: Path, instruction: str, texts: list[str]) -> torch.Tensor:
    tokenizer = _shipped_tokenizer(path)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"

    def _convert_to_str(instruction: str, text: str, max_length: int = 512, doc_max_length: int = 400) -> str:
        tokenized_q_length = len(
            tokenizer(text, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
        )
        while tokenized_q_length > doc_max_length:
            reduction_ratio = doc_max_length / tokenized_q_length
            reduced_length = int(len(text.split()) * reduction_ratio)
            text = " ".join(text.split()[:reduced_length])
            tokenized_q_length = len(
                tokenizer(text, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
            )
        return f"{instruction.strip()} !@#$%^&*(){text}" if instruction else f"!@#$%^&*(){text}"

    sentences = [_convert_to_str(instruction, t) for t in texts]
    texts_2: list[str] = []
    original: list[str] = []
    for text in sentences:
        parts = text.split("!@#$%^&*()")
        texts_2.append(parts[1] if len(parts) > 1 else "")
        original.append("".join(parts))
    features = tokenizer(original, return_tensors="pt", padding=True, truncation=True, max_length=512)
    embed_mask = torch.zeros_like(features["attention_mask"])
    for i, t in enumerate(texts_2):
        ids = tokenizer(
            [t], return_tensors="pt", padding=True, truncation=True, max_length=512, add_special_tokens=False
        )
        if len(ids["input_ids"][0]) > 0:
            embed_mask[i, -len(ids["input_ids"][0]) :] = 1
    with torch.no_grad():
        last_hidden_states = _model(path, bidirectional=True)(**features).last_hidden_state
    seq_lengths = embed_mask.sum(dim=-1)  # skip_instruction: attention_mask := embed_mask
    return torch.stack(
        [last_hidden_states[i, -length:, :].mean(dim=0) for i, length in enumerate(seq_lengths)]
    )


LONG = " ".join(f"Sentence {i} adds one more detail to a long document about embeddings." for i in range(60))


@pytest.mark.parametrize("arch", ["mistral", "llama", "gemma2"])
def test_llm2vec(models, arch):
    enc = _ours(models[arch], "llm2vec")  # default settings: LLM2Vec's max_length=512
    texts = [*TEXTS, LONG]  # LONG has over 512 tokens: cut at whole words to 400 (doc_max_length)
    assert len(enc.tokenizer(LONG)["input_ids"]) > 512 and enc.max_length == 512
    _assert_close(enc.encode_queries(texts, task=TASK + "  "), _llm2vec_reference(models[arch], TASK, texts))
    _assert_close(enc.encode_documents(texts), _llm2vec_reference(models[arch], "", texts))


# -- GritLM: ContextualAI/gritlm gritlm/gritlm.py, GritLM.encode + GritLM.pooling ---------


def _gritlm_instruction(instruction: str) -> str:  # README.md
    return "<|user|>\n" + instruction + "\n<|embed|>\n" if instruction else "<|embed|>\n"


def _gritlm_reference(path: Path, texts: list[str], instruction: str) -> torch.Tensor:
    tokenizer = _shipped_tokenizer(path, padding_side="right")
    model = _model(path, bidirectional=True)
    batch = [instruction + s for s in texts]  # embed_eos = ""
    inputs = tokenizer(batch, padding=True, truncation=True, return_tensors="pt", max_length=512)
    inputs["is_causal"] = False  # attn 'bbcc'
    with torch.no_grad():
        last_hidden_state = model(**inputs)[0]
    instruction_tokens = tokenizer(instruction, padding=False, truncation=True, max_length=512)["input_ids"]
    inputs["attention_mask"][:, : len(instruction_tokens)] = 0
    mask = inputs["attention_mask"]
    s = torch.sum(last_hidden_state * mask.unsqueeze(-1).float(), dim=1)
    d = mask.sum(dim=1, keepdim=True).float()
    return F.normalize(s / d, dim=-1)


def test_gritlm(models):
    enc = _ours(models["mistral"], "gritlm")  # default settings: GritLM.encode's max_length=512
    path = models["mistral"]
    texts = [*TEXTS, LONG]  # LONG is cut at 512 tokens by both
    assert enc.max_length == 512 and len(enc.tokenizer(LONG)["input_ids"]) > 512
    _assert_close(
        enc.encode_queries(texts, task=TASK), _gritlm_reference(path, texts, _gritlm_instruction(TASK))
    )
    _assert_close(enc.encode_documents(texts), _gritlm_reference(path, texts, _gritlm_instruction("")))


# -- Qwen3-Embedding: QwenLM/Qwen3-Embedding README.md (transformers usage) ---------------
# -- gte-Qwen2: Alibaba-NLP/gte-Qwen2-7B-instruct model card, same loop, bidirectional -----


def _last_token_pool(last_hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
    if left_padding:
        return last_hidden_states[:, -1]
    sequence_lengths = attention_mask.sum(dim=1) - 1
    batch_size = last_hidden_states.shape[0]
    return last_hidden_states[torch.arange(batch_size, device=last_hidden_states.device), sequence_lengths]


def _qwen_reference(
    path: Path, input_texts: list[str], padding_side: str, bidirectional: bool
) -> torch.Tensor:
    tokenizer = _shipped_tokenizer(path, padding_side=padding_side)
    model = _model(path, bidirectional=bidirectional)
    batch_dict = tokenizer(input_texts, padding=True, truncation=True, max_length=8192, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch_dict)
    return F.normalize(_last_token_pool(outputs.last_hidden_state, batch_dict["attention_mask"]), p=2, dim=1)


#: Over 4096 tokens of the tiny Qwen tokenizer, under the README's 8192.
VERY_LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 500)


def test_qwen3_embedding(models):
    path = models["qwen3"]
    enc = _ours(path, "qwen3-embedding")  # default settings: the README's max_length=8192
    assert enc.max_length == 8192 and 4096 < len(enc.tokenizer(VERY_LONG)["input_ids"]) < 8192
    texts = [*TEXTS, VERY_LONG]
    queries = [f"Instruct: {TASK}\nQuery:{q}" for q in texts]  # get_detailed_instruct: no space
    _assert_close(enc.encode_queries(texts, task=TASK), _qwen_reference(path, queries, "left", False))
    _assert_close(enc.encode_documents(texts), _qwen_reference(path, texts, "left", False))
    ids = enc.count_tokens(["abc"])
    assert ids == [len(enc.tokenizer("abc")["input_ids"])]  # <|endoftext|> once, not twice
    # the reference pads on the left, and so do we by default; the other side gives the same vectors
    backend = enc._backends[0]
    assert isinstance(backend, TorchBackend)
    assert backend.padding_side == "left" and not backend.mask_free
    right = _ours(path, "qwen3-embedding", padding_side="right")
    assert (
        isinstance(right._backends[0], TorchBackend) and right._backends[0].mask_free
    )  # causal + right padding: the fast path
    _assert_close(right.encode_queries(TEXTS, task=TASK), enc.encode_queries(TEXTS, task=TASK))


def test_gte_qwen2_is_bidirectional(models):
    path = models["qwen2"]
    enc = _ours(path, "gte-qwen2")  # default settings: the model card's max_length=8192
    queries = [f"Instruct: {TASK}\nQuery: {q}" for q in TEXTS]
    reference = _qwen_reference(path, queries, "right", True)
    _assert_close(enc.encode_queries(TEXTS, task=TASK), reference)
    _assert_close(enc.encode_documents(TEXTS), _qwen_reference(path, TEXTS, "right", True))
    _assert_close(enc.encode_documents([VERY_LONG]), _qwen_reference(path, [VERY_LONG], "right", True))
    causal = _qwen_reference(path, queries, "right", False)
    assert cosine_rows(reference, causal).min() < 0.999  # the attention mode matters


def test_e5_mistral_is_the_default_and_keeps_its_fast_path(models):
    enc = _ours(models["mistral"], None)
    assert enc.recipe is E5_MISTRAL and get_recipe("e5-mistral") is E5_MISTRAL
    backend = enc._backends[0]
    assert isinstance(backend, TorchBackend)
    assert backend.mask_free and backend.padding_side == "right"
    ids = enc._tokenizer_for(None)(["x"])
    assert type(ids[0]) is list  # plain ids: no embed mask, no masked forward pass


# -- attention: causal or truly bidirectional -------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bidirectional_attention_lets_a_later_token_change_an_earlier_state(models, arch):
    from e5_integrations._backend import TorchBackend, load_model

    loaded = load_model(str(models[arch]), torch.device("cpu"), torch.float32)
    rows = [[5, 6, 7, 8], [5, 6, 7, 9]]
    spans = [(0, 1), (0, 1)]  # pool the first token only
    for causal, changes in ((True, False), (False, True)):
        recipe = Recipe("probe", pooling="mean", causal=causal)
        backend = TorchBackend(loaded, recipe, 0, "right", mask_free=False)
        a, b = backend.embed(rows, spans)
        assert (not torch.allclose(a, b, atol=1e-6)) is changes, (arch, causal)
    # Padding never leaks in: a text alone equals the same text next to a longer one, either side.
    recipe = Recipe("probe", pooling="mean", causal=False)
    for side in ("left", "right"):
        backend = TorchBackend(loaded, recipe, 0, side)
        alone = backend.embed([[5, 6, 7]])
        batched = backend.embed([[5, 6, 7], [5, 6, 7, 8, 9, 10]])[:1]
        assert cosine_rows(alone.numpy(), batched.numpy()).min() >= 0.99999


# -- recipes are checked when built ------------------------------------------------------


def test_unknown_pooling_lists_the_valid_ones():
    with pytest.raises(ConfigurationError, match="last_token, mean, weighted_mean"):
        Recipe("x", pooling="cls")


def test_unknown_recipe_name_lists_the_valid_ones(models):
    with pytest.raises(ConfigurationError) as info:
        _ours(models["mistral"], "nope")
    for name in available_recipes():
        assert name in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"query_template": "Instruct: {task}\n{text}"}, "placeholders"),
        ({"document_template": "no text here"}, "has no {text}"),
        ({"padding_side": "up"}, "padding_side"),
        ({"preprocess": "lowercase"}, "prompteol"),
        (
            {"query_template": (Piece("{text}", pooled=True), Piece("x"), Piece("{eos}", pooled=True))},
            "adjacent",
        ),
        ({"query_template": (Piece("{text}"),)}, "pooled"),
        ({"document_template": (Piece("{text}", pooled=True),), "strip_input": True}, "strip_input"),
        ({"max_length": 1}, "max_length"),
        ({"piece_token_limit": 0}, "piece_token_limit"),
    ],
)
def test_recipe_is_checked_when_built(kwargs, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Recipe("bad", **kwargs)


def test_template_is_checked_when_built():
    with pytest.raises(
        ConfigurationError, match="pool_span='middle' is not one of all, after_prompt, text_suffix"
    ):
        Template("{text}", pool_span="middle")
    with pytest.raises(ConfigurationError, match="brackets"):
        Template("{text}", pool_span="after_prompt", brackets=("[", "]"))


def test_recipe_for_another_tokenizer_fails_at_construction(models):
    with pytest.raises(ConfigurationError, match="<\\|endoftext\\|>"):
        _ours(models["mistral"], "qwen3-embedding")


def test_every_builtin_recipe_runs_and_is_listed(models, bloom_model):
    assert available_recipes() == sorted(available_recipes())
    for name in available_recipes():
        recipe = get_recipe(name)
        assert recipe.source, name
        folder = bloom_model if name == "udever" else models["qwen3" if "qwen" in name else "mistral"]
        vectors = _ours(folder, name).encode_documents(["one text", "another, longer text here"])
        assert vectors.shape[0] == 2 and np.isfinite(vectors).all(), name


# -- selection: explicit recipe=, else a preset by model id, else sentence-transformers prompts


@pytest.mark.parametrize(
    "model, expected",
    [
        ("intfloat/e5-mistral-7b-instruct", "e5-mistral"),
        ("Salesforce/SFR-Embedding-Mistral", "e5-mistral"),
        ("Salesforce/SFR-Embedding-2_R", "e5-mistral"),
        ("Linq-AI-Research/Linq-Embed-Mistral", "e5-mistral"),
        ("Qwen/Qwen3-Embedding-0.6B", "qwen3-embedding"),
        ("Qwen/Qwen3-Embedding-4B", "qwen3-embedding"),
        ("/models/Qwen3-Embedding-8B/", "qwen3-embedding"),
        ("Alibaba-NLP/gte-Qwen2-7B-instruct", "gte-qwen2"),
        ("Alibaba-NLP/gte-Qwen2-1.5B-instruct", "gte-qwen2"),
        ("GritLM/GritLM-7B", "gritlm"),
        ("GritLM/GritLM-8x7B", "gritlm"),
        ("jspringer/echo-mistral-7b-instruct-lasttoken", "echo-last"),
        ("Muennighoff/SGPT-5.8B-weightedmean-msmarco-specb-bitfit", "sgpt"),
        ("Muennighoff/SGPT-125M-weightedmean-nli-bitfit", "sgpt-nobrackets"),
        ("Qwen/Qwen3-8B", None),
        ("bert-base-uncased", None),
        ("/tmp/e5-tiny", None),
    ],
)
def test_presets_by_model_id(model, expected):
    from e5_integrations._presets import preset_for

    assert preset_for(model) == expected


def _copy_model(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for item in source.iterdir():
        (target / item.name).symlink_to(item)
    return target


def test_a_preset_is_picked_by_folder_name_and_recipe_overrides_it(
    models: dict[str, Path], tmp_path: Path
) -> None:
    folder = _copy_model(models["qwen3"], tmp_path / "Qwen3-Embedding-0.6B")
    assert _ours(folder, None).recipe is get_recipe("qwen3-embedding")
    assert _ours(folder, "sgpt-nobrackets").recipe is get_recipe("sgpt-nobrackets")


def test_recipe_from_sentence_transformers_prompts(models: dict[str, Path], tmp_path: Path) -> None:
    import json

    folder = _copy_model(models["qwen3"], tmp_path / "my-embedder")
    prompts = {"query": f"Instruct: {TASK}\nQuery:", "document": ""}  # Qwen3-Embedding's own file
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_lasttoken": True}))
    enc = _ours(folder, None)
    assert enc.recipe.name == "sentence-transformers"
    assert enc.recipe.query.text == "Instruct: {instruction}\nQuery:{text}"
    qwen3 = _ours(models["qwen3"], "qwen3-embedding")  # the tokenizer appends <|endoftext|> itself
    _assert_close(enc.encode_queries(TEXTS, task=TASK), qwen3.encode_queries(TEXTS, task=TASK))
    _assert_close(enc.encode_documents(TEXTS), qwen3.encode_documents(TEXTS))
    # a mean-pooling model whose prompt is left out of the pooling (include_prompt=False)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True, "include_prompt": False})
    )
    from e5_integrations._presets import recipe_from_sentence_transformers

    recipe = recipe_from_sentence_transformers(folder)
    assert recipe is not None and recipe.pooling == "mean" and recipe.query.pool_span == "after_prompt"


# -- issue 23: each recipe's own default max_length --------------------------------------

REFERENCE_MAX_LENGTH = {
    # recipe: (reference default, where it comes from)
    "e5-mistral": 4096,  # model card: max_length = 4096
    "gritlm": 512,  # GritLM.encode(max_length=512)
    "llm2vec": 512,  # LLM2Vec(max_length=512)
    "qwen3-embedding": 8192,  # README: max_length = 8192
    "gte-qwen2": 8192,  # model card: max_length = 8192
    "repllama": 512,  # Tevatron RepLLaMA example: --query_max_len / --passage_max_len 512
    "udever": 300,  # model card: encode(..., max_length=300)
}


def test_each_recipe_carries_its_reference_default_max_length(models):
    from e5_integrations import DeferredEncoder
    from e5_integrations.ingest._chunking import check_chunk_sizes

    for name, expected in REFERENCE_MAX_LENGTH.items():
        assert get_recipe(name).max_length == expected, name
    mistral = models["mistral"]
    for name in ("e5-mistral", "gritlm", "llm2vec"):
        assert _ours(mistral, name).max_length == REFERENCE_MAX_LENGTH[name]
        deferred = DeferredEncoder(str(mistral), device="cpu", recipe=name)
        assert deferred.max_length == REFERENCE_MAX_LENGTH[name] and not deferred.loaded
    # max_length= still overrides, on both encoders
    assert _ours(mistral, "gritlm", max_length=1024).max_length == 1024
    assert DeferredEncoder(str(mistral), device="cpu", recipe="gritlm", max_length=1024).max_length == 1024
    # A reference that truncates at the model's own limit (SGPT's truncation=True, PromptEOL's
    # none, cpt-text) gets the model's: min(max_position_embeddings, tokenizer model_max_length).
    for name in ("sgpt", "prompteol", "cpt-text", "echo"):
        assert get_recipe(name).max_length is None, name
        assert _ours(mistral, name).max_length == 8192  # the tiny model's positions; tokenizer: 32768
    # The chunker of e5 ingest fits chunks into the recipe's limit: nothing is cut short.
    assert check_chunk_sizes(None, None, 512) == (510, 64)
    # (a default-size chunk leaves 2 tokens for the ends of a window tokenized on its own)
    assert check_chunk_sizes(None, None, 512, get_recipe("llm2vec").text_token_cap) == (398, 64)
    assert check_chunk_sizes(None, None, 8192, get_recipe("echo").text_token_cap) == (298, 64)
    with pytest.raises(ConfigurationError, match="embeds at most 300 tokens"):
        check_chunk_sizes(512, None, 8192, get_recipe("echo").text_token_cap)


def _untruncated(recipe: Recipe, tokenizer: Any, texts: list[str]) -> list[int]:
    """Model input lengths of ``texts`` as documents, before any truncation."""
    return [len(row) for row in recipe.tokenize(tokenizer, texts, 1 << 30, side="document")]


@pytest.mark.parametrize("name", ["e5-mistral", "gritlm", "repllama", "llm2vec", "echo", "udever"])
def test_chunks_fit_the_recipe_whole(models, bloom_model, name):
    """A default-size chunk plus the recipe's document template and special tokens fits the
    recipe's max_length (GritLM's ``<|embed|>\n`` and RepLLaMA's ``passage:`` used to push
    full 510-token chunks past 512, and the encoder cut their ends)."""
    from e5_integrations.ingest._chunking import Chunker

    enc = _ours(bloom_model if name == "udever" else models["mistral"], name)
    capacity = enc.recipe.text_capacity(enc.tokenizer, enc.max_length)
    chunker = Chunker(enc.tokenizer, max_length=enc.max_length, text_limit=capacity)
    chunks = [chunk.text for chunk in chunker.split(" ".join([LONG] * 12))]
    assert len(chunks) > 1 and chunker.chunk_tokens == (512 if capacity > 512 else capacity - 2)
    lengths = _untruncated(enc.recipe, enc.tokenizer, chunks)
    assert max(lengths) <= enc.max_length, (name, max(lengths), enc.max_length)
    if name == "e5-mistral":
        assert capacity == 4094  # BOS + EOS: what e5-mistral always had
    if name == "echo":
        assert capacity == 300  # the parser's per-piece cut, whatever the model's limit


def test_ingest_chunks_at_the_recipes_limit(models: dict[str, Path], tmp_path: Path) -> None:
    """``e5 ingest`` with GritLM stores chunks whose whole input fits GritLM's 512 tokens (it
    used to fit them into 4096, and the encoder cut them at 512)."""
    from e5_integrations import DeferredEncoder
    from e5_integrations.ingest import ingest, open_sink

    pytest.importorskip("chromadb")
    source = tmp_path / "long.txt"
    source.write_text(" ".join([LONG] * 4))
    sink = open_sink("chroma", str(tmp_path / "store"), "docs")
    encoder = DeferredEncoder(str(models["mistral"]), device="cpu", dtype="fp32", recipe="gritlm")
    report = ingest([source], sink, encoder, progress=False)
    hits = sink.search(encoder.encode_queries(["details"])[0], k=100)
    lengths = _untruncated(encoder.recipe, encoder.tokenizer, [hit.text for hit in hits])
    assert report.chunks == len(hits) > 1 and max(lengths) <= encoder.max_length == 512
    sink.close()


# -- issue 23: a folder's sentence-transformers config, as sentence-transformers runs it ----


def _save_sentence_transformer(
    path: Path, out: Path, pooling: str, include_prompt: bool, prompts: dict[str, str]
) -> Any:
    """A sentence-transformers model folder written by sentence-transformers itself (5.2, the
    last release that strips inputs, as the folders on the hub were written for)."""
    st = pytest.importorskip("sentence_transformers")
    if not st.__version__.startswith(("5.0", "5.1", "5.2")):
        pytest.skip(f"the reference is sentence-transformers <= 5.2, found {st.__version__}")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models

    transformer = st_models.Transformer(str(path), max_seq_length=24)
    pool = st_models.Pooling(
        transformer.get_word_embedding_dimension(), pooling_mode=pooling, include_prompt=include_prompt
    )
    model = SentenceTransformer(modules=[transformer, pool], prompts=prompts, device="cpu")
    model.save(str(out))
    return SentenceTransformer(str(out), device="cpu")


ST_TEXTS = [
    "trailing space ",
    "trailing space",
    "  leading and trailing\t",
    "how much protein should a female eat",
    LONG,  # over max_seq_length=24: truncated by both
]


@pytest.mark.parametrize(
    "arch, pooling, include_prompt", [("qwen3", "lasttoken", True), ("mistral", "mean", False)]
)
def test_sentence_transformers_folder_is_embedded_as_sentence_transformers_does(
    models: dict[str, Path], tmp_path: Path, arch: str, pooling: str, include_prompt: bool
) -> None:
    prompts = {"query": f"Instruct: {TASK}\nQuery:", "document": ""}
    if not include_prompt:  # a prompt left out of the mean (INSTRUCTOR, GritLM's way)
        prompts = {"query": "Represent this question for retrieval: ", "document": "Represent this passage: "}
    folder = tmp_path / "my-embedder"
    reference = _save_sentence_transformer(models[arch], folder, pooling, include_prompt, prompts)
    enc = _ours(folder, None)
    assert enc.recipe.name == "sentence-transformers" and enc.max_length == 24
    assert enc.recipe.strip_input  # sentence-transformers strips prompt + text before tokenizing
    expected_q = reference.encode(ST_TEXTS, prompt_name="query", convert_to_numpy=True)
    expected_d = reference.encode(ST_TEXTS, prompt_name="document", convert_to_numpy=True)
    _assert_close(enc.encode_queries(ST_TEXTS, task=TASK), expected_q)
    _assert_close(enc.encode_documents(ST_TEXTS), expected_d)
    # the repro: a trailing space no longer changes the vector
    a, b = enc.encode_documents(["trailing space ", "trailing space"])
    assert float(a @ b) > 0.99999
    if include_prompt:  # a whitespace-only text strips to "": the prompt alone, as in sentence-transformers
        expected = reference.encode(["\n"], prompt_name="query")
        _assert_close(enc.encode_queries(["\n"], task=TASK), expected)
    else:  # nothing left to pool once the prompt is left out (sentence-transformers: a zero vector)
        with pytest.raises(InputError, match=r"texts\[1\]"):
            enc.encode_documents(["ok", "\n"])


def test_sentence_transformers_lowercasing_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    import json

    folder = _copy_model(models["qwen3"], tmp_path / "lower")
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "q: "}}))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 64, "do_lower_case": True})
    )
    with pytest.raises(ConfigurationError, match="do_lower_case"):
        _ours(folder, None)


# -- issue 23: no zero or NaN vector from an empty or whitespace-only input -----------------


#: Recipes whose reference embeds "" and whitespace-only texts (something besides the text is
#: pooled: special tokens, a template, delimiters).
DEFINED_FOR_EMPTY = {"e5-mistral", "sgpt", "sgpt-nobrackets", "prompteol", "echo", "echo-last", "cpt-text"}


@pytest.mark.parametrize("name", sorted(set(available_recipes()) - {"udever", "repllama"}))
def test_empty_and_whitespace_inputs_give_a_vector_or_an_error_naming_the_index(models, name):
    arch = "qwen3" if "qwen" in name else "mistral"
    enc = _ours(models[arch], name)
    for texts in (["a text", ""], ["a text", "   "], ["a text", "\n\t"]):
        for encode in (enc.encode_documents, lambda t: enc.encode_queries(t, task=TASK)):
            try:
                vectors = encode(texts)
            except InputError as exc:  # nothing to pool, or (random tiny Qwen: the pad row) a zero state
                assert "texts[1]" in str(exc) and name in str(exc) and exc.index == 1
                # the references that define a vector for these get one (e5-mistral: BOS + EOS)
                assert name not in DEFINED_FOR_EMPTY, (name, texts, str(exc))
                continue
            assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0), (
                name,
                texts,
            )


@pytest.mark.parametrize("name", ["gritlm", "llm2vec"])
def test_an_empty_text_is_refused_where_the_recipe_pools_the_texts_tokens(models, name):
    """GritLM and LLM2Vec pool the text's own tokens; "" has none (the references give NaN,
    we used to give a silent zero vector)."""
    enc = _ours(models["mistral"], name)
    for call in (
        lambda: enc.encode_documents(["ok", ""]),
        lambda: enc.encode_queries(["ok", "fine", ""], task=TASK),
        lambda: enc.tokenize(["ok", ""]),
    ):
        with pytest.raises(InputError, match=r"texts\[\d\].*no token to pool"):
            call()
    big = ["text"] * 600 + [""]  # past the head start: the index is still the caller's
    with pytest.raises(InputError, match=r"texts\[600\]"):
        enc.encode_documents(big)


def test_adapters_take_the_recipes_limits_and_refuse_an_empty_text_like_the_encoder(models):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from e5_integrations.langchain import E5MistralEmbeddings
    from e5_integrations.llama_index import E5MistralEmbedding

    options = {"device": "cpu", "dtype": "fp32", "recipe": "gritlm"}
    langchain = E5MistralEmbeddings(model=str(models["mistral"]), **options)
    llama = E5MistralEmbedding(model_name=str(models["mistral"]), **options)
    assert langchain.encoder.max_length == llama.encoder.max_length == 512  # GritLM's, not 4096
    with pytest.raises(InputError, match=r"texts\[1\]"):
        langchain.embed_documents(["ok", ""])
    with pytest.raises(InputError, match=r"texts\[1\]"):
        llama.get_text_embedding_batch(["ok", ""])


# -- issue 23: tokenizers as shipped, for every architecture ---------------------------------

TOKENIZER_TEXTS = [" leading space", "a  b", "trailing ", "\ttab", "x", "  two", "Query:hello"]


@pytest.mark.parametrize("arch", [*ARCHITECTURES, "bloom"])
def test_tokenizers_load_as_shipped(models, bloom_model, arch):
    """transformers 5's AutoTokenizer rebuilds a Llama/Gemma tokenizer whose config names
    LlamaTokenizer (" leading space": [5374, 2764] instead of [28705, 5374, 2764]); ours is the
    model's tokenizer.json run as it is, and for SentencePiece models raw SentencePiece."""
    from tokenizers import Tokenizer

    from e5_integrations._encoder import load_tokenizer
    from tests.recipe_models import SHIPPED_TOKENIZER_CLASS

    folder = bloom_model if arch == "bloom" else models[arch]
    config = __import__("json").loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == SHIPPED_TOKENIZER_CLASS[arch]  # as the real checkpoints ship
    shipped = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ours = load_tokenizer(str(folder))
    for text in TOKENIZER_TEXTS:
        assert ours(text)["input_ids"] == shipped.encode(text).ids, (arch, text)
    if (folder / "tokenizer.model").is_file():
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        for text in (" leading space", "x", "Query:hello"):
            assert ours(text)["input_ids"] == [sp.bos_id(), *sp.encode(text)], (arch, text)
    # and the encoder embeds those ids
    enc = _ours(folder, "udever" if arch == "bloom" else "sgpt-nobrackets")
    assert enc.tokenizer(" leading space")["input_ids"] == shipped.encode(" leading space").ids


# -- issue 23: RepLLaMA, UDEVER and cpt-text ------------------------------------------------


@pytest.fixture(scope="session")
def bloom_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.recipe_models import build_bloom

    return build_bloom(tmp_path_factory.mktemp("udever") / "udever-bloom-560m")


@pytest.fixture(scope="session")
def repllama_adapter(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Path:
    pytest.importorskip("peft")
    from tests.recipe_models import build_lora_adapter

    return build_lora_adapter(
        models["llama"], tmp_path_factory.mktemp("repllama") / "repllama-v1-7b-lora-passage"
    )


def _repllama_reference(adapter: Path, texts: list[str], side: str) -> torch.Tensor:
    """The RepLLaMA model card's loop (Tevatron's test.py), one text at a time: the base
    model with the LoRA merged, ``query: {q}</s>`` / ``passage: {text}</s>`` (no title: the
    Tevatron encoder's ``passage_prefix + text.strip()``), the last token, L2. Tevatron's
    collator truncates to ``max_len - 1`` before the ``</s>``; texts here fit 512 but LONG."""
    import json

    from peft import PeftModel
    from transformers import AutoModel

    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = _shipped_tokenizer(Path(base))
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(AutoModel.from_pretrained(base, dtype=torch.float32), str(adapter))
    model = model.merge_and_unload().eval()
    rows = []
    for text in texts:
        formatted = f"query: {text}" if side == "query" else f"passage: {text.strip()}"
        ids = tokenizer(formatted, truncation=True, max_length=511)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) < 512:  # the model card's own form, where truncation cannot matter
            assert ids == tokenizer(formatted + "</s>")["input_ids"]
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state
        rows.append(F.normalize(hidden[0][-1], p=2, dim=0))
    return torch.stack(rows)


def test_repllama_lora_adapter(models, repllama_adapter):
    enc = _ours(repllama_adapter, None)  # the preset, by the folder's name
    assert enc.recipe is get_recipe("repllama") and enc.max_length == 512
    texts = [*TEXTS, LONG, " padded passage  "]
    _assert_close(enc.encode_queries(texts), _repllama_reference(repllama_adapter, texts, "query"))
    _assert_close(enc.encode_documents(texts), _repllama_reference(repllama_adapter, texts, "passage"))
    # the adapter is merged: the base model alone gives other vectors
    base = _ours(models["llama"], "repllama")
    assert cosine_rows(base.encode_documents(TEXTS), enc.encode_documents(TEXTS)).min() < 0.99


def test_a_peft_adapter_without_peft_names_the_extra(
    repllama_adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from e5_integrations._peft import merge_adapter

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"e5-integrations\[peft\]"):
        merge_adapter(object(), str(repllama_adapter))


def _udever_reference(path: Path, texts: list[str], is_query: bool, max_length: int = 300) -> torch.Tensor:
    """izhx/udever-bloom-1b1 model card ``encode``, verbatim but for the model class."""
    from transformers import BloomModel

    tokenizer = _shipped_tokenizer(path)
    model = BloomModel.from_pretrained(str(path), dtype=torch.float32).eval()
    boq, eoq, bod, eod = "[BOQ]", "[EOQ]", "[BOD]", "[EOD]"
    eoq_id, eod_id = tokenizer.convert_tokens_to_ids([eoq, eod])
    tokenizer.padding_side = "left"
    bos = boq if is_query else bod
    eos_id = eoq_id if is_query else eod_id
    texts = [bos + t for t in texts]
    encoding = tokenizer(texts, truncation=True, max_length=max_length - 1, padding=True)
    for ids, mask in zip(encoding["input_ids"], encoding["attention_mask"], strict=False):
        ids.append(eos_id)
        mask.append(1)
    inputs = tokenizer.pad(encoding, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
        return outputs.last_hidden_state[:, -1]


def test_udever(bloom_model):
    enc = _ours(bloom_model, None)  # the preset, by the folder's name (udever-bloom-560m)
    assert enc.recipe is get_recipe("udever") and enc.max_length == 300
    texts = [*TEXTS, LONG]  # LONG: over 300 tokens, cut at 299 before [EOQ]/[EOD]
    assert len(enc.tokenizer(LONG)["input_ids"]) > 300
    _assert_close(enc.encode_queries(texts), _udever_reference(bloom_model, texts, True))
    _assert_close(enc.encode_documents(texts), _udever_reference(bloom_model, texts, False))
    ids = enc.tokenize(["x"], instruction="ignored")[0]
    assert enc.tokenizer.convert_ids_to_tokens([ids[0], ids[-1]]) == ["[BOQ]", "[EOQ]"]


def _cpt_reference(path: Path, texts: list[str], brackets: tuple[str, str]) -> torch.Tensor:
    """cpt-text (Neelakantan et al. 2022, sec. 2): the input between two delimiters, the
    last layer's hidden state at the closing one. Written from the paper; no code was released."""
    tokenizer = _shipped_tokenizer(path)
    model = _model(path)
    opening, closing = (tokenizer(b, add_special_tokens=False)["input_ids"][0] for b in brackets)
    rows = []
    for text in texts:
        ids = [opening, *tokenizer(text)["input_ids"], closing]
        with torch.no_grad():
            rows.append(model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1])
    return torch.stack(rows)


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_cpt_text(models, arch):
    enc = _ours(models[arch], "cpt-text")
    _assert_close(enc.encode_queries(TEXTS, task=TASK), _cpt_reference(models[arch], TEXTS, ("[", "]")))
    _assert_close(enc.encode_documents(TEXTS), _cpt_reference(models[arch], TEXTS, ("{", "}")))
    assert cosine_rows(enc.encode_queries(TEXTS), enc.encode_documents(TEXTS)).min() < 0.9999


@pytest.mark.parametrize(
    "model, expected",
    [
        ("castorini/repllama-v1-7b-lora-passage", "repllama"),
        ("castorini/repllama-v1-mrl-7b-lora-passage", "repllama"),
        ("izhx/udever-bloom-1b1", "udever"),
        ("izhx/udever-bloom-560m", "udever"),
        ("izhx/udever-bloom-7b1", "udever"),
        ("bigscience/bloom-560m", None),
    ],
)
def test_presets_of_the_new_recipes(model, expected):
    from e5_integrations._presets import preset_for

    assert preset_for(model) == expected
