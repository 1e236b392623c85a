"""``E5Encoder``: the public embedding API every adapter, sink and benchmark goes through."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from e5_integrations._backend import Backend, TorchBackend, load_model, resolve_devices, resolve_dtype
from e5_integrations._batching import plan_batches
from e5_integrations._errors import ConfigurationError, InputError, ModelLoadError, OutOfMemoryError, option
from e5_integrations._presets import resolve_recipe
from e5_integrations._recipe import Encoded, Recipe, tokenize_for_embedding
from e5_integrations._tasks import DEFAULT_TASK, Task, resolve_task

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MODEL",
    "DeferredEncoder",
    "E5Encoder",
    "default_max_length",
    "load_tokenizer",
    "model_dimension",
    "model_name_from_aliases",
    "model_token_limit",
]

logger = logging.getLogger("e5_integrations")

#: Model used when neither ``model=`` nor the ``E5_MODEL`` environment variable is given.
DEFAULT_MODEL = "intfloat/e5-mistral-7b-instruct"

#: Token limit for a recipe whose reference sets none when the model states none either.
DEFAULT_MAX_LENGTH = 4096

#: Texts embedded first while the rest is tokenized on a thread (for inputs twice as long).
HEAD_START_TEXTS = 256

_Rows = TypeVar("_Rows", bound=Sequence[Sequence[int]])

_OOM_ERRORS: tuple[type[BaseException], ...] = (torch.OutOfMemoryError,)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise InputError(
            f"texts must be a list of strings, got a single {type(texts).__name__}; wrap it: [text]"
        )
    try:
        items = list(texts)
    except TypeError as exc:
        raise InputError(f"texts must be a list of strings, got {type(texts).__name__}") from exc
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(
                f"texts[{index}] is {type(item).__name__} ({item!r:.60}), expected str; "
                "convert or drop it before encoding"
            )
    return items


def load_tokenizer(model: str) -> Any:
    """The tokenizer of ``model`` (an id or a local directory), as the model ships it.

    A model with a ``tokenizer.json`` gets exactly that file (``PreTrainedTokenizerFast``):
    under transformers 5, ``AutoTokenizer`` rebuilds a Llama or Gemma tokenizer from its
    vocabulary when ``tokenizer_config.json`` names ``LlamaTokenizer``, and the rebuilt one
    drops SentencePiece's dummy prefix before a leading space (``" leading space"``:
    ``[5374, 2764]`` instead of the shipped ``[28705, 5374, 2764]``). A model without one
    (a bare SentencePiece ``tokenizer.model``) is converted by ``AutoTokenizer``. A PEFT
    adapter folder without tokenizer files uses its base model's.

    Raises:
        ModelLoadError: it cannot be loaded, or has no EOS token (last-token pooling needs one).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from e5_integrations._peft import find_model_file, model_files_source

    source = model_files_source(model, "tokenizer")
    try:
        if find_model_file(source, "tokenizer.json") is not None:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"could not load the tokenizer of {model!r} ({type(exc).__name__}: {exc}); expected a "
            f"Hugging Face model id or a local model directory; set E5_MODEL or pass {option('model')}"
        ) from exc
    if tokenizer.eos_token_id is None:
        raise ModelLoadError(f"the tokenizer of {model!r} has no EOS token; last-token pooling needs one")
    return tokenizer


def _model_config(model: str) -> Any:
    from transformers import AutoConfig

    from e5_integrations._peft import model_files_source

    try:
        return AutoConfig.from_pretrained(model_files_source(model, "config"))
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"could not read the configuration of {model!r} ({type(exc).__name__}: {exc}); expected a "
            f"Hugging Face model id or a local model directory; set E5_MODEL or pass {option('model')}"
        ) from exc


def model_dimension(model: str) -> int:
    """The size of ``model``'s vectors (its hidden size), read from its ``config.json``
    without loading the weights.

    Raises:
        ModelLoadError: the configuration cannot be read.
    """
    size = getattr(_model_config(model), "hidden_size", None)
    if not isinstance(size, int) or size < 1:
        raise ModelLoadError(f"the configuration of {model!r} has no hidden_size; is it a decoder model?")
    return size


#: A tokenizer's ``model_max_length`` above this is transformers' "no limit" placeholder.
_NO_LIMIT = 10**9


