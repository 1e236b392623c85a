"""Layouts: whose schema a collection follows, e5's own or the one a RAG framework reads.

A sink (``e5_integrations.sinks``) knows one store's client; a :class:`Layout` knows what a
framework keeps in a row, the same on every store:

- ``e5``: the package's own schema (chunk ids as ids, see each sink's docstring);
- ``langchain``: what LangChain's partner class of the store writes with ``add_documents``
  (``page_content`` plus a flat ``metadata``), so ``Chroma``, ``QdrantVectorStore``,
  ``Milvus`` and ``PGVectorStore`` open the collection with their ordinary arguments;
  ``langchain-legacy`` is pgvector's older two-table ``PGVector``;
- ``llama-index``: what LlamaIndex's vector store writes for a ``TextNode``
  (``node_to_metadata_dict``: ``_node_content``, ``_node_type``, ``document_id``/``doc_id``/
  ``ref_doc_id``), so ``ChromaVectorStore``, ``QdrantVectorStore``, ``MilvusVectorStore`` and
  ``PGVectorStore`` read it and ``delete_ref_doc(document_id)`` works.

In the framework layouts a row's id is ``uuid5(ID_NAMESPACE, chunk_id)`` (Qdrant and
``PGVectorStore`` accept nothing else; one rule everywhere keeps ids portable between stores)
and the chunk id is kept in the metadata under ``e5_chunk_id``. The pipeline's bookkeeping
(``source``, ``document_id``, ``chunk_index``, ``e5_content_hash``) lives in the metadata
where the framework keeps it, next to the user's fields; user fields with those names are
refused by line (:meth:`Layout.check_document`), never overwritten. A row is e5's only with
both ``document_id`` and ``e5_content_hash`` (:func:`~e5_integrations.ingest.e5_document_id`),
so rows an app added with ``add_documents`` are never pruned or deleted as stale.

Sinks speak chunk ids in the :class:`~e5_integrations.ingest.Sink` API and map them with
:meth:`Layout.row_id`; the pipeline never sees row ids.

Each layout is one frozen :class:`Layout` record in one registry (:func:`register_layout`):
its name, family, description, the user fields it refuses, its metadata codec
(:attr:`Layout.encode`), its hit codec (:attr:`Layout.decode`), how a stored row shows it
and the stores that have it. ``--layout``'s choices, :data:`LAYOUTS`, :func:`get_layout`,
:func:`layout_of_metadata` and ``Sink.layouts`` read the registry; what a store keeps of a
layout (table shape, field names, indexes) stays in that store's sink. Sink authors import
all of this from ``e5_integrations.sinks``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from e5_integrations._errors import ConfigurationError, LayoutMismatchError, for_front, option
from e5_integrations.ingest._records import (
    CHUNK_INDEX_KEY,
    CONTENT_HASH_KEY,
    DOCUMENT_ID_KEY,
    SOURCE_KEY,
    Hit,
    Record,
)

if TYPE_CHECKING:
    from e5_integrations.ingest._readers._base import Document

__all__ = [
    "CHUNK_ID_KEY",
    "DEFAULT_LAYOUT",
    "ID_NAMESPACE",
    "LAYOUTS",
    "LLAMA_INDEX_KEYS",
    "Layout",
    "MetadataDecoder",
    "MetadataEncoder",
    "flat_metadata",
    "get_layout",
    "layout_names",
    "layout_of_metadata",
    "node_metadata",
    "node_row",
    "own_metadata",
    "plain_row",
    "register_layout",
    "resolve_layout",
    "uuid_id",
    "with_content_hash",
]

DEFAULT_LAYOUT = "e5"
#: Namespace of the uuid5 row ids (and of the Qdrant point ids of the e5 layout). Changing
#: it orphans every stored row: never do.
ID_NAMESPACE = uuid.UUID("cee79ab9-b7dd-5233-aed4-74546597854d")
#: Metadata key holding the chunk id in the framework layouts (their row id is a UUID).
CHUNK_ID_KEY = "e5_chunk_id"
#: Keys LlamaIndex's ``node_to_metadata_dict`` adds to a node's metadata.
LLAMA_INDEX_KEYS = ("_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id")
#: The pipeline's own keys, hidden from the framework's LLM and embedding text of a node.
_BOOKKEEPING = (SOURCE_KEY, DOCUMENT_ID_KEY, CHUNK_INDEX_KEY, CONTENT_HASH_KEY, CHUNK_ID_KEY)

#: ``encode(layout, record, remove_text)``: the metadata a layout keeps for a record.
MetadataEncoder = Callable[["Layout", Record, bool], dict[str, Any]]
#: ``decode(text, metadata)``: a stored row's text and metadata without the layout's own keys
#: (the text recovered from the metadata where the layout keeps it there), with the chunk id
#: under ``e5_chunk_id`` if the row has one (:meth:`Layout.hit` takes it from there);
#: ``metadata`` is a copy the decoder may change.
MetadataDecoder = Callable[[str | None, dict[str, Any]], tuple[str | None, dict[str, Any]]]


def uuid_id(chunk_id: str) -> str:
    """The UUID string that stores chunk ``chunk_id`` where a store or framework wants UUIDs."""
    return str(uuid.uuid5(ID_NAMESPACE, chunk_id))


def own_metadata(layout: Layout, record: Record, remove_text: bool) -> dict[str, Any]:
    """The ``e5`` layout's metadata codec: the record's metadata as it is."""
    return dict(record.metadata)


def flat_metadata(layout: Layout, record: Record, remove_text: bool) -> dict[str, Any]:
    """The record's metadata plus ``e5_chunk_id``, keys sorted (nested ones too): the local
    and the Ray engine hand over the same metadata in different key orders, and frameworks
    store it serialised, so both engines write the same bytes. LangChain's codec."""
    return cast("dict[str, Any]", _sorted_keys({**record.metadata, CHUNK_ID_KEY: record.id}))


