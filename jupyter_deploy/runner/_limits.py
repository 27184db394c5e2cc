"""Resource limits a runner puts on itself: a memory cap it watches, a CPU bound it pins.

The control plane passes a version's ``inference_compute_info`` as flags
(``--memory-limit BYTES``, ``--cpu-limit CORES``):

- memory: a thread reads the process's resident memory (``VmRSS`` in
  ``/proc/self/status``) every ``MEMORY_POLL`` seconds; over the cap, the runner
  prints why and exits with ``EXIT_OUT_OF_MEMORY``, which the scheduler reports
  as "out of memory" in the deployment's reason. No address-space rlimit: it
  breaks gRPC's and BLAS's thread stacks long before real memory runs out. The
  cap counts the runner process itself, not processes the model starts;
- CPU: the process is pinned to ``ceil(cpu_limit)`` of the cores it may use
  (``os.sched_setaffinity``, before any thread starts, so every thread
  inherits it), and thread pools that read ``OMP_NUM_THREADS`` and its kin are
  told the same number unless already set. Where affinity is not available
  (not Linux) nothing is bound, and the runner says so.

Example::

    cores = limit_cpus(2.0)            # e.g. [4, 5]
    MemoryWatch(1 << 30, on_exceeded).start()
"""

from __future__ import annotations

import math
import os
import signal
import threading
from typing import Callable

#: The runner's exit code when it stopped itself over its memory cap.
EXIT_OUT_OF_MEMORY = 5
#: Seconds between two reads of the resident memory.
MEMORY_POLL = 0.05
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def resident_bytes(pid: int | str = "self") -> int:
    """A process's resident memory in bytes (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def limit_cpus(limit: float) -> list[int] | None:
    """Pin this process to ``ceil(limit)`` cores; the cores chosen, or None where it cannot.

    Replicas spread over the allowed cores by pid, so two one-core replicas
    rarely share a core.
    """
    count = max(1, math.ceil(limit))
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(count))
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if count >= len(allowed):
        return allowed
    start = os.getpid() % len(allowed)
    cores = [allowed[(start + i) % len(allowed)] for i in range(count)]
    os.sched_setaffinity(0, cores)
    return sorted(cores)


class MemoryWatch(threading.Thread):
    """Calls ``on_exceeded(resident_bytes)`` once the process's resident memory goes over ``limit`` bytes."""

    def __init__(self, limit: int, on_exceeded: Callable[[int], None], poll: float = MEMORY_POLL):
        super().__init__(name="memory-watch", daemon=True)
        self.limit, self.on_exceeded, self.poll = limit, on_exceeded, poll
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.poll):
            used = resident_bytes()
            if used > self.limit:
                self.on_exceeded(used)
                return

    def stop(self) -> None:
        self._halt.set()


def describe_exit(code: int) -> str:
    """How a runner that exited with ``code`` (negative: killed by that signal) ended, in words."""
    if code == EXIT_OUT_OF_MEMORY:
        return "out of memory (its resident memory went over inference_compute_info.cpu_memory)"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
