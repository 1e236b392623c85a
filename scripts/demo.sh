#!/usr/bin/env bash
# The main job in one command: set up, ingest a folder of documents into the embedded default
# store (./.e5-store, Chroma), and search it.
#
#   bash scripts/demo.sh [DOCS_DIR] [QUESTION]
#
# Uses intfloat/e5-mistral-7b-instruct (downloaded from the Hugging Face Hub; a GPU is
# strongly advised), or the model named by E5_MODEL (a hub id or a local directory).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=${1:-examples/docs}
QUESTION=${2:-how do I rotate my API keys?}
PYTHON=${PYTHON:-python3}
VENV=${E5_VENV:-.venv}
quiet_pip() { "$@" 2>&1 | grep -vE "is ignored: it is neither|^\s*$" || true; }

if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  quiet_pip "$VENV/bin/python" -m pip install -q "torch==${E5_TORCH_VERSION:-2.13.0}"
fi
if ! "$VENV/bin/python" -c "import e5_integrations, chromadb" 2>/dev/null; then
  quiet_pip "$VENV/bin/python" -m pip install -q -e ".[chroma]"
fi
"$VENV/bin/e5" ingest "$DOCS"
"$VENV/bin/e5" search "$QUESTION" -k 3
