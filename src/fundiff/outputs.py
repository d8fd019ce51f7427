"""Where commands write: one rule for every output location, checked before any work, written all or nothing.

Every command that writes (the Part A techniques, sample, denoise-sweep, evaluate, export, train, tour, ui)
goes through this module:

- :func:`check_folder` / :func:`check_file`: the location can be made and written (no file in the way of a
  folder, not under /proc or /sys, write permission, not a read-only file system, the right suffix for a
  file), else a one-line :class:`FundiffError` that says what to do;
- :func:`staged_folder` / :func:`staged_file`: the command writes into a temporary sibling ``OUT.tmp-PID``
  that moves into place when the command succeeds and is removed when it fails at any point (a full disk,
  Ctrl-C, SIGTERM), with any parent folders it made, so a failure leaves nothing new behind;
- :func:`folder_lock`: one writer per folder (an OS lock; a second process stops at once with the pid of
  the first);
- :func:`os_error_message`: the one line (path and what to do) that the CLI prints for an OS error;
- :func:`interrupts_deferred`: Ctrl-C / SIGTERM wait until a short critical step (moving files into place,
  removing a temporary folder) is over, so an interrupt never leaves half of it done.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fundiff.errors import FundiffError

KERNEL_FOLDERS = (Path("/proc"), Path("/sys"))  # kernel interfaces: nothing of ours can be written there


# -- the one line for an OS error ----------------------------------------------------------------------------
def os_error_message(e: OSError, *, flag: str = "--out") -> str | None:
    """The one-line message (without "fundiff: error:") for an OS error of writing, or None for other errors."""
    path = e.filename if e.filename is not None else "the output"
    where = f"give {flag} on another disk"
    messages = {
        errno.ENOSPC: f"no space left on device writing {path} (free some space or {where})",
        errno.EDQUOT: f"disk quota exceeded writing {path} (free some space or {where})",
        errno.EROFS: f"{path} is on a read-only file system ({where}, or remount it read-write)",
        errno.EACCES: f"permission denied writing {path} (give {flag} in a folder you can write to, or fix its "
        "permissions)",
        errno.EPERM: f"operation not permitted on {path} (give {flag} in a folder you can write to)",
        errno.ENOTDIR: f"a file is in the way of the folder {path} (remove it or choose another {flag})",
        errno.EEXIST: f"{path} already exists (remove it or choose another {flag})",
    }
    return messages.get(e.errno)


def _refuse(e: OSError, flag: str) -> FundiffError:
    return FundiffError(os_error_message(e, flag=flag) or f"cannot write {e.filename}: {e.strerror}")


# -- checking a location before any work ---------------------------------------------------------------------
def _check(path: Path, *, folder: bool, flag: str) -> Path:
    """The checks shared by folders and files: ``path`` (a folder when ``folder``) can be made and written."""
    full = Path(os.path.abspath(path))
    real = full.resolve()
    for kernel in KERNEL_FOLDERS:
        if real == kernel or kernel in real.parents:
            raise FundiffError(
                f"{flag} {path} is under {kernel}, a kernel interface, not a place for files; choose another {flag}"
            )
    existing = next(p for p in (full, *full.parents) if os.path.lexists(p))
    if existing == full:
        if folder and not full.is_dir():
            raise FundiffError(f"{path} is a file, not a folder (remove it or choose another {flag})")
        if not folder and full.is_dir():
            raise FundiffError(f"{path} is a folder, not a file (remove it or choose another {flag})")
        existing = full if folder else full.parent
    if not existing.is_dir():
        raise FundiffError(
            f"{existing} is a file, so {path} cannot be made under it (remove it or choose another {flag})"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only(existing) else errno.EACCES
        raise _refuse(OSError(code, os.strerror(code), str(existing)), flag)
    return full


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_folder(path: str | Path, *, flag: str = "--out") -> Path:
    """Check that the folder ``path`` can be made (or is one) and written; returns it (absolute).

    Raises FundiffError (one line naming ``flag``) for a file in the way, a path under /proc or /sys, a folder
    without write permission or on a read-only file system."""
    return _check(Path(path), folder=True, flag=flag)


def check_file(path: str | Path, *, suffixes: Sequence[str], flag: str = "--out") -> Path:
    """Check that the file ``path`` (ending in one of ``suffixes``, e.g. (".png",)) can be written; returns it."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise FundiffError(f"{flag} must be a {' or '.join(suffixes)} file, got {str(path)!r}")
    return _check(path, folder=False, flag=flag)


# -- writing all or nothing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Staged:
    """Where a command writes: ``tmp``, a temporary sibling of ``target`` that takes its place at the end.

    For a folder, ``tmp`` is the folder to write into; for a file, ``tmp`` is the file's path inside a temporary
    folder (files written beside it, such as evaluate's plot, move beside the target too)."""

    tmp: Path
    target: Path
    folder: Path  # the temporary folder: tmp itself, or the file's

    def final(self, path: str | Path) -> Path:
        """Where ``path`` (a file under the temporary folder) will be once moved into place; ValueError if it is
        not under it."""
        path = Path(path)
        if not path.is_relative_to(self.folder):  # one of them relative, the other absolute
            path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(self.folder))
            return self.final(self.folder / path.relative_to(folder))
        base = self.target if self.tmp == self.folder else self.target.parent
        return base / path.relative_to(self.folder)


