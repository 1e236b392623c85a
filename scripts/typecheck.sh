#!/usr/bin/env bash
# Type-check the package and its tests with mypy (settings in pyproject.toml's [tool.mypy]):
#
#   bash scripts/typecheck.sh [mypy args]
#
# The import name e5_integrations maps onto core/ and integrations/ ([tool.setuptools]
# package-dir), a layout mypy cannot follow; this links it as .cache/mypy-src/e5_integrations
# first (symlinks, so errors point at the real files' lines).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${E5_VENV:-.venv}
"$VENV/bin/python" - <<'PY'
import os, shutil, tomllib
from pathlib import Path

package_dir = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
root = Path(".cache/mypy-src")
shutil.rmtree(root, ignore_errors=True)
for name, folder in sorted(package_dir.items()):
    target = root.joinpath(*name.split("."))
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(Path(folder).iterdir()):
        if entry.name == "__pycache__" or (target / entry.name).exists():
            continue
        (target / entry.name).symlink_to(os.path.relpath(entry.resolve(), target))
PY
exec "$VENV/bin/python" -m mypy "$@"
