"""Fault injection over a fleet of MCAP logs: one label run over every fault at once.

Each log is the 6 s analytic circle drive (tests.fakes: 100 Hz poses, four 10 Hz cameras a few
ms before each 100 ms tick), so its t0 windows are 2.0, 2.5, ... 6.0 s after the start (9
windows) and each fault quarantines a known set of them with a known reason. The run must
complete; every other window is a clip that reaches labels/ or a teacher/validate quarantine row.
"""

import random
import struct
from collections import Counter
from dataclasses import replace

import numpy as np
import pyarrow.compute as pc
import pytest

from pipelines.cli import main
from schemas.contract import TEACHER_CAMERAS
from schemas.reasons import Reason
from tests.fakes import START_US, analytic_drive
from tests.faults.logs import assert_complete, random_teacher, window_rows, write_log
from tests.transforms.clip_messages import drive_messages
from transforms.clips import t0_grid
from transforms.parquet import read_table
from transforms.sources.base import CameraFrame, EgoPose, LogReadError
from transforms.sources.mcap import McapLogSource

SECONDS = 6
T = START_US + 3_000_000  # where a fault starts (3.0 s into the drive)
TELE, WIDE = TEACHER_CAMERAS[3], TEACHER_CAMERAS[1]


def s(t0_s: float) -> int:
    return START_US + round(t0_s * 1e6)


def grid(*t0_s: float) -> set[int]:
    return {s(t) for t in t0_s}


CLEAN = {s(2.0 + 0.5 * k) for k in range(9)}


def _messages(seconds: float = SECONDS) -> list:
    return drive_messages(analytic_drive("circle", seconds=seconds))


def _nonfinite(value: float, field: str) -> list:
    out = []
    for m in _messages():
        if isinstance(m, EgoPose) and m.t_us == T:
            m = replace(m, **{field: np.full(3 if field == "xyz" else 4, value)})
        out.append(m)
    return out


def _duplicate_pose() -> list:
    out = []
    for m in _messages():
        out.append(m)
        if isinstance(m, EgoPose) and m.t_us == T:
            out.append(replace(m, xyz=m.xyz + 1.0))
    return out


def _clock_jump() -> list:
    """Every message from 3.0 s on is stamped 2 s later (a jump of the recorder's clock)."""
    return [replace(m, t_us=m.t_us + 2_000_000) if m.t_us >= T else m for m in _messages()]


def _camera_gap() -> list:
    """The tele camera records nothing from 3.0 s to 5.0 s."""
    return [m for m in _messages() if not (isinstance(m, CameraFrame) and m.camera == TELE
                                           and T <= m.t_us < s(5.0))]


def _corrupt_jpegs() -> list:
    """The wide camera's frame for 4.0 s is cut short, the one for 5.0 s is not an image."""
    out = []
    for m in _messages():
        if isinstance(m, CameraFrame) and m.camera == WIDE and m.t_us in (s(4.0) - 7_000, s(5.0) - 7_000):
            m = replace(m, data=m.data[:600] if m.t_us < s(4.5) else b"not a jpeg at all")
        out.append(m)
    return out


def _no_summary(path) -> None:
    """Zero the footer's summary offsets: a file without its chunk index (read by a scan)."""
    data = bytearray(path.read_bytes())
    footer = len(data) - 8 - 29  # magic 8; footer record: opcode 1, length 8, 8 + 8 + 4
    assert data[footer] == 0x02
    data[footer + 9: footer + 25] = struct.pack("<QQ", 0, 0)
    path.write_bytes(bytes(data))