def model_token_limit(model: str, tokenizer: Any = None) -> int:
    """The model's own token limit: the smaller of its ``max_position_embeddings`` (or
    ``n_positions``, ``seq_length``) and its tokenizer's ``model_max_length``, the limit
    ``truncation=True`` without ``max_length`` applies; :data:`DEFAULT_MAX_LENGTH` when
    neither states one (ALiBi models such as BLOOM)."""
    config = _model_config(model)
    limits = [
        value
        for name in ("max_position_embeddings", "n_positions", "seq_length")
        if isinstance(value := getattr(config, name, None), int) and value > 1
    ][:1]
    stated = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(stated, int) and 1 < stated < _NO_LIMIT:
        limits.append(stated)
    return min(limits) if limits else DEFAULT_MAX_LENGTH


def default_max_length(model: str, recipe: Recipe, tokenizer: Any = None) -> int:
    """The ``max_length`` an encoder of ``model`` uses when none is given: the recipe's
    reference default (:attr:`Recipe.max_length`), else the model's own limit."""
    if recipe.max_length is not None:
        return recipe.max_length
    return model_token_limit(model, tokenizer)


def model_name_from_aliases(data: Any) -> Any:
    """For the adapters' pydantic models: accept ``model=`` (as :class:`E5Encoder` takes it)
    as well as their ``model_name=``; both at once must agree.

    Takes and returns the raw constructor data (a ``mode="before"`` model validator).
    """
    if not isinstance(data, dict) or "model" not in data:
        return data
    data = dict(data)
    model = data.pop("model")
    if "model_name" in data and data["model_name"] is not None and str(data["model_name"]) != str(model):
        raise ValueError(
            f"model={str(model)!r} and model_name={str(data['model_name'])!r} name different models; "
            "pass one of them (model= as E5Encoder takes it, or model_name=)"
        )
    if model is not None:
        data["model_name"] = str(model)
    return data


def _check_sizes(max_length: Any, batch_tokens: Any) -> None:
    if max_length is not None and (not isinstance(max_length, int) or max_length < 2):
        raise ConfigurationError(
            f"max_length must be an int >= 2 (BOS + EOS) or None (the recipe's default), got {max_length!r}"
        )
    if not isinstance(batch_tokens, int) or batch_tokens < 1:
        raise ConfigurationError(f"{option('batch_tokens')} must be a positive int, got {batch_tokens!r}")


def _model_name(model: str | os.PathLike[str] | None) -> str:
    return str(model) if model is not None else os.environ.get("E5_MODEL") or DEFAULT_MODEL


