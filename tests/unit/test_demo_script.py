"""scripts/demo.sh resolves its arguments against the caller's directory (only the
resolution is run: E5_DEMO_DRY_RUN=1 stops before the script installs anything)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.sh"


def _dry_run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != "E5_MODEL"}
    environment.update(E5_DEMO_DRY_RUN="1", **env)
    return subprocess.run(
        ["bash", str(DEMO), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )


def _resolved(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_a_relative_docs_folder_is_the_callers(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "model").mkdir()
    got = _resolved(_dry_run(tmp_path, "./docs", "a question", E5_MODEL="./model"))
    assert got["docs"] == str(tmp_path / "docs")
    assert got["model"] == str(tmp_path / "model")
    assert got["question"] == "a question"


def test_the_default_docs_and_hub_model_are_kept(tmp_path: Path) -> None:
    got = _resolved(_dry_run(tmp_path, E5_MODEL="intfloat/e5-mistral-7b-instruct"))
    assert got["docs"] == str(REPO / "examples" / "docs")
    assert got["model"] == "intfloat/e5-mistral-7b-instruct"  # a hub id, not a path here


def test_a_missing_docs_folder_fails_before_any_setup(tmp_path: Path) -> None:
    result = _dry_run(tmp_path, "./nowhere")
    assert result.returncode == 2
    assert str(tmp_path / "nowhere") in result.stderr and "does not exist" in result.stderr
