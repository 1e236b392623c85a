"""Fixtures: Milvus targets for the Milvus sink tests.

Every test runs twice:

- ``lite``: a Milvus Lite file (``tmp_path/x.db``) with the milvus-lite installed beside
  pymilvus (3.x is a Python emulation of Milvus);
- ``server``: the real C++ engine of Milvus Lite 2.5.1, served over gRPC on a free port and
  reached over ``http://``. Its pins (pymilvus 2.5, setuptools<81) clash with ours, so it
  runs from its own venv, ``$E5_MILVUS_VENV`` (default ``<repo>/.venv-milvus``), created by::

      python3 -m venv .venv-milvus
      .venv-milvus/bin/pip install "milvus-lite==2.5.1" "pymilvus>=2.5,<2.6" "setuptools<81"

When ``MILVUS_URI`` is set (e.g. ``http://127.0.0.1:19530``, the docker-compose stack) that
server is used for ``server`` instead and nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._startup import START_TIMEOUT, StartFailed, start_with_retries
from tests.stores._chroma_server import free_port, stop_process
from tests.stores._common import SinkFactory, sink_factory

if TYPE_CHECKING:
    from e5_integrations.sinks.milvus import MilvusSink

__all__ = [
    "MILVUS_VENV_SETUP",
    "milvus_lite_python",
    "milvus_server_uri",
    "milvus_sink",
    "milvus_uri",
    "running_milvus_server",
]

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("_milvus_lite_launcher.py")
MILVUS_VENV_SETUP = (
    'python3 -m venv {venv} && {venv}/bin/pip install "milvus-lite==2.5.1" "pymilvus>=2.5,<2.6" '
    '"setuptools<81"'
)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartFailed(f"milvus-lite launcher exited with {proc.returncode}", log.read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise StartFailed(
        f"milvus-lite did not open port {port} within {START_TIMEOUT} s", log.read_text()[-2000:]
    )


def milvus_lite_python() -> Path:
    """The Python of the milvus-lite 2.5 venv; skips the test if that venv does not exist."""
    venv = Path(os.environ.get("E5_MILVUS_VENV") or REPO / ".venv-milvus")
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(
            f"no milvus-lite 2.5 venv at {venv} (E5_MILVUS_VENV); create it with: "
            + MILVUS_VENV_SETUP.format(venv=venv)
        )
    return python


@contextlib.contextmanager
def running_milvus_server(root: Path) -> Iterator[str]:
    """Run the C++ Milvus Lite 2.5 server on a free port with its data under ``root``; yield its URI.

    A start that fails is tried again on another port with a fresh data folder; a slow one is
    waited for (tests/_startup.py).
    """
    python = milvus_lite_python()
    port = 0

    def attempt(number: int) -> subprocess.Popen[bytes]:
        nonlocal port
        port = free_port()
        data = root / f"attempt-{number}"
        data.mkdir()
        log = data / "milvus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(python), "-W", "ignore", str(LAUNCHER), str(data / "milvus.db"), str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=data,
                start_new_session=True,
            )
        try:
            _wait_for_port(port, proc, log)
        except BaseException:
            stop_process(proc)
            raise
        return proc

    try:
        proc = start_with_retries("a Milvus Lite 2.5 server", attempt)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def milvus_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``$MILVUS_URI``, or ``http://127.0.0.1:PORT`` of a C++ Milvus Lite 2.5.1 server."""
    external = os.environ.get("MILVUS_URI")
    if external:
        yield external
        return
    with running_milvus_server(tmp_path_factory.mktemp("milvus-server")) as uri:
        yield uri


@pytest.fixture(params=["lite", "server"])
def milvus_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh Milvus Lite file, or the session's Milvus server URI."""
    if request.param == "lite":
        return str(tmp_path / "milvus.db")
    return str(request.getfixturevalue("milvus_server_uri"))


@pytest.fixture
def milvus_sink(milvus_uri: str) -> Iterator[SinkFactory[MilvusSink]]:
    """Factory of MilvusSink on fresh collections; drops and closes them after the test."""
    from e5_integrations.sinks.milvus import MilvusSink

    yield from sink_factory(MilvusSink, milvus_uri)
