"""Write outputs through a temporary sibling and a rename, so a failed step leaves nothing half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _write_error(exc: OSError, target: Path) -> OSError:
    """The same OSError kind, naming the output rather than its temporary sibling (e.g. a full disk)."""
    reason = exc.strerror or str(exc)
    return (
        OSError(exc.errno, f"cannot write {target}: {reason}")
        if exc.errno
        else OSError(f"cannot write {target}: {reason}")
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    An output that is a directory is a ValueError before anything is written; an OSError while writing (a full
    disk, no permission) is re-raised naming `path`, and the temporary file is removed in every case.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"output {target} is a directory; expected the path of a file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.",
            suffix=suffix if suffix is not None else f".part{target.suffix}",
            dir=target.parent,
        )
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
        tmp.unlink(missing_ok=True)
        raise _write_error(exc, target) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
