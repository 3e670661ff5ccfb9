"""How many students to grade at a time on this machine, and how many threads each gets."""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by torch at start-up
# a lane of students at its peak: a worker, its kernel, and the next worker warming up (3.2 GB
# proportional set size measured for the whole run, runner included, 2026-12-02)
MEMORY_PER_STUDENT_GB = 3.5


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory_gb() -> float | None:
    """Memory the system can give without swapping (Linux' MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def default_jobs() -> int:
    """Students graded at a time when --jobs is not given: one per core, as memory allows."""
    jobs = available_cores()
    memory = available_memory_gb()
    if memory is not None:
        jobs = min(jobs, int(memory // MEMORY_PER_STUDENT_GB))
    return max(1, jobs)


def threads_per_student(jobs: int) -> dict[str, str]:
    """Thread-count variables for the workers of `jobs` parallel students: the cores shared out.

    Without them every kernel's torch starts one thread per core, and `--jobs N` would run N
    times more threads than cores. Variables already set by the caller are kept.
    """
    if jobs <= 1:
        return {}
    threads = str(max(1, available_cores() // jobs))
    return {name: os.environ.get(name, threads) for name in THREAD_VARIABLES}
