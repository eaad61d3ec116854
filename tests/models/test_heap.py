"""models.heap: with the thresholds fixed, a process reuses freed blocks instead of faulting in
fresh pages (each test in a child process: the settings are process-wide)."""

import subprocess
import sys
from pathlib import Path

import pytest

from models.heap import keep_freed_memory

ROOT = Path(__file__).resolve().parents[2]

# Three rounds of 100 touched 1 MiB blocks, freed after each; prints the third round's minor faults.
ROUNDS = """import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from models.heap import keep_freed_memory
    assert keep_freed_memory()
def one_round():
    blocks = [np.ones(1 << 17) for _ in range(100)]
    del blocks
one_round(); one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def third_round_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], cwd=ROOT, check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_blocks_are_reused_not_faulted_in_again():
    pages = 100 * (1 << 20) // 4096
    assert third_round_faults("default") > pages // 2  # glibc trims the heap: the pages come back fresh
    assert third_round_faults("keep") < pages // 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_is_idempotent_in_a_child():
    done = subprocess.run([sys.executable, "-c", "from models.heap import keep_freed_memory as k; print(k(), k())"],
                          cwd=ROOT, check=True, capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True"]


def test_no_mallopt_changes_nothing(monkeypatch):
    import ctypes

    def no_libc(name):
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert keep_freed_memory() is False
