"""The gate's CPU reading: the worker's own cgroup (v2, v1), its quota, else the host's."""

import time
from pathlib import Path

import pytest

from worker.container_cpu import (
    MICROSECONDS,
    NANOSECONDS,
    CgroupCpu,
    ContainerCpuShare,
    find_cgroup_cpu,
)


def _proc(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    return proc


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_reads_the_own_cgroup_and_the_smallest_quota_of_its_ancestors(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cg2"
    own = root / "kubepods" / "pod1"
    _write(own / "cpu.stat", "usage_usec 5000000\nuser_usec 4000000\n")
    _write(own / "cpu.max", "max 100000\n")
    _write(root / "kubepods" / "cpu.max", "150000 100000\n")  # 1.5 cores for the pods
    proc = _proc(
        tmp_path,
        f"30 1 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw\n",
        "0::/kubepods/pod1\n",
    )

    cgroup = find_cgroup_cpu(proc, cores=8)

    assert cgroup == CgroupCpu(own / "cpu.stat", MICROSECONDS, 1.5)
    assert cgroup.used_seconds() == pytest.approx(5.0)


def test_v2_in_a_cgroup_namespace_reads_the_mount_itself(tmp_path: Path) -> None:
    root = tmp_path / "cg2"
    _write(root / "cpu.stat", "usage_usec 42\n")
    _write(root / "cpu.max", "200000 100000\n")
    proc = _proc(tmp_path, f"30 1 0:26 / {root} rw - cgroup2 cgroup2 rw\n", "0::/\n")

    assert find_cgroup_cpu(proc, cores=4) == CgroupCpu(root / "cpu.stat", MICROSECONDS, 2.0)


def test_the_affinity_caps_a_quota_larger_than_the_cores(tmp_path: Path) -> None:
    root = tmp_path / "cg2"
    _write(root / "cpu.stat", "usage_usec 42\n")
    _write(root / "cpu.max", "800000 100000\n")
    proc = _proc(tmp_path, f"30 1 0:26 / {root} rw - cgroup2 cgroup2 rw\n", "0::/\n")

    cgroup = find_cgroup_cpu(proc, cores=2)
    assert cgroup is not None and cgroup.cores == 2


def test_v1_reads_cpuacct_and_the_cfs_quota(tmp_path: Path) -> None:
    cpu, acct = tmp_path / "cpu", tmp_path / "cpuacct"
    _write(acct / "docker" / "abc" / "cpuacct.usage", "3000000000\n")
    _write(cpu / "docker" / "abc" / "cpu.cfs_quota_us", "50000\n")
    _write(cpu / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    _write(cpu / "cpu.cfs_quota_us", "-1\n")  # the root: no quota
    _write(cpu / "cpu.cfs_period_us", "100000\n")
    hybrid_v2 = tmp_path / "unified"  # a hybrid host's v2 mount: no CPU accounted there
    hybrid_v2.mkdir()
    proc = _proc(
        tmp_path,
        f"32 31 0:29 / {cpu} rw - cgroup cgroup rw,cpu\n"
        f"33 31 0:30 / {acct} rw - cgroup cgroup rw,cpuacct\n"
        f"41 31 0:38 / {hybrid_v2} rw - cgroup2 cgroup2 rw\n",
        "2:cpuacct:/docker/abc\n1:cpu:/docker/abc\n0::/\n",
    )

    cgroup = find_cgroup_cpu(proc, cores=4)

    assert cgroup == CgroupCpu(acct / "docker" / "abc" / "cpuacct.usage", NANOSECONDS, 0.5)
    assert cgroup.used_seconds() == pytest.approx(3.0)


def test_no_cgroup_accounting_is_none(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", "0::/\n")
    assert find_cgroup_cpu(proc, cores=2) is None
    assert find_cgroup_cpu(tmp_path / "absent", cores=2) is None


def test_the_share_is_the_cpu_used_over_the_wall_time_and_the_cores(tmp_path: Path) -> None:
    stat = tmp_path / "cpu.stat"
    now = [100.0]
    share = ContainerCpuShare(CgroupCpu(stat, MICROSECONDS, 2.0), clock=lambda: now[0])

    stat.write_text("usage_usec 1000000\n")
    assert share() == 0.0  # the first call sets the mark
    stat.write_text("usage_usec 1500000\n")  # 0.5 CPU s
    now[0] = 100.5  # over 0.5 s on 2 cores: half of them
    assert share() == pytest.approx(0.5)
    stat.write_text("usage_usec 3500000\n")  # more than the quota allows: capped at 1
    now[0] = 101.0
    assert share() == 1.0


def test_this_machine_has_a_reading_between_0_and_1_that_sees_this_process_busy() -> None:
    share = ContainerCpuShare(find_cgroup_cpu())
    share()
    busy_until = time.monotonic() + 0.3
    while time.monotonic() < busy_until:  # one core busy for 0.3 s: the reading must see it
        pass
    reading = share()
    assert 0.0 < reading <= 1.0
