"""GPU checks (skipped without CUDA): half-precision parity and batching on the device."""

from __future__ import annotations

import numpy as np
import pytest

from e5_integrations import E5Encoder

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
