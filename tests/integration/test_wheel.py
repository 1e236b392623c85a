"""A built wheel installs into a fresh venv and imports every subpackage from there."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_wheel_installs_and_imports_in_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(dist.glob("e5_integrations-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        licenses = [name for name in archive.namelist() if name.endswith(".dist-info/licenses/LICENSE")]
        assert licenses, "the wheel ships no LICENSE"
        assert (
            "Apache License" in archive.read(licenses[0]).decode()
            and "Version 2.0" in archive.read(licenses[0]).decode()
        )
        metadata = archive.read(
            next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        ).decode()
        assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Dependencies (torch, transformers...) come from the test venv, appended after the
    # fresh site-packages so the wheel's copy of e5_integrations wins over the editable one.
    site = Path(
        subprocess.check_output(
            [str(py), "-c", "import site; print(site.getsitepackages()[0])"], text=True
        ).strip()
    )
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import e5_integrations as e, e5_integrations.ingest, e5_integrations.testing, e5_integrations.sinks,"
        " e5_integrations.langchain, e5_integrations.llama_index, e5_integrations.ray, e5_integrations.cli,"
        " e5_integrations.server;"
        f"assert e.__file__.startswith({str(site)!r}), e.__file__;"
        "assert len(e.available_tasks()) >= 68;"
        "import importlib.resources as r; assert r.files('e5_integrations').joinpath('py.typed').is_file();"
        "print('ok')"
    )
    run = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr


@pytest.mark.integration
def test_sdist_ships_the_license(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import build_meta as b; import sys; print(b.build_sdist(sys.argv[1]))",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    sdist = tmp_path / build.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(name.endswith("/LICENSE") and name.count("/") == 1 for name in names), names
