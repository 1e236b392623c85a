"""The parse pool: files parsed in worker processes, in order, under a time limit."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e5_integrations import ConfigurationError
from e5_integrations.ingest._parsing import Parsed, ParsePool, parse_in_order
from e5_integrations.ingest._readers import Document, Fields, Item, RecordError, SourceFile

FIELDS = Fields("text", None)


# Readers run in the worker processes, which import them from this module by name.
def read_upper(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    with source.open() as handle:
        text = handle.read().decode("utf-8")
    if text.startswith("sleep"):
        time.sleep(float(text.split()[1]))
    if text == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if text == "bug":
        raise KeyError("a parser bug")
    if text == "bad":
        raise RecordError("the file is bad")
    yield 0, Document(source.file_id, text.upper(), source.file_id)


def _file(tmp_path: Path, name: str, text: str) -> SourceFile:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return SourceFile(path, name)


def _text(parsed: Parsed) -> str:
    assert parsed.error is None, parsed.error
    (_, document), *_ = parsed.items
    assert isinstance(document, Document)
    return document.text


def test_files_parse_in_workers_and_come_back_in_order(tmp_path: Path) -> None:
    files = [_file(tmp_path, f"f{index}.x", f"text {index}") for index in range(7)]
    with ParsePool(workers=2, timeout=60) as pool:
        results = list(parse_in_order(files, lambda source: pool.submit(read_upper, source, FIELDS), 2))
    assert [source for source, _ in results] == files
    assert [_text(parsed) for _, parsed in results if parsed is not None] == [f"TEXT {i}" for i in range(7)]


def test_items_not_parsed_in_the_pool_keep_their_place(tmp_path: Path) -> None:
    files = [_file(tmp_path, f"f{index}.x", "sleep 0.3" if index == 0 else "x") for index in range(4)]
    with ParsePool(workers=2, timeout=60) as pool:
        results = list(
            parse_in_order(
                files,
                lambda source: pool.submit(read_upper, source, FIELDS) if source.file_id != "f1.x" else None,
                3,
            )
        )
    assert [source.file_id for source, _ in results] == ["f0.x", "f1.x", "f2.x", "f3.x"]
    assert results[1][1] is None and results[0][1] is not None


def test_a_hung_parser_is_stopped_at_the_time_limit_and_the_pool_goes_on(tmp_path: Path) -> None:
    hung = _file(tmp_path, "hung.x", "sleep 600")
    good = _file(tmp_path, "good.x", "fine")
    with ParsePool(workers=1, timeout=1.5) as pool:
        first = pool.submit(read_upper, hung, FIELDS)
        second = pool.submit(read_upper, good, FIELDS)
        stopped = first.result(timeout=60)
        assert stopped.items == [] and stopped.error is not None
        assert "longer than 1.5 s" in stopped.error and "parse_timeout" in stopped.error
        assert _text(second.result(timeout=60)) == "FINE"


def test_a_crashed_parser_fails_its_file_only(tmp_path: Path) -> None:
    with ParsePool(workers=1, timeout=60) as pool:
        crashed = pool.submit(read_upper, _file(tmp_path, "c.x", "crash"), FIELDS).result(timeout=60)
        after = pool.submit(read_upper, _file(tmp_path, "d.x", "after"), FIELDS).result(timeout=60)
    assert crashed.error is not None and "crashed" in crashed.error and "-9" in crashed.error
    assert _text(after) == "AFTER"


@pytest.mark.parametrize("workers", [0, 1])
def test_parser_errors_become_the_files_error(tmp_path: Path, workers: int) -> None:
    with ParsePool(workers=workers, timeout=60) as pool:
        bug = pool.submit(read_upper, _file(tmp_path, "b.x", "bug"), FIELDS).result(timeout=60)
        bad = pool.submit(read_upper, _file(tmp_path, "e.x", "bad"), FIELDS).result(timeout=60)
    assert bug.error == "the .x parser failed: KeyError: 'a parser bug'"
    assert bad.error == "the file is bad"


@pytest.mark.parametrize(
    ("workers", "timeout", "match"), [(-1, 1.0, "parse_workers"), (1, 0.0, "parse_timeout")]
)
def test_bad_pool_settings_are_configuration_errors(workers: int, timeout: float, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        ParsePool(workers, timeout)
