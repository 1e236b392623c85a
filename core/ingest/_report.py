"""What an ingestion run did: :class:`IngestReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from e5_integrations._redact import redact
from e5_integrations.ingest._sources import EMPTY, INVALID, UNREAD, UNREADABLE, UNSUPPORTED, SourceProblem

__all__ = ["MAX_REPORTED_PROBLEMS", "IngestReport"]

#: Problems kept verbatim in a report; the counters cover all of them.
MAX_REPORTED_PROBLEMS = 100


@dataclass
class IngestReport:
    """Counters of one :func:`~e5_integrations.ingest.ingest` run.

    Attributes:
        store: store name (``chroma``, ``milvus``...).
        collection: collection written.
        layout: the collection's layout (``e5``, ``langchain``, ``llama-index``...).
        model: model name used for the embeddings.
        documents: documents read (non-empty, valid).
        chunks: chunks those documents were split into.
        embedded: chunks embedded in this run.
        tokens_embedded: tokens of the embedded chunks (without special tokens).
        written: records upserted (acknowledged by the store).
        skipped_unchanged: chunks already stored with the same content hash (not embedded).
        objects_unchanged: remote objects skipped without being downloaded: the store holds
            the rows of the version the listing gave (ETag / version / size and mtime).
        files_unchanged: local files skipped without being parsed: sealed by an earlier run
            with these bytes and settings (their documents and chunks are counted in
            ``documents``, ``chunks``, ``skipped_unchanged`` and ``skipped_documents``).
        skipped_documents: documents found stored unchanged by their fingerprint, without
            being tokenized (their chunks are counted in ``skipped_unchanged`` too).
        skipped_empty: documents with no text.
        skipped_invalid: records or files not loaded (``on_error="skip"``).
        skipped_unsupported: files with an unsupported extension.
        skipped_unreadable: files that could not be parsed (encrypted, corrupt, no text, a
            parser crash or timeout; ``on_error="skip"``); their stored chunks are kept.
        unread_parts: parts left out of a document that was stored (PDF pages without a
            text layer, without ``--ocr``).
        deleted_stale: stored chunks beyond a document's new last chunk, deleted.
        pruned: stored chunks of documents no longer in the sources, deleted
            (``prune=True`` only).
        seconds: wall time of the run, from start to end (retries and waits included).
        retry_wait_seconds: of ``seconds``, the time spent waiting for an unreachable store
            to come back (see ``--retry-seconds``).
        problems: the first :data:`MAX_REPORTED_PROBLEMS` problems, verbatim.
        warnings: anything else worth telling the user.
    """

    store: str = ""
    collection: str = ""
    layout: str = ""
    model: str = ""
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    tokens_embedded: int = 0
    written: int = 0
    skipped_unchanged: int = 0
    objects_unchanged: int = 0
    skipped_documents: int = 0
    files_unchanged: int = 0
    skipped_empty: int = 0
    skipped_invalid: int = 0
    skipped_unsupported: int = 0
    skipped_unreadable: int = 0
    unread_parts: int = 0
    deleted_stale: int = 0
    pruned: int = 0
    seconds: float = 0.0
    retry_wait_seconds: float = 0.0
    problems: list[SourceProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> dict[str, int]:
        """Non-zero skip counters by reason (units differ: chunks, documents, files)."""
        counts = {
            "unchanged chunks": self.skipped_unchanged,
            "unchanged objects (not downloaded)": self.objects_unchanged,
            "unchanged files (not parsed)": self.files_unchanged,
            "empty documents": self.skipped_empty,
            "invalid records": self.skipped_invalid,
            "unsupported files": self.skipped_unsupported,
            "unreadable files": self.skipped_unreadable,
            "unread pages": self.unread_parts,
        }
        return {reason: count for reason, count in counts.items() if count}

    def add_problem(self, problem: SourceProblem) -> None:
        """Keep ``problem`` if fewer than :data:`MAX_REPORTED_PROBLEMS` are kept already."""
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(problem)

    def record_problem(self, problem: SourceProblem) -> None:
        """Count ``problem`` under its skip counter and keep it (see :meth:`add_problem`)."""
        if problem.kind == EMPTY:
            self.skipped_empty += 1
        elif problem.kind == INVALID:
            self.skipped_invalid += 1
        elif problem.kind == UNSUPPORTED:
            self.skipped_unsupported += 1
        elif problem.kind == UNREADABLE:
            self.skipped_unreadable += 1
        elif problem.kind == UNREAD:
            self.unread_parts += 1
        self.add_problem(problem)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (problems as strings)."""
        data = asdict(self)
        data["problems"] = [redact(str(problem)) for problem in self.problems]
        data["warnings"] = [redact(warning) for warning in self.warnings]
        data["skipped"] = self.skipped
        return data

    def summary(self) -> str:
        """A few human-readable lines, as the CLI prints them."""
        rate = self.tokens_embedded / self.seconds if self.seconds > 0 else 0.0
        skipped = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items()) or "none"
        lines = [
            f"{self.store}/{self.collection}"
            + (f" ({self.layout} layout)" if self.layout else "")
            + f": read {self.documents} documents -> {self.chunks} chunks; "
            f"embedded {self.embedded} ({self.tokens_embedded} tokens, {rate:,.0f} tokens/s); "
            f"written {self.written}; skipped: {skipped}"
            + (
                f" ({self.skipped_documents} unchanged documents not even tokenized)"
                if self.skipped_documents
                else ""
            )
            + (f"; deleted {self.deleted_stale} stale chunks" if self.deleted_stale else "")
            + (f"; pruned {self.pruned} chunks of removed documents" if self.pruned else "")
            + f"; {self.seconds:.1f} s"
            + (
                f" ({self.retry_wait_seconds:.1f} s of it waiting for the store)"
                if self.retry_wait_seconds >= 0.05
                else ""
            ),
        ]
        total_problems = (
            self.skipped_empty
            + self.skipped_invalid
            + self.skipped_unsupported
            + self.skipped_unreadable
            + self.unread_parts
        )
        for problem in self.problems:
            lines.append(redact(f"  skipped {problem}"))
        if total_problems > len(self.problems):
            lines.append(f"  ... and {total_problems - len(self.problems)} more")
        lines.extend(redact(f"  warning: {warning}") for warning in self.warnings)
        return "\n".join(lines)
