"""One writer per output folder: a live holder stops a second run at once (naming its PID and
host); a holder killed with SIGKILL leaves a record that the next run takes over with a warning."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_train
from dassl.utils.output_lock import (
    LOCK_NAME,
    OutputDirLockedError,
    holds_output_dir,
    lock_output_dir,
    release_output_dir,
)

HOLDER = """
import sys, time
from dassl.utils.output_lock import lock_output_dir
lock_output_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding ``tmp_path / "out"``; killed with SIGKILL at the end."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "locked\n"
        yield out, proc
    finally:
        proc.kill()
        proc.wait()


def test_second_writer_stops_naming_the_holder(holder):
    out, proc = holder
    with pytest.raises(OutputDirLockedError, match=rf"in use by PID {proc.pid} on host {socket.gethostname()}.*"
                                                   r"--output-dir"):
        lock_output_dir(str(out))
    assert not holds_output_dir(str(out))


def test_lock_of_a_killed_run_is_taken_over_with_a_warning_and_released_at_the_end(holder):
    out, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / LOCK_NAME).read_text() == f"pid={proc.pid} host={socket.gethostname()}\n"  # the stale record
    takeover = lock_output_dir(str(out))
    assert re.fullmatch(rf"Taking over the output folder {out} from PID {proc.pid} on host .*killed\?\)", takeover)
    try:
        assert holds_output_dir(str(out))
        assert (out / LOCK_NAME).read_text() == f"pid={os.getpid()} host={socket.gethostname()}\n"
        assert lock_output_dir(str(out)) is None  # idempotent within the holder
    finally:
        release_output_dir(str(out))
    assert not (out / LOCK_NAME).exists() and not holds_output_dir(str(out))


@pytest.mark.slow
def test_train_py_refuses_a_folder_in_use_also_for_eval_only(holder, kit):
    out, proc = holder
    for mode in ([], ["--eval-only"]):
        result = run_train("--root", str(kit.data), "--trainer", "CoOp", "--output-dir", str(out), *mode,
                           "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
                           "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16_ctxv1.yaml"), *kit.opts(),
                           check=False)
        assert result.returncode != 0
        assert f"in use by PID {proc.pid} on host {socket.gethostname()}" in result.stderr
        assert not (out / "log.txt").exists()  # stopped before touching anything
    assert Path(out / LOCK_NAME).read_text().startswith(f"pid={proc.pid} ")
