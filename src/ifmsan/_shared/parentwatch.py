"""Stop a job whose Snakemake died, so a SIGKILLed workflow leaves no orphan that later moves outputs into place.

The workflow exports IFMSAN_PARENT_PID (the Snakemake process that runs the job: the main one locally, the
per-job one on a SLURM node). `ifmsan` then polls that process and, once it is gone, interrupts the main thread
(atomic writes delete their temporary file on the way out) and exits with PARENT_GONE_EXIT; a job stuck in C code
is ended with os._exit after a grace period. Without the variable nothing is watched.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "IFMSAN_PARENT_PID"
PARENT_GONE_EXIT = 3
_gone = threading.Event()


def _identity(pid: int) -> str | None:
    """The process's start time (Linux /proc; 'alive' elsewhere), or None when it is gone or a zombie."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] in ("Z", "X") else fields[19]  # state, then starttime (field 22 of stat)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "alive"


def parent_pid(env: Mapping[str, str] | None = None) -> int | None:
    """The watched process id from IFMSAN_PARENT_PID, None when unset or empty."""
    value = (os.environ if env is None else env).get(ENV_VAR, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"{ENV_VAR} must be a positive process id (set by the workflow), got {value!r}")
    return int(value)


def parent_gone() -> bool:
    """True once the watcher found the workflow process gone (the main thread's interrupt came from it)."""
    return _gone.is_set()


def _stop(pid: int, *, grace: float) -> None:
    """Say why, interrupt the main thread so that temporary files are removed, and force the exit if it hangs."""
    _gone.set()
    print(
        f"ifmsan: the workflow process {pid} ({ENV_VAR}) that started this job is gone; stopping without writing "
        "outputs",
        file=sys.stderr,
        flush=True,
    )
    _thread.interrupt_main()
    time.sleep(grace)
    os._exit(PARENT_GONE_EXIT)


def watch_parent(
    *, env: Mapping[str, str] | None = None, interval: float = 1.0, grace: float = 10.0
) -> threading.Thread | None:
    """Start a daemon thread that stops this process once IFMSAN_PARENT_PID's process is gone; None if unset."""
    pid = parent_pid(env)
    if pid is None:
        return None
    identity = _identity(pid)
    if identity is None:
        _gone.set()
        raise ValueError(f"the workflow process {pid} ({ENV_VAR}) that started this job is gone; not starting")
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started from a background shell, which ignores SIGINT: the interrupt that _stop sends would do nothing
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def poll() -> None:
        while _identity(pid) == identity:
            time.sleep(interval)
        _stop(pid, grace=grace)

    thread = threading.Thread(target=poll, name="ifmsan-parent-watch", daemon=True)
    thread.start()
    return thread
