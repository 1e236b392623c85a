"""The GPU benchmark script runs end to end (on CPU with the tiny architecture) and reports
every figure the throughput issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_gpu_throughput_script_smoke(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"), "--config", "tiny", "--device", "cpu",
         "--texts", "24", "--parity-texts", "8", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (written,) = tmp_path.glob("*.json")
    figures = json.loads(written.read_text())
    for key in ("gpu", "gemm_ceiling_tokens_per_s", "query_p50_ms", "parity_min_cos"):
        assert key in figures
    for key in ("seed_reference_bf16", "sorted_bs32", "e5_integrations"):
        assert figures[key]["tokens_per_s"] > 0
    assert figures["parity_min_cos"] >= 0.9999
    for key in ("variant_masked", "variant_compiled"):  # the levers, measured in the same run
        assert figures[key]["tokens_per_s"] > 0
    assert figures["variant_compiled"]["first_run_with_compile_s"] > 0
    assert 0 <= figures["padding_fraction"] < 1 and figures["tokenize_s"] > 0
