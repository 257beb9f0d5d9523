"""Atomic file writes: readers, concurrent writers and a kill mid-write never see half a file.

The final file gets the permissions of a file created with ``open``: 0666 minus the umask
(0644 on a default system), so lab-mates can read checkpoints and shared caches
(``tempfile.mkstemp`` alone would leave them 0600).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def current_umask() -> int:
    """The process's umask: from /proc on Linux, else by setting it and straight back
    (os.umask is the only portable reader, and it is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a temporary file beside ``path``; on success flush, fsync and rename it over
    ``path``; on any error (or a kill) the final name keeps its previous content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def build_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``<path>.lock`` while building the shared cache file ``path``.

    The runs of a sweep start together and find the same cache missing: the first to get
    the lock builds it, the others wait, then find it and reuse it (check again inside).
    The lock is an OS file lock, released if its holder dies. Where no lock file can be
    made (a read-only dataset folder) every run builds for itself, as without the lock.
    """
    from filelock import FileLock

    lock_path = Path(f"{path}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path))
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()
