"""Torch backend: loads the model on one device and turns token-id batches into vectors.

Backends only compute. Templates, truncation, EOS, batching and normalisation are decided
by the encoder (core) and the recipe; a backend gets ready token ids and returns pooled
float32 vectors. Loaded models are shared process-wide by (model, device, dtype, attention).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from e5_integrations._errors import ConfigurationError, ModelLoadError, option
from e5_integrations._recipe import Recipe

__all__ = ["Backend", "LoadedModel", "TorchBackend", "load_model", "resolve_devices", "resolve_dtype"]

logger = logging.getLogger("e5_integrations")

_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


def resolve_devices(device: str | torch.device | Sequence[str | torch.device] | None) -> list[torch.device]:
    """``None`` → the best available single device; a string or list → those devices."""
    if device is None:
        if torch.cuda.is_available():
            return [torch.device("cuda", torch.cuda.current_device())]
        return [torch.device("cpu")]
    items = [device] if isinstance(device, (str, torch.device)) else list(device)
    if not items:
        raise ConfigurationError("device=[] is empty; pass None, 'cpu', 'cuda', 'cuda:1' or a list of them")
    devices: list[torch.device] = []
    for item in items:
        try:
            dev = torch.device(item)
        except (RuntimeError, TypeError) as exc:
            raise ConfigurationError(
                f"device {item!r} is not a torch device; expected e.g. 'cpu', 'cuda:0'"
            ) from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigurationError(
                    f"device {item!r} asks for CUDA but torch.cuda.is_available() is False "
                    f"(torch {torch.__version__}); install a CUDA build of torch "
                    f"or pass {option('device', 'cpu')}"
                )
            if dev.index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
            if dev.index >= torch.cuda.device_count():
                raise ConfigurationError(
                    f"device {item!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible"
                )
        devices.append(dev)
    return devices


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"``: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if key not in _DTYPES:
        raise ConfigurationError(
            f"dtype {dtype!r} is not supported; expected 'auto', 'bf16', 'fp16' or 'fp32'"
        )
    return _DTYPES[key]


@runtime_checkable
class Backend(Protocol):
    """What the encoder needs from a backend: a device and ready token ids → pooled vectors.

    :class:`TorchBackend` is the real one; a test double (say, one that raises
    ``torch.OutOfMemoryError`` above a token budget) plugs in through
    ``E5Encoder(backends=[...])``.
    """

    @property
    def device(self) -> torch.device:
        """Where the batches run (``cuda`` devices get their cache emptied after an OOM)."""
        ...

    @property
    def hidden_size(self) -> int:
        """Size of the pooled vectors."""
        ...

    def embed(self, batch: Sequence[Sequence[int]]) -> torch.Tensor:
        """Pooled, not normalised, float32 CPU vectors, one row per sequence of token ids
        (a row may be an :class:`~e5_integrations._recipe.Encoded` carrying the span to pool)."""
        ...


def _default_attention(device: torch.device, dtype: torch.dtype) -> str:
    flash_ok = device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
    if flash_ok and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


@dataclass(eq=False)
class LoadedModel:
    """A model on one device, shared by every encoder that asks for the same settings."""

    model: Any
    device: torch.device
    dtype: torch.dtype
    attention: str
    _compiled: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def compiled(self) -> Any:
        """``torch.compile(model, dynamic=True)``, created once and shared.

        One compilation covers every batch shape (dynamic shapes). It fuses the
        element-wise work between the matrix products (RMSNorm, rotary, SiLU, residuals);
        the first forward pass pays the compilation (about 20 s for the tiny test model
        on a CPU, minutes for a 7B model).
        """
        with self._lock:
            if self._compiled is None:
                self._compiled = torch.compile(self.model, dynamic=True)
            return self._compiled


_LOADED: weakref.WeakValueDictionary[tuple[str, str, str, str], LoadedModel] = weakref.WeakValueDictionary()
_LOAD_LOCK = threading.Lock()


def load_model(
    model: str, device: torch.device, dtype: torch.dtype, attention: str | None = None
) -> LoadedModel:
    """Load ``model`` on ``device`` once per process; later calls return the same object."""
    defaulted = attention is None
    attention = requested = attention or _default_attention(device, dtype)
    key = (model, str(device), str(dtype), attention)
    with _LOAD_LOCK:
        cached = _LOADED.get(key)
        if cached is not None:
            return cached
        from transformers import AutoModel

        from e5_integrations._peft import merge_adapter, peft_base_model

        base = peft_base_model(model)  # a LoRA adapter (RepLLaMA) loads its base model first
        weights = base if base is not None else model
        try:
            try:
                hf_model = AutoModel.from_pretrained(weights, dtype=dtype, attn_implementation=attention)
            except ValueError as exc:
                if not (defaulted and "does not support an attention implementation" in str(exc)):
                    raise
                # Gemma2 (soft-capped attention) has no sdpa path: use the model's eager one.
                logger.info("%s has no %s attention; using eager", model, attention)
                attention = "eager"
                key = (model, str(device), str(dtype), attention)
                hf_model = AutoModel.from_pretrained(weights, dtype=dtype, attn_implementation=attention)
        except (OSError, ValueError, ImportError) as exc:
            raise ModelLoadError(
                f"could not load model {model!r} ({type(exc).__name__}: {exc}). Expected a Hugging Face "
                "model id reachable from this machine or a local directory with config.json and weights; "
                f"set E5_MODEL or pass {option('model', '/path/to/dir')} "
                "(download it first where there is no network)"
            ) from exc
        if base is not None:  # outside the try: a missing peft raises an ImportError naming the extra
            hf_model = merge_adapter(hf_model, model)
            logger.info("merged the PEFT adapter %s into %s", model, base)
        hf_model.to(device).eval()
        hf_model.requires_grad_(False)
        loaded = LoadedModel(hf_model, device, dtype, attention)
        _LOADED[key] = loaded
        _LOADED[(model, str(device), str(dtype), requested)] = loaded
        logger.info("loaded %s on %s as %s (%s attention)", model, device, dtype, attention)
        return loaded


class TorchBackend:
    """Runs padded batches of token ids through a :class:`LoadedModel` and pools them.

    With right padding and a causal recipe (e5-mistral) the forward pass gets no attention
    mask (``mask_free``): in a causal model a real token only attends to positions before
    it, which are all real, so the padding after a text cannot change its hidden states.
    The model then runs the plain causal attention path (PyTorch's flash kernel under
    sdpa on GPUs) instead of a masked one, and builds no 4-D mask. Left padding, or a
    bidirectional recipe, passes the mask and mask-derived positions as usual.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        recipe: Recipe,
        pad_token_id: int,
        padding_side: str = "right",
        mask_free: bool | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
    ):
        if padding_side not in ("left", "right"):
            raise ConfigurationError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        safe = padding_side == "right" and recipe.causal
        if mask_free and not safe:
            raise ConfigurationError(
                f"mask_free=True needs right padding and a causal recipe (got padding_side={padding_side!r}, "
                f"causal={recipe.causal}); leave mask_free=None"
            )
        self.loaded = loaded
        self.recipe = recipe
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.mask_free = safe if mask_free is None else mask_free
        self.forward = loaded.compiled() if compile else loaded.model
        self.graphs: _CudaGraphs | None = None
        if cuda_graphs:
            if loaded.device.type != "cuda" or not self.mask_free:
                raise ConfigurationError(
                    f"cuda_graphs=True needs a CUDA device and right padding (got {loaded.device}, "
                    f"padding_side={padding_side!r}); leave it off elsewhere"
                )
            self.graphs = _CudaGraphs(self)

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def hidden_size(self) -> int:
        return self.loaded.hidden_size

    def _pad(
        self, batch: Sequence[Sequence[int]], spans: Sequence[tuple[int, int] | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        embed = None if spans is None else torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            offset = 0 if self.padding_side == "right" else width - len(ids)
            input_ids[row, offset : offset + len(ids)] = torch.as_tensor(ids)
            mask[row, offset : offset + len(ids)] = 1
            if embed is not None:
                span = spans[row] if spans is not None else None
                start, end = span if span is not None else (0, len(ids))
                embed[row, offset + start : offset + end] = 1
        # Positions count real tokens only, so a text gets the same positions whatever its
        # padding and its batch-mates (the model card relies on right padding for this).
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return input_ids, mask, positions, embed

    def _bidirectional_mask(self, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """The attention mask that makes every token attend to every real token.

        transformers builds a causal mask from a 2-D padding mask, but returns a 4-D mask
        as it is, and the attention kernels then use no causal flag of their own; flash
        attention takes the 2-D mask with ``is_causal=False`` instead.
        """
        if self.loaded.attention.startswith("flash"):
            return mask, {"is_causal": False}
        keys = mask[:, None, None, :].bool().expand(mask.shape[0], 1, mask.shape[1], mask.shape[1])
        if self.loaded.attention == "sdpa":
            return keys, {"is_causal": False}
        additive = torch.zeros(keys.shape, dtype=self.loaded.dtype)
        additive.masked_fill_(~keys, torch.finfo(self.loaded.dtype).min)
        return additive, {"is_causal": False}

    @torch.inference_mode()
    def embed(
        self, batch: Sequence[Sequence[int]], spans: Sequence[tuple[int, int] | None] | None = None
    ) -> torch.Tensor:
        """Pooled (not normalised) float32 vectors on the CPU, one row per sequence.

        ``spans``: per sequence, the ``(start, end)`` positions to pool (its embed mask);
        by default each row's ``span`` attribute (:class:`~e5_integrations._recipe.Encoded`),
        and every token where there is none.
        """
        if spans is None:
            found = [getattr(row, "span", None) for row in batch]
            spans = found if any(span is not None for span in found) else None
        input_ids, mask, positions, embed_mask = self._pad(batch, spans)
        device = self.loaded.device
        non_blocking = device.type == "cuda"
        if self.graphs is not None and embed_mask is None:
            pooled = self.graphs.run(input_ids, mask)
            if pooled is not None:
                return pooled.float().cpu()
        if self.mask_free:
            hidden = self.forward(input_ids=input_ids.to(device, non_blocking=non_blocking), use_cache=False)
        else:
            attention: torch.Tensor = mask
            extra: dict[str, Any] = {}
            if not self.recipe.causal:
                attention, extra = self._bidirectional_mask(mask)
            hidden = self.forward(
                input_ids=input_ids.to(device, non_blocking=non_blocking),
                attention_mask=attention.to(device, non_blocking=non_blocking),
                position_ids=positions.to(device, non_blocking=non_blocking),
                use_cache=False,
                **extra,
            )
        device_mask = mask.to(device, non_blocking=non_blocking)
        device_embed = None if embed_mask is None else embed_mask.to(device, non_blocking=non_blocking)
        pooled = self.recipe.pool(hidden.last_hidden_state, device_mask, device_embed)
        return pooled.float().cpu()


class _CudaGraphs:
    """CUDA graphs of the forward pass for small right-padded batches (search queries).

    A short query is bound by kernel launches, not arithmetic: eager PyTorch issues
    hundreds of small kernels per layer from Python. A graph replays them in one launch.
    Batches of up to :attr:`BATCHES` texts and :attr:`LENGTHS` tokens are padded on the
    right to the nearest bucket (harmless in a causal model, see :class:`TorchBackend`);
    each bucket is captured on first use and checked once against the eager forward
    pass. A capture that fails, or a replay that disagrees, turns graphs off for this
    backend with a warning; results then come from the eager path, never from a bad graph.
    """

    BATCHES = (1, 2, 4, 8)
    LENGTHS = (32, 64, 128, 256, 512)
    #: Minimum cosine between a graph replay and the eager pass on the first batch.
    CHECK_COSINE = 0.999

    def __init__(self, backend: TorchBackend) -> None:
        self.backend = backend
        self.enabled = True
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pool: Any = None
        self._lock = threading.Lock()  # static buffers: one replay at a time

    def bucket(self, rows: int, width: int) -> tuple[int, int] | None:
        """The smallest captured shape holding ``rows x width``, or ``None`` (too big)."""
        batch = next((b for b in self.BATCHES if b >= rows), None)
        length = next((n for n in self.LENGTHS if n >= width), None)
        return None if batch is None or length is None else (batch, length)

    def run(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Pooled vectors on the device, or ``None`` when this batch takes the eager path."""
        shape = self.bucket(*input_ids.shape)
        if not self.enabled or shape is None:
            return None
        with self._lock:
            try:
                fresh = shape not in self._graphs
                if fresh:
                    self._graphs[shape] = self._capture(shape)
                graph, static_ids, static_hidden = self._graphs[shape]
                rows, width = input_ids.shape
                static_ids.fill_(self.backend.pad_token_id)
                static_ids[:rows, :width].copy_(input_ids, non_blocking=True)
                graph.replay()
                device_mask = mask.to(static_ids.device, non_blocking=True)
                pooled = self.backend.recipe.pool(static_hidden[:rows, :width], device_mask).clone()
            except Exception as exc:
                self._disable(f"capture or replay failed ({type(exc).__name__}: {exc})")
                return None
            if fresh and not self._agrees(pooled, input_ids, device_mask):
                return None
            return pooled

    def _capture(self, shape: tuple[int, int]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        device = self.backend.device
        model = self.backend.loaded.model
        static_ids = torch.full(shape, self.backend.pad_token_id, dtype=torch.long, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the capture (kernel selection, allocator)
                model(input_ids=static_ids, use_cache=False)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_hidden = model(input_ids=static_ids, use_cache=False).last_hidden_state
        self._pool = graph.pool()
        logger.info("captured a CUDA graph for %d x %d tokens on %s", shape[0], shape[1], device)
        return graph, static_ids, static_hidden

    def _agrees(self, pooled: torch.Tensor, input_ids: torch.Tensor, device_mask: torch.Tensor) -> bool:
        eager = self.backend.loaded.model(
            input_ids=input_ids.to(pooled.device), use_cache=False
        ).last_hidden_state
        reference = self.backend.recipe.pool(eager, device_mask)
        cosine = torch.nn.functional.cosine_similarity(pooled.float(), reference.float(), dim=1).min().item()
        if cosine < self.CHECK_COSINE:
            self._disable(f"a replay disagreed with the eager pass (cosine {cosine:.6f})")
            return False
        return True

    def _disable(self, why: str) -> None:
        self.enabled = False
        self._graphs.clear()
        logger.warning("CUDA graphs turned off on %s: %s; using the eager path", self.backend.device, why)