def node_metadata(layout: Layout, record: Record, remove_text: bool) -> dict[str, Any]:
    """LlamaIndex's codec: ``node_to_metadata_dict`` of a ``TextNode`` with id
    :meth:`Layout.row_id`, the text, :func:`flat_metadata` (bookkeeping hidden from the node's
    LLM and embedding text) and the document id as its source (ref doc id); ``remove_text``
    blanks the text inside ``_node_content``."""
    metadata = flat_metadata(layout, record, remove_text)
    return _llama_index_metadata(layout.row_id(record.id), record.text, metadata, remove_text)


def with_content_hash(metadata: Mapping[str, Any], value: str) -> dict[str, Any]:
    """A stored row's layout metadata (what :meth:`Layout.metadata` wrote) with its
    ``e5_content_hash`` set to ``value``, in ``_node_content`` too where LlamaIndex keeps a
    copy of the node's metadata there: the same bytes the layout writes for a record whose
    hash is ``value`` (``Sink.set_content_hashes`` writes it back)."""
    updated = {**metadata, CONTENT_HASH_KEY: value}
    node_content = metadata.get("_node_content")
    if isinstance(node_content, str):
        try:
            node = json.loads(node_content)
        except ValueError:
            return updated  # not LlamaIndex's: left as it is
        inner = node.get("metadata") if isinstance(node, dict) else None
        if isinstance(inner, dict) and CONTENT_HASH_KEY in inner:
            inner[CONTENT_HASH_KEY] = value  # json keeps the key order: as node_to_metadata_dict dumps it
            updated["_node_content"] = json.dumps(node, ensure_ascii=False)
    return updated


