"""The contract every reader keeps, run on a real file of each format (``samples.SAMPLES``).

Reading order, metadata and spans (sorted, inside the text, each span's text the exact
``text[start:end]`` holding what it claims), a non-empty text, and bad input: a 0-byte file
and a corrupt one are named as problems of that file, never stored as empty documents.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest._readers import Document, SourceFile, is_whole_file
from e5_integrations.ingest._sources import SourceProblem, read_source_file
from tests.readers.samples import SAMPLES, Sample

EXTENSIONS = sorted(SAMPLES)


def _read(path: Path, on_error: str = "fail") -> tuple[list[Document], list[SourceProblem]]:
    problems: list[SourceProblem] = []
    documents = list(
        read_source_file(SourceFile(path, path.name), on_error=on_error, on_problem=problems.append)  # type: ignore[arg-type]
    )
    return documents, problems


@pytest.fixture(params=EXTENSIONS)
def sample(request: pytest.FixtureRequest, tmp_path: Path) -> Sample:
    return SAMPLES[request.param](tmp_path)


def test_text_is_in_reading_order(sample: Sample) -> None:
    documents, problems = _read(sample.path)
    assert problems == []
    assert len(documents) == sample.documents
    text = "\n".join(document.text for document in documents)
    assert all(document.text.strip() for document in documents)
    position = 0
    for words in sample.words:
        found = text.find(words, position)
        assert found >= 0, f"{words!r} missing after offset {position} in:\n{text}"
        position = found + len(words)


def test_metadata_and_spans(sample: Sample) -> None:
    documents, _ = _read(sample.path)
    for document in documents:
        assert document.source == sample.path.name
        starts = [span.start for span in document.spans]
        assert starts == sorted(starts)
        for span in document.spans:
            assert 0 <= span.start < span.end <= len(document.text)
            piece = document.text[span.start : span.end]
            assert (
                piece == piece.strip("\n") and piece.strip()
            )  # spans cover blocks, not the blank lines around
    if sample.title is not None:
        assert documents[0].metadata["title"] == sample.title
    for metadata, words in sample.spans:
        document = documents[0]
        matching = [span for span in document.spans if dict(span.metadata) == dict(metadata)]
        assert matching, f"no span {metadata} in {document.spans}"
        assert any(words in document.text[span.start : span.end] for span in matching)


def test_a_zero_byte_file_is_named_never_stored(sample: Sample, tmp_path: Path) -> None:
    empty = tmp_path / ("empty" + "".join(sample.path.suffixes))
    empty.write_bytes(b"")
    try:
        documents, problems = _read(empty)
    except SourceError as exc:
        assert "empty" in str(exc) and empty.name in str(exc)
        return
    assert documents == []
    assert [problem.location for problem in problems] == [str(empty)]


def test_a_corrupt_file_is_refused_naming_the_file(sample: Sample, tmp_path: Path) -> None:
    broken = tmp_path / ("broken" + "".join(sample.path.suffixes))
    broken.write_bytes(sample.corrupt)
    with pytest.raises(SourceError) as raised:
        _read(broken)
    assert str(broken) in str(raised.value) and "Traceback" not in str(raised.value)

    documents, problems = _read(broken, on_error="skip")
    assert len(problems) >= 1 and all(str(broken) in problem.location for problem in problems)
    # whole-file formats: an unreadable file (its stored chunks stay); record files: invalid records
    expected_kind = "unreadable file" if is_whole_file(SourceFile(broken, broken.name)) else "invalid record"
    assert all(problem.kind == expected_kind for problem in problems), problems
    assert len(documents) < sample.documents  # never the whole file as if it were fine
