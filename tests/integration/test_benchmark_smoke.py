"""The GPU benchmark script runs end to end (on CPU with the tiny architecture) and reports
every figure the throughput issue asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from tests.stores._pg_server import pg_dsn  # noqa: F401  (the fixture, by name)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_gpu_throughput_script_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_throughput.py"),
            "--config",
            "tiny",
            "--device",
            "cpu",
            "--texts",
            "24",
            "--parity-texts",
            "8",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
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


@pytest.mark.integration
def _server_load(model_dir: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``benchmarks/server_load.py`` on the tiny model, writing ``out``; it must exit 0."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "server_load.py"), *args]
        + ["--model-dir", str(model_dir), "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_server_load_script_smoke(tmp_path: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("starlette")
    result = _server_load(tiny_model_dir, tmp_path, "--requests", "16", "--clients", "1,4")
    (written,) = tmp_path.glob("server-load-*.json")
    levels = json.loads(written.read_text())["levels"]
    assert [level["clients"] for level in levels] == [1, 4]
    for level in levels:
        for side in ("server", "in_process"):
            assert level[side]["requests"] == 16 and level[side]["requests_per_s"] > 0
            assert 0 < level[side]["p50_ms"] <= level[side]["p99_ms"]
        assert level["server"]["forward_passes"] >= 1
    assert "server/in-process" in result.stdout


@pytest.mark.integration
def test_server_load_script_mixed_and_threads_smoke(tmp_path: Path, tiny_model_dir: Path) -> None:
    """--mixed (queries alone vs under bulk load), --compare-threads, and a .json --out is the file."""
    pytest.importorskip("starlette")
    out = tmp_path / "figures.json"
    result = _server_load(
        tiny_model_dir,
        out,
        *("--clients", "", "--mixed", "--mixed-queries", "8", "--query-clients", "2"),
        *("--bulk-clients", "1", "--compare-threads", "--thread-requests", "2"),
    )
    assert out.is_file()  # not a folder named figures.json
    figures = json.loads(out.read_text())
    assert figures["levels"] == []
    mixed = figures["mixed"]
    for phase in ("alone", "mixed"):
        assert mixed[phase]["requests"] == 8 and 0 < mixed[phase]["p50_ms"] <= mixed[phase]["p99_ms"]
    assert mixed["bulk_requests"] >= 1 and mixed["p99_ratio"] > 0
    settings = {row["setting"]: row for row in figures["threads_compared"]}
    assert list(settings) == ["default", "1", "torch default"]
    assert (
        settings["default"]["threads"] == max(1, figures["usable_cpus"] - 1) and settings["1"]["threads"] == 1
    )
    assert all(row["requests"] == 2 and row["requests_per_s"] > 0 for row in settings.values())
    assert "mixed/alone" in result.stdout and "16-document batches" in result.stdout


@pytest.mark.integration
def test_pgvector_framework_query_script_smoke(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    pytest.importorskip("psycopg")
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "pgvector_framework_query.py"),
            "--rows",
            "300",
            "--queries",
            "4",
            "--k",
            "5",
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PG_DSN": pg_dsn},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert (figures["rows"], figures["dims"], figures["k"]) == (300, 4096, 5)
    paths = figures["paths"]
    assert list(paths) == ["langchain", "llama-index", "e5", "sql-function"]
    for row in paths.values():
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert 0 <= row["recall_at_k"] <= 1 and row["plan"]
    for framework in ("langchain", "llama-index"):  # ORDER BY embedding <=> q: exact, by a scan
        assert paths[framework]["recall_at_k"] == 1.0
        assert "Seq Scan" in " ".join(paths[framework]["plan"])
    assert "| path | rows | dims | p50 ms | p95 ms | recall@k vs exact | plan |" in result.stdout
    assert "| e5 | 300 | 4096 |" in result.stdout and "linear extrapolation" in result.stdout


def _ingest_scale(tmp_path: Path, tiny_model_dir: Path, *options: str) -> dict[str, Any]:
    out = tmp_path / "scale.jsonl"
    rows = ["--rows", "300", "--dim", "16", "--stores", "pgvector", "--out", str(out)]
    command = [sys.executable, str(REPO / "benchmarks" / "ingest_scale.py"), "--model", str(tiny_model_dir)]
    result = subprocess.run([*command, *rows, *options], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    [figures] = [json.loads(line) for line in out.read_text().splitlines()]
    return cast("dict[str, Any]", figures)


def _assert_nightly_counts(figures: dict[str, Any]) -> None:
    """300 one-chunk records; every 100th edited (3), then every 100th removed (3)."""
    assert (figures["first"]["embedded"], figures["first"]["written"]) == (300, 300)
    assert (figures["rerun"]["embedded"], figures["rerun"]["skipped_unchanged"]) == (0, 300)
    assert (
        figures["rerun_1pct"]["skipped_unchanged"] >= 296
    )  # an edited file's probe chunk may be written again
    assert 3 <= figures["rerun_1pct"]["embedded"] <= 4
    assert (figures["prune_1pct"]["pruned"], figures["count_after"]) == (3, 297)
    for phase in ("first", "rerun", "rerun_1pct", "prune_1pct"):
        assert figures[phase]["rows_per_s"] > 0 and figures[phase]["peak_rss_mb"] > 0


@pytest.mark.integration
def test_ingest_scale_script_smoke(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The nightly-job benchmark, local engine, with the store's bulk paths beside it."""
    figures = _ingest_scale(tmp_path, tiny_model_dir)
    assert figures["engine"] == "local"
    _assert_nightly_counts(figures)
    assert figures["bulk"]["rows_per_s"] > 0 and figures["bulk_indexed"]["rows_per_s"] > 0
    write = figures["sink_write"]
    assert write["rows_per_s"] > 0 and write["of_bulk"] > 0 and write["of_bulk_indexed"] > 0


@pytest.mark.integration
def test_ingest_scale_script_smoke_on_ray(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The same phases through ingest_ray, the hash backend reaching the actors by name."""
    pytest.importorskip("ray")
    figures = _ingest_scale(tmp_path, tiny_model_dir, "--engine", "ray", "--no-bulk")
    assert figures["engine"] == "ray"
    _assert_nightly_counts(figures)
