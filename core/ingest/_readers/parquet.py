"""``.parquet``: one document per row, streamed in record batches with pyarrow."""

from __future__ import annotations

from collections.abc import Iterator

from e5_integrations._errors import option
from e5_integrations.ingest._readers._base import Fields, Item, RecordError, SourceFile, register_reader

#: Rows per pyarrow record batch when streaming a parquet file.
PARQUET_BATCH_ROWS = 1024


def read_parquet(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            "reading .parquet sources needs pyarrow; install it with: pip install 'e5-integrations[parquet]'"
        ) from exc
    with source.open() as handle:
        try:
            parquet = pq.ParquetFile(handle)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for broken files
            raise RecordError(f"not a readable parquet file ({exc})") from exc
        with parquet:
            names = parquet.schema_arrow.names
            missing = [name for name in (fields.text, fields.id) if name is not None and name not in names]
            if missing:
                raise RecordError(
                    f"no column {missing[0]!r} (columns: {', '.join(names)}); "
                    f"pass {option('text_field')} / {option('id_field')}"
                )
            row_no = 0
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    row_no += 1
                    yield row_no, row


register_reader(read_parquet, ".parquet")
