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
        "bad=[m for m in ('langchain_core','llama_index','chromadb','pymilvus','qdrant_client','psycopg',"
        "'ray') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
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


def test_cli_help_does_not_import_torch():
    """``e5 --help`` took 4 s importing torch; the parser and the help need none of it."""
    code = (
        "import sys, contextlib, io\n"
        "from e5_integrations.cli import build_parser, main\n"
        "parser = build_parser()\n"
        "for argv in ([], ['ingest'], ['search']):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "        main([*argv, '--help'])\n"
        "    assert 'usage: e5' in out.getvalue(), out.getvalue()\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_encoder_names_load_on_first_use():
    code = (
        "import sys, e5_integrations as e\n"
        "assert 'torch' not in sys.modules\n"
        "assert e.E5Encoder.__name__ == 'E5Encoder' and e.DEFAULT_MODEL.startswith('intfloat/')\n"
        "assert 'torch' in sys.modules and 'DeferredEncoder' in dir(e)\n"
        "from e5_integrations import DeferredEncoder\n"
        "try:\n"
        "    e.NoSuchThing\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_every_encoder_is_an_embedder_and_the_adapters_need_no_server_package(tiny_model_dir):
    """Issue 24: one public encoder type. E5Encoder, DeferredEncoder and RemoteEncoder satisfy
    it (RemoteEncoder also the async one); the adapters build theirs without importing the
    server package."""
    from e5_integrations import AsyncEmbedder, DeferredEncoder, E5Encoder, Embedder
    from e5_integrations.server import RemoteEncoder

    local = E5Encoder(str(tiny_model_dir), device="cpu")
    deferred = DeferredEncoder(str(tiny_model_dir), device="cpu")
    assert isinstance(local, Embedder) and isinstance(deferred, Embedder)
    assert not isinstance(local, AsyncEmbedder) and not isinstance(object(), Embedder)
    # an instance check would read RemoteEncoder's properties, which ask the server: check
    # its class has every member (mypy checks the signatures, in the server package)
    members = {name for name in dir(AsyncEmbedder) if not name.startswith("_")}
    assert {"encode_queries", "aencode_documents", "dimension", "recipe"} <= members
    assert all(hasattr(RemoteEncoder, name) for name in members), members - set(dir(RemoteEncoder))
    code = (
        "import sys; from e5_integrations.langchain import E5MistralEmbeddings;"
        "from e5_integrations.llama_index import E5MistralEmbedding;"
        f"e = E5MistralEmbeddings(model={str(tiny_model_dir)!r}, device='cpu');"
        f"f = E5MistralEmbedding(model_name={str(tiny_model_dir)!r}, device='cpu');"
        "assert e.encoder is f.encoder;"
        "bad = [m for m in sys.modules if m.startswith('e5_integrations.server')]; print(bad);"
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