# log id -> (messages, {t0: reason} of the windows quarantined while assembling clips)
CASES = {
    "clean": (_messages, {}),
    "nan-pose": (lambda: _nonfinite(np.nan, "xyz"), dict.fromkeys(grid(3.0, 3.5, 4.0, 4.5), Reason.POSE_NONFINITE)),
    "inf-quat": (lambda: _nonfinite(np.inf, "quat"), dict.fromkeys(grid(3.0, 3.5, 4.0, 4.5), Reason.POSE_NONFINITE)),
    "duplicate-time": (_duplicate_pose, dict.fromkeys(grid(3.0, 3.5, 4.0, 4.5), Reason.TIME_BACKWARDS)),
    "clock-jump": (_clock_jump, dict.fromkeys(grid(3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0), Reason.POSE_GAP)),
    "camera-gap": (_camera_gap, {**dict.fromkeys(grid(3.5, 4.0, 4.5), Reason.CAMERA_STALE),
                                 s(5.0): Reason.CAMERA_MISSING}),
    "corrupt-jpeg": (_corrupt_jpegs, dict.fromkeys(grid(4.0, 5.0), Reason.IMAGE_CORRUPT)),
    "no-chunk-index": (_messages, {}),
}
# log id -> the log-level reason of a file that yields no window at all
LOG_LEVEL = {
    "zero-length": Reason.LOG_UNREADABLE,
    "not-a-log": Reason.LOG_UNREADABLE,
    "jpeg-named-mcap": Reason.LOG_UNREADABLE,
    "cameras-only": Reason.LOG_EMPTY,
    "one-second": Reason.LOG_EMPTY,
    "unsafe-bag": Reason.UNSAFE_PATH,
}
CUTS, FLIPS = 3, 3  # logs truncated at random offsets / with random bytes flipped


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    vehicle = root / "veh-000"
    for log_id, (messages, _) in CASES.items():
        write_log(vehicle / f"{log_id}.mcap", messages())
    _no_summary(vehicle / "no-chunk-index.mcap")
    (vehicle / "zero-length.mcap").write_bytes(b"")
    (vehicle / "not-a-log.mcap").write_text("timestamp,x,y\n0,1,2\n" * 40)
    first_jpeg = next(m.data for m in _messages() if isinstance(m, CameraFrame))
    (vehicle / "jpeg-named-mcap.mcap").write_bytes(first_jpeg)
    write_log(vehicle / "cameras-only.mcap", [m for m in _messages() if isinstance(m, CameraFrame)])
    write_log(vehicle / "one-second.mcap", _messages(1.0))
    bag = vehicle / "unsafe-bag"
    write_log(bag / "unsafe-bag_0.mcap", _messages())
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  relative_file_paths:\n"
                                       "    - ../../outside.mcap\n")
    write_log(vehicle / "hostile-vehicle-id.mcap", _messages(), vehicle_id="../../escaped")
    write_log(root / "my fleet" / "folder with spaces.mcap", _messages(), vehicle_id=None)
    rng = random.Random(9)
    data = write_log(root / "multi-chunk.mcap", _messages(), chunk_size=64 << 10).read_bytes()
    (root / "multi-chunk.mcap").unlink()
    for k in range(CUTS):
        (vehicle / f"cut-{k}.mcap").write_bytes(data[: rng.randrange(len(data))])
    for k in range(FLIPS):
        flipped = bytearray(data)
        for at in rng.sample(range(len(data)), 8):
            flipped[at] ^= 1 << rng.randrange(8)
        (vehicle / f"flipped-{k}.mcap").write_bytes(bytes(flipped))
    return root


