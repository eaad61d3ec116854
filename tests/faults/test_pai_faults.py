"""Fault injection over PhysicalAI-AV roots: damaged videos, frame timestamps, egomotion and zips.

One 60 s analytic drive is written as ten 6 s clips (each clip is a log with t0 windows at 2.0,
2.5, ... 6.0 s of clip time: 9 windows); each faulty clip has one member rewritten. Two more
roots hold a camera zip with an unsafe member path and a truncated camera zip.
"""

import io
import zipfile

import av
import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from schemas.contract import TEACHER_CAMERAS
from schemas.reasons import Reason
from sim.writers.pai import camera_chunk_path, write_pai
from tests.fakes import analytic_drive, solid_render
from tests.faults.logs import assert_complete, random_teacher, reasons_of, window_rows

H, W = 48, 64
CAMERA = TEACHER_CAMERAS[1]
WINDOWS = {2_000_000 + 500_000 * k for k in range(9)}
FAULTS = ["clean", "dropped-frame", "duplicated-frame", "timestamps-short", "timestamps-unordered",
          "timestamps-gap", "ego-nan", "ego-inf", "ego-backward", "ego-duplicate"]
EGO_FAULT_T0 = {3_000_000, 3_500_000, 4_000_000, 4_500_000}  # windows whose history holds 3.0 s


def _rewrite(zip_path, edits: dict) -> None:
    """Apply {member: bytes -> bytes} to a zip, keeping member order."""
    with zipfile.ZipFile(zip_path) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, data in members:
            zf.writestr(name, edits[name](data) if name in edits else data)


