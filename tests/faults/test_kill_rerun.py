"""Crash safety: SIGKILL the label pipeline (by pid) at random moments, 20 times, and rerun.

After every kill no file under a final name is partial and `_SUCCESS` marks only a complete
dataset; after every 4 kills a rerun completes and the dataset equals an uninterrupted run's,
row for row (no row lost, none duplicated), and DuckDB reads it.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.fakes import START_US, analytic_drive
from tests.faults.logs import assert_complete, random_teacher, write_log
from tests.transforms.clip_messages import drive_messages
from transforms.parquet import read_table
from transforms.sources.base import EgoPose

KILLS, ROUND = 20, 4  # kills in all; a verified rerun after every ROUND kills
TABLES = ("clips", "labels", "quarantine")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Four 6 s drives over two vehicles, one with a NaN pose, and a file that is not a log."""
    root = tmp_path_factory.mktemp("fleet")
    for k in range(4):
        drive = analytic_drive("circle" if k % 2 else "accel", seconds=6.0, start_us=START_US + k * 60_000_000)
        messages = drive_messages(drive)
        if k == 3:
            messages = [EgoPose(m.t_us, np.full(3, np.nan), m.quat) if isinstance(m, EgoPose)
                        and m.t_us == drive.start_us + 3_000_000 else m for m in messages]
        write_log(root / f"veh-00{k % 2}" / f"drive-{k}.mcap", messages, vehicle_id=f"veh-00{k % 2}")
    (root / "veh-001" / "notes.mcap").write_text("not a log")
    return root


def _command(fleet, out, teacher) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "label", "--logs", str(fleet), "--out", str(out), "--quiet",
            "--teacher", teacher, "--samples", "1", "--block-s", "2"]


def _rows(out) -> dict[str, list]:
    return {t: sorted(json.dumps(r, sort_keys=True, default=str) for r in read_table(str(out), t).to_pylist())
            for t in TABLES}


def _no_partial_file_visible(out) -> dict:
    """Every file under a final name is whole; `_SUCCESS` only beside a complete dataset."""
    hidden = list(out.rglob("_tmp.*"))
    for path in out.rglob("*.parquet"):
        pq.read_table(path)  # raises on a partial file
    if (out / "_manifest.json").exists():
        json.loads((out / "_manifest.json").read_text())
    if (out / "_SUCCESS").exists():
        assert_complete(out)
    return {"temp_files": len(hidden), "success": (out / "_SUCCESS").exists(),
            "files": len(list(out.rglob("*.parquet")))}


@pytest.mark.slow
def test_twenty_random_kills_then_reruns_lose_and_duplicate_nothing(fleet, tmp_path, capsys):
    teacher = random_teacher(tmp_path / "teacher")
    reference, out = tmp_path / "reference", tmp_path / "killed"
    started = time.monotonic()
    subprocess.run(_command(fleet, reference, teacher), check=True, capture_output=True)
    full_s = time.monotonic() - started
    expected = _rows(reference)
    assert_complete(reference)
    rng = random.Random(20)
    kills, attempts = [], 0
    while len(kills) < KILLS and attempts < 2 * KILLS:
        attempts += 1
        proc = subprocess.Popen(_command(fleet, out, teacher), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        at = rng.uniform(0.05, 0.95) * full_s  # the machine is shared: full_s is the fastest run seen
        time.sleep(at)
        if proc.poll() is not None:  # it finished first: not a kill
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append({"kill": len(kills) + 1, "at_s": round(at, 1), **_no_partial_file_visible(out)})
        if len(kills) % ROUND == 0:
            started = time.monotonic()
            subprocess.run(_command(fleet, out, teacher), check=True, capture_output=True)
            full_s = min(full_s, time.monotonic() - started)
            assert_complete(out)
            assert _rows(out) == expected
            kills[-1]["rerun"] = "complete, equal to the uninterrupted run"
    with capsys.disabled():
        print(f"\nfastest full run {full_s:.1f} s; {attempts} runs started; rows "
              f"{({t: len(v) for t, v in expected.items()})}")
        for row in kills:
            print(json.dumps(row))
    assert len(kills) == KILLS and "rerun" in kills[-1]
