"""Write outputs through a temporary sibling and a rename, so a failed step leaves nothing half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path


def owner_tag() -> str:
    """<pid>@<host> of this process, part of each temporary file's name: a later writer of the same output on this
    host removes the temporary files whose writer is gone (a job killed with SIGKILL cannot remove its own)."""
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # short: the name must fit in 255 bytes
    return f"{os.getpid()}@{host}"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (another user's counts; so does a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return pid > 0


def remove_stale_temporaries(target: Path, suffix: str) -> list[Path]:
    """Remove the temporary siblings of `target` (.<name>.<pid>@<host>.<random><suffix>, as atomic_path names them)
    that a process of this host wrote and that is gone; return them. Other hosts' files are kept: their writer may
    still run (a shared file system), and this host cannot tell."""
    host = owner_tag().split("@", 1)[1]
    pattern = re.compile(rf"\.{re.escape(target.name)}\.([0-9]+)@{re.escape(host)}\.[A-Za-z0-9_]+{re.escape(suffix)}")
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            match = pattern.fullmatch(entry.name)
            if match and int(match[1]) != os.getpid() and not _pid_alive(int(match[1])):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


LOW_SPACE_BYTES = 16 * 2**20
"""Free space below this, when a write fails, is named as the likely cause: the disk may be full."""


def disk_full_hint(target: Path, exc: BaseException) -> str:
    """'; the disk holding X has 12 kB free: it may be full' when a write failed for lack of space, else ''.

    Asked while the failed temporary file still holds its space (netCDF4 reports a full disk as "NetCDF: HDF error");
    an ENOSPC or EDQUOT error says so itself.
    """
    import errno
    import shutil

    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return ""
    folder = next((p for p in (target.parent, *target.parent.parents) if p.is_dir()), Path("."))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if free < LOW_SPACE_BYTES:
        return f"; the disk holding {folder} has {free // 1024} kB free: it may be full (free space and run again)"
    return ""


def _write_error(exc: OSError, target: Path, hint: str = "") -> OSError:
    """The same OSError kind, naming the output rather than its temporary sibling (e.g. a full disk)."""
    reason = (exc.strerror or str(exc)) + hint
    return (
        OSError(exc.errno, f"cannot write {target}: {reason}")
        if exc.errno
        else OSError(f"cannot write {target}: {reason}")
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An output that is a directory is a ValueError before anything is written; an OSError while writing (a full
    disk, no permission) is re-raised naming `path`, and the temporary file is removed in every case. The temporary
    name holds the writer's pid and host; the temporary files of this output that a dead process of this host left
    (a SIGKILL gives it no chance to clean up) are removed first.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"output {target} is a directory; expected the path of a file to write")
    suffix = suffix if suffix is not None else f".part{target.suffix}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target, suffix)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{owner_tag()}.", suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise _write_error(exc, target) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should read like any file the user writes
        os.replace(tmp, target)
    except OSError as exc:
        hint = disk_full_hint(target, exc)  # before the temporary file gives its space back
        tmp.unlink(missing_ok=True)
        raise _write_error(exc, target, hint) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
