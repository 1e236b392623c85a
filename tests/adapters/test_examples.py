"""The RAG examples run as written, offline, on the tiny model (``E5_MODEL`` points at it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.integration
@pytest.mark.parametrize("script", ["langchain_rag.py", "llama_index_rag.py"])
def test_example_runs_offline_on_the_tiny_model(script: str, tiny_model_dir: Path) -> None:
    env = {**os.environ, "E5_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"model: {tiny_model_dir} (64 dimensions)"
    assert lines[1] == "question: When was the Eiffel Tower built?"
    ranked = [line for line in lines[2:] if line[:2] in {"1.", "2.", "3."}]
    assert len(ranked) == 3, done.stdout
