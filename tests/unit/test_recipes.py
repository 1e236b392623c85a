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

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from e5_integrations import ConfigurationError, E5Encoder, Piece, Recipe, Template, available_recipes
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
def models(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """One tiny random model per architecture, built once per test session."""
    root = tmp_path_factory.mktemp("recipe-models")
    built = {"mistral": Path(tiny_model_dir)}
    for arch in ARCHITECTURES:
        if arch != "mistral":
            built[arch] = build(arch, root / arch, Path(tiny_model_dir))
    return built


def cosine_rows(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _model(path: Path, bidirectional: bool = False):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(path), dtype=torch.float32).eval()
    if bidirectional:
        model.config.is_causal = False
        for module in model.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = False
    return model


def _ours(path: Path, recipe: str | Recipe, **options) -> E5Encoder:
    return E5Encoder(str(path), device="cpu", dtype="fp32", recipe=recipe, **options)


def _assert_close(ours: np.ndarray, reference, floor: float = 0.99999) -> None:
    cos = cosine_rows(ours, reference)
    assert cos.min() >= floor, cos


# -- SGPT: Muennighoff/sgpt README.md, tokenize_with_specb + get_weightedmean_embedding ----


def _sgpt_reference(path: Path, texts: list[str], brackets: tuple[str, str] | None) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
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
    path: Path, side: str, texts: list[str], strategy: str, prompt: str = TASK
) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), add_bos_token=False, add_eos_token=False)
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
    enc = _ours(models["mistral"], name)
    _assert_close(
        enc.encode_queries(TEXTS, task=TASK), _echo_reference(models["mistral"], "query", TEXTS, strategy)
    )
    _assert_close(
        enc.encode_documents(TEXTS), _echo_reference(models["mistral"], "document", TEXTS, strategy)
    )


def test_echo_pools_only_the_second_copy(models):
    """Changing the text's first copy alone is impossible, but the embed mask can be
    checked: the pooled span is the second copy plus </s>, and nothing before it."""
    enc = _ours(models["mistral"], "echo")
    (row,) = enc.recipe.tokenize(enc.tokenizer, ["Paris"], 4096, side="document")
    start, end = row.span
    assert row[end - 1] == enc.tokenizer.eos_token_id and end == len(row)
    second = enc.tokenizer("Paris", add_special_tokens=False)["input_ids"]
    assert list(row[start : end - 1]) == second
    assert list(row[:start]).count(second[-1]) >= 1  # the first copy is there, not pooled


# -- PromptEOL: kongds/scaling_sentemb evaluation.py, batcher() ---------------------------


def _prompteol_reference(path: Path, sentences: list[str]) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
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
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
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
    texts_2, original = [], []
    for text in sentences:
        t = text.split("!@#$%^&*()")
        texts_2.append(t[1] if len(t) > 1 else "")
        original.append("".join(t))
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
    enc = _ours(models[arch], "llm2vec", max_length=512)  # LLM2Vec's max_length
    texts = [*TEXTS, LONG]  # LONG has over 512 tokens: cut at whole words to 400 (doc_max_length)
    assert len(enc.tokenizer(LONG)["input_ids"]) > 512
    _assert_close(enc.encode_queries(texts, task=TASK + "  "), _llm2vec_reference(models[arch], TASK, texts))
    _assert_close(enc.encode_documents(texts), _llm2vec_reference(models[arch], "", texts))


# -- GritLM: ContextualAI/gritlm gritlm/gritlm.py, GritLM.encode + GritLM.pooling ---------


def _gritlm_instruction(instruction: str) -> str:  # README.md
    return "<|user|>\n" + instruction + "\n<|embed|>\n" if instruction else "<|embed|>\n"


def _gritlm_reference(path: Path, texts: list[str], instruction: str) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="right")
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
    enc = _ours(models["mistral"], "gritlm")
    path = models["mistral"]
    _assert_close(
        enc.encode_queries(TEXTS, task=TASK), _gritlm_reference(path, TEXTS, _gritlm_instruction(TASK))
    )
    _assert_close(enc.encode_documents(TEXTS), _gritlm_reference(path, TEXTS, _gritlm_instruction("")))


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
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side=padding_side)
    model = _model(path, bidirectional=bidirectional)
    batch_dict = tokenizer(input_texts, padding=True, truncation=True, max_length=8192, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch_dict)
    return F.normalize(_last_token_pool(outputs.last_hidden_state, batch_dict["attention_mask"]), p=2, dim=1)


def test_qwen3_embedding(models):
    path = models["qwen3"]
    enc = _ours(path, "qwen3-embedding")
    queries = [f"Instruct: {TASK}\nQuery:{q}" for q in TEXTS]  # get_detailed_instruct: no space
    _assert_close(enc.encode_queries(TEXTS, task=TASK), _qwen_reference(path, queries, "left", False))
    _assert_close(enc.encode_documents(TEXTS), _qwen_reference(path, TEXTS, "left", False))
    ids = enc.count_tokens(["abc"])
    assert ids == [len(enc.tokenizer("abc")["input_ids"])]  # <|endoftext|> once, not twice
    # the reference pads on the left, and so do we by default; the other side gives the same vectors
    assert enc._backends[0].padding_side == "left" and not enc._backends[0].mask_free
    right = _ours(path, "qwen3-embedding", padding_side="right")
    assert right._backends[0].mask_free  # causal + right padding: the fast path
    _assert_close(right.encode_queries(TEXTS, task=TASK), enc.encode_queries(TEXTS, task=TASK))


def test_gte_qwen2_is_bidirectional(models):
    path = models["qwen2"]
    enc = _ours(path, "gte-qwen2")
    queries = [f"Instruct: {TASK}\nQuery: {q}" for q in TEXTS]
    reference = _qwen_reference(path, queries, "right", True)
    _assert_close(enc.encode_queries(TEXTS, task=TASK), reference)
    _assert_close(enc.encode_documents(TEXTS), _qwen_reference(path, TEXTS, "right", True))
    causal = _qwen_reference(path, queries, "right", False)
    assert cosine_rows(reference, causal).min() < 0.999  # the attention mode matters


def test_e5_mistral_is_the_default_and_keeps_its_fast_path(models):
    enc = _ours(models["mistral"], None)
    assert enc.recipe is E5_MISTRAL and get_recipe("e5-mistral") is E5_MISTRAL
    assert enc._backends[0].mask_free and enc._backends[0].padding_side == "right"
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


def test_every_builtin_recipe_runs_and_is_listed(models):
    assert available_recipes() == sorted(available_recipes())
    for name in available_recipes():
        recipe = get_recipe(name)
        assert recipe.source, name
        arch = "qwen3" if "qwen" in name else "mistral"
        vectors = _ours(models[arch], name).encode_documents(["one text", "another, longer text here"])
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


def test_a_preset_is_picked_by_folder_name_and_recipe_overrides_it(models, tmp_path):
    folder = _copy_model(models["qwen3"], tmp_path / "Qwen3-Embedding-0.6B")
    assert _ours(folder, None).recipe is get_recipe("qwen3-embedding")
    assert _ours(folder, "sgpt-nobrackets").recipe is get_recipe("sgpt-nobrackets")


def test_recipe_from_sentence_transformers_prompts(models, tmp_path):
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
