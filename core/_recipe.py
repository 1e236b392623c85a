"""Embedding recipes: how texts become model inputs and hidden states become vectors.

This module is the one place where the semantics of a decoder-only embedder live: the query
and document templates (with the reference's text preprocessing), which special tokens go
where, which positions are pooled (the *embed mask*), how they are pooled (last token, mean,
position-weighted mean), whether attention is causal or bidirectional, and the padding side
the reference used. A :class:`Recipe` is plain data, checked when it is built; it never
touches a device. Backends only compute (:mod:`e5_integrations._backend`).

Tokenizing a text gives an :class:`Encoded`: the token ids plus the span ``[start, end)`` of
positions that are pooled (``None``: every token, the e5-mistral case, which keeps the
encoder on its mask-free fast path).

The built-in recipes (:func:`available_recipes`) reproduce their reference implementations;
the test of each one names the repository, file and function it was checked against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from e5_integrations._errors import ConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "E5_MISTRAL",
    "POOLINGS",
    "Encoded",
    "Piece",
    "Recipe",
    "Template",
    "available_recipes",
    "get_recipe",
    "last_token_pool",
    "mean_pool",
    "tokenize_for_embedding",
    "weighted_mean_pool",
]


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last pooled token, whatever the padding side.

    The model card checks whether the whole batch is left padded; this takes, per row, the
    index of the last position whose mask is 1 (flip the mask, argmax, mirror), so a batch
    that mixes paddings, or has none, is handled too.
    """
    import torch

    seq_len = attention_mask.shape[1]
    last = seq_len - 1 - attention_mask.flip(dims=[1]).int().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mean_pool(hidden: torch.Tensor, embed_mask: torch.Tensor) -> torch.Tensor:
    """Average of the hidden states at the positions where ``embed_mask`` is 1."""
    weights = embed_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def weighted_mean_pool(hidden: torch.Tensor, embed_mask: torch.Tensor) -> torch.Tensor:
    """SGPT's position-weighted mean: the i-th pooled token (from 1) weighs i.

    Weights count pooled tokens, not absolute positions, so the result does not depend on
    the padding side (SGPT's ``arange(1, L+1)`` equals this with right padding and every
    token pooled; LLM2Vec and GritLM count from the first pooled token, as here).
    """
    mask = embed_mask.to(hidden.dtype)
    weights = (mask.cumsum(dim=1) * mask).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


#: Pooling functions by name: ``(hidden [B, L, H], embed_mask [B, L]) -> [B, H]``.
POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "last_token": last_token_pool,
    "mean": mean_pool,
    "weighted_mean": weighted_mean_pool,
}

#: Which positions of a string template are pooled.
#: ``all``: every token; ``after_prompt``: from the end of the template's part before
#: ``{text}`` (tokenized on its own, special tokens included; GritLM, sentence-transformers
#: ``include_prompt=False``); ``text_suffix``: the last N tokens, N being the token count of
#: the template's part from ``{text}`` on (LLM2Vec's ``embed_mask``).
POOL_SPANS = ("all", "after_prompt", "text_suffix")
#: Text preprocessing applied before templating, by name.
PREPROCESSORS: dict[str, Callable[[str], str]] = {}
_PLACEHOLDERS = {"text", "instruction", "bos", "eos"}


def _prompteol_preprocess(text: str) -> str:
    # kongds/scaling_sentemb evaluation.py batcher(): the order matters.
    if text and text[-1] not in ".?\"'":
        text += "."
    text = text.replace('"', "'")
    if text and text[-1] == "?":
        text = text[:-1] + "."
    return text


PREPROCESSORS["prompteol"] = _prompteol_preprocess
PREPROCESSORS["strip"] = str.strip


@dataclass(frozen=True)
class Piece:
    """One separately tokenized piece of a template (Echo embeddings' way).

    Attributes:
        text: a format string that may use ``{text}``, ``{instruction}``, ``{bos}`` and
            ``{eos}`` (the tokenizer's special tokens, e.g. ``<s>`` and ``</s>``).
        pooled: the piece's tokens are in the embed mask.
    """

    text: str
    pooled: bool = False