def _make_parents(folder: Path) -> list[Path]:
    """mkdir the missing folders down to ``folder`` (inclusive); returns those made, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)][::-1]
    made = []
    try:
        for p in missing:
            p.mkdir()
            made.append(p)
    except BaseException:
        _remove_folders(made)
        raise
    return made


def _remove_folders(made: list[Path]) -> None:
    for p in reversed(made):
        try:
            p.rmdir()
        except OSError:
            pass  # not empty (someone else wrote there) or gone: leave it


def _merge(src: Path, dest: Path) -> None:
    """Move everything in the folder ``src`` into ``dest`` (made when missing), replacing what is there."""
    if not os.path.lexists(dest):
        os.rename(src, dest)
        return
    for entry in sorted(src.iterdir()):
        to = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and to.is_dir() and not to.is_symlink():
            _merge(entry, to)
            continue
        if to.is_dir() and not to.is_symlink():
            shutil.rmtree(to)
        os.replace(entry, to)
    src.rmdir()


@contextmanager
def _staged(target: Path, tmp_folder: Path, tmp: Path, merge_into: Path, flag: str) -> Iterator[Staged]:
    staged = Staged(tmp, target, tmp_folder)
    try:
        made = _make_parents(tmp_folder.parent)
        tmp_folder.mkdir()
    except OSError as e:
        raise _refuse(e, flag) from None
    try:
        yield staged
        with interrupts_deferred():
            _merge(tmp_folder, merge_into)
    except BaseException as e:
        with interrupts_deferred():
            shutil.rmtree(tmp_folder, ignore_errors=True)
            _remove_folders(made)
        if isinstance(e, OSError) and e.filename is not None:  # name the output, not its temporary sibling
            try:
                e.filename = str(staged.final(e.filename))
            except ValueError:
                pass
        raise


def _tmp_name(path: Path) -> Path:
    """``OUT.tmp-PID`` beside ``path`` (of this process, so two processes never share one)."""
    path = path if path.name else Path(os.path.abspath(path))  # "." has no name to add to
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


@contextmanager
def staged_folder(path: str | Path, *, flag: str = "--out") -> Iterator[Staged]:
    """Check the folder ``path`` (:func:`check_folder`), then have the command write into ``OUT.tmp-PID`` beside it.

    On success its contents move into ``path`` (made if missing; files and folders of the same name there are
    replaced, others kept); on any exception it is removed, with the parent folders this made, and an OSError
    under it names ``path`` instead."""
    check_folder(path, flag=flag)
    target = Path(path)
    tmp = _tmp_name(target)
    with _staged(target, tmp, tmp, target, flag) as staged:
        yield staged


@contextmanager
def staged_file(path: str | Path, *, suffixes: Sequence[str], flag: str = "--out") -> Iterator[Staged]:
    """Check the file ``path`` (:func:`check_file`), then have the command write ``Staged.tmp`` (same name, in a
    temporary folder ``OUT.tmp-PID`` beside it) which replaces ``path`` on success; on any exception nothing of
    it stays (as :func:`staged_folder`)."""
    check_file(path, suffixes=suffixes, flag=flag)
    target = Path(path)
    folder = _tmp_name(target)
    with _staged(target, folder, folder / target.name, target.parent, flag) as staged:
        yield staged


# -- interrupts wait for critical steps ------------------------------------------------------------------------
@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then act on one that came (as its handler says) at the end.

    Only in the main thread (where Python runs signal handlers); elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    names = (signal.SIGINT, signal.SIGTERM)
    old = {n: signal.getsignal(n) for n in names}
    for n in names:
        signal.signal(n, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for n in names:
            signal.signal(n, old[n])
        if caught:
            signum, frame = caught[0]
            handler = old[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


# -- one writer per folder -----------------------------------------------------------------------------------
@contextmanager
def folder_lock(folder: str | Path, *, doing: str, flag: str = "--out", enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive OS lock (flock) on ``folder``/.lock; a second holder fails at once with the first's pid:
    "FOLDER is being DOING by another process (pid N); wait for it or choose another FLAG".

    The folder is made if missing (and removed again at release when this made it and it is still empty); the
    lock file holds the owner's pid and is removed on release. Linux/macOS only: where fcntl is missing the
    lock is skipped."""
    try:
        import fcntl
    except ImportError:  # Windows
        enabled = False
    if not enabled:
        yield
        return
    folder = Path(folder)
    try:
        made = _make_parents(folder)
    except OSError as e:
        raise _refuse(e, flag) from None
    path = folder / ".lock"
    try:
        fd = _lock(path, fcntl, f"{folder} is being {doing} by another process (pid {{pid}}); wait for it or "
                   f"choose another {flag}")  # fmt: skip
    except BaseException:
        _remove_folders(made)
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no one else holds this inode
        os.close(fd)
        _remove_folders(made)


def _lock(path: Path, fcntl, busy: str) -> int:
    """The fd of ``path`` locked by this process; FundiffError(busy with {pid}) when another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FundiffError(busy.format(pid=pid)) from None
        try:  # the holder may have removed the file between our open and flock: lock the new one then
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


__all__ = [
    "Staged",
    "check_file",
    "check_folder",
    "folder_lock",
    "os_error_message",
    "staged_file",
    "staged_folder",
]
