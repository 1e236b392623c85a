#!/usr/bin/env bash
# Set up everything the test suite needs, then run it:  bash scripts/test.sh [pytest args]
#
# - .venv: torch (CPU wheel 2.13.0 unless torch is already there), the package with every
#   extra, and the test tools;
# - .venv-milvus: the real C++ Milvus Lite 2.5 server, whose pins clash with ours;
# - .venv-llama-milvus: LlamaIndex's MilvusVectorStore (pymilvus<3), for the layout tests;
# - .cache/e5-tiny: the tiny random e5-mistral-architecture test model (no hub needed).
# With E5_QUALITY_GATES=1 (as in CI) ruff check, ruff format --check and mypy run before pytest.
# Vector store servers (Chroma, Milvus Lite, Postgres+pgvector) are started by pytest
# fixtures; set CHROMA_URL / MILVUS_URI / QDRANT_URL / PG_DSN to use external ones instead
# (docker/docker-compose.yml starts all four).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${E5_VENV:-.venv}
MILVUS_VENV=${E5_MILVUS_VENV:-$PWD/.venv-milvus}
quiet_pip() { "$@" 2>&1 | grep -vE "is ignored: it is neither|^\s*$" || true; }

if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
quiet_pip "$VENV/bin/python" -m pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # A bare `torch` requirement would resolve to a multi-GB CUDA build; pin the CPU wheel first.
  quiet_pip "$VENV/bin/python" -m pip install -q "torch==${E5_TORCH_VERSION:-2.13.0}"
fi
quiet_pip "$VENV/bin/python" -m pip install -q -e ".[all,test]" -c scripts/constraints.txt
"$VENV/bin/python" -c "import e5_integrations, torch, transformers; print('e5-integrations', e5_integrations.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"

if [ ! -x "$MILVUS_VENV/bin/python" ] || ! "$MILVUS_VENV/bin/python" -c "import milvus_lite.server" 2>/dev/null; then
  "$PYTHON" -m venv "$MILVUS_VENV"
  quiet_pip "$MILVUS_VENV/bin/python" -m pip install -q "milvus-lite==2.5.1" "pymilvus>=2.5,<2.6" "setuptools<81"
fi
export E5_MILVUS_VENV="$MILVUS_VENV"

# LlamaIndex's MilvusVectorStore needs pymilvus<3, langchain-milvus pymilvus>=3: the LlamaIndex
# reader of the layout tests runs in a venv of its own (tests/frameworks/_venvs.py).
LLAMA_MILVUS_VENV=${E5_LLAMA_MILVUS_VENV:-$PWD/.venv-llama-milvus}
if [ ! -x "$LLAMA_MILVUS_VENV/bin/python" ] || ! "$LLAMA_MILVUS_VENV/bin/python" -c "import llama_index.vector_stores.milvus" 2>/dev/null; then
  "$PYTHON" -m venv "$LLAMA_MILVUS_VENV"
  quiet_pip "$LLAMA_MILVUS_VENV/bin/python" -m pip install -q "llama-index-vector-stores-milvus>=1.0" "pymilvus>=2.6,<3"
fi
export E5_LLAMA_MILVUS_VENV="$LLAMA_MILVUS_VENV"

# The OCR test (--ocr) needs the tesseract program: install it where it is missing and apt-get
# can (root, or passwordless sudo); without it that one test is skipped, saying why.
if ! command -v tesseract >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  { $SUDO apt-get install -y -q tesseract-ocr >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q tesseract-ocr >/dev/null 2>&1; }; } \
    || echo "tesseract-ocr could not be installed; the OCR test will be skipped" >&2
fi

export E5_TEST_MODEL_DIR=${E5_TEST_MODEL_DIR:-$PWD/.cache/e5-tiny}
"$VENV/bin/python" -m e5_integrations.testing build-tiny "$E5_TEST_MODEL_DIR" >/dev/null

if [ "${E5_QUALITY_GATES:-0}" = 1 ]; then
  # CI's quality gates (.ci/run sets E5_QUALITY_GATES=1): lint, format and types, before the tests.
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  E5_VENV="$VENV" bash scripts/typecheck.sh
fi

exec "$VENV/bin/python" -m pytest "$@"
