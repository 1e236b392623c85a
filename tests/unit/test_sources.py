"""Reading sources: every format, ids, recursion order, malformed input, streaming."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from e5_integrations import ConfigurationError, SourceError
from e5_integrations.ingest._sources import SourceProblem, iter_documents, iter_source_files


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, *records: object) -> Path:
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
    return _write(path, "\n".join(lines) + "\n")


def _read(*sources: object, **kwargs: object) -> tuple[list, list[SourceProblem]]:
    problems: list[SourceProblem] = []
    docs = list(iter_documents(sources, on_problem=problems.append, **kwargs))  # type: ignore[arg-type]
    return docs, problems


def test_directory_is_walked_recursively_in_sorted_order_with_relative_ids(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _write(root / "b.txt", "bee")
    _write(root / "a.md", "# A")
    _write(root / "sub" / "c.txt", "sea")
    _write(root / "sub" / "deeper" / "d.txt", "dee")
    _write(root / ".hidden" / "x.txt", "hidden")
    _write(root / ".secret.txt", "hidden")

    docs, problems = _read(root, id_root=root)

    assert [doc.id for doc in docs] == ["a.md", "b.txt", "sub/c.txt", "sub/deeper/d.txt"]
    assert [doc.text for doc in docs] == ["# A", "bee", "sea", "dee"]
    assert [doc.source for doc in docs] == [doc.id for doc in docs]
    assert all(doc.metadata == {} for doc in docs)
    assert problems == []


def _real(path: Path) -> str:
    return Path(os.path.realpath(path)).as_posix()


def test_a_file_has_one_id_whatever_spelling_symlink_or_cwd_reaches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`e5 ingest docs/a.txt`, `e5 ingest /abs/docs/a.txt` and `e5 ingest docs` once gave three ids."""
    target = _write(tmp_path / "docs" / "a.txt", "alpha")
    (tmp_path / "link").symlink_to(tmp_path / "docs", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    spellings = ["docs/a.txt", "./docs//a.txt", str(target), "docs", "docs/../docs", "link", "link/a.txt"]
    ids = {spelling: [doc.id for doc in _read(spelling)[0]] for spelling in spellings}
    monkeypatch.chdir(tmp_path / "elsewhere")
    ids["../docs/a.txt from another cwd"] = [doc.id for doc in _read("../docs/a.txt")[0]]
    assert ids == {spelling: [_real(target)] for spelling in ids}
    assert [doc.source for doc in _read(target)[0]] == [_real(target)]


def test_files_with_one_name_in_two_directories_do_not_collide(tmp_path: Path) -> None:
    """`e5 ingest a b` failed with a duplicate id when both held a README.md."""
    first = _write(tmp_path / "a" / "README.md", "first")
    second = _write(tmp_path / "b" / "README.md", "second")
    docs, problems = _read(tmp_path / "a", tmp_path / "b")
    assert [(doc.id, doc.text) for doc in docs] == [(_real(first), "first"), (_real(second), "second")]
    assert problems == []
    # line-numbered JSONL ids embed the file id, so they do not collide either
    _jsonl(tmp_path / "a" / "d.jsonl", {"text": "one"})
    _jsonl(tmp_path / "b" / "d.jsonl", {"text": "two"})
    docs, problems = _read(tmp_path / "a", tmp_path / "b")
    assert [doc.id for doc in docs if doc.id.endswith(":1")] == [
        _real(tmp_path / "a" / "d.jsonl") + ":1",
        _real(tmp_path / "b" / "d.jsonl") + ":1",
    ]
    assert problems == []


def test_id_root_gives_portable_ids_relative_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _write(tmp_path / "docs" / "sub" / "a.txt", "alpha")
    (tmp_path / "link").symlink_to(tmp_path / "docs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for spelling in ["docs", "docs/sub", str(target), "link/sub/a.txt"]:
        assert [doc.id for doc in _read(spelling, id_root="docs")[0]] == ["sub/a.txt"]
        assert [doc.id for doc in _read(spelling, id_root=tmp_path / "link")[0]] == ["sub/a.txt"]
    assert [file.file_id for file in iter_source_files(["docs"], id_root=tmp_path)] == ["docs/sub/a.txt"]
    outside = _write(tmp_path / "other" / "b.txt", "bee")
    with pytest.raises(SourceError, match=rf"{re.escape(str(outside))}.*outside --id-root.*docs"):
        list(iter_documents([outside], id_root="docs"))
    with pytest.raises(ConfigurationError, match="--id-root .*nope.* is not a directory"):
        list(iter_documents(["docs"], id_root="nope"))


def test_a_file_reached_twice_is_read_once(tmp_path: Path) -> None:
    target = _write(tmp_path / "docs" / "a.txt", "alpha")
    (tmp_path / "docs" / "alias.txt").symlink_to(target)
    docs, problems = _read(tmp_path / "docs", target, tmp_path / "docs" / "alias.txt")
    assert [doc.id for doc in docs] == [_real(target)]
    assert problems == []


def test_a_directory_symlink_loop_is_a_source_error(tmp_path: Path) -> None:
    _write(tmp_path / "docs" / "sub" / "a.txt", "alpha")
    (tmp_path / "docs" / "sub" / "up").symlink_to(tmp_path / "docs", target_is_directory=True)
    with pytest.raises(SourceError, match=r"symlink loop: .*docs/sub/up.* points to .*docs"):
        list(iter_documents([tmp_path / "docs"]))


def test_jsonl_text_id_and_metadata(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "data.jsonl",
        {"id": "doc-1", "text": "first", "lang": "en", "tags": ["a", "b"]},
        {"text": "no id here", "score": 0.5},
        "",
        {"id": 7, "text": "integer id"},
    )
    docs, problems = _read(path)
    assert [doc.id for doc in docs] == ["doc-1", f"{path.as_posix()}:2", "7"]
    assert docs[0].metadata == {"lang": "en", "tags": ["a", "b"]}
    assert docs[1].metadata == {"score": 0.5}
    assert docs[0].source == path.as_posix()
    assert problems == []


def test_jsonl_custom_text_and_id_fields(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", {"key": "k1", "body": "hello", "text": "not this"})
    docs, _ = _read(path, text_field="body", id_field="key")
    assert docs[0].id == "k1"
    assert docs[0].text == "hello"
    assert docs[0].metadata == {"text": "not this"}


def test_malformed_jsonl_fails_naming_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", {"text": "ok"}, {"text": "ok too"}, '{"text": "broken",')
    with pytest.raises(SourceError) as info:
        list(iter_documents([path]))
    message = str(info.value)
    assert f"{path}:3" in message
    assert "invalid JSON" in message
    assert "on_error='skip'" in message and "--on-error" not in message  # Python names the parameter


def test_hints_name_the_cli_flags_while_the_command_runs(tmp_path: Path) -> None:
    from e5_integrations._errors import cli_front

    path = _write(tmp_path / "bad.jsonl", "not json\n")
    with cli_front(), pytest.raises(SourceError) as info:
        list(iter_documents([path]))
    assert "--on-error skip" in str(info.value) and "on_error=" not in str(info.value)
    with pytest.raises(SourceError, match="on_error='skip'"):  # and back to Python after it
        list(iter_documents([path]))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('["a", "list"]', "expected an object"),
        ('{"body": "no text field"}', "no 'text' field"),
        ('{"text": 42}', "'text' is int"),
        ('{"text": "x", "id": {"nested": 1}}', "id field 'id' is dict"),
    ],
)
def test_invalid_records_are_errors(tmp_path: Path, line: str, expected: str) -> None:
    path = _write(tmp_path / "bad.jsonl", '{"text": "fine"}\n' + line + "\n")
    with pytest.raises(SourceError, match=expected) as info:
        list(iter_documents([path]))
    assert f"{path}:2" in str(info.value)


def test_explicit_id_field_must_be_present(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", {"text": "no key"})
    with pytest.raises(SourceError, match="id_field="):
        list(iter_documents([path], id_field="key"))


def test_skip_mode_loads_the_rest_and_reports_why(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", {"text": "one"}, "{not json", {"text": 3}, {"text": "four"})
    docs, problems = _read(path, on_error="skip")
    assert [doc.text for doc in docs] == ["one", "four"]
    assert [(problem.kind, problem.location) for problem in problems] == [
        ("invalid record", f"{path}:2"),
        ("invalid record", f"{path}:3"),
    ]
    assert "invalid JSON" in problems[0].detail


def test_empty_texts_and_unsupported_files_are_reported_not_dropped(tmp_path: Path) -> None:
    _write(tmp_path / "empty.txt", "  \n\t")
    _write(tmp_path / "image.png", "not text")
    _write(tmp_path / "README", "no extension")
    _jsonl(tmp_path / "d.jsonl", {"text": ""}, {"text": None}, {"text": "kept"})
    docs, problems = _read(tmp_path)
    assert [doc.text for doc in docs] == ["kept"]
    kinds = sorted((problem.kind, Path(problem.location.split(":")[0]).name) for problem in problems)
    assert kinds == [
        ("empty text", "d.jsonl"),
        ("empty text", "d.jsonl"),
        ("empty text", "empty.txt"),
        ("unsupported file type", "README"),
        ("unsupported file type", "image.png"),
    ]


def test_csv_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", 'id,body,lang\nr1,"hello, world",en\nr2,"multi\nline",fr\n')
    docs, _ = _read(path, text_field="body")
    assert [(doc.id, doc.text, dict(doc.metadata)) for doc in docs] == [
        ("r1", "hello, world", {"lang": "en"}),
        ("r2", "multi\nline", {"lang": "fr"}),
    ]


def test_csv_missing_column_and_ragged_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "title,body\na,b\n")
    with pytest.raises(SourceError, match="no column 'text'"):
        list(iter_documents([path]))
    ragged = _write(tmp_path / "r.csv", 'text\nok\n"x",extra\n')
    with pytest.raises(SourceError, match=rf"{ragged}:3.*2 cells"):
        list(iter_documents([ragged]))


def test_csv_cells_larger_than_the_csv_module_default(tmp_path: Path) -> None:
    big = "word " * 60_000  # 300 kB > csv's default 128 KiB field limit
    path = _write(tmp_path / "big.csv", f'text\n"{big}"\n')
    docs, _ = _read(path)
    assert docs[0].text == big


def test_parquet_streams_row_batches(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from e5_integrations.ingest._readers.parquet import PARQUET_BATCH_ROWS

    n = PARQUET_BATCH_ROWS * 2 + 5
    table = pa.table(
        {
            "uid": [f"p{i}" for i in range(n)],
            "content": [f"row {i}" for i in range(n)],
            "rank": list(range(n)),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=500)
    docs = list(iter_documents([path], text_field="content", id_field="uid"))
    assert len(docs) == n
    assert (docs[0].id, docs[0].text, dict(docs[0].metadata)) == ("p0", "row 0", {"rank": 0})
    assert docs[-1].id == f"p{n - 1}"


def test_parquet_missing_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    with pytest.raises(SourceError, match="no column 'text'"):
        list(iter_documents([path]))


def test_reading_is_lazy(tmp_path: Path) -> None:
    """Documents come out before a later malformed line is even read: nothing is preloaded."""
    path = _jsonl(tmp_path / "d.jsonl", *({"text": f"doc {i}"} for i in range(100)), "{broken")
    documents = iter_documents([path])
    assert next(documents).text == "doc 0"
    with pytest.raises(SourceError, match=":101"):
        list(documents)


def test_missing_source_and_invalid_utf8(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        list(iter_documents([tmp_path / "nope"]))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(SourceError, match="UTF-8"):
        list(iter_documents([bad]))


def test_duplicate_document_ids_are_invalid_records(tmp_path):
    from e5_integrations import SourceError
    from e5_integrations.ingest import iter_documents

    (tmp_path / "a.jsonl").write_text('{"id": "x", "text": "first"}\n{"id": "y", "text": "other"}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "x", "text": "second"}\n')
    with pytest.raises(SourceError, match="duplicate document id 'x'"):
        list(iter_documents([tmp_path]))
    problems: list[SourceProblem] = []
    docs = list(iter_documents([tmp_path], on_error="skip", on_problem=problems.append))
    assert [(d.id, d.text) for d in docs] == [("x", "first"), ("y", "other")]
    assert len(problems) == 1 and "duplicate" in problems[0].detail


def test_csv_unterminated_quote_fails_naming_the_line_instead_of_swallowing_the_rest(tmp_path: Path) -> None:
    """Issue 11.3: an unterminated quote made one document of every later row."""
    rows = "".join(f"r{i},row number {i}\n" for i in range(3, 9))
    path = _write(tmp_path / "t.csv", f'id,text\nr1,fine\nr2,"broken quote\n{rows}')
    with pytest.raises(SourceError, match=rf"{re.escape(str(path))}:3: .*quote"):
        list(iter_documents([path]))
    docs, problems = _read(path, on_error="skip")
    assert [doc.id for doc in docs] == ["r1"]
    assert [(problem.kind, problem.location) for problem in problems] == [("invalid record", f"{path}:3")]


def test_csv_stray_quote_is_skipped_by_row_and_reading_goes_on(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", 'id,text\nr1,fine\nr2,"closed" then more\nr3,after\n')
    with pytest.raises(SourceError, match=rf"{re.escape(str(path))}:3: "):
        list(iter_documents([path]))
    docs, problems = _read(path, on_error="skip")
    assert [(doc.id, doc.text) for doc in docs] == [("r1", "fine"), ("r3", "after")]
    assert [problem.location for problem in problems] == [f"{path}:3"]


@pytest.mark.parametrize("key", ["source", "document_id", "chunk_index", "e5_content_hash", "e5_json_keys"])
def test_user_fields_named_like_bookkeeping_are_refused_by_line(tmp_path: Path, key: str) -> None:
    """Issue 11.5: such fields were silently replaced (or broke Chroma search); now refused."""
    path = _jsonl(tmp_path / "d.jsonl", {"id": "a", "text": "ok"}, {"id": "b", "text": "mine", key: "x"})
    with pytest.raises(SourceError, match=rf"{re.escape(str(path))}:2: .*{key!r} is reserved.*rename"):
        list(iter_documents([path]))
    docs, problems = _read(path, on_error="skip")
    assert [doc.id for doc in docs] == ["a"]
    assert [(problem.kind, problem.location) for problem in problems] == [("invalid record", f"{path}:2")]


def test_a_csv_column_named_like_bookkeeping_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "id,text,source\nr1,hello,web\n")
    with pytest.raises(SourceError, match=rf"{re.escape(str(path))}:2: .*'source' is reserved"):
        list(iter_documents([path]))
    # a column read as the text or the id is not metadata, so its name is free
    assert [doc.metadata for doc in iter_documents([path], text_field="source")] == [{"text": "hello"}]
    assert [doc.id for doc in iter_documents([path], id_field="source")] == ["web"]
