"""Fixtures: Chroma targets for the Chroma sink tests.

Every test runs twice: on an embedded ``PersistentClient`` folder and on a real Chroma server
(``chroma run``, the Rust server shipped with chromadb) that this module starts once per
session on a free port. When ``CHROMA_URL`` is set (e.g. ``http://127.0.0.1:8000``, the
docker-compose stack) that server is used instead and nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._startup import START_TIMEOUT, StartFailed, start_with_retries
from tests.stores._common import SinkFactory, sink_factory

if TYPE_CHECKING:
    from e5_integrations.sinks.chroma import ChromaSink

__all__ = [
    "chroma_server_url",
    "chroma_sink",
    "chroma_uri",
    "free_port",
    "running_chroma_server",
    "stop_process",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate ``proc`` (started with ``start_new_session=True``) and its process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)  # children left behind by the launcher, if any


def _chroma_executable() -> str:
    beside = Path(sys.executable).with_name("chroma")
    found = str(beside) if beside.exists() else shutil.which("chroma")
    if found is None:
        pytest.fail("the `chroma` command is missing; install it with: pip install 'e5-integrations[chroma]'")
    return found


def _wait_for_heartbeat(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartFailed(f"chroma run exited with {proc.returncode}", log.read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise StartFailed(
        f"chroma server at {url} did not answer within {START_TIMEOUT} s", log.read_text()[-2000:]
    )


def _start_chroma(root: Path, port: int) -> subprocess.Popen[bytes]:
    """``chroma run`` on ``port`` with its data under ``root``, answering its heartbeat."""
    log = root / "chroma.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_chroma_executable(), "run", "--path", str(root / "data"), "--host", "127.0.0.1"]
            + ["--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_heartbeat(f"http://127.0.0.1:{port}", proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc


@contextlib.contextmanager
def running_chroma_server(root: Path, port: int | None = None) -> Iterator[str]:
    """Run ``chroma run`` on ``port`` (default: a free one) with its data under ``root``; yield
    its URL. Run it again with the same ``root`` and port to restart the same server.

    A start that fails (a free port taken between choosing and binding it, say) is tried
    again, on another port unless ``port`` was given; a slow one is waited for
    (tests/_startup.py).
    """
    chosen = 0

    def attempt(_: int) -> subprocess.Popen[bytes]:
        nonlocal chosen
        chosen = port or free_port()
        return _start_chroma(root, chosen)

    try:
        proc = start_with_retries("a Chroma server", attempt)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield f"http://127.0.0.1:{chosen}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``$CHROMA_URL``, or the URL of a ``chroma run`` server started for this session."""
    external = os.environ.get("CHROMA_URL")
    if external:
        yield external.rstrip("/")
        return
    with running_chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(params=["embedded", "server"])
def chroma_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ``PersistentClient`` folder, or the session's Chroma server URL."""
    if request.param == "embedded":
        return str(tmp_path / "chroma")
    return str(request.getfixturevalue("chroma_server_url"))


@pytest.fixture
def chroma_sink(chroma_uri: str) -> Iterator[SinkFactory[ChromaSink]]:
    """Factory of ChromaSink on fresh collections; drops and closes them after the test."""
    from e5_integrations.sinks.chroma import ChromaSink

    yield from sink_factory(ChromaSink, chroma_uri)
