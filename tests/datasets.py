"""Small hand-built datasets in the published layout, for tests of queries and reports."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import tables
from schemas.ids import clip_id

TEACHER = {"name": "tiny", "version": "test", "weights_sha256": "0" * 64}


def straight(speed: float, accel: float = 0.0) -> tuple[list, list]:
    t = np.arange(1, 65) * 0.1
    x = speed * t + 0.5 * accel * t * t
    xyz = np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1).astype(np.float32)
    return xyz.tolist(), np.zeros(64, np.float32).tolist()


def sample(reasoning: str, speed: float, accel: float, longitudinal: str, lateral: str = "keep_lane",
           ade: float | None = 0.5) -> dict:
    xyz, yaw = straight(speed, accel)
    return {"reasoning": reasoning, "traj_xyz": xyz, "traj_yaw": yaw,
            "meta_action": {"longitudinal": longitudinal, "lateral": lateral}, "ade_m": ade}


def label_row(log_id: str, t0_us: int, samples: list[dict], vehicle_id: str = "veh-000",
              date: str = "2026-01-01", spread: float = 0.0) -> dict:
    ades = [s["ade_m"] for s in samples if s["ade_m"] is not None]
    return {"clip_id": clip_id(log_id, t0_us), "vehicle_id": vehicle_id, "log_id": log_id,
            "t0_us": t0_us, "date": date, "teacher": TEACHER, "samples": samples,
            "min_ade_m": min(ades) if ades else None,
            "checks": {"flags": [], "sample_spread_m": spread, "max_abs_accel": 1.0,
                       "max_abs_curvature": 0.0}}


def clip_row(log_id: str, t0_us: int, vehicle_id: str = "veh-000", date: str = "2026-01-01",
             luma: float = 120.0, images: list[bytes] | None = None, future_steps: int = 64) -> dict:
    """A CLIPS row; the ego future has `future_steps` poses, then null steps (a log that ends)."""
    eye = np.eye(3, dtype=np.float32).ravel().tolist()
    pad = [None] * (64 - future_steps)
    return {"clip_id": clip_id(log_id, t0_us), "vehicle_id": vehicle_id, "log_id": log_id,
            "t0_us": t0_us, "date": date, "camera_names": ["a", "b", "c", "d"],
            "frame_timestamps_us": [[t0_us - 300_000 + 100_000 * i for i in range(4)]] * 4,
            "images": [b"\xff\xd8\xff"] * 16 if images is None else images,
            "ego_history_xyz": [[0.0, 0.0, 0.0]] * 16, "ego_history_rot": [eye] * 16,
            "ego_future_xyz": [[0.0, 0.0, 0.0]] * future_steps + pad, "ego_future_rot": [eye] * future_steps + pad,
            "source_uri": f"/logs/{log_id}.mcap", "image_luma": luma}


def quarantine_row(log_id: str, t0_us: int | None, reason: str, stage: str,
                   vehicle_id: str = "veh-000", date: str = "2026-01-01") -> dict:
    return {"clip_id": clip_id(log_id, t0_us) if t0_us is not None else None,
            "source_uri": f"/logs/{log_id}.mcap", "vehicle_id": vehicle_id, "log_id": log_id,
            "t0_us": t0_us, "date": date, "stage": stage, "reason": reason, "detail": "test"}


def write_dataset(root, clips=(), labels=(), quarantine=()) -> None:
    """Write rows as Hive partitions date=/vehicle_id=, one file per partition and table."""
    for table, rows in (("clips", clips), ("labels", labels), ("quarantine", quarantine)):
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["date"], row["vehicle_id"]), []).append(row)
        for (date, vehicle), group in groups.items():
            folder = root / table / f"date={date}" / f"vehicle_id={vehicle}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(group, schema=tables.TABLES[table]), folder / "part-0.parquet")


def assert_examples_match(con, labels: list[dict], clips: list[dict], quarantine: list[dict]) -> list[list[dict]]:
    """Run the --examples queries and check each against the same answer computed in Python."""
    from collections import Counter

    from pipelines.query import run_query
    from pipelines.query_examples import EXAMPLES, NIGHT_LUMA

    results = [run_query(con, e.sql).to_pylist() for e in EXAMPLES]
    red, night, by_reason, mix = results
    assert sorted((r["clip_id"], r["sample_index"]) for r in red) == sorted(
        (l["clip_id"], k) for l in labels for k, s in enumerate(l["samples"])
        if "red" in s["reasoning"].lower() and s["meta_action"]["longitudinal"] not in ("stop", "decelerate"))
    luma = {c["clip_id"]: c["image_luma"] for c in clips}
    dark = sorted((l for l in labels if luma[l["clip_id"]] is not None and luma[l["clip_id"]] < NIGHT_LUMA),
                  key=lambda l: (-l["checks"]["sample_spread_m"], l["clip_id"]))
    assert [r["clip_id"] for r in night] == [l["clip_id"] for l in dark[:10]]
    assert {(r["reason"], r["stage"], r["vehicle_id"]): r["rows"] for r in by_reason} == dict(
        Counter((q["reason"], q["stage"], q["vehicle_id"]) for q in quarantine))
    assert {(r["meta_longitudinal"], r["meta_lateral"]): r["samples"] for r in mix} == dict(
        Counter((s["meta_action"]["longitudinal"], s["meta_action"]["lateral"]) for l in labels for s in l["samples"]))
    return results
