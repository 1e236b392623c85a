"""``E5Encoder``: the public embedding API every adapter, sink and benchmark goes through."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import torch

from e5_integrations._backend import TorchBackend, load_model, resolve_devices, resolve_dtype
from e5_integrations._batching import plan_batches
from e5_integrations._errors import ConfigurationError, InputError, ModelLoadError, OutOfMemoryError
from e5_integrations._presets import resolve_recipe
from e5_integrations._recipe import Encoded, Recipe, tokenize_for_embedding
from e5_integrations._tasks import DEFAULT_TASK, Task, resolve_task

__all__ = ["DEFAULT_MODEL", "E5Encoder", "load_tokenizer"]

logger = logging.getLogger("e5_integrations")

#: Model used when neither ``model=`` nor the ``E5_MODEL`` environment variable is given.
DEFAULT_MODEL = "intfloat/e5-mistral-7b-instruct"

#: Texts embedded first while the rest is tokenized on a thread (for inputs twice as long).
HEAD_START_TEXTS = 256

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
    """The Hugging Face tokenizer of ``model`` (an id or a local directory).

    Raises:
        ModelLoadError: it cannot be loaded, or has no EOS token (last-token pooling needs one).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"could not load the tokenizer of {model!r} ({type(exc).__name__}: {exc}); expected a "
            "Hugging Face model id or a local model directory; set E5_MODEL or pass model="
        ) from exc
    if tokenizer.eos_token_id is None:
        raise ModelLoadError(f"the tokenizer of {model!r} has no EOS token; last-token pooling needs one")
    return tokenizer


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
        max_length: token limit per text, EOS included (4096 for e5-mistral).
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
    """

    _shared: ClassVar[dict[tuple[Any, ...], "E5Encoder"]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device | Sequence[str | torch.device] | None = None,
        dtype: str | torch.dtype = "auto",
        max_length: int = 4096,
        batch_tokens: int = 16384,
        normalize: bool = True,
        show_progress: bool | None = None,
        attn_implementation: str | None = None,
        padding_side: str | None = None,
        recipe: str | Recipe | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        if not isinstance(max_length, int) or max_length < 2:
            raise ConfigurationError(f"max_length must be an int >= 2 (BOS + EOS), got {max_length!r}")
        if not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise ConfigurationError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
        self.model_name = str(model) if model is not None else os.environ.get("E5_MODEL") or DEFAULT_MODEL
        self.devices = resolve_devices(device)
        self.dtype = resolve_dtype(dtype, self.devices[0])
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.normalize = normalize
        self.show_progress = show_progress
        self.recipe = resolve_recipe(self.model_name, recipe)
        self.tokenizer = load_tokenizer(self.model_name)
        self.recipe.end_token_id(self.tokenizer)  # a recipe for another tokenizer fails here, not mid-job
        pad_id = _pad_token_id(self.tokenizer, self.recipe)
        side = padding_side or self.recipe.padding_side or "right"
        self._backends = [
            TorchBackend(
                load_model(self.model_name, dev, self.dtype, attn_implementation), self.recipe, pad_id, side,
                compile=compile, cuda_graphs=cuda_graphs,
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
    ) -> "E5Encoder":
        """The process-wide encoder for these settings, created on first use.

        Keyed by the resolved model, devices and dtype plus any other options, so
        ``E5Encoder.shared()`` called from LangChain, LlamaIndex and an ingestion job
        returns the same object (and the model is loaded once).
        """
        name = str(model) if model is not None else os.environ.get("E5_MODEL") or DEFAULT_MODEL
        devices = tuple(str(d) for d in resolve_devices(device))
        key = (name, devices, str(resolve_dtype(dtype, torch.device(devices[0]))), tuple(sorted(options.items())))
        with cls._shared_lock:
            encoder = cls._shared.get(key)
            if encoder is None:
                encoder = cls(name, device=list(devices), dtype=dtype, **options)
                cls._shared[key] = encoder
            return encoder

    @property
    def dimension(self) -> int:
        """Size of the vectors (4096 for e5-mistral-7b-instruct)."""
        return self._backends[0].loaded.hidden_size

    @property
    def loaded_models(self) -> list[Any]:
        """The loaded model objects, one per device (shared with other encoders)."""
        return [backend.loaded.model for backend in self._backends]

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
            return self.encode_token_ids(tokenize(items))
        # Tokenization never starves the device: the bulk is tokenized on a thread (the
        # Rust tokenizer releases the GIL) while the device embeds a head start.
        head = tokenize(items[:HEAD_START_TEXTS])
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="e5-tokenize") as pool:
            bulk = pool.submit(tokenize, items[HEAD_START_TEXTS:])
            return self._encode_parts(len(items), [(0, lambda: head), (HEAD_START_TEXTS, bulk.result)])

    def _tokenizer_for(self, instruction: str | None) -> Callable[[Sequence[str]], list[list[int]]]:
        """Texts → token ids for one side. e5-mistral-like recipes (one string template,
        every token pooled) keep the model card's path: template, then tokenize."""
        recipe = self.recipe
        template = recipe.query.text if instruction is not None else recipe.document.text
        if recipe.pools_every_token and isinstance(template, str) and recipe.preprocess is None:
            if template == "{text}":
                return self._tokenize
            if "{bos}" not in template and "{eos}" not in template:
                return lambda texts: self._tokenize(
                    [recipe._format(template, t, instruction, None) for t in texts]
                )
        side = "query" if instruction is not None else "document"

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

    def encode_token_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed sequences already tokenized by :func:`tokenize_for_embedding`.

        Sorts by length, packs token-budget batches, spreads them over the devices, backs
        off on out-of-memory, and returns rows in the input order.
        """
        return self._encode_parts(len(ids), [(0, lambda: ids)])

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return tokenize_for_embedding(self.tokenizer, texts, self.max_length, self.recipe)

    def _encode_parts(
        self, n: int, parts: Sequence[tuple[int, Callable[[], Sequence[Sequence[int]]]]]
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
                batches = plan_batches([len(row) for row in ids], self.batch_tokens)
                if len(self._backends) == 1:
                    for batch in batches:
                        self._run_batch(self._backends[0], ids, batch, rows, state, progress)
                else:
                    self._run_parallel(ids, batches, rows, state, progress)
        return out

    # -- internals -----------------------------------------------------------------------

    def _run_parallel(
        self, ids: Sequence[Sequence[int]], batches: list[list[int]], out: np.ndarray, state: "_RunState", progress: Any
    ) -> None:
        work: "queue.SimpleQueue[list[int]]" = queue.SimpleQueue()
        for batch in batches:
            work.put(batch)
        errors: list[BaseException] = []

        def worker(backend: TorchBackend) -> None:
            while not errors:
                try:
                    batch = work.get_nowait()
                except queue.Empty:
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
        backend: TorchBackend,
        ids: Sequence[Sequence[int]],
        batch: list[int],
        out: np.ndarray,
        state: "_RunState",
        progress: Any,
    ) -> None:
        try:
            vectors = backend.embed([ids[i] for i in batch])
        except _OOM_ERRORS as exc:
            if backend.device.type == "cuda":
                torch.cuda.empty_cache()
            width = max(len(ids[i]) for i in batch)
            if len(batch) == 1:
                raise OutOfMemoryError(
                    f"one text of {width} tokens does not fit on {backend.device} even alone "
                    f"(dtype {self.dtype}); lower max_length (now {self.max_length}) or use a larger device"
                ) from exc
            budget = state.halve(width * len(batch))
            logger.warning(
                "out of memory on %s with a batch of %d x %d tokens; retrying it with batch_tokens=%d",
                backend.device, len(batch), width, budget,
            )
            sub_batches = plan_batches([len(ids[i]) for i in batch], budget)
            if len(sub_batches) == 1:  # budget still fits everything: split in two
                half = len(batch) // 2
                sub_batches = [list(range(half)), list(range(half, len(batch)))]
            for sub in sub_batches:
                self._run_batch(backend, ids, [batch[j] for j in sub], out, state, progress)
            return
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        out[batch] = vectors.numpy()
        progress.update(len(batch))


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
    """Token budget for one encode call; shrinks on OOM, shared by device workers."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._lock = threading.Lock()

    def halve(self, failed_tokens: int) -> int:
        with self._lock:
            self.budget = max(1, min(self.budget, failed_tokens) // 2)
            return self.budget