@pytest.fixture(scope="module")
def dataset(fleet, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    teacher = random_teacher(tmp_path_factory.mktemp("teacher"))
    assert main(["label", "--logs", str(fleet), "--out", str(out), "--quiet", "--teacher", teacher,
                 "--samples", "1"]) == 0
    return out


def _clip_stage(windows: list[dict], log_id: str) -> dict[int, str]:
    return {r["t0_us"]: r["reason"] for r in windows if r["log_id"] == log_id and r["stage"] in ("read", "clips")}


def _windows_of(log_id: str, labels, windows) -> set[int]:
    return {r["t0_us"] for r in labels + windows if r["log_id"] == log_id}


def test_the_run_completes_and_every_window_is_accounted_for(dataset):
    manifest = assert_complete(dataset)
    assert manifest["counts"]["logs"] == len(CASES) + len(LOG_LEVEL) + CUTS + FLIPS + len(HOSTILE_NAMES)


@pytest.mark.parametrize("log_id", CASES)
def test_bad_windows_are_quarantined_with_the_right_reason(dataset, log_id):
    labels, windows, _ = window_rows(dataset)
    expected = {t0: reason.value for t0, reason in CASES[log_id][1].items()}
    clock_jumped = log_id == "clock-jump"  # the log now spans 8 s: 13 windows
    assert _windows_of(log_id, labels, windows) == (CLEAN | grid(6.5, 7.0, 7.5, 8.0) if clock_jumped else CLEAN)
    assert _clip_stage(windows, log_id) == expected
    clips = read_table(str(dataset), "clips", ["log_id", "t0_us"]).filter(pc.equal(pc.field("log_id"), log_id))
    assert set(clips.column("t0_us").to_pylist()) == _windows_of(log_id, labels, windows) - set(expected)


@pytest.mark.parametrize("log_id", LOG_LEVEL)
def test_files_that_give_no_window_are_one_log_level_row(dataset, log_id):
    labels, windows, log_rows = window_rows(dataset)
    assert _windows_of(log_id, labels, windows) == set()
    assert [(r["reason"], r["stage"]) for r in log_rows if r["log_id"] == log_id] == [(LOG_LEVEL[log_id].value, "read")]


@pytest.mark.parametrize("log_id", [f"cut-{k}" for k in range(CUTS)] + [f"flipped-{k}" for k in range(FLIPS)])
def test_damaged_files_give_the_windows_that_can_be_read(dataset, fleet, log_id):
    """A cut or bit-flipped file yields the windows of the readable part (or one log-level row);
    every one of them is a clip or a typed quarantine row."""
    labels, windows, log_rows = window_rows(dataset)
    try:
        planned = set(t0_grid(McapLogSource(str(fleet / "veh-000" / f"{log_id}.mcap")).info()))
    except LogReadError as e:
        planned = set()
        assert [r["reason"] for r in log_rows if r["log_id"] == log_id] == [e.reason.value]
    assert _windows_of(log_id, labels, windows) == planned
    assert set(_clip_stage(windows, log_id).values()) <= {r.value for r in Reason}


# log id -> the vehicle id it is filed under: a metadata id or folder name that is not a safe path
# component becomes its safe characters plus a hash (transforms.parquet.safe_name)
HOSTILE_NAMES = {"hostile-vehicle-id": "escaped-", "folder with spaces": "my_fleet-"}


@pytest.mark.parametrize("log_id", HOSTILE_NAMES)
def test_vehicle_ids_that_are_not_safe_folder_names_are_rewritten_not_fatal(dataset, log_id):
    labels, windows, _ = window_rows(dataset)
    assert _windows_of(log_id, labels, windows) == CLEAN
    vehicles = {r["vehicle_id"] for r in read_table(str(dataset), "clips", ["log_id", "vehicle_id"]).to_pylist()
                if r["log_id"] == log_id}
    assert len(vehicles) == 1 and vehicles.pop().startswith(HOSTILE_NAMES[log_id])
    assert not (dataset.parent / "escaped").exists()


def test_quarantine_reasons_in_the_manifest(dataset):
    manifest = assert_complete(dataset)
    clip_stage = Counter(r.value for _, expected in CASES.values() for r in expected.values())
    read = manifest["counts"]["quarantined"]["read"]
    for reason, n in clip_stage.items():
        assert manifest["counts"]["quarantined"]["clips"][reason] >= n
    assert read["unsafe_path"] == 1 and read["log_empty"] == 2 and read["log_unreadable"] >= 3
