"""A chunk the model turns into a zero or NaN vector never reaches the store silently
(issue 23): ``e5 ingest`` stops naming its document, or with ``on_error="skip"`` leaves that
document out, reports it, and stores the rest. Real encoder and real (embedded Chroma) store;
the fault is a backend that returns NaN for inputs holding one token, as fp16 overflow would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from e5_integrations import E5Encoder, SourceError
from e5_integrations._backend import TorchBackend, load_model
from e5_integrations.ingest import ingest, open_sink

pytest.importorskip("chromadb")


class _PoisonedBackend:
    """The real backend, but an input holding ``token`` pools to NaN."""

    def __init__(self, real: TorchBackend, token: int) -> None:
        self.real, self.token = real, token

    @property
    def device(self) -> torch.device:
        return self.real.device

    @property
    def hidden_size(self) -> int:
        return self.real.hidden_size

    def embed(self, batch):
        vectors = self.real.embed(batch).clone()
        for row, ids in enumerate(batch):
            if self.token in ids:
                vectors[row] = float("nan")
        return vectors


@pytest.fixture
def poisoned(tiny_model_dir: Path) -> E5Encoder:
    plain = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32")
    token = plain.tokenizer("poison", add_special_tokens=False)["input_ids"][-1]
    real = TorchBackend(load_model(str(tiny_model_dir), torch.device("cpu"), torch.float32), plain.recipe, 2)
    return E5Encoder(str(tiny_model_dir), backends=[_PoisonedBackend(real, token)], dtype="fp32")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Paris is the capital of France.")
    (folder / "b.txt").write_text("This text carries poison for the model.")
    (folder / "c.txt").write_text("Berlin is the capital of Germany.")
    return folder


def test_a_nan_vector_stops_the_run_naming_the_document(poisoned, corpus, tmp_path):
    sink = open_sink("chroma", str(tmp_path / "store"), "docs")
    with pytest.raises(SourceError, match=r"b\.txt.*cannot be embedded.*non-finite.*on_error='skip'"):
        ingest([corpus], sink, poisoned)
    assert all("poison" not in hit.text for hit in sink.search(poisoned.encode_queries(["x"])[0], k=10))
    sink.close()


def test_with_skip_the_document_is_reported_and_the_rest_stored(poisoned, corpus, tmp_path):
    sink = open_sink("chroma", str(tmp_path / "store"), "docs")
    report = ingest([corpus], sink, poisoned, on_error="skip")
    texts = sorted(hit.text for hit in sink.search(poisoned.encode_queries(["x"])[0], k=10))
    assert texts == ["Berlin is the capital of Germany.", "Paris is the capital of France."]
    assert report.skipped_invalid == 1 and report.embedded == report.written == 2
    assert len(report.problems) == 1 and "b.txt" in str(report.problems[0])
    sink.close()