class E5Encoder:
    """Embeds texts exactly like the e5-mistral-7b-instruct model card, fast.

    Queries get ``Instruct: {task}\\nQuery: {query}``; documents are embedded as they are.
    Texts are truncated to ``max_length - 1`` tokens and EOS is appended; the EOS hidden
    state is pooled and L2-normalised. Other models embed with their own :class:`Recipe`
    (``recipe=``, or the preset for the model id): SGPT, Echo, PromptEOL, LLM2Vec, GritLM,
    Qwen3-Embedding, gte-Qwen2 (see :func:`e5_integrations.available_recipes`). Inputs are sorted by length and packed into batches
    of at most ``batch_tokens`` padded tokens; results come back in the caller's order as
    float32 arrays of shape ``(n, dimension)``.

    Encoders with the same ``(model, device, dtype)`` share one loaded model, so a
    LangChain adapter, a LlamaIndex adapter and an ingestion job in one process load the
    weights once. :meth:`shared` returns one process-wide encoder per configuration.

    Args:
        model: Hugging Face model id or local directory. Default: ``$E5_MODEL``, else
            ``intfloat/e5-mistral-7b-instruct``.
        device: ``None`` (best available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or a list of
            devices to split the batches across (one model replica each).
        dtype: ``"auto"`` (bf16 where supported, else fp16 on GPU; fp32 on CPU), ``"bf16"``,
            ``"fp16"``, ``"fp32"`` or a ``torch.dtype``.
        max_length: token limit per text, special tokens included. Default (``None``): the
            recipe's reference default (4096 for e5-mistral, 512 for GritLM and LLM2Vec, 8192
            for Qwen3-Embedding...; see :attr:`Recipe.max_length`), else the model's own limit.
        batch_tokens: padded-token budget per forward pass; halved automatically on CUDA OOM.
        normalize: L2-normalise the vectors.
        show_progress: progress bar; ``None`` shows one for long inputs on a terminal.
        attn_implementation: override the attention kernel (default sdpa, or
            flash_attention_2 when flash-attn is installed and the dtype is half precision).
        padding_side: ``"right"`` or ``"left"``; default: the recipe's (the side its reference
            pads on), else right. Results are the same either way.
        recipe: how the model embeds: a name from :func:`e5_integrations.available_recipes`
            (``"sgpt"``, ``"qwen3-embedding"``...) or a :class:`~e5_integrations.Recipe`.
            Default: the preset for the model id (e5-mistral and its siblings, Qwen3-Embedding,
            gte-Qwen2, GritLM...), else one derived from the model folder's
            ``config_sentence_transformers.json`` prompts, else e5-mistral's.
        compile: run the model through ``torch.compile(dynamic=True)`` (fused kernels). The
            first batch pays the compilation; worth it for long jobs, not for a few queries.
        cuda_graphs: replay CUDA graphs for batches of up to 8 texts of up to 512 tokens
            (search queries), cutting launch overhead; CUDA and right padding only. Each
            captured shape is checked against the eager pass once; any problem turns
            graphs off with a warning.
        backends: ready :class:`~e5_integrations._backend.Backend` objects to compute with,
            one per device, instead of loading ``model`` on ``device`` (test doubles, custom
            kernels). ``model`` still gives the tokenizer. Leave ``device`` unset with it.
    """

    _shared: ClassVar[dict[tuple[Any, ...], E5Encoder]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device | Sequence[str | torch.device] | None = None,
        dtype: str | torch.dtype = "auto",
        max_length: int | None = None,
        batch_tokens: int = 16384,
        normalize: bool = True,
        show_progress: bool | None = None,
        attn_implementation: str | None = None,
        padding_side: str | None = None,
        recipe: str | Recipe | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
        backends: Sequence[Backend] | None = None,
    ) -> None:
        if backends is not None and (device is not None or not backends):
            raise ConfigurationError(
                f"backends= gives the devices itself; got device={device!r} and {len(backends)} backends. "
                "Pass one of them (a non-empty backends= list, or device=)"
            )
        _check_sizes(max_length, batch_tokens)
        self.model_name = _model_name(model)
        self.devices = [b.device for b in backends] if backends is not None else resolve_devices(device)
        self.dtype = resolve_dtype(dtype, self.devices[0])
        self.batch_tokens = batch_tokens
        self.normalize = normalize
        self.show_progress = show_progress
        self.recipe = resolve_recipe(self.model_name, recipe)
        self.tokenizer = load_tokenizer(self.model_name)
        #: Token limit per input, special tokens included (the recipe's default unless given).
        self.max_length: int = (
            max_length
            if max_length is not None
            else default_max_length(self.model_name, self.recipe, self.tokenizer)
        )
        for side in ("query", "document"):  # a recipe for another tokenizer fails here, not mid-job
            self.recipe.end_token_id(self.tokenizer, side)
        pad_id = _pad_token_id(self.tokenizer, self.recipe)
        side = padding_side or self.recipe.padding_side or "right"
        if backends is not None:
            self._backends: list[Backend] = list(backends)
            return
        self._backends = [
            TorchBackend(
                load_model(self.model_name, dev, self.dtype, attn_implementation),
                self.recipe,
                pad_id,
                side,
                compile=compile,
                cuda_graphs=cuda_graphs,
            )
            for dev in self.devices
        ]

    @classmethod
    def shared(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device | Sequence[str | torch.device] | None = None,
        dtype: str | torch.dtype = "auto",
        **options: Any,
    ) -> E5Encoder:
        """The process-wide encoder for these settings, created on first use.

        Keyed by the resolved model, devices and dtype plus any other options, so
        ``E5Encoder.shared()`` called from LangChain, LlamaIndex and an ingestion job
        returns the same object (and the model is loaded once).
        """
        name = _model_name(model)
        devices = tuple(str(d) for d in resolve_devices(device))
        key = (
            name,
            devices,
            str(resolve_dtype(dtype, torch.device(devices[0]))),
            tuple(sorted(options.items())),
        )
        with cls._shared_lock:
            encoder = cls._shared.get(key)
            if encoder is None:
                encoder = cls(name, device=list(devices), dtype=dtype, **options)
                cls._shared[key] = encoder
            return encoder

    @property
    def dimension(self) -> int:
        """Size of the vectors (4096 for e5-mistral-7b-instruct)."""
        return self._backends[0].hidden_size

    @property
    def loaded_models(self) -> list[Any]:
        """The loaded model objects, one per device (shared with other encoders)."""
        return [backend.loaded.model for backend in self._backends if isinstance(backend, TorchBackend)]

    def __repr__(self) -> str:
        devices = ", ".join(str(d) for d in self.devices)
        return (
            f"E5Encoder({self.model_name!r}, device=[{devices}], dtype={self.dtype}, "
            f"max_length={self.max_length}, batch_tokens={self.batch_tokens})"
        )

    # -- public encode API -------------------------------------------------------------

    def encode_queries(self, texts: Sequence[str], task: str | Task = DEFAULT_TASK) -> np.ndarray:
        """Embed search queries with the recipe's query template (e5-mistral:
        ``Instruct: {task}\\nQuery: {query}``).

        Args:
            texts: the queries.
            task: a one-sentence instruction, or a registered task name such as ``"NQ"``
                (see :func:`e5_integrations.available_tasks`).
        """
        instruction = resolve_task(task).instruction
        return self.encode(texts, instruction=instruction)

    def encode_documents(self, texts: Sequence[str], task: str | Task | None = None) -> np.ndarray:
        """Embed documents with the recipe's document template (e5-mistral: the text as it
        is; PromptEOL and Echo: their templates), unless ``task`` is symmetric (STS,
        clustering, classification, pair classification...), where both sides are queries."""
        if task is not None:
            resolved = resolve_task(task)
            if resolved.symmetric:
                return self.encode(texts, instruction=resolved.instruction)
        return self.encode(texts)

    def encode(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
        """Embed texts with the recipe's query template and ``instruction``, or with its
        document template when ``instruction`` is ``None`` (e5-mistral: the texts as they are)."""
        items = _check_texts(texts)
        if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
            raise ConfigurationError(f"instruction must be a non-empty sentence or None, got {instruction!r}")
        tokenize = self._tokenizer_for(instruction)
        if len(items) < 2 * HEAD_START_TEXTS:
            return self._encode_parts(len(items), [(0, lambda: self._checked(tokenize(items), 0))])
        # Tokenization never starves the device: the bulk is tokenized on a thread (the
        # Rust tokenizer releases the GIL) while the device embeds a head start.
        head = self._checked(tokenize(items[:HEAD_START_TEXTS]), 0)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="e5-tokenize") as pool:
            bulk = pool.submit(lambda: self._checked(tokenize(items[HEAD_START_TEXTS:]), HEAD_START_TEXTS))
            return self._encode_parts(len(items), [(0, lambda: head), (HEAD_START_TEXTS, bulk.result)])

    def tokenize(self, texts: Sequence[str], instruction: str | None = None) -> list[list[int]]:
        """The model inputs :meth:`encode` builds for ``texts``: the recipe's query template
        with ``instruction``, or its document side when ``instruction`` is ``None``; truncated,
        with the recipe's special tokens. Rows are :class:`~e5_integrations._recipe.Encoded`
        where the recipe pools a span; :meth:`encode_token_ids` embeds them (the server
        batches requests this way).

        Raises:
            InputError: a text leaves the recipe nothing to pool (see :meth:`_checked`).
        """
        return self._checked(self._tokenizer_for(instruction)(_check_texts(texts)), 0)

    def _checked(self, rows: _Rows, offset: int) -> _Rows:
        """``rows``, once each is known to give a vector: a row with no token, or whose pooled
        span is empty (``""`` under GritLM or LLM2Vec, which pool the text's own tokens only),
        would pool nothing and come out as a zero vector (NaN in the references), so it is
        refused, naming the text's index (``offset`` + its position)."""
        for index, row in enumerate(rows):
            span = getattr(row, "span", None)
            if len(row) == 0 or (span is not None and span[0] >= span[1]):
                raise InputError(
                    f"texts[{offset + index}] leaves recipe {self.recipe.name!r} no token to pool (an empty "
                    "or whitespace-only text: the recipe pools the text's own tokens, and the reference "
                    "gives a NaN vector); drop it or send some text",
                    offset + index,
                )
        return rows

    def _tokenizer_for(self, instruction: str | None) -> Callable[[Sequence[str]], list[list[int]]]:
        """Texts → token ids for one side. e5-mistral-like recipes (one string template,
        every token pooled) keep the model card's path: template, then tokenize."""
        recipe = self.recipe
        side_template = recipe.query if instruction is not None else recipe.document
        side = "query" if instruction is not None else "document"
        template = side_template.text
        if recipe.templates_then_tokenize and isinstance(template, str):
            if template == "{text}":
                return lambda texts: tokenize_for_embedding(
                    self.tokenizer, texts, self.max_length, recipe, side
                )
            if "{bos}" not in template and "{eos}" not in template:
                return lambda texts: tokenize_for_embedding(
                    self.tokenizer,
                    [recipe._format(template, t, instruction, None) for t in texts],
                    self.max_length,
                    recipe,
                    side,
                )

        def tokenize(texts: Sequence[str]) -> list[list[int]]:
            encoded: list[Encoded] = recipe.tokenize(
                self.tokenizer, texts, self.max_length, instruction=instruction, side=side
            )
            return list(encoded)

        return tokenize

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes as a document (the recipe's document template and special
        tokens included, after truncation)."""
        return [len(row) for row in self._tokenizer_for(None)(_check_texts(texts))]

    def encode_token_ids(self, ids: Sequence[Sequence[int]], *, check_vectors: bool = True) -> np.ndarray:
        """Embed sequences already tokenized by :meth:`tokenize`.

        Sorts by length, packs token-budget batches, spreads them over the devices, backs
        off on out-of-memory, and returns rows in the input order.

        Args:
            ids: the token ids of each input.
            check_vectors: raise on a zero or non-finite vector; ``False`` leaves the check to
                a caller that batches several requests and answers each for its own rows
                (``e5 serve``).

        Raises:
            InputError: a row with no token, an empty pooled span, or (``check_vectors``) a
                zero or non-finite vector.
        """
        return self._encode_parts(len(ids), [(0, lambda: self._checked(ids, 0))], check_vectors)

    def _encode_parts(
        self,
        n: int,
        parts: Sequence[tuple[int, Callable[[], Sequence[Sequence[int]]]]],
        check_vectors: bool = True,
    ) -> np.ndarray:
        """Embed ``n`` sequences given as parts ``(offset, get_ids)``; each part is sorted
        and batched on its own, and ``get_ids`` is called only when the part's turn comes."""
        out = np.empty((n, self.dimension), dtype=np.float32)
        if n == 0:
            return out
        show = self.show_progress
        if show is None:
            show = n >= 512 and sys.stderr.isatty()
        from tqdm.auto import tqdm

        with tqdm(total=n, unit="text", desc="embedding", disable=not show) as progress:
            state = _RunState(self.batch_tokens)
            for offset, get_ids in parts:
                ids = get_ids()
                rows = out[offset : offset + len(ids)]  # a view: batches write into ``out``
                batches = _Batches([len(row) for row in ids], state)
                if len(self._backends) == 1:
                    while (batch := batches.take()) is not None:
                        self._run_batch(self._backends[0], ids, batch, rows, state, progress)
                else:
                    self._run_parallel(ids, batches, rows, state, progress)
                if check_vectors:
                    self.check_vectors(rows, offset)
        return out

    def check_vectors(self, rows: np.ndarray, offset: int = 0, label: str = "texts") -> None:
        """Raise :class:`InputError` naming ``{label}[offset + i]`` for the first zero or
        non-finite row. No such vector leaves the encoder silently: stores refuse them or
        answer NaN cosines. (A half-precision overflow gives NaN; a text whose pooled tokens
        all have zero states, as a random model's padding embedding does, gives zero.)"""
        norms = np.linalg.norm(rows, axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(bad):
            index = int(bad[0])
            kind = "a zero" if np.isfinite(norms[index]) else "a non-finite"
            raise InputError(
                f"{label}[{offset + index}] gives {kind} vector under {self.model_name!r} (dtype {self.dtype}, "
                f"recipe {self.recipe.name!r}){f' and so do {len(bad) - 1} more' if len(bad) > 1 else ''}; "
                "a zero vector has no direction to compare. Check the text, or try dtype='fp32' for NaNs",
                offset + index,
            )

    # -- internals -----------------------------------------------------------------------

    def _run_parallel(
        self,
        ids: Sequence[Sequence[int]],
        batches: _Batches,
        out: np.ndarray,
        state: _RunState,
        progress: Any,
    ) -> None:
        errors: list[BaseException] = []

        def worker(backend: Backend) -> None:
            while not errors:
                batch = batches.take()
                if batch is None:
                    return
                try:
                    self._run_batch(backend, ids, batch, out, state, progress)
                except BaseException as exc:  # re-raised in the caller's thread
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=worker, args=(b,), daemon=True) for b in self._backends]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _run_batch(
        self,
        backend: Backend,
        ids: Sequence[Sequence[int]],
        batch: list[int],
        out: np.ndarray,
        state: _RunState,
        progress: Any,
    ) -> None:
        width = max(len(ids[i]) for i in batch)
        if len(batch) > 1 and width * len(batch) > state.budget:
            # Planned before another device's OOM lowered the budget: split it first.
            self._run_split(backend, ids, batch, out, state, progress)
            return
        try:
            vectors = backend.embed([ids[i] for i in batch])
        except _OOM_ERRORS as exc:
            if backend.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                raise OutOfMemoryError(
                    f"one text of {width} tokens does not fit on {backend.device} even alone "
                    f"(dtype {self.dtype}); lower max_length (now {self.max_length}) or use a larger device"
                ) from exc
            budget = state.lower(width * len(batch))
            logger.warning(
                "out of memory on %s with a batch of %d x %d tokens; retrying it with batch_tokens=%d, "
                "kept for the rest of this call",
                backend.device,
                len(batch),
                width,
                budget,
            )
            self._run_split(backend, ids, batch, out, state, progress)
            return
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        out[batch] = vectors.numpy()
        progress.update(len(batch))

    def _run_split(
        self,
        backend: Backend,
        ids: Sequence[Sequence[int]],
        batch: list[int],
        out: np.ndarray,
        state: _RunState,
        progress: Any,
    ) -> None:
        """Run ``batch`` as batches planned at the run's current budget."""
        sub_batches = plan_batches([len(ids[i]) for i in batch], state.budget)
        if len(sub_batches) == 1:  # the budget still fits everything: split in two
            half = len(batch) // 2
            sub_batches = [list(range(half)), list(range(half, len(batch)))]
        for sub in sub_batches:
            self._run_batch(backend, ids, [batch[j] for j in sub], out, state, progress)