@dataclass(frozen=True)
class Template:
    """How one side (queries or documents) becomes token ids and an embed mask.

    Attributes:
        text: a format string with ``{text}`` (and optionally ``{instruction}``, ``{bos}``,
            ``{eos}``), tokenized as one string; or a tuple of :class:`Piece`, each tokenized
            on its own without special tokens and concatenated (Echo embeddings).
        pool_span: for a string template, one of :data:`POOL_SPANS`; pieces mark their own.
        brackets: SGPT's "specb" tokens: the first token of each string (tokenized without
            special tokens) is inserted before the sequence and appended after it.
        end_token: this side's own end token, appended after truncation (UDEVER's ``[EOQ]``
            and ``[EOD]``); ``None``: the recipe's :attr:`Recipe.end_token`.
        preprocess: a key of :data:`PREPROCESSORS` applied to this side's texts only, after
            the recipe's own (RepLLaMA strips passages, not queries).
    """

    text: str | tuple[Piece, ...] = "{text}"
    pool_span: str = "all"
    brackets: tuple[str, str] | None = None
    end_token: str | None = None
    preprocess: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.text, str):
            _check_format(self.text, "template")
            if "{text}" not in self.text:
                raise ConfigurationError(
                    f"template {self.text!r} has no {{text}}; add it where the text goes"
                )
        else:
            pieces = tuple(self.text)
            object.__setattr__(self, "text", pieces)
            if not pieces or not all(isinstance(p, Piece) for p in pieces):
                raise ConfigurationError("a template is a format string or a non-empty tuple of Piece")
            for piece in pieces:
                _check_format(piece.text, "piece")
            if not any("{text}" in p.text for p in pieces):
                raise ConfigurationError("no template piece has {text}; add Piece('{text}', ...)")
            pooled = [i for i, p in enumerate(pieces) if p.pooled]
            if not pooled:
                raise ConfigurationError("no template piece is pooled; mark one Piece(..., pooled=True)")
            if pooled != list(range(pooled[0], pooled[-1] + 1)):
                raise ConfigurationError(f"pooled pieces must be adjacent, got pieces {pooled}")
            if self.brackets is not None:
                raise ConfigurationError("brackets are for string templates, not pieces")
        if self.pool_span not in POOL_SPANS:
            raise ConfigurationError(f"pool_span={self.pool_span!r} is not one of {', '.join(POOL_SPANS)}")
        if self.brackets is not None and self.pool_span != "all":
            raise ConfigurationError("brackets need pool_span='all' (the brackets are pooled too)")
        if self.preprocess is not None and self.preprocess not in PREPROCESSORS:
            raise ConfigurationError(
                f"template preprocess={self.preprocess!r} is unknown; valid: {', '.join(PREPROCESSORS)}"
            )
        if self.end_token is not None and not isinstance(self.text, str):
            raise ConfigurationError("end_token is for string templates; pieces hold their own end token")

    @property
    def uses_instruction(self) -> bool:
        """The template has an ``{instruction}`` slot."""
        texts = [self.text] if isinstance(self.text, str) else [p.text for p in self.text]
        return any("{instruction}" in t for t in texts)


def _check_format(template: str, what: str) -> None:
    from string import Formatter

    try:
        names = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigurationError(
            f"{what} {template!r} is not a valid format string ({exc}); double literal braces"
        ) from exc
    unknown = names - _PLACEHOLDERS
    if unknown:
        raise ConfigurationError(
            f"{what} {template!r} uses {sorted(unknown)}; the placeholders are {sorted(_PLACEHOLDERS)} "
            "(write literal braces as {{ and }})"
        )


