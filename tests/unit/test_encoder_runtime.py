"""Runtime behaviour of E5Encoder: OOM back-off, devices, sharing, configuration errors."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from e5_integrations import ConfigurationError, E5Encoder, OutOfMemoryError
from e5_integrations._backend import TorchBackend, load_model
from e5_integrations._recipe import E5_MISTRAL

TEXTS = [" ".join(["token"] * n) for n in (3, 150, 40, 90, 7, 200, 1, 60, 120, 33)]


class OOMBackend:
    """A test double at the Backend seam: the real tiny model's backend, except that a
    batch of more than ``max_padded_tokens`` padded tokens raises ``torch.OutOfMemoryError``
    (as a CUDA device would). Counts forward passes and out-of-memory errors."""

    def __init__(self, model_dir: str, max_padded_tokens: int) -> None:
        self.inner = TorchBackend(
            load_model(model_dir, torch.device("cpu"), torch.float32), E5_MISTRAL, pad_token_id=2
        )
        self.max_padded_tokens = max_padded_tokens
        self.calls: list[int] = []  # padded size of every forward pass asked for
        self.ooms = 0

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def hidden_size(self) -> int:
        return self.inner.hidden_size

    def embed(self, batch: Sequence[Sequence[int]]) -> torch.Tensor:
        padded = max(len(ids) for ids in batch) * len(batch)
        self.calls.append(padded)
        if padded > self.max_padded_tokens:
            self.ooms += 1
            raise torch.OutOfMemoryError(f"simulated: {padded} tokens > {self.max_padded_tokens}")
        return self.inner.embed(batch)


def test_oom_backoff_returns_every_embedding_in_order(tiny_model_dir, encoder, caplog):
    expected = encoder.encode_documents(TEXTS)
    fake = OOMBackend(str(tiny_model_dir), max_padded_tokens=450)
    enc = E5Encoder(str(tiny_model_dir), batch_tokens=100_000, backends=[fake])
    with caplog.at_level(logging.WARNING, logger="e5_integrations"):
        got = enc.encode_documents(TEXTS)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert fake.ooms >= 1, "the simulated OOM never triggered"
    assert "out of memory" in caplog.text and "retrying" in caplog.text


def test_oom_backoff_keeps_the_reduced_budget_for_the_rest_of_the_call(tiny_model_dir, encoder):
    """Issue 11 item 10: 8 batches gave 8 OOMs and 166 forward passes instead of about 16."""
    texts = [" ".join(["token"] * 98)] * 64  # 64 texts of 100 tokens (BOS + 98 + EOS)
    assert set(encoder.count_tokens(texts)) == {100}
    fake = OOMBackend(str(tiny_model_dir), max_padded_tokens=400)
    enc = E5Encoder(str(tiny_model_dir), batch_tokens=800, backends=[fake])  # planned: 8 batches of 8
    got = enc.encode_documents(texts)
    np.testing.assert_allclose(got, encoder.encode_documents(texts), atol=1e-5)
    # One OOM on the first batch (800 tokens); the budget becomes 400 for the rest of the
    # call: the first batch in two halves, then the 56 other texts re-planned as 14 batches of 4.
    assert fake.ooms == 1
    assert len(fake.calls) == 1 + 2 + 14
    assert max(fake.calls[1:]) <= 400
    # The next call starts from the configured budget again (the OOM may have been transient).
    fake.calls.clear()
    enc.encode_documents(texts[:8])
    assert fake.calls[0] == 800


def test_oom_backoff_on_two_devices_keeps_the_reduced_budget(tiny_model_dir, encoder):
    texts = [" ".join(["token"] * 98)] * 64
    fakes = [OOMBackend(str(tiny_model_dir), max_padded_tokens=400) for _ in range(2)]
    enc = E5Encoder(str(tiny_model_dir), batch_tokens=800, backends=fakes)
    np.testing.assert_allclose(enc.encode_documents(texts), encoder.encode_documents(texts), atol=1e-5)
    # Each device may hit the full budget once before the other's OOM lowers it.
    assert sum(f.ooms for f in fakes) <= 2
    assert sum(len(f.calls) for f in fakes) <= 2 + 4 + 14


def test_oom_on_a_single_text_is_a_clear_error(tiny_model_dir):
    enc = E5Encoder(str(tiny_model_dir), backends=[OOMBackend(str(tiny_model_dir), max_padded_tokens=10)])
    with pytest.raises(OutOfMemoryError, match="does not fit .* even alone"):
        enc.encode_documents(["a text that is definitely longer than ten tokens, alone in its batch"])


def test_backends_and_device_together_are_refused(tiny_model_dir):
    with pytest.raises(ConfigurationError, match="backends="):
        E5Encoder(str(tiny_model_dir), device="cpu", backends=[OOMBackend(str(tiny_model_dir), 10)])


def test_two_devices_give_the_same_vectors(tiny_model_dir, encoder):
    enc = E5Encoder(str(tiny_model_dir), device=["cpu", "cpu"], batch_tokens=200)
    assert len(enc.devices) == 2
    np.testing.assert_allclose(
        enc.encode_documents(TEXTS * 3), encoder.encode_documents(TEXTS * 3), atol=1e-5
    )


def test_encoders_with_same_settings_share_the_loaded_model(tiny_model_dir, encoder):
    other = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32", max_length=512, batch_tokens=999)
    assert other.loaded_models[0] is encoder.loaded_models[0]
    assert E5Encoder.shared(str(tiny_model_dir), device="cpu", dtype="fp32") is encoder


def test_model_from_env_var(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("E5_MODEL", str(tiny_model_dir))
    assert E5Encoder(device="cpu").model_name == str(tiny_model_dir)


def test_auto_dtype_on_cpu_is_fp32(encoder):
    assert encoder.dtype == torch.float32 and encoder.dimension == 64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dtype": "int8"}, "dtype 'int8' is not supported"),
        ({"device": "tpu:banana"}, "not a torch device"),
        ({"device": []}, "empty"),
        ({"max_length": 1}, "max_length"),
        ({"batch_tokens": 0}, "batch_tokens"),
        ({"padding_side": "middle"}, "padding_side"),
    ],
)
def test_bad_configuration_is_explained(tiny_model_dir, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        E5Encoder(str(tiny_model_dir), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_without_cuda_is_explained(tiny_model_dir):
    with pytest.raises(ConfigurationError, match="torch.cuda.is_available"):
        E5Encoder(str(tiny_model_dir), device="cuda")


def test_missing_model_is_a_clear_error(tmp_path):
    from e5_integrations import ModelLoadError

    with pytest.raises(ModelLoadError, match="E5_MODEL"):
        E5Encoder(str(tmp_path / "no-such-model"), device="cpu")


def test_compiled_model_gives_the_same_vectors(tiny_model_dir, encoder):
    """``compile=True`` (torch.compile, dynamic shapes) on the CPU: same vectors, mixed shapes."""
    from tests.unit.test_encoder_semantics import DOCUMENTS, QUERIES, cosine_rows

    compiled = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32", compile=True, batch_tokens=2048)
    assert compiled.loaded_models[0] is encoder.loaded_models[0]  # weights shared, only the forward differs
    for texts in (DOCUMENTS, QUERIES):
        assert cosine_rows(compiled.encode_documents(texts), encoder.encode_documents(texts)).min() >= 0.99999


def test_cuda_graphs_need_cuda(tiny_model_dir):
    with pytest.raises(ConfigurationError, match="cuda_graphs=True needs a CUDA device"):
        E5Encoder(str(tiny_model_dir), device="cpu", cuda_graphs=True)


def test_cuda_graph_buckets():
    from e5_integrations._backend import _CudaGraphs

    bucket = _CudaGraphs.bucket.__get__(object.__new__(_CudaGraphs))
    assert bucket(1, 12) == (1, 32)
    assert bucket(3, 33) == (4, 64)
    assert bucket(8, 512) == (8, 512)
    assert bucket(9, 10) is None and bucket(1, 513) is None
