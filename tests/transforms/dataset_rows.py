"""Rows of the dataset tables with exactly representable values, for writer and manifest tests."""

from schemas.ids import clip_id

DATE, VEHICLE = "2026-01-01", "veh-1"


def clip_row(log_id: str, t0_us: int, image_bytes: int = 8, vehicle_id: str = VEHICLE, date: str = DATE) -> dict:
    return {
        "clip_id": clip_id(log_id, t0_us),
        "vehicle_id": vehicle_id,
        "log_id": log_id,
        "t0_us": t0_us,
        "date": date,
        "camera_names": ["a", "b", "c", "d"],
        "frame_timestamps_us": [[t0_us - 300_000 + 100_000 * j for j in range(4)] for _ in range(4)],
        "images": [bytes([i]) * image_bytes for i in range(16)],
        "ego_history_xyz": [[0.5 * (i - 15), 0.0, 0.0] for i in range(16)],
        "ego_history_rot": [[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0] for _ in range(16)],
        "ego_future_xyz": [[0.5 * (i + 1), 0.25, 0.0] for i in range(60)] + [None] * 4,
        "ego_future_rot": [[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0] for _ in range(60)] + [None] * 4,
        "source_uri": f"/fleet/{log_id}.mcap",
        "image_luma": 96.5,
    }


def label_row(log_id: str, t0_us: int, vehicle_id: str = VEHICLE, date: str = DATE) -> dict:
    sample = {
        "reasoning": "Keep speed since the road ahead is clear.",
        "traj_xyz": [[0.5 * (i + 1), 0.0, 0.0] for i in range(64)],
        "traj_yaw": [0.0] * 64,
        "meta_action": {"longitudinal": "keep_speed", "lateral": "keep_lane"},
        "ade_m": 0.25,
    }
    return {
        "clip_id": clip_id(log_id, t0_us),
        "vehicle_id": vehicle_id,
        "log_id": log_id,
        "t0_us": t0_us,
        "date": date,
        "teacher": {"name": "tiny", "version": "1", "weights_sha256": "ab" * 32},
        "samples": [sample, dict(sample, ade_m=None, meta_action={"longitudinal": "stop", "lateral": None})],
        "min_ade_m": 0.25,
        "checks": {"flags": ["comfort_jerk"], "sample_spread_m": 0.0, "max_abs_accel": 1.5, "max_abs_curvature": 0.125},
    }


def quarantine_row(log_id: str, t0_us: int | None, stage: str, reason: str, vehicle_id: str = VEHICLE,
                   date: str = DATE) -> dict:
    return {
        "clip_id": None if t0_us is None else clip_id(log_id, t0_us),
        "source_uri": f"/fleet/{log_id}.mcap",
        "vehicle_id": vehicle_id,
        "log_id": log_id,
        "t0_us": t0_us,
        "date": date,
        "stage": stage,
        "reason": reason,
        "detail": f"{reason} at {t0_us}",
    }
