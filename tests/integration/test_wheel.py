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


def _install_block() -> list[str]:
    """The commands of the README's Install section (its first bash block)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _fresh_venv_seeing_test_deps(path: Path) -> Path:
    """A fresh venv whose pip finds the test venv's packages installed (torch, langchain-core,
    setuptools...), so the README's lines resolve offline and install only e5-integrations."""
    venv.EnvBuilder(with_pip=True).create(path)
    py = path / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(py), "-c", "import site; print(site.getsitepackages()[0])"], text=True
        ).strip()
    )
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # ensurepip's setuptools (65 on Python 3.11) predates PEP 639 licence fields; without build
    # isolation the build must see the test venv's (a user's pip fetches a current one itself)
    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "setuptools"], capture_output=True)
    return py


def _pip(py: Path, command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a README ``pip ...`` command with this venv's pip, offline (no index, no build
    isolation: the build backend comes from the test venv)."""
    args = [arg.strip("'") for arg in command.split()[1:]]
    return subprocess.run(
        [str(py), "-m", "pip", *args, "--no-index", "--no-build-isolation", "-q"],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.mark.integration
def test_readme_install_lines_work_from_a_clone(tmp_path):
    """Issue 24: the README's install line named a distribution that is not published.
    Each line it gives now works from a clone, in a fresh venv, and the extra's adapter imports."""
    lines = _install_block()
    from_clone = next(line for line in lines if line.startswith("pip install '.["))
    wheel_line = next(line for line in lines if line.startswith("pip wheel"))
    assert not any("pip install 'e5-integrations" in line for line in lines), lines
    clone = tmp_path / "e5-integrations"
    files = subprocess.check_output(["git", "ls-files", "-z"], cwd=REPO, text=True).split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes(source.read_bytes())
    check = (
        "import e5_integrations as e, e5_integrations.langchain as lc, sys;"
        "assert e.__file__.startswith(sys.prefix), e.__file__;"
        "print(lc.E5MistralEmbeddings.__name__)"
    )
    # 1. pip install '.[langchain]' in the clone
    py = _fresh_venv_seeing_test_deps(tmp_path / "venv-clone")
    install = _pip(py, from_clone, clone)
    assert install.returncode == 0, install.stdout + install.stderr
    run = subprocess.run([str(py), "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert run.stdout.strip() == "E5MistralEmbeddings", run.stdout + run.stderr
    # 2. the wheel line: build once, install the wheel with the extra
    py = _fresh_venv_seeing_test_deps(tmp_path / "venv-wheel")
    build_cmd, install_cmd = (part.strip() for part in wheel_line.split("&&"))
    build = subprocess.run(
        [sys.executable, "-m", *build_cmd.split(), "--no-build-isolation", "-q"],
        capture_output=True,
        text=True,
        cwd=clone,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    install = _pip(py, install_cmd, clone)
    assert install.returncode == 0, install.stdout + install.stderr
    run = subprocess.run([str(py), "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert run.stdout.strip() == "E5MistralEmbeddings", run.stdout + run.stderr