def _frames(mp4: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(mp4)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _mp4(frames: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def _parquet(edit):
    def apply(data: bytes) -> bytes:
        df = edit(pd.read_parquet(io.BytesIO(data)))
        sink = io.BytesIO()
        df.to_parquet(sink, index=False)
        return sink.getvalue()
    return apply


def _at(df: pd.DataFrame, t_us: int) -> int:
    return int(np.flatnonzero(df["timestamp"].to_numpy() == t_us)[0])


def _set(column: str, value: float):
    def edit(df):
        df.loc[_at(df, 3_000_000), column] = value
        return df
    return edit


def _swap(df):
    i = _at(df, 3_000_000)
    df.loc[[i, i + 1], "timestamp"] = df.loc[[i + 1, i], "timestamp"].to_numpy()
    return df


def _duplicate(df):
    i = _at(df, 3_000_000)
    return pd.concat([df.iloc[: i + 1], df.iloc[[i]], df.iloc[i + 1:]], ignore_index=True)


def _gap(df):
    """Frames after 3.0 s are stamped 0.5 s late: the camera seems to have paused."""
    df.loc[df["timestamp"] > 3_000_000, "timestamp"] += 500_000
    return df


def _edits(clip: str, fault: str) -> tuple[str, dict]:
    video, stamps, ego = f"{clip}.{CAMERA}.mp4", f"{clip}.{CAMERA}.timestamps.parquet", f"{clip}.egomotion.parquet"
    camera_zip = camera_chunk_path(CAMERA).format(chunk_id=0)
    ego_zip = "labels/egomotion/egomotion.chunk_0000.zip"
    return {
        "clean": (camera_zip, {}),
        "dropped-frame": (camera_zip, {video: lambda d: _mp4((f := _frames(d))[:30] + f[31:])}),
        "duplicated-frame": (camera_zip, {video: lambda d: _mp4((f := _frames(d))[:30] + f[29:])}),
        "timestamps-short": (camera_zip, {stamps: _parquet(lambda df: df.iloc[:-1])}),
        "timestamps-unordered": (camera_zip, {stamps: _parquet(_swap_frames)}),
        "timestamps-gap": (camera_zip, {stamps: _parquet(_gap)}),
        "ego-nan": (ego_zip, {ego: _parquet(_set("x", np.nan))}),
        "ego-inf": (ego_zip, {ego: _parquet(_set("qw", np.inf))}),
        "ego-backward": (ego_zip, {ego: _parquet(_swap)}),
        "ego-duplicate": (ego_zip, {ego: _parquet(_duplicate)}),
    }[fault]


def _swap_frames(df):
    df.loc[[10, 11], "timestamp"] = df.loc[[11, 10], "timestamp"].to_numpy()
    return df


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    drive = analytic_drive("circle", seconds=6.0 * len(FAULTS), vehicle_id="veh-pai", log_name="pai-run")
    clips = write_pai([drive], str(root / "pai-faults"), solid_render, height=H, width=W, clip_seconds=6.0)["clip_ids"]
    singles = {}
    for name in ("pai-unsafe", "pai-corrupt-zip"):
        one = analytic_drive("circle", seconds=6.0, vehicle_id=name.replace("pai", "veh"), log_name=name)
        singles[name] = write_pai([one], str(root / name), solid_render, height=H, width=W,
                                  clip_seconds=6.0)["clip_ids"][0]
    by_fault = dict(zip(FAULTS, clips))
    for fault, clip in by_fault.items():
        archive, edits = _edits(clip, fault)
        if edits:
            _rewrite(root / "pai-faults" / archive, edits)
    camera_zip = camera_chunk_path(CAMERA).format(chunk_id=0)
    with zipfile.ZipFile(root / "pai-unsafe" / camera_zip, "a") as zf:
        zf.writestr("../../escaped.txt", b"outside the archive")
    data = (root / "pai-corrupt-zip" / camera_zip).read_bytes()
    (root / "pai-corrupt-zip" / camera_zip).write_bytes(data[: len(data) // 3])
    return root, by_fault, singles


@pytest.fixture(scope="module")
def dataset(fleet, tmp_path_factory):
    root, _, _ = fleet
    out = tmp_path_factory.mktemp("dataset")
    teacher = random_teacher(tmp_path_factory.mktemp("teacher"))
    assert main(["label", "--logs", str(root), "--out", str(out), "--quiet", "--teacher", teacher,
                 "--samples", "1"]) == 0
    return out


def test_the_run_completes_and_every_window_is_accounted_for(dataset):
    manifest = assert_complete(dataset)
    assert manifest["counts"]["logs"] == len(FAULTS) + 2
    assert manifest["counts"]["windows"] == 9 * (len(FAULTS) + 2)


EXPECTED = {
    "clean": {},
    # a video whose frame count differs from its timestamps cannot be aligned: every window
    "dropped-frame": {t0: Reason.LOG_UNREADABLE for t0 in WINDOWS},
    "duplicated-frame": {t0: Reason.LOG_UNREADABLE for t0 in WINDOWS},
    "timestamps-short": {t0: Reason.LOG_UNREADABLE for t0 in WINDOWS},
    "timestamps-unordered": {t0: Reason.LOG_UNREADABLE for t0 in WINDOWS},
    "ego-nan": dict.fromkeys(EGO_FAULT_T0, Reason.POSE_NONFINITE),
    "ego-inf": dict.fromkeys(EGO_FAULT_T0, Reason.POSE_NONFINITE),
    "ego-backward": dict.fromkeys(EGO_FAULT_T0, Reason.TIME_BACKWARDS),
    "ego-duplicate": dict.fromkeys(EGO_FAULT_T0, Reason.TIME_BACKWARDS),
}


@pytest.mark.parametrize("fault", EXPECTED)
def test_bad_windows_are_quarantined_with_the_right_reason(dataset, fleet, fault):
    _, by_fault, _ = fleet
    labels, windows, _ = window_rows(dataset)
    log_id = by_fault[fault]
    bad = {r["t0_us"]: r["reason"] for r in windows if r["log_id"] == log_id and r["stage"] in ("read", "clips")}
    assert bad == {t0: reason.value for t0, reason in EXPECTED[fault].items()}
    assert {r["t0_us"] for r in labels + windows if r["log_id"] == log_id} == WINDOWS


def test_a_camera_that_seems_to_pause_gives_stale_windows(dataset, fleet):
    """Frames stamped 0.5 s late after 3.0 s leave no frame within 50 ms of 3.1 ... 3.5 s."""
    _, by_fault, _ = fleet
    _, windows, _ = window_rows(dataset)
    bad = {r["t0_us"]: r["reason"] for r in windows
           if r["log_id"] == by_fault["timestamps-gap"] and r["stage"] == "clips"}
    assert bad == {3_500_000: Reason.CAMERA_STALE.value}


def test_unsafe_and_truncated_archives_quarantine_every_window(dataset, fleet):
    _, _, singles = fleet
    _, windows, _ = window_rows(dataset)
    assert reasons_of(windows, singles["pai-unsafe"]) == {Reason.UNSAFE_PATH.value: 9}
    assert reasons_of(windows, singles["pai-corrupt-zip"]) == {Reason.LOG_UNREADABLE.value: 9}
    assert {r["vehicle_id"] for r in windows if r["reason"] == Reason.UNSAFE_PATH.value} == {"veh-unsafe"}