def plain_row(text: str | None, metadata: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The decoder of layouts that keep the text and the metadata as they are."""
    return text, metadata


def node_row(text: str | None, metadata: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """LlamaIndex's decoder: the text from ``_node_content`` when the store keeps it there
    only, the node's own keys dropped (and the ``"None"`` document id of a node without a ref doc)."""
    node_content = metadata.get("_node_content")
    if not text and isinstance(node_content, str):
        text = _node_text(node_content)
    for key in ("_node_content", "_node_type", "doc_id", "ref_doc_id"):
        metadata.pop(key, None)
    if metadata.get(DOCUMENT_ID_KEY) == "None":  # a node without a ref doc
        metadata.pop(DOCUMENT_ID_KEY)
    return text, metadata


@dataclass(frozen=True)
class Layout:
    """One layout's store-independent rules, registered once (:func:`register_layout`);
    sinks add the store-specific field names.

    Attributes:
        name: ``"e5"``, ``"langchain"``, ``"langchain-legacy"``, ``"llama-index"`` or a
            registered one (``--layout`` takes it).
        family: the framework whose rows it writes (variants share a family:
            ``langchain-legacy`` is ``langchain``); ``"e5"`` keeps chunk ids as row ids,
            every other family stores :func:`uuid_id` row ids with the chunk id in
            ``e5_chunk_id``.
        description: what it is, for messages and ``--help``: ``"LangChain's schema"``.
        reserved: user metadata keys it refuses, because it keeps its own under those names.
        encode: its metadata codec (:data:`MetadataEncoder`): what a row keeps for a record.
        decode: its hit codec (:data:`MetadataDecoder`).
        shows: whether a stored row's flat metadata shows this layout (see
            :func:`layout_of_metadata`); ``None``: rows never show it, the store's schema does.
        stores: the stores that have it (``None``: every store).
    """

    name: str
    family: str
    description: str = ""
    reserved: tuple[str, ...] = ()
    encode: MetadataEncoder = own_metadata
    decode: MetadataDecoder = plain_row
    shows: Callable[[Mapping[str, Any]], bool] | None = None
    stores: tuple[str, ...] | None = None

    @property
    def framework(self) -> bool:
        """Whether rows follow a framework's schema (UUID row ids, chunk id in metadata)."""
        return self.family != "e5"

    def describe(self) -> str:
        """``'the langchain layout (LangChain's schema)'``, for messages."""
        return f"the {self.name} layout ({self.description or self.name})"

    def row_id(self, chunk_id: str) -> str:
        """The stored id of chunk ``chunk_id``: itself in the e5 layout, else its UUID."""
        return uuid_id(chunk_id) if self.framework else chunk_id

    def check_document(self, document: Document) -> str | None:
        """Why this layout cannot hold ``document``'s metadata (a field with a name the
        framework keeps for itself), or ``None``. Sinks call it from their ``check_document``."""
        for key in self.reserved:
            if key in document.metadata:
                return (
                    f"field {key!r}: {self.describe()} keeps its own {key!r} on every row, so the "
                    "document's field would be lost; rename the field in the source"
                )
        return None

    def metadata(self, record: Record, *, remove_text: bool = True) -> dict[str, Any]:
        """The metadata the framework keeps for ``record``, before any store encoding
        (:attr:`encode`):

        - ``e5``: the record's metadata;
        - ``langchain``: the record's metadata plus ``e5_chunk_id``, keys sorted;
        - ``llama-index``: ``node_to_metadata_dict`` of a ``TextNode`` with id
          :meth:`row_id`, the text, the metadata plus ``e5_chunk_id`` (bookkeeping hidden from
          the node's LLM and embedding text) and the document id as its source (ref doc id);
          ``remove_text`` blanks the text inside ``_node_content`` where the store keeps it
          in a field of its own, as that store's LlamaIndex class does.

        Raises:
            ImportError: ``llama-index`` layout without llama-index-core; names the extra.
        """
        return self.encode(self, record, remove_text)

    def hit(self, row_id: str, score: float, text: str | None, metadata: Mapping[str, Any] | None) -> Hit:
        """A search result from a stored row: the chunk id (the row id for rows e5 did not
        write), the text (from ``_node_content`` when a LlamaIndex store keeps it there only)
        and the metadata without the framework's own keys (:attr:`decode`)."""
        text, stored = self.decode(text, dict(metadata or {}))
        chunk = stored.pop(CHUNK_ID_KEY, None)
        return Hit(
            id=chunk if isinstance(chunk, str) else row_id, score=score, text=text or "", metadata=stored
        )


#: name -> its record: ``--layout``'s choices, :func:`get_layout`, :func:`layout_of_metadata`
#: and ``Sink.layouts`` read it. A layout is one :func:`register_layout` call (plus what
#: each store keeps of it, in its sink).
_REGISTRY: dict[str, Layout] = {}


def register_layout(layout: Layout, *, replace: bool = False) -> Layout:
    """Add ``layout`` to the layouts every front knows (``--layout``, ``open_sink(layout=)``,
    :func:`get_layout`, :func:`layout_of_metadata`); returns it.

    A store writes it once its sink lists its name in ``Sink.layouts`` (a sink's layouts
    default to :data:`LAYOUTS`, the built-in ones every store has). Later registrations are
    asked first by :func:`layout_of_metadata`, so their ``shows`` should be specific.

    Raises:
        ConfigurationError: a layout of that name exists (pass ``replace=True`` to replace
            it), or the name is empty.
    """
    if not layout.name or not layout.family:
        raise ConfigurationError(
            f"layout {layout!r} has no name or no family; give both, e.g. Layout('mine', 'mine')"
        )
    if layout.name in _REGISTRY and not replace:
        raise ConfigurationError(
            f"a layout {layout.name!r} is registered already ({_REGISTRY[layout.name].describe()}); "
            "choose another name, or pass replace=True to replace it"
        )
    _REGISTRY[layout.name] = layout
    return layout


def layout_names(store: str | None = None) -> tuple[str, ...]:
    """The registered layouts: those of every store in registration order, then the
    variants of ``store`` (``None``: of any store). ``--layout``'s choices are ``layout_names()``."""
    every = [name for name, layout in _REGISTRY.items() if layout.stores is None]
    variants = [
        name
        for name, layout in _REGISTRY.items()
        if layout.stores is not None and (store is None or store in layout.stores)
    ]
    return (*every, *variants)


def _shows_content_hash(metadata: Mapping[str, Any]) -> bool:
    return CONTENT_HASH_KEY in metadata


def _shows_chunk_id(metadata: Mapping[str, Any]) -> bool:
    return CHUNK_ID_KEY in metadata


def _shows_node(metadata: Mapping[str, Any]) -> bool:
    return "_node_content" in metadata


register_layout(Layout("e5", "e5", "e5's own schema", shows=_shows_content_hash))
register_layout(
    Layout(
        "langchain",
        "langchain",
        "LangChain's schema",
        encode=flat_metadata,
        shows=_shows_chunk_id,
    )
)
register_layout(
    Layout(
        "langchain-legacy",
        "langchain",
        "the schema of LangChain's older two-table PGVector",
        encode=flat_metadata,
        stores=("pgvector",),
    )
)
register_layout(
    Layout(
        "llama-index",
        "llama-index",
        "LlamaIndex's schema",
        reserved=("_node_content", "_node_type", "doc_id", "ref_doc_id"),
        encode=node_metadata,
        decode=node_row,
        shows=_shows_node,
    )
)
#: The built-in layouts every store supports (``Sink.layouts``' default); a store may add
#: variants (pgvector: ``langchain-legacy``). :func:`layout_names` includes later registrations.
LAYOUTS = tuple(name for name, layout in _REGISTRY.items() if layout.stores is None)


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted_keys(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted_keys(item) for item in value]
    return value


def _node_text(node_content: str) -> str:
    try:
        node = json.loads(node_content)
    except ValueError:
        return ""
    text = node.get("text") if isinstance(node, dict) else None
    return text if isinstance(text, str) else ""


def _llama_index_metadata(
    node_id: str, text: str, metadata: dict[str, Any], remove_text: bool
) -> dict[str, Any]:
    try:
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
        from llama_index.core.vector_stores.utils import node_to_metadata_dict
    except ImportError as exc:
        raise ImportError(
            f"the llama-index layout writes nodes with llama-index-core ({exc.name or exc}); install it "
            "with: pip install 'e5-integrations[llama-index]'"
        ) from exc
    hidden = [key for key in _BOOKKEEPING if key in metadata]
    document_id = metadata.get(DOCUMENT_ID_KEY)
    relationships = (
        {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=document_id)}
        if isinstance(document_id, str)
        else {}
    )
    node = TextNode(
        id_=node_id,
        text=text,
        metadata=metadata,
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=hidden,
        relationships=relationships,
    )
    return dict(node_to_metadata_dict(node, remove_text=remove_text, flat_metadata=False))


