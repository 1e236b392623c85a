"""How many CPUs this process may actually use: its affinity mask and its cgroup's CPU quota.

``os.cpu_count()`` is the host's core count; in a container limited to two CPUs on a 64-core
host, or under ``taskset``, torch's default of one intra-op thread per core oversubscribes the
CPUs the process gets, and every OpenMP barrier then waits for a descheduled thread (a 7-53x
slowdown was measured on a busy 2-core host). ``e5 serve`` sizes torch's thread pool with
:func:`default_threads` instead: the usable CPUs, less one for the server's own event loop and
tokenizer threads (which otherwise preempt an OpenMP worker and stall every barrier).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "default_threads", "usable_cpus"]


def _affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``taskset``, cpusets), else the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cgroup_paths(proc_cgroup: Path) -> tuple[str | None, dict[str, str]]:
    """``(v2 path, {v1 controller: path})`` from ``/proc/self/cgroup``."""
    v2: str | None = None
    v1: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    return v2, v1


def _candidates(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and its parents up to the mount (a quota on any of them binds),
    plus the mount itself (inside a container the path in /proc is the host's)."""
    folders: list[Path] = []
    relative = Path(path.lstrip("/"))
    while True:
        folders.append(mount / relative)
        if relative == Path("."):
            break
        relative = relative.parent
    return folders


def _v2_quota(root: Path, path: str) -> float | None:
    quotas: list[float] = []
    for folder in _candidates(root, path):
        try:
            fields = (folder / "cpu.max").read_text().split()
        except OSError:
            continue
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = int(fields[0]), int(fields[1])
            except ValueError:
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
    return min(quotas) if quotas else None


def _v1_quota(root: Path, path: str) -> float | None:
    quotas: list[float] = []
    for mount in (root / "cpu,cpuacct", root / "cpu"):
        for folder in _candidates(mount, path):
            try:
                quota = int((folder / "cpu.cfs_quota_us").read_text().strip())
                period = int((folder / "cpu.cfs_period_us").read_text().strip())
            except (OSError, ValueError):
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
    return min(quotas) if quotas else None


def cgroup_cpu_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``), in CPUs; ``None`` when there is no quota or no cgroup to read."""
    v2, v1 = _cgroup_paths(proc_cgroup)
    if v2 is not None:
        quota = _v2_quota(cgroup_root, v2)
        if quota is not None:
            return quota
    path = v1.get("cpu") or v1.get("cpuacct")
    if path is not None:
        return _v1_quota(cgroup_root, path)
    return None


def usable_cpus(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota
    (rounded up: a 1.5-CPU quota gives 2), at least 1.

    Args:
        cgroup_root: where the cgroup file system is mounted (tests pass a fake one).
        proc_cgroup: this process's cgroup membership file.
    """
    cpus = _affinity_cpus()
    quota = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def default_threads(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """torch intra-op threads for ``e5 serve``: :func:`usable_cpus` less one, left to the
    event loop, HTTP parsing and tokenizing (at least 1)."""
    return max(1, usable_cpus(cgroup_root, proc_cgroup) - 1)
