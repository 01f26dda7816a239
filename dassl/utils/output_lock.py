"""One writer per output folder: an advisory ``fcntl.flock`` on ``OUTPUT_DIR/.lock``.

Why ``flock`` rather than an ``O_EXCL`` lock file: the kernel releases the lock when its holder
dies, however it dies (``kill -9``, OOM killer, node reboot), so a lock left by a killed run is
never mistaken for a live one and needs no PID probing (which cannot work for a holder on
another host of a shared filesystem anyway). The file records the holder's PID and host for the
error message; a run that finds a record but gets the lock knows its predecessor died without
releasing it and says so. Finished runs delete the file.

POSIX only (``fcntl``); on network filesystems the lock is as reliable as the filesystem's
locking (Linux NFS clients map ``flock`` to NFS byte-range locks).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import os.path as osp
import socket
from typing import Dict, Optional

from .distributed import is_main_process

__all__ = ["OutputDirLockedError", "lock_output_dir", "release_output_dir", "holds_output_dir"]

LOCK_NAME = ".lock"

_held: Dict[str, int] = {}  # real path of a locked folder -> the descriptor that holds its lock


class OutputDirLockedError(RuntimeError):
    """Another live process writes the output folder."""


def _holder_text(record: str) -> str:
    fields = dict(item.split("=", 1) for item in record.split() if "=" in item)
    if not fields:
        return "an unknown process (it has not written its PID yet)"
    return f"PID {fields.get('pid', '?')} on host {fields.get('host', '?')}"


def _open_locked(path: str) -> Optional[int]:
    """A descriptor of ``path`` holding its exclusive lock, or ``None`` if another process holds it.

    Retries when ``path`` was deleted or replaced between open and lock (a holder that finished
    meanwhile), so the lock we get is always on the file currently at ``path``.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            return fd
        os.close(fd)


def _read_record(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace").strip()


def lock_output_dir(directory: str) -> Optional[str]:
    """Make this process the only writer of ``directory`` until it exits (rank 0 only).

    Raises :class:`OutputDirLockedError` naming the holder when a live process holds the folder;
    takes over the record of a run that died holding it and returns a warning saying so (the
    caller logs it once its log is set up: it belongs in the run's ``log.txt``), else ``None``.
    Idempotent.
    """
    if not is_main_process():
        return None
    key = osp.realpath(directory)
    if key in _held:
        return None
    path = osp.join(key, LOCK_NAME)
    fd = _open_locked(path)
    if fd is None:
        holder = _holder_text(_read_lock_file(path))
        raise OutputDirLockedError(
            f"The output folder {directory} is in use by {holder} (lock file {path}). Two runs writing one "
            "folder would mix their checkpoints and logs: wait for that run to end, stop it, or pass another "
            "--output-dir."
        )
    previous = _read_record(fd)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode())
    _held[key] = fd
    if not previous:
        return None
    return (f"Taking over the output folder {directory} from {_holder_text(previous)}, which ended without "
            "releasing it (killed?)")


def _read_lock_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def holds_output_dir(directory: str) -> bool:
    """Whether this process holds ``directory``'s lock (so no other process writes there)."""
    return osp.realpath(directory) in _held


def release_output_dir(directory: str) -> None:
    """Delete the lock file and release the lock (no-op if this process does not hold it)."""
    fd = _held.pop(osp.realpath(directory), None)
    if fd is None:
        return
    # Deleting before unlocking: a process waiting on the old file sees it vanish and retries.
    try:
        os.remove(osp.join(osp.realpath(directory), LOCK_NAME))
    except FileNotFoundError:
        pass
    os.close(fd)


@atexit.register
def _release_all() -> None:
    for directory in list(_held):
        release_output_dir(directory)
