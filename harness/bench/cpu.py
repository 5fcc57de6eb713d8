"""CPU seconds of a process, as every bench reads them."""

import psutil


def cpu_seconds(process: psutil.Process, children: bool = True) -> float:
    """User + system seconds, with those of the children it waited for (a part's exited
    children, e.g. the postmaster's backends); `children=False` for the bench process itself,
    whose children are the parts, counted apart. Not `children()`: it scans every process of
    the machine, which costs more than what it measures. 0 for a process gone."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    total = times.user + times.system
    return total + (times.children_user + times.children_system if children else 0.0)
