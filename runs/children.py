"""Child processes that die with their parent (Linux): a job of the runner, and the train.py a step
starts, must not outlive a runner killed with SIGKILL, which gets no chance to stop them (each job
runs in its own session, so nothing else would reach it).

``Popen(..., preexec_fn=die_with_parent())`` asks the kernel (``prctl(PR_SET_PDEATHSIG)``) to send
the child SIGTERM when the process that started it ends; the flag survives the ``exec`` of bash and
of python, so a job's bash, the ``python -m runs.steps`` it becomes and the train.py that starts
(which asks the same) all go. Elsewhere than Linux it is None: children are then only stopped by
the runner's own SIGINT / SIGTERM handling.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Callable, Optional

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(signum: int = signal.SIGTERM) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child receive ``signum`` when this process ends (None: not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signum)

    return arm
