"""The CPUs ``e5 serve`` sizes torch's thread pool to: the affinity mask capped by the cgroup's
CPU quota, read from fake cgroup v1 and v2 files."""

from __future__ import annotations

import os
from pathlib import Path

from e5_integrations.server._cpus import cgroup_cpu_limit, default_threads, usable_cpus


def _affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cgroup(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


def test_cgroup_v2_quota_caps_the_cpus(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path, "0::/app.slice/e5.service\n", {"app.slice/e5.service/cpu.max": "150000 100000\n"}
    )
    assert cgroup_cpu_limit(root, proc) == 1.5
    assert usable_cpus(root, proc) == min(_affinity(), 2)  # 1.5 CPUs: two threads


def test_cgroup_v2_the_tightest_ancestor_binds_and_max_is_no_limit(tmp_path: Path) -> None:
    files = {"a/cpu.max": "100000 100000\n", "a/b/cpu.max": "max 100000\n", "cpu.max": "max 100000\n"}
    root, proc = _cgroup(tmp_path, "0::/a/b\n", files)
    assert cgroup_cpu_limit(root, proc) == 1.0 and usable_cpus(root, proc) == 1
    root, proc = _cgroup(tmp_path / "open", "0::/a\n", {"a/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, proc) is None and usable_cpus(root, proc) == _affinity()


def test_cgroup_v2_in_a_container_reads_the_mount_root(tmp_path: Path) -> None:
    # /proc/self/cgroup names the host's path; the container sees its own cgroup at the root
    root, proc = _cgroup(tmp_path, "0::/kubepods/pod1/abc\n", {"cpu.max": "300000 100000\n"})
    assert cgroup_cpu_limit(root, proc) == 3.0


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    files = {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    }
    membership = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
    root, proc = _cgroup(tmp_path, membership, files)
    assert cgroup_cpu_limit(root, proc) == 0.5 and usable_cpus(root, proc) == 1
    files["cpu,cpuacct/docker/abc/cpu.cfs_quota_us"] = "-1\n"  # no quota
    root, proc = _cgroup(tmp_path / "open", membership, files)
    assert cgroup_cpu_limit(root, proc) is None


def test_no_cgroup_at_all_gives_the_affinity(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path / "none", tmp_path / "missing") == _affinity()


def test_default_threads_leave_one_cpu_to_the_server(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, "0::/\n", {"cpu.max": "400000 100000\n"})
    assert default_threads(root, proc) == max(1, min(_affinity(), 4) - 1)
    root, proc = _cgroup(tmp_path / "one", "0::/\n", {"cpu.max": "100000 100000\n"})
    assert default_threads(root, proc) == 1  # never 0
