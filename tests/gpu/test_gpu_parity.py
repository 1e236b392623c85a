"""GPU checks (skipped without CUDA): half-precision parity and batching on the device."""

from __future__ import annotations

import numpy as np
import pytest

from e5_integrations import E5Encoder
from e5_integrations._backend import TorchBackend

pytestmark = pytest.mark.gpu

TEXTS = ["how much protein should a female eat", "summit define", "日本語の文章", ""] + [
    " ".join(["passage"] * n) for n in (5, 50, 300, 1200)
]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_matches_fp32(tiny_model_dir, dtype):
    fp32 = E5Encoder(str(tiny_model_dir), device="cuda", dtype="fp32").encode_documents(TEXTS)
    half = E5Encoder(str(tiny_model_dir), device="cuda", dtype=dtype).encode_documents(TEXTS)
    assert half.dtype == np.float32
    assert (fp32 * half).sum(axis=1).min() >= 0.999


def test_cuda_matches_cpu_fp32(tiny_model_dir, encoder):
    gpu = E5Encoder(str(tiny_model_dir), device="cuda", dtype="fp32").encode_queries(TEXTS)
    assert (gpu * encoder.encode_queries(TEXTS)).sum(axis=1).min() >= 0.9999


def test_cuda_graphs_match_eager_and_stay_on(tiny_model_dir):
    eager = E5Encoder(str(tiny_model_dir), device="cuda", dtype="bf16")
    graphs = E5Encoder(str(tiny_model_dir), device="cuda", dtype="bf16", cuda_graphs=True)
    queries = TEXTS[:4] + ["a longer question " * 40]
    for batch in [[q] for q in queries] + [queries[:3], queries]:
        assert (graphs.encode_queries(batch) * eager.encode_queries(batch)).sum(axis=1).min() >= 0.999
    backend = graphs._backends[0]
    assert isinstance(backend, TorchBackend)
    runner = backend.graphs
    assert runner is not None
    assert runner.enabled and len(runner._graphs) >= 3  # replays were used, not the fallback


def test_compiled_matches_eager_on_gpu(tiny_model_dir):
    eager = E5Encoder(str(tiny_model_dir), device="cuda", dtype="bf16").encode_documents(TEXTS)
    compiled = E5Encoder(str(tiny_model_dir), device="cuda", dtype="bf16", compile=True).encode_documents(
        TEXTS
    )
    assert (eager * compiled).sum(axis=1).min() >= 0.999