class Encoded(list[int]):
    """Token ids of one text (a ``list[int]``) that also carry the pooled span.

    ``span`` is ``(start, end)`` into the ids, or ``None`` when every token is pooled. Being
    a list, an :class:`Encoded` goes wherever token ids go (batch planning, padding); the
    backend reads ``span`` to build the embed mask.
    """

    span: tuple[int, int] | None

    def __init__(self, ids: Sequence[int] = (), span: tuple[int, int] | None = None) -> None:
        super().__init__(ids)
        self.span = span

    def __repr__(self) -> str:
        return f"Encoded({list(self)!r}, span={self.span!r})"


@dataclass(frozen=True)
class Recipe:
    """How a decoder-only model is used as an embedder. Checked when built.

    Attributes:
        name: identifier (a key of :func:`available_recipes` for the built-in ones).
        query_template: the query side; a format string with ``{instruction}`` and
            ``{text}``, or a :class:`Template`.
        document_template: the document side (``"{text}"``: documents as they are).
        pooling: a key of :data:`POOLINGS` (``last_token``, ``mean``, ``weighted_mean``).
        append_eos: kept for compatibility: ``end_token="eos"`` when true and
            ``end_token`` is not given.
        end_token: a token appended by hand after truncating to ``max_length - 1``:
            ``"eos"`` (the tokenizer's EOS; e5-mistral's model card does this, because
            tokenizers under transformers 5 no longer add it), a literal token such as
            ``"<|endoftext|>"`` (Qwen), or ``None``.
        special_tokens: string templates are tokenized with the tokenizer's own special
            tokens (BOS for Mistral and Llama); ``False`` adds none.
        causal: the model attends causally, as trained. With right padding no real token
            then attends to padding, so the forward pass needs no attention mask.
            ``False``: every token attends to every real token (LLM2Vec, GritLM,
            gte-Qwen2); the backend builds a bidirectional mask.
        padding_side: the side the reference pads on (``"left"``/``"right"``), used when
            the encoder is not told otherwise. Results do not depend on it (positions come
            from the mask), but right padding lets a causal recipe skip the mask.
        preprocess: a key of :data:`PREPROCESSORS` applied to each text before templating
            (``"prompteol"``: PromptEOL's punctuation rules; ``"strip"``).
        strip_instruction: strip the instruction before templating (LLM2Vec).
        text_token_limit: cut a longer text at whole words until it has at most this many
            tokens, as LLM2Vec's ``_convert_to_str`` does (``doc_max_length``, 400); the
            count stops at ``max_length``, as the reference's tokenizer call does.
        pad_token: the padding token for tokenizers that have none (default: EOS).
        source: where the recipe comes from (repository, file, function).
        max_length: the reference's default token limit per input (special tokens
            included): what :class:`~e5_integrations.E5Encoder` uses when ``max_length=`` is
            not given, and so what the chunker of ``e5 ingest`` fits chunks into. ``None``:
            the reference does not truncate below the model's own limit, taken from the model
            (:func:`model_token_limit`).
        strip_input: strip the whole templated input (prompt and text) before tokenizing,
            as sentence-transformers up to 5.2 does.
        piece_token_limit: each template piece that holds a placeholder is cut to this many
            tokens, as Echo's parser cuts each brace piece to its ``max_length``.
    """

    name: str
    query_template: str | Template = "Instruct: {instruction}\nQuery: {text}"
    document_template: str | Template = "{text}"
    pooling: str = "last_token"
    append_eos: bool = True
    causal: bool = True
    end_token: str | None = field(default=None)
    special_tokens: bool = True
    padding_side: str | None = None
    preprocess: str | None = None
    strip_instruction: bool = False
    pad_token: str | None = None
    source: str = ""
    text_token_limit: int | None = None
    max_length: int | None = None
    strip_input: bool = False
    piece_token_limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError(f"a recipe needs a non-empty name, got {self.name!r}")
        for side in ("query_template", "document_template"):
            value = getattr(self, side)
            if isinstance(value, (str, tuple)):
                value = Template(value)
            if not isinstance(value, Template):
                raise ConfigurationError(
                    f"{side} must be a format string or a Template, got {type(value).__name__}"
                )
            object.__setattr__(self, side, value)
        if self.pooling not in POOLINGS:
            raise ConfigurationError(
                f"recipe {self.name!r}: pooling={self.pooling!r} is unknown; valid poolings: {', '.join(POOLINGS)}"
            )
        if self.end_token is None and self.append_eos:
            object.__setattr__(self, "end_token", "eos")
        for limit in ("text_token_limit", "piece_token_limit"):
            value = getattr(self, limit)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"{limit} must be a positive int or None, got {value!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 2):
            raise ConfigurationError(
                f"recipe {self.name!r}: max_length must be an int >= 2 or None, got {self.max_length!r}"
            )
        if self.padding_side not in (None, "left", "right"):
            raise ConfigurationError(
                f"padding_side must be 'left', 'right' or None, got {self.padding_side!r}"
            )
        if self.strip_input and not all(isinstance(t.text, str) for t in (self.query, self.document)):
            raise ConfigurationError(
                f"recipe {self.name!r}: strip_input strips a whole templated input; piece templates are "
                "tokenized piece by piece (use preprocess='strip' to strip the text)"
            )
        if self.preprocess is not None and self.preprocess not in PREPROCESSORS:
            raise ConfigurationError(
                f"recipe {self.name!r}: preprocess={self.preprocess!r} is unknown; valid: {', '.join(PREPROCESSORS)}"
            )

    # -- templates ----------------------------------------------------------------------

    @property
    def query(self) -> Template:
        """The query side as a :class:`Template`."""
        assert isinstance(self.query_template, Template)
        return self.query_template

    @property
    def document(self) -> Template:
        """The document side as a :class:`Template`."""
        assert isinstance(self.document_template, Template)
        return self.document_template

    @property
    def pools_every_token(self) -> bool:
        """Both sides pool every token of the sequence (no embed mask needed)."""
        return all(
            isinstance(t.text, str) and t.pool_span == "all" and t.brackets is None
            for t in (self.query, self.document)
        )

    def format_query(self, instruction: str, text: str) -> str:
        """Apply the query template to one text (string templates only)."""
        template = self.query.text
        if not isinstance(template, str):
            raise ConfigurationError(f"recipe {self.name!r} tokenizes template pieces; use Recipe.tokenize")
        return self._format(template, text, instruction, None, self.query)

    @property
    def text_token_cap(self) -> int | None:
        """The most tokens of one text that reach the model whatever ``max_length`` is
        (:attr:`text_token_limit`, :attr:`piece_token_limit`), or ``None``: the chunker of
        ``e5 ingest`` keeps chunks within it, so no chunk is cut short."""
        caps = [cap for cap in (self.text_token_limit, self.piece_token_limit) if cap is not None]
        return min(caps) if caps else None

    def text_capacity(self, tokenizer: Any, max_length: int) -> int:
        """The most tokens of one document text that reach the model within ``max_length``:
        what the document template adds around the text (special tokens, a prompt such as
        GritLM's ``<|embed|>\n`` or RepLLaMA's ``passage:``, the end token) is measured on an
        empty text and left out, the rest shared by the text's copies (Echo embeds it twice),
        and capped by :attr:`text_token_cap`. The chunker of ``e5 ingest`` keeps chunks within
        it, so no chunk is cut short."""
        template = self.document.text
        copies = 1 if isinstance(template, str) else sum("{text}" in piece.text for piece in template)
        frame = len(self.tokenize(tokenizer, [""], 1 << 30, side="document")[0])
        capacity = (max_length - frame) // max(1, copies)
        cap = self.text_token_cap
        return max(0, capacity if cap is None else min(cap, capacity))

    @property
    def templates_then_tokenize(self) -> bool:
        """Both sides are one string template applied to the raw text, then tokenized with the
        recipe's special tokens and end token, every token pooled: the e5-mistral model card's
        path (the encoder's fast path)."""
        return (
            self.pools_every_token
            and self.preprocess is None
            and not self.strip_input
            and all(t.preprocess is None for t in (self.query, self.document))
        )

    def _format(
        self,
        template: str,
        text: str,
        instruction: str | None,
        tokenizer: Any,
        side: Template | None = None,
    ) -> str:
        if self.preprocess is not None:
            text = PREPROCESSORS[self.preprocess](text)
        if side is not None and side.preprocess is not None:
            text = PREPROCESSORS[side.preprocess](text)
        if instruction is not None and self.strip_instruction:
            instruction = instruction.strip()
        values = {"text": text, "instruction": instruction or ""}
        if tokenizer is not None:
            values["bos"] = tokenizer.bos_token or ""
            values["eos"] = tokenizer.eos_token or ""
        elif "{bos}" in template or "{eos}" in template:
            raise ConfigurationError("templates with {bos} or {eos} need the tokenizer; use Recipe.tokenize")
        formatted = template.format(**values)
        return formatted.strip() if self.strip_input else formatted

    def fingerprint(self) -> str:
        """A stable description of everything that shapes the vectors (for content hashes)."""
        import hashlib
        import json

        payload = json.dumps(asdict(self) | {"source": ""}, sort_keys=True, default=str)
        return f"{self.name}:{hashlib.sha256(payload.encode()).hexdigest()[:16]}"

    # -- pooling ------------------------------------------------------------------------

    def pool(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, embed_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pool hidden states into one vector per row over ``embed_mask`` (default: the
        attention mask, i.e. every real token)."""
        return POOLINGS[self.pooling](hidden, attention_mask if embed_mask is None else embed_mask)

    # -- tokenization -------------------------------------------------------------------

    def tokenize(
        self,
        tokenizer: Any,
        texts: Sequence[str],
        max_length: int,
        *,
        instruction: str | None = None,
        side: str = "query",
    ) -> list[Encoded]:
        """Token ids and pooled spans of ``texts`` on one side (``"query"``/``"document"``).

        String templates are tokenized as one string (the tokenizer's special tokens when
        :attr:`special_tokens`), truncated at the end to ``max_length`` (``max_length - 1``
        when an :attr:`end_token` is appended by hand). Piece templates are tokenized piece
        by piece without special tokens; text pieces are cut so the whole fits
        ``max_length``.
        """
        if side not in ("query", "document"):
            raise ConfigurationError(f"side must be 'query' or 'document', got {side!r}")
        template = self.query if side == "query" else self.document
        if not texts:
            return []
        if self.text_token_limit is not None:
            texts = [self._trim_words(tokenizer, text, max_length) for text in texts]
        if isinstance(template.text, tuple):
            return [self._tokenize_pieces(tokenizer, template, t, instruction, max_length) for t in texts]
        return self._tokenize_string(tokenizer, template, side, list(texts), instruction, max_length)

    def _trim_words(self, tokenizer: Any, text: str, max_length: int) -> str:
        """Drop words from the end, in proportion to the excess, until the text fits
        :attr:`text_token_limit` tokens (LLM2Vec's loop)."""
        assert self.text_token_limit is not None

        def count(value: str) -> int:
            return len(
                tokenizer(value, add_special_tokens=False, truncation=True, max_length=max_length)[
                    "input_ids"
                ]
            )

        tokens = count(text)
        while tokens > self.text_token_limit:
            words = text.split()
            text = " ".join(words[: int(len(words) * self.text_token_limit / tokens)])
            tokens = count(text)
        return text

    def end_token_for(self, side: str) -> str | None:
        """The token appended by hand on ``side`` (``"query"``/``"document"``): the side's
        :attr:`Template.end_token`, else :attr:`end_token`."""
        template = self.query if side == "query" else self.document
        return template.end_token if template.end_token is not None else self.end_token

    def end_token_id(self, tokenizer: Any, side: str = "document") -> int | None:
        """The id of ``side``'s end token in ``tokenizer`` (``None`` when nothing is appended).

        Raises:
            ConfigurationError: the tokenizer does not know the token (wrong recipe for the model).
        """
        token = self.end_token_for(side)
        if token is None:
            return None
        if token == "eos":
            return int(tokenizer.eos_token_id)
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
            raise ConfigurationError(
                f"recipe {self.name!r} appends {token!r}, which the tokenizer does not know; "
                "pick the recipe that matches the model (recipe=...)"
            )
        return int(token_id)

    def _tokenize_string(
        self,
        tokenizer: Any,
        template: Template,
        side: str,
        texts: list[str],
        instruction: str | None,
        max_length: int,
    ) -> list[Encoded]:
        assert isinstance(template.text, str)
        end_id = self.end_token_id(tokenizer, side)
        room = (1 if end_id is not None else 0) + (2 if template.brackets else 0)
        limit = max_length - room
        if limit < 1:
            raise ConfigurationError(
                f"max_length={max_length} leaves no room for text in recipe {self.name!r}"
            )
        formatted = [self._format(template.text, text, instruction, tokenizer, template) for text in texts]
        encoded = tokenizer(
            formatted,
            max_length=limit,
            truncation=True,
            padding=False,
            add_special_tokens=self.special_tokens,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        rows = [list(ids) + ([end_id] if end_id is not None else []) for ids in encoded]
        if template.brackets is not None:
            opening, closing = (
                tokenizer(b, add_special_tokens=False)["input_ids"][0] for b in template.brackets
            )
            return [Encoded([opening, *row, closing]) for row in rows]
        if template.pool_span == "all":
            return [Encoded(row) for row in rows]
        head, tail = template.text.split("{text}", 1)
        if template.pool_span == "after_prompt":
            # The prompt's tokens, special tokens included, less a special token the tokenizer
            # appends (an EOS ends the text, not the prompt): GritLM's and sentence-transformers'
            # count, the same wherever the tokenizer appends nothing.
            prompt_ids = tokenizer(
                self._format(head, "", instruction, tokenizer), add_special_tokens=self.special_tokens
            )["input_ids"]
            prompt_length = len(prompt_ids)
            if self.special_tokens and prompt_ids and prompt_ids[-1] in set(tokenizer.all_special_ids):
                prompt_length -= 1
        out = []
        for text, row in zip(texts, rows, strict=False):
            if template.pool_span == "after_prompt":
                start = prompt_length
                out.append(Encoded(row, (min(start, len(row)), len(row))))
            else:  # text_suffix
                suffix = self._format("{text}" + tail, text, instruction, tokenizer)
                count = len(tokenizer(suffix, add_special_tokens=False)["input_ids"])
                out.append(Encoded(row, (max(0, len(row) - count), len(row))))
        return out

    def _tokenize_pieces(
        self, tokenizer: Any, template: Template, text: str, instruction: str | None, max_length: int
    ) -> Encoded:
        assert isinstance(template.text, tuple)
        pieces = template.text
        tokenized = [
            tokenizer(self._format(p.text, text, instruction, tokenizer, template), add_special_tokens=False)[
                "input_ids"
            ]
            for p in pieces
        ]
        if self.piece_token_limit is not None:
            tokenized = [
                ids[: self.piece_token_limit] if "{instruction}" in p.text else ids
                for p, ids in zip(pieces, tokenized, strict=False)
            ]
        fixed = sum(len(ids) for p, ids in zip(pieces, tokenized, strict=False) if "{text}" not in p.text)
        with_text = sum(1 for p in pieces if "{text}" in p.text)
        budget = max(1, (max_length - fixed) // with_text)
        ids: list[int] = []
        span: list[int] = []
        for piece, piece_ids in zip(pieces, tokenized, strict=False):
            if "{text}" in piece.text:
                piece_ids = piece_ids[: min(budget, self.piece_token_limit or budget)]
            if piece.pooled:
                span = [span[0] if span else len(ids), len(ids) + len(piece_ids)]
            ids.extend(piece_ids)
        return Encoded(ids[:max_length], (min(span[0], max_length), min(span[1], max_length)))


#: intfloat/e5-mistral-7b-instruct, exactly as its model card runs it.
E5_MISTRAL = Recipe(
    name="e5-mistral",
    source="intfloat/e5-mistral-7b-instruct model card (last_token_pool, get_detailed_instruct)",
    padding_side="right",
    max_length=4096,
)


def tokenize_for_embedding(
    tokenizer: Any, texts: Sequence[str], max_length: int, recipe: Recipe, side: str = "document"
) -> list[list[int]]:
    """Token ids per text, for already templated texts (the e5-mistral model card's way).

    With an end token: tokenize with the tokenizer's own special tokens (BOS), truncate to
    ``max_length - 1``, then append the end token (EOS for e5-mistral), so every sequence is
    at most ``max_length`` long and ends with the token whose hidden state is pooled.
    """
    if not texts:
        return []
    end_id = recipe.end_token_id(tokenizer, side)
    limit = max_length - 1 if end_id is not None else max_length
    encoded = tokenizer(
        list(texts),
        max_length=limit,
        truncation=True,
        padding=False,
        add_special_tokens=recipe.special_tokens,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    if end_id is None:
        return [list(ids) for ids in encoded]
    return [list(ids) + [end_id] for ids in encoded]


# -- the built-in recipes ----------------------------------------------------------------

_ECHO_QUERY = (
    Piece("{bos}Instruct:"),
    Piece("{instruction},"),
    Piece("\nQuery:"),
    Piece("{text}"),
    Piece("\nQuery again:"),
    Piece("{text}", pooled=True),
    Piece("{eos}", pooled=True),
)
_ECHO_DOCUMENT = (
    Piece("{bos}Document:"),
    Piece("{text}"),
    Piece("\nDocument again:"),
    Piece("{text}", pooled=True),
    Piece("{eos}", pooled=True),
)
_GRIT_QUERY = "<|user|>\n{instruction}\n<|embed|>\n{text}"
_GRIT_DOCUMENT = "<|embed|>\n{text}"

_BUILTIN: tuple[Recipe, ...] = (
    E5_MISTRAL,
    Recipe(
        name="sgpt",
        query_template=Template("{text}", brackets=("[", "]")),
        document_template=Template("{text}", brackets=("{", "}")),
        pooling="weighted_mean",
        end_token=None,
        append_eos=False,
        padding_side="right",
        source="Muennighoff/sgpt README.md (tokenize_with_specb, get_weightedmean_embedding)",
        max_length=None,  # README: truncation=True, i.e. the tokenizer's model_max_length
    ),
    Recipe(
        name="sgpt-nobrackets",
        query_template="{text}",
        pooling="weighted_mean",
        append_eos=False,
        padding_side="right",
        source="Muennighoff/sgpt README.md (get_weightedmean_embedding, symmetric search without specb)",
        max_length=None,
    ),
    Recipe(
        name="echo",
        query_template=Template(_ECHO_QUERY),
        document_template=Template(_ECHO_DOCUMENT),
        pooling="mean",
        append_eos=False,
        special_tokens=False,
        padding_side="right",
        pad_token="<unk>",
        source="jakespringer/echo-embeddings echo_embeddings.py (EchoParser, EchoPooling 'mean'), example.py",
        piece_token_limit=300,  # example.py: EchoParser(..., max_length=300), per brace piece
    ),
    Recipe(
        name="echo-last",
        query_template=Template(_ECHO_QUERY),
        document_template=Template(_ECHO_DOCUMENT),
        pooling="last_token",
        append_eos=False,
        special_tokens=False,
        padding_side="right",
        pad_token="<unk>",
        source="jakespringer/echo-embeddings echo_embeddings.py (EchoParser, EchoPooling 'last')",
        piece_token_limit=300,
    ),
    Recipe(
        name="prompteol",
        query_template='This sentence : "{text}" means in one word:"',
        document_template='This sentence : "{text}" means in one word:"',
        pooling="last_token",
        append_eos=False,
        preprocess="prompteol",
        padding_side="left",
        source='kongds/scaling_sentemb evaluation.py (batcher, template \'This_sentence_:_"*sent_0*"_means_in_one_word:"\')',
        max_length=None,  # batcher(): truncation=False
    ),
    Recipe(
        name="llm2vec",
        query_template=Template("{instruction} {text}", pool_span="text_suffix"),
        document_template=Template("{text}", pool_span="text_suffix"),
        pooling="mean",
        append_eos=False,
        causal=False,
        strip_instruction=True,
        text_token_limit=400,
        padding_side="left",
        source="McGill-NLP/llm2vec llm2vec/llm2vec.py (_convert_to_str, tokenize, get_pooling 'mean')",
        max_length=512,  # LLM2Vec.__init__ / from_pretrained default
    ),
    Recipe(
        name="gritlm",
        query_template=Template(_GRIT_QUERY, pool_span="after_prompt"),
        document_template=Template(_GRIT_DOCUMENT, pool_span="after_prompt"),
        pooling="mean",
        append_eos=False,
        causal=False,
        padding_side="right",
        source="ContextualAI/gritlm gritlm/gritlm.py (GritLM.encode, GritLM.pooling 'mean'), README gritlm_instruction",
        max_length=512,  # GritLM.encode(max_length=512)
    ),
    Recipe(
        name="qwen3-embedding",
        query_template="Instruct: {instruction}\nQuery:{text}",
        end_token="<|endoftext|>",
        special_tokens=False,
        padding_side="left",
        source="QwenLM/Qwen3-Embedding README.md (get_detailed_instruct, last_token_pool; padding_side='left')",
        max_length=8192,  # README: max_length = 8192
    ),
    Recipe(
        name="gte-qwen2",
        end_token="<|endoftext|>",
        special_tokens=False,
        causal=False,
        padding_side="right",
        source="Alibaba-NLP/gte-Qwen2-7B-instruct model card (last_token_pool) with is_causal=false (vLLM #14609)",
        max_length=8192,  # model card: max_length = 8192
    ),
    Recipe(
        name="repllama",
        query_template="query: {text}",
        document_template=Template("passage: {text}", preprocess="strip"),
        end_token="eos",
        padding_side="right",
        max_length=512,  # Tevatron's RepLLaMA example: --query_max_len 512 --passage_max_len 512
        source=(
            "castorini/repllama-v1-7b-lora-passage model card (query: {q}</s>, passage: {title} {text}</s>, "
            "last token, L2); texttron/tevatron retriever (EncodeDataset, collator: max_len-1 then EOS)"
        ),
    ),
    Recipe(
        name="udever",
        query_template=Template("[BOQ]{text}", end_token="[EOQ]"),
        document_template=Template("[BOD]{text}", end_token="[EOD]"),
        append_eos=False,
        padding_side="left",
        max_length=300,  # encode(..., max_length=300): max_length - 1, then [EOQ]/[EOD]
        source="izhx/udever-bloom-1b1 model card (encode: [BOQ]/[BOD] + text, [EOQ]/[EOD] appended, last token)",
    ),
    Recipe(
        name="cpt-text",
        query_template=Template("{text}", brackets=("[", "]")),
        document_template=Template("{text}", brackets=("{", "}")),
        append_eos=False,
        padding_side="right",
        max_length=None,
        source=(
            "Neelakantan et al. 2022, Text and Code Embeddings by Contrastive Pre-Training, sec. 2 "
            "([ ] around queries, { } around documents, the end delimiter's last-layer state); "
            "the method on any decoder, no released model"
        ),
    ),
)

_RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in _BUILTIN}


def available_recipes() -> list[str]:
    """Names of the built-in recipes, sorted."""
    return sorted(_RECIPES)


def get_recipe(recipe: str | Recipe) -> Recipe:
    """The built-in recipe called ``recipe`` (or ``recipe`` itself when it is a :class:`Recipe`).

    Raises:
        ConfigurationError: an unknown name; the message lists the valid ones.
    """
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        key = recipe.strip().lower()
        if key in _RECIPES:
            return _RECIPES[key]
    raise ConfigurationError(
        f"unknown recipe {recipe!r}; valid recipes: {', '.join(available_recipes())} "
        "(or pass a Recipe object: recipe=Recipe(name=..., ...))"
    )
