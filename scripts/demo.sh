#!/usr/bin/env bash
# The main job in one command: set up, ingest a folder of documents into the embedded default
# store (./.e5-store of this repository, Chroma), and search it.
#
#   bash scripts/demo.sh [DOCS_DIR] [QUESTION]
#
# DOCS_DIR (default: the repository's examples/docs) is taken relative to the directory you
# run the script from. Uses intfloat/e5-mistral-7b-instruct (downloaded from the Hugging Face
# Hub; a GPU is strongly advised), or the model named by E5_MODEL (a hub id, or a local
# directory, also relative to where you are). E5_DEMO_DRY_RUN=1 prints what the arguments
# resolve to and stops before setting anything up.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

# An existing relative path is the caller's: make it absolute before leaving the directory.
absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/${1#./}" ;; esac; }

if [ $# -ge 1 ]; then DOCS=$(absolute "$1"); else DOCS=$REPO/examples/docs; fi
QUESTION=${2:-how do I rotate my API keys?}
if [ ! -d "$DOCS" ] && [ ! -f "$DOCS" ]; then
  echo "demo.sh: $DOCS does not exist; pass a folder (or file) of documents (.txt .md .pdf .docx .pptx .xlsx .html .epub .ipynb .jsonl .csv .parquet, .gz/.zst)" >&2
  exit 2
fi
if [ -n "${E5_MODEL:-}" ] && [ -e "$E5_MODEL" ]; then export E5_MODEL; E5_MODEL=$(absolute "$E5_MODEL"); fi
if [ -n "${E5_DEMO_DRY_RUN:-}" ]; then
  printf 'docs=%s\nquestion=%s\nmodel=%s\n' "$DOCS" "$QUESTION" "${E5_MODEL:-intfloat/e5-mistral-7b-instruct}"
  exit 0
fi

cd "$REPO"
PYTHON=${PYTHON:-python3}
VENV=${E5_VENV:-.venv}
quiet_pip() { "$@" 2>&1 | grep -vE "is ignored: it is neither|^\s*$" || true; }

if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  quiet_pip "$VENV/bin/python" -m pip install -q "torch==${E5_TORCH_VERSION:-2.13.0}"
fi
if ! "$VENV/bin/python" -c "import e5_integrations, chromadb, zstandard" 2>/dev/null; then
  quiet_pip "$VENV/bin/python" -m pip install -q -e ".[chroma,documents]"
fi
"$VENV/bin/e5" ingest "$DOCS"
"$VENV/bin/e5" search "$QUESTION" -k 3
