"""The Ray engine on a folder of mixed document formats, good and bad: the same rows as the
local engine, and the bad files reported by name under ``on_error="skip"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e5_integrations import SourceError
from e5_integrations.ingest import ingest, open_sink
from tests.ray.conftest import content_only as _content
from tests.ray.conftest import dump_rows
from tests.ray.test_ray_engine import CHUNK, run_ray
from tests.readers.samples import SAMPLES

pytestmark = pytest.mark.integration

GOOD = [".docx", ".pptx", ".xlsx", ".html", ".epub", ".ipynb", ".jsonl.gz"]


def _mixed(root: Path) -> Path:
    root.mkdir()
    for extension in GOOD:
        SAMPLES[extension](root)
    (root / "notes.docx").write_text("plain text wearing a .docx extension")
    (root / "empty.xlsx").touch()
    return root


@pytest.mark.parametrize("store_target", ["pgvector"], indirect=True)
def test_mixed_formats_on_ray_match_the_local_engine_and_name_the_bad_files(
    ray_session: Any,
    store_target: tuple[str, str, str],
    pg_dsn: str,
    tiny_model_dir: Path,
    encoder: Any,
    tmp_path: Path,
) -> None:
    corpus = _mixed(tmp_path / "docs")
    store, uri, collection = store_target
    with pytest.raises(SourceError, match="empty.xlsx: the file is empty"):
        run_ray(store_target, corpus, tiny_model_dir)

    local_collection = collection + "_local"
    with open_sink(store, uri, local_collection) as sink:
        try:
            local = ingest([corpus], sink, encoder, on_error="skip", **CHUNK)
            local_rows = dump_rows(store, uri, local_collection)
        finally:
            sink.drop()
    remote = run_ray(store_target, corpus, tiny_model_dir, on_error="skip")
    ray_rows = dump_rows(*store_target)
    assert sorted(ray_rows) == sorted(local_rows) and len(ray_rows) >= len(GOOD)
    for id_, (text, metadata, vector) in local_rows.items():
        # the local engine seals each file's probe chunk and marks chunk 0s, Ray marks one-chunk
        # documents: the rows agree up to those
        assert (ray_rows[id_][0], _content(ray_rows[id_][1])) == (text, _content(metadata)), id_
        assert np.allclose(ray_rows[id_][2], vector, atol=1e-5), id_
    assert {Path(problem.location).name for problem in remote.problems} == {"notes.docx", "empty.xlsx"}
    assert remote.skipped_unreadable == local.skipped_unreadable == 2  # whole-file formats: unreadable files
