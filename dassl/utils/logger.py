"""Tee ``sys.stdout`` into a log file (``OUTPUT_DIR/log.txt``)."""

from __future__ import annotations

import os
import os.path as osp
import sys
import time
from typing import Optional, TextIO

from .distributed import is_main_process
from .tools import mkdir_if_missing

__all__ = ["Logger", "setup_logger"]


class Logger:
    """File-like object writing everything to the console stream and (optionally) a file.

    ``console`` is the ``sys.stdout`` that was active at construction. The file is written line
    by line (flushed at every newline, no fsync: a killed process loses nothing the OS has). With ``mute=True`` nothing
    goes to the console (used on non-zero distributed ranks so N processes do not print N copies).
    Attributes a file object would have but a ``Logger`` does not define (``isatty``, ``encoding``,
    ``fileno``, ...) are forwarded to the console stream, so libraries that probe ``sys.stdout``
    keep working.
    """

    def __init__(self, fpath: Optional[str] = None, mute: bool = False):
        self.console: TextIO = sys.stdout
        self.mute = mute
        self.file: Optional[TextIO] = None
        if fpath is not None:
            mkdir_if_missing(osp.dirname(fpath) or ".")
            # Line-buffered: every finished line reaches the file at once (``tail -f`` follows the
            # run, and a killed run's log is complete up to its last line).
            self.file = open(fpath, "w", buffering=1)

    def __getattr__(self, name: str):
        # Only called for attributes not found normally; guard against recursion during __init__.
        if name == "console":
            raise AttributeError(name)
        return getattr(self.console, name)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    def write(self, msg: str) -> None:
        if not self.mute:
            self.console.write(msg)
        if self.file is not None:
            self.file.write(msg)

    def flush(self) -> None:
        if not self.mute:
            self.console.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        # The console is the interpreter's stdout; closing it would break later prints, so only
        # the file is closed (upstream also closed the console, which nobody relies on).
        file = self.__dict__.get("file")
        if file is not None and not file.closed:
            file.close()


def _log_path(output: str) -> str:
    """``output`` itself if it names a .txt/.log file, else ``output/log.txt``; never an existing file."""
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    return fpath


def setup_logger(output: Optional[str] = None) -> None:
    """Redirect ``sys.stdout`` into a :class:`Logger` writing ``output`` (see :func:`_log_path`).

    ``None`` does nothing. On distributed ranks other than 0 no file is written and stdout is
    muted (errors still reach stderr), so only rank 0 produces ``log.txt`` and console output.
    """
    if output is None:
        return
    if not is_main_process():
        sys.stdout = Logger(None, mute=True)
        return
    sys.stdout = Logger(_log_path(output))
