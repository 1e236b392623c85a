"""docker/docker-compose.yml is well formed and agrees with docker/README.md and the store tests.

No Docker engine is needed: the file is parsed and checked statically.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"

#: Environment variable -> (service, container port) it must reach.
STORE_VARIABLES = {
    "MILVUS_URI": ("milvus", 19530),
    "QDRANT_URL": ("qdrant", 6333),
    "CHROMA_URL": ("chroma", 8000),
    "PG_DSN": ("postgres", 5432),
}
_ENV_READ = re.compile(r"""(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*["']([A-Z][A-Z0-9_]*)["']""")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def readme() -> str:
    return (DOCKER / "README.md").read_text()


def _host_ports(service: dict) -> dict[int, int]:
    """``{container port: host port}`` of a service's ``ports`` (short or long syntax)."""
    ports: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/")[0].split(":")
        ports[int(parts[-1])] = int(parts[-2])
    return ports


def _env_vars_read_by_store_tests() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "tests" / "stores").glob("*.py"):
        names.update(_ENV_READ.findall(path.read_text()))
    return names


def _documented_url(readme: str, variable: str) -> str:
    """The first URL on a README line that names ``variable`` in backticks."""
    for line in readme.splitlines():
        if f"`{variable}`" in line or f"{variable}=" in line:
            match = re.search(r"(?:https?|postgres(?:ql)?)://[^\s`|]+", line)
            if match:
                return match.group(0)
    raise AssertionError(f"docker/README.md documents no URL for {variable}")


def test_services_and_images(compose: dict) -> None:
    services = compose["services"]
    assert {"milvus", "etcd", "minio", "qdrant", "chroma", "postgres"} <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["milvus"]["image"].startswith("milvusdb/milvus:")
    assert "standalone" in services["milvus"]["command"]
    for name, service in services.items():
        assert ":" in service["image"] and not service["image"].endswith(":latest"), f"{name}: pin a tag"


def test_fixed_host_ports(compose: dict) -> None:
    for service, port in STORE_VARIABLES.values():
        assert _host_ports(compose["services"][service]).get(port) == port, f"{service} must publish {port}"


def test_every_service_has_a_health_check(compose: dict) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no health check"
        assert check["test"] != ["NONE"] and not check.get("disable"), name


def test_milvus_waits_for_healthy_etcd_and_minio(compose: dict) -> None:
    milvus = compose["services"]["milvus"]
    assert {d: c["condition"] for d, c in milvus["depends_on"].items()} == {
        "etcd": "service_healthy",
        "minio": "service_healthy",
    }
    assert milvus["environment"]["ETCD_ENDPOINTS"].split(":")[0] == "etcd"
    assert milvus["environment"]["MINIO_ADDRESS"].split(":")[0] == "minio"


def test_data_lives_in_named_volumes(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in compose["services"].items():
        mounts = service.get("volumes", [])
        assert mounts, f"{name} keeps its data in no volume"
        for mount in mounts:
            source = mount["source"] if isinstance(mount, dict) else str(mount).split(":")[0]
            assert not source.startswith((".", "/", "~")), f"{name}: {source} is a bind mount"
            used.add(source)
    assert used == declared


def test_readme_documents_the_up_command(readme: str) -> None:
    assert "docker compose -f docker/docker-compose.yml up -d" in readme


def test_env_vars_read_by_tests_are_documented(readme: str) -> None:
    read = _env_vars_read_by_store_tests()
    assert {"QDRANT_URL", "PG_DSN"} <= read  # the grep itself works
    for variable in read | set(STORE_VARIABLES):
        assert f"`{variable}`" in readme, f"{variable} (read by tests/stores) is not in docker/README.md"


@pytest.mark.parametrize("variable", sorted(STORE_VARIABLES))
def test_documented_urls_match_the_compose_ports(compose: dict, readme: str, variable: str) -> None:
    service, container_port = STORE_VARIABLES[variable]
    url = urlsplit(_documented_url(readme, variable))
    assert url.hostname in ("127.0.0.1", "localhost")
    assert url.port == _host_ports(compose["services"][service])[container_port]


def test_documented_pg_dsn_matches_the_postgres_credentials(compose: dict, readme: str) -> None:
    env = compose["services"]["postgres"]["environment"]
    url = urlsplit(_documented_url(readme, "PG_DSN"))
    assert (url.username, url.password, url.path.lstrip("/")) == (
        env["POSTGRES_USER"],
        env["POSTGRES_PASSWORD"],
        env["POSTGRES_DB"],
    )


def test_dockerfile_runs_e5_on_cuda() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", text, re.MULTILINE)
    assert 'ENTRYPOINT ["e5"]' in text


def test_e5_server_service_reserves_a_gpu_and_serves_on_8080(compose: dict, readme: str) -> None:
    server = compose["services"]["e5-server"]
    assert server["command"][:1] == ["serve"] and "0.0.0.0" in server["command"]
    assert server["build"]["dockerfile"] == "docker/Dockerfile"
    (device,) = server["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert _host_ports(server).get(8080) == 8080
    assert "/health" in " ".join(server["healthcheck"]["test"])
    assert server["profiles"] == ["server"]  # `up` without the profile needs no GPU
    assert server["environment"]["E5_API_KEY"].startswith("${")  # from the shell, never written here
    assert "--profile server" in readme


def test_dockerfile_installs_the_server_extra() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    extras = re.search(r"^ARG EXTRAS=(\S+)", text, re.MULTILINE)
    assert extras and "server" in extras.group(1).split(",")