class DeferredEncoder:
    """An :class:`E5Encoder` that loads the model's weights only when it first embeds.

    An ingestion run needs the tokenizer (to chunk), the vector size (to create or check
    the collection) and the settings long before it embeds anything. This encoder serves
    them from the tokenizer files and ``config.json``, each read on first use, so a bad
    input, a store that cannot be reached or a collection of another dimension is
    reported in seconds rather than after minutes of loading a 7B model. ``e5 ingest`` and
    ``e5 search`` use it; ``ingest(sources, sink, DeferredEncoder(model))`` does the same
    from Python.

    Args:
        model: as for :class:`E5Encoder`.
        **options: any :class:`E5Encoder` keyword (``device``, ``dtype``, ``max_length``,
            ``batch_tokens``...). Sizes, ``device`` and ``dtype`` are checked now.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, **options: Any) -> None:
        self.model_name = _model_name(model)
        self.batch_tokens: int = options.get("batch_tokens", 16384)
        _check_sizes(options.get("max_length"), self.batch_tokens)
        devices = resolve_devices(options.get("device"))
        resolve_dtype(options.get("dtype", "auto"), devices[0])
        self._options = options
        #: The recipe the loaded encoder will use (resolved now: no weights needed).
        self.recipe: Recipe = resolve_recipe(self.model_name, options.get("recipe"))
        self._encoder: E5Encoder | None = None
        self._tokenizer: Any = None
        self._dimension: int | None = None
        self._max_length: int | None = options.get("max_length")
        self._lock = threading.Lock()

    @property
    def max_length(self) -> int:
        """Token limit per input: ``max_length=`` if given, else the recipe's default (read
        from the model's configuration and tokenizer when the recipe leaves it to the model;
        no weights)."""
        if self._max_length is None:
            self._max_length = (
                self._encoder.max_length
                if self._encoder is not None
                else default_max_length(
                    self.model_name,
                    self.recipe,
                    self.tokenizer if self.recipe.max_length is None else None,
                )
            )
        return self._max_length

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded on first use (no weights)."""
        if self._tokenizer is None:
            self._tokenizer = (
                self._encoder.tokenizer if self._encoder is not None else load_tokenizer(self.model_name)
            )
        return self._tokenizer

    @property
    def dimension(self) -> int:
        """Size of the vectors, from ``config.json`` (no weights)."""
        if self._dimension is None:
            self._dimension = (
                self._encoder.dimension if self._encoder is not None else model_dimension(self.model_name)
            )
        return self._dimension

    @property
    def loaded(self) -> bool:
        """Whether the weights are loaded."""
        return self._encoder is not None

    def load(self) -> E5Encoder:
        """The encoder, its weights loaded on the first call."""
        with self._lock:
            if self._encoder is None:
                options = dict(self._options)
                if self._max_length is not None:
                    options["max_length"] = self._max_length
                self._encoder = E5Encoder(self.model_name, **options)
            return self._encoder

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded yet"
        return f"DeferredEncoder({self.model_name!r}, {state})"

    def encode_queries(self, texts: Sequence[str], task: str | Task = DEFAULT_TASK) -> np.ndarray:
        """:meth:`E5Encoder.encode_queries`, loading the weights first if needed."""
        return self.load().encode_queries(texts, task=task)

    def encode_documents(self, texts: Sequence[str], task: str | Task | None = None) -> np.ndarray:
        """:meth:`E5Encoder.encode_documents`, loading the weights first if needed."""
        return self.load().encode_documents(texts, task=task)

    def encode(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
        """:meth:`E5Encoder.encode`, loading the weights first if needed."""
        return self.load().encode(texts, instruction=instruction)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """:meth:`E5Encoder.count_tokens` (needs the tokenizer only)."""
        if self._encoder is not None:
            return self._encoder.count_tokens(texts)
        encoded = self.recipe.tokenize(
            self.tokenizer, _check_texts(texts), self.max_length, instruction=None, side="document"
        )
        return [len(row) for row in encoded]


def _pad_token_id(tokenizer: Any, recipe: Recipe) -> int:
    """The recipe's padding token if it names one the tokenizer knows, else the
    tokenizer's, else EOS. Padding is masked, so this never changes a vector."""
    if recipe.pad_token is not None:
        token_id = tokenizer.convert_tokens_to_ids(recipe.pad_token)
        if token_id is not None:
            return int(token_id)
    pad_id = tokenizer.pad_token_id
    return int(pad_id if pad_id is not None else tokenizer.eos_token_id)


class _RunState:
    """Token budget of one encode call, shared by device workers.

    An out-of-memory error lowers it, and it stays lowered for the rest of the call: every
    batch planned afterwards (see :class:`_Batches`) fits the budget that last worked, so
    one OOM costs one failed forward pass, not one per batch. The next call starts again
    from the encoder's ``batch_tokens`` (the memory may have been taken by something else).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._lock = threading.Lock()

    def lower(self, failed_tokens: int) -> int:
        """Half the padded size that failed, unless the budget is already below that (a
        batch planned before another worker's OOM lowered it); returns the new budget."""
        with self._lock:
            self.budget = max(1, min(self.budget, failed_tokens // 2))
            return self.budget


class _Batches:
    """The batches of one part, handed out one at a time, longest first.

    When the run's budget drops (an OOM), the batches not yet handed out are planned
    again at the new budget. Thread-safe: device workers take from one instance.
    """

    def __init__(self, lengths: Sequence[int], state: _RunState) -> None:
        self._lengths = list(lengths)
        self._state = state
        self._planned_at = state.budget
        self._pending: deque[list[int]] = deque(plan_batches(self._lengths, self._planned_at))
        self._lock = threading.Lock()

    def take(self) -> list[int] | None:
        """The next batch (indices into the part), or ``None`` when all were handed out."""
        with self._lock:
            budget = self._state.budget
            if budget < self._planned_at and self._pending:
                rest = [index for batch in self._pending for index in batch]
                replanned = plan_batches([self._lengths[index] for index in rest], budget)
                self._pending = deque([rest[j] for j in batch] for batch in replanned)
                self._planned_at = budget
            return self._pending.popleft() if self._pending else None
