"""Runtime behaviour of E5Encoder: OOM back-off, devices, sharing, configuration errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from e5_integrations import ConfigurationError, E5Encoder, OutOfMemoryError
from e5_integrations._backend import TorchBackend

TEXTS = [" ".join(["token"] * n) for n in (3, 150, 40, 90, 7, 200, 1, 60, 120, 33)]


def _simulate_oom(backend: TorchBackend, max_padded_tokens: int, calls: list[int]) -> None:
    real_embed = backend.embed

    def embed(batch):
        padded = max(len(ids) for ids in batch) * len(batch)
        calls.append(padded)
        if padded > max_padded_tokens:
            raise torch.OutOfMemoryError(f"simulated: {padded} tokens > {max_padded_tokens}")
        return real_embed(batch)

    backend.embed = embed  # type: ignore[method-assign]


def test_oom_backoff_returns_every_embedding_in_order(tiny_model_dir, encoder, caplog):
    expected = encoder.encode_documents(TEXTS)
    enc = E5Encoder(str(tiny_model_dir), device="cpu", batch_tokens=100_000)
    calls: list[int] = []
    _simulate_oom(enc._backends[0], max_padded_tokens=450, calls=calls)
    with caplog.at_level(logging.WARNING, logger="e5_integrations"):
        got = enc.encode_documents(TEXTS)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert any(c > 450 for c in calls), "the simulated OOM never triggered"
    assert "out of memory" in caplog.text and "retrying" in caplog.text


def test_oom_on_a_single_text_is_a_clear_error(tiny_model_dir):
    enc = E5Encoder(str(tiny_model_dir), device="cpu")
    _simulate_oom(enc._backends[0], max_padded_tokens=10, calls=[])
    with pytest.raises(OutOfMemoryError, match="does not fit .* even alone"):
        enc.encode_documents(["a text that is definitely longer than ten tokens, alone in its batch"])


def test_two_devices_give_the_same_vectors(tiny_model_dir, encoder):
    enc = E5Encoder(str(tiny_model_dir), device=["cpu", "cpu"], batch_tokens=200)
    assert len(enc.devices) == 2
    np.testing.assert_allclose(enc.encode_documents(TEXTS * 3), encoder.encode_documents(TEXTS * 3), atol=1e-5)


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