def get_layout(name: str, supported: tuple[str, ...] | None = None, store: str | None = None) -> Layout:
    """The registered :class:`Layout` called ``name``.

    Args:
        supported: the layouts of the store (a sink's ``layouts``); ``None``: every layout
            that every store has.
        store: the store's name, for the message.

    Raises:
        ConfigurationError: ``name`` is not one of ``supported``.
    """
    if supported is None:
        supported = tuple(n for n, layout in _REGISTRY.items() if layout.stores is None)
    if name not in supported or name not in _REGISTRY:
        where = f"the {store} store" if store else "e5"
        known = _REGISTRY.get(name)
        extra = (
            f" ({name!r} is {known.description}, only on {' and '.join(known.stores)})"
            if known is not None and known.stores
            else ""
        )
        raise ConfigurationError(
            f"unknown layout {name!r} for {where}{extra}; expected one of {list(supported)} "
            f"(e.g. {option('layout', 'langchain')})"
        )
    return _REGISTRY[name]


def layout_of_metadata(metadata: Mapping[str, Any] | None) -> str | None:
    """The layout a stored row's flat metadata shows, or ``None`` when it shows none.

    LlamaIndex rows carry ``_node_content``; e5's framework rows ``e5_chunk_id``; e5-layout
    rows ``e5_content_hash`` without it. A row with none of these (a LangChain app's own row,
    say) shows nothing: the sink decides from the store's own fields.
    """
    if not isinstance(metadata, Mapping):
        return None
    for layout in reversed(_REGISTRY.values()):
        if layout.shows is not None and layout.shows(metadata):
            return layout.name
    return None


def resolve_layout(requested: str | None, detected: str | None, where: str) -> str:
    """The layout to write ``where`` in: the existing collection's (``detected``), else
    ``requested``, else :data:`DEFAULT_LAYOUT`.

    Raises:
        LayoutMismatchError: ``requested`` and ``detected`` disagree; nothing is written (a
            ``SchemaMismatchError`` and a ``ConfigurationError``).
    """
    if detected is None:
        return requested or DEFAULT_LAYOUT
    if requested is not None and requested != detected:
        found = get_layout(detected, (detected,))
        raise LayoutMismatchError(
            f"{where} is in {found.describe()}, but {option('layout', requested)} was given; nothing "
            f"was written. Pass {option('layout', detected)} (or no layout, to write in the collection's "
            f"own), or ingest into another collection" + for_front(" (collection=)", " (--collection)")
        )
    return detected
