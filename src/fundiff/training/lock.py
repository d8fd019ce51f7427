"""The lock that keeps two processes from training into one run folder at a time."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fundiff.errors import FundiffError


@contextmanager
def run_lock(run_dir: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive OS lock (flock) on ``run_dir``/.lock; a second holder fails at once.

    The lock file holds the owner's pid and is removed on release. Linux/macOS only: where
    fcntl is missing the lock is skipped.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        enabled = False
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FundiffError(
                f"{run_dir} is being trained by another process (pid {pid}); wait for it or choose another --out"
            ) from None
        try:  # the holder may have removed the file between our open and flock: lock the new one then
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no one else holds this inode
        os.close(fd)


__all__ = ["run_lock"]
