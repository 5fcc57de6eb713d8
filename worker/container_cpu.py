"""How busy this worker's container is: the CPU its cgroup used against the cores it may use.

The after-answer gate asks whether the CPU is busy. On a host of its own the host's reading
answers that; in a container (Kubernetes, Docker, a CI runner) the host's cores are shared with
others and the container has a quota of its own, so the gate reads its cgroup:

- cgroup v2: `cpu.stat` (`usage_usec`) and `cpu.max` (quota and period) of the process's
  cgroup, and of its ancestors up to the mount, the smallest quota winning;
- cgroup v1: `cpuacct.usage` (nanoseconds) of the `cpuacct` hierarchy, `cpu.cfs_quota_us` and
  `cpu.cfs_period_us` of the `cpu` one.

The cores are the quota, capped by the cores the process may run on (`sched_getaffinity`).
Where no cgroup accounting is readable (not Linux, or a filesystem not mounted), the host's
reading stands in (psutil). It reads files every process may read: no extra permission.
"""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

MICROSECONDS = 1e-6
NANOSECONDS = 1e-9


@dataclass(frozen=True)
class CgroupCpu:
    """Where a cgroup's CPU use is counted, and how many cores it may use."""

    usage_file: Path
    usage_unit_seconds: float  # usage_usec (v2) or nanoseconds (v1)
    cores: float

    def used_seconds(self) -> float:
        text = self.usage_file.read_text()
        if self.usage_unit_seconds == MICROSECONDS:  # v2: the usage_usec line of cpu.stat
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) * MICROSECONDS
            raise ValueError(f"no usage_usec in {self.usage_file}")
        return int(text.strip()) * NANOSECONDS


@dataclass(frozen=True)
class _Mount:
    root: str  # the hierarchy's path mounted there
    point: Path
    fstype: str
    options: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    mounts = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, after = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(after) < 3:
            continue
        mounts.append(_Mount(fields[3], Path(fields[4]), after[0], frozenset(after[2].split(","))))
    return mounts


def _groups(cgroup: str) -> dict[str, str]:
    """Controller (or "" for v2) -> the process's cgroup path, from /proc/self/cgroup."""
    groups = {}
    for line in cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                groups[controller] = parts[2]
    return groups


def _directories(mount: _Mount, group: str) -> list[Path]:
    """The process's cgroup directory under `mount`, then its ancestors up to the mount."""
    relative = os.path.relpath(group, mount.root) if group.startswith(mount.root) else "."
    own = mount.point / ("" if relative == "." else relative)
    directories = [own]
    while directories[-1] != mount.point and mount.point in directories[-1].parents:
        directories.append(directories[-1].parent)
    return directories


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _v2_quota(text: str | None) -> float | None:
    if text is None:
        return None
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def _v1_quota(quota: str | None, period: str | None) -> float | None:
    if quota is None or period is None or int(quota) <= 0:
        return None
    return int(quota) / int(period)


def _smallest(quotas: list[float | None], cores: float) -> float:
    return min([q for q in quotas if q is not None] + [cores])


def find_cgroup_cpu(
    proc: Path = Path("/proc/self"), cores: float | None = None
) -> CgroupCpu | None:
    """This process's cgroup CPU accounting, v2 first; None where none is readable."""
    mountinfo, cgroup = _read(proc / "mountinfo"), _read(proc / "cgroup")
    if mountinfo is None or cgroup is None:
        return None
    available = float(cores if cores is not None else len(os.sched_getaffinity(0)))
    mounts, groups = _mounts(mountinfo), _groups(cgroup)
    for mount in mounts:
        if mount.fstype == "cgroup2" and "" in groups:
            directories = _directories(mount, groups[""])
            if "usage_usec" not in (_read(directories[0] / "cpu.stat") or ""):
                continue  # a hybrid host's v2 mount, the CPU accounted in v1
            limits = [_v2_quota(_read(d / "cpu.max")) for d in directories]
            return CgroupCpu(
                directories[0] / "cpu.stat", MICROSECONDS, _smallest(limits, available)
            )
    accounting = next((m for m in mounts if m.fstype == "cgroup" and "cpuacct" in m.options), None)
    if accounting is None or "cpuacct" not in groups:
        return None
    usage = _directories(accounting, groups["cpuacct"])[0] / "cpuacct.usage"
    if _read(usage) is None:
        return None
    quotas: list[float | None] = []
    limiter = next((m for m in mounts if m.fstype == "cgroup" and "cpu" in m.options), None)
    if limiter is not None and "cpu" in groups:
        for d in _directories(limiter, groups["cpu"]):
            quotas.append(_v1_quota(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")))
    return CgroupCpu(usage, NANOSECONDS, _smallest(quotas, available))


class ContainerCpuShare:
    """Share of the container's cores busy (0-1) since the previous call; the first call
    sets the mark (and reads 0)."""

    def __init__(
        self,
        cgroup: CgroupCpu | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cgroup = cgroup
        self._clock = clock
        self._mark: tuple[float, float] | None = None  # (when, CPU seconds used)

    def __call__(self) -> float:
        if self.cgroup is None:
            return psutil.cpu_percent(interval=None) / 100
        now, used = self._clock(), self.cgroup.used_seconds()
        mark, self._mark = self._mark, (now, used)
        if mark is None or now <= mark[0]:
            return 0.0
        return min(1.0, (used - mark[1]) / ((now - mark[0]) * self.cgroup.cores))


def container_cpu_share() -> Callable[[], float]:
    """The reading the gate uses: this container's cgroup, else the host's."""
    return ContainerCpuShare(find_cgroup_cpu())
