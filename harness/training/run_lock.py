"""One process per run directory: an exclusive lock the OS releases when the process dies.

The lock is ``fcntl.flock`` on ``<run_dir>/.lock``. The kernel drops it when the holding
process exits or is killed (even by SIGKILL), so a stale lock never blocks a relaunch.
The file records the holder's host and pid, for the message a second launch gets.
Limits (README, "Resuming"): local disks and NFSv4 (Linux emulates flock with NFS byte
range locks) are exclusive across hosts; Lustre needs the ``flock`` mount option (without
it flock fails and the run stops with an error rather than running unlocked); NFSv3
mounted ``nolock``, and some FUSE filesystems, grant it only within one host.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from harness.atomic import current_umask

LOCK_NAME = ".lock"


class RunDirLockedError(RuntimeError):
    """Another live process holds the run directory, or it cannot be locked."""


class RunLock:
    """Context manager: hold ``<run_dir>/.lock``, or raise RunDirLockedError at once."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: the holder's identity stays readable to the launch that loses.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise RunDirLockedError(
                    f"{self.run_dir} is in use by another process ({self.holder()}); a run "
                    "directory takes one process at a time. Wait for it or stop it, or give "
                    "this run another run_name or out_dir."
                ) from None
            raise RunDirLockedError(
                f"cannot lock {self.path} ({err}): the filesystem has no flock support "
                "(Lustre: mount with -o flock); use an out_dir on a local or NFSv4 disk"
            ) from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
