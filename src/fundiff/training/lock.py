"""The lock that keeps two processes from training into one run folder at a time (fundiff.outputs.folder_lock)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fundiff.outputs import folder_lock


@contextmanager
def run_lock(run_dir: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive OS lock (flock) on ``run_dir``/.lock; a second holder fails at once with the first's pid.

    The lock file holds the owner's pid and is removed on release; ``run_dir`` is made if missing and removed
    again when it is still empty then (a run that failed before writing anything leaves no folder). Linux/macOS
    only: where fcntl is missing the lock is skipped.
    """
    with folder_lock(run_dir, doing="trained", enabled=enabled):
        yield


__all__ = ["run_lock"]
