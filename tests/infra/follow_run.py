"""Driving a `coclabel label --follow` process in tests: logs land the way an uploader should
drop them, the process runs in its own session and is stopped with SIGTERM (killed if a test
fails first)."""

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path


def land(log: Path, incoming: Path) -> Path:
    """Drop `log` into `incoming/<vehicle>/`: write aside, then rename."""
    target = incoming / log.parent.name / log.name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(log, partial)
    partial.rename(target)
    return target


@contextlib.contextmanager
def follow_process(command: list[str]):
    """The running `--follow` command; its process group is killed on the way out if it still runs."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def stop(proc: subprocess.Popen) -> str:
    """Stop a `--follow` command that must still be running; its whole output."""
    assert proc.poll() is None, "--follow stopped by itself"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    return output
