"""The public surface: sorted __all__, lazy optional imports, the test-model CLI."""

from __future__ import annotations

import subprocess
import sys

import e5_integrations


def test_all_is_sorted_and_importable():
    names = e5_integrations.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(e5_integrations, name), name


def test_core_import_does_not_load_adapter_or_store_libraries():
    code = (
        "import sys, e5_integrations, e5_integrations.ingest;"
        "bad=[m for m in ('langchain_core','llama_index','chromadb','pymilvus','qdrant_client','psycopg','ray')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_server_and_cli_import_no_web_stack_until_serving():
    code = (
        "import sys, e5_integrations.server, e5_integrations.cli;"
        "bad=[m for m in ('starlette','uvicorn','fastapi','prometheus_client') if m in sys.modules];"
        " print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_serving_without_the_server_extra_names_it():
    code = (
        "import sys; sys.modules['starlette'] = None;"
        "from e5_integrations.server import create_app\n"
        "try:\n    create_app(lambda: None)\nexcept ImportError as exc:\n    print(exc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'e5-integrations[server]'" in result.stdout, result.stdout + result.stderr


def test_build_tiny_cli(tmp_path):
    out = tmp_path / "tiny"
    result = subprocess.run(
        [sys.executable, "-m", "e5_integrations.testing", "build-tiny", str(out), "--hidden-size", "32"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    from e5_integrations import E5Encoder

    assert E5Encoder(str(out), device="cpu").dimension == 32
