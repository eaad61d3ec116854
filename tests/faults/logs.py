"""Faulty fleets for the fault suite: MCAP logs written from in-memory messages, a random-weight
teacher, and the invariants every finished dataset must satisfy."""

import json
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from mcap.writer import CompressionType
from mcap_ros2.writer import Writer
from rosbags.typesys import Stores, get_typestore

from schemas import tables
from schemas.views import open_dataset
from transforms.parquet import read_table
from transforms.sources.base import CameraFrame
from transforms.sources.topic_map import DEFAULT

_IMAGE, _ODOMETRY = "sensor_msgs/msg/CompressedImage", "nav_msgs/msg/Odometry"
_ZERO_COVARIANCE = [0.0] * 36


def _stamp(t_us: int) -> dict:
    return {"sec": t_us // 1_000_000, "nanosec": (t_us % 1_000_000) * 1_000}


def write_log(path: Path, messages, vehicle_id: str | None = "veh-000", chunk_size: int = 1 << 20,
              compression: CompressionType = CompressionType.ZSTD, log_lag_us: dict[int, int] | None = None) -> Path:
    """Write CameraFrame / EgoPose messages, in the given order, as a ROS 2 MCAP log (header
    stamp = t_us; log time = t_us plus `log_lag_us[i]` for message i, else t_us; the file order is
    the list order, so faults in time survive)."""
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        writer = Writer(f, chunk_size=chunk_size, compression=compression)
        schemas = {name: writer.register_msgdef(name, typestore.generate_msgdef(name, ros_version=2)[0])
                   for name in (_IMAGE, _ODOMETRY)}
        if vehicle_id is not None:
            writer.add_metadata("vehicle", {"id": vehicle_id})
        for seq, m in enumerate(messages):
            t_ns = (int(m.t_us) + (log_lag_us or {}).get(seq, 0)) * 1_000
            if isinstance(m, CameraFrame):
                msg = {"header": {"stamp": _stamp(m.t_us), "frame_id": m.camera}, "format": "jpeg", "data": m.data}
                writer.write_message(DEFAULT.cameras[m.camera], schemas[_IMAGE], msg, t_ns, t_ns, seq)
            else:
                p, q = [float(v) for v in m.xyz], [float(v) for v in m.quat]
                msg = {"header": {"stamp": _stamp(m.t_us), "frame_id": "odom"}, "child_frame_id": "base_link",
                       "pose": {"pose": {"position": dict(zip("xyz", p)), "orientation": dict(zip("xyzw", q))},
                                "covariance": _ZERO_COVARIANCE},
                       "twist": {"twist": {"linear": {"x": 0.0, "y": 0.0, "z": 0.0},
                                           "angular": {"x": 0.0, "y": 0.0, "z": 0.0}},
                                 "covariance": _ZERO_COVARIANCE}}
                writer.write_message(DEFAULT.ego_pose.topic, schemas[_ODOMETRY], msg, t_ns, t_ns, seq)
        writer.finish()
    return path


def random_teacher(folder: Path) -> str:
    """A teacher spec (`tiny:DIR`) of a small TinyVLA with random weights: the fault suite tests
    the pipeline, not the bundled weights (which may be mid-retraining), and a small model keeps
    each run to seconds."""
    import torch

    from models.teacher import save_weights
    from models.tokenizer import Tokenizer
    from models.vla import TinyVLA, VLAConfig

    torch.manual_seed(0)
    tokenizer = Tokenizer.fit(["Keep speed since the road ahead is clear.", "Stop at the red light."])
    cfg = VLAConfig(vocab_size=len(tokenizer), d_model=32, n_heads=2, n_decoder_layers=1, n_expert_layers=1,
                    max_text_len=8)
    model = TinyVLA(cfg)
    model.action_scale.fill_(1e-3)  # near-zero actions: smooth trajectories, so labels pass the checks
    save_weights(model, tokenizer, folder)
    return f"tiny:{folder}"


def window_rows(out: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(labels, window quarantine rows, log-level quarantine rows) of a dataset."""
    labels = read_table(str(out), "labels", ["clip_id", "log_id", "t0_us"]).to_pylist()
    quarantine = read_table(str(out), "quarantine")
    has_t0 = pc.is_valid(quarantine.column("t0_us"))
    return (labels, quarantine.filter(has_t0).to_pylist(),
            quarantine.filter(pc.invert(has_t0)).to_pylist())


def assert_complete(out: Path) -> dict:
    """The invariants of a finished dataset; returns its manifest.

    `_SUCCESS` names the manifest's run; windows in = labels + quarantine, from the manifest
    and from the tables; no clip id twice; DuckDB reads every table with its schema; no temporary
    file is left and every `*.parquet` is a complete Parquet file."""
    manifest = json.loads((out / "_manifest.json").read_text())
    assert (out / "_SUCCESS").read_text().strip() == manifest["run_id"]
    labels, windows, _ = window_rows(out)
    counts = manifest["counts"]
    assert counts["labels"] == len(labels)
    assert counts["windows"] == len(labels) + len(windows)
    assert counts["windows"] == len({(r["log_id"], r["t0_us"]) for r in labels + windows})
    quarantined = sum(n for reasons in counts["quarantined"].values() for n in reasons.values())
    assert quarantined == read_table(str(out), "quarantine", ["reason"]).num_rows
    assert not [p for p in out.rglob("*") if p.name.startswith("_tmp.")]
    for path in out.rglob("*.parquet"):
        pq.read_table(path)
    con = open_dataset(str(out))
    for table in ("clips", "labels", "quarantine"):
        tables.validate_table(con.sql(f"SELECT * FROM {table}").to_arrow_table(), table)
    assert con.sql("SELECT count(*) - count(DISTINCT clip_id) FROM labels").fetchall() == [(0,)]
    assert con.sql("SELECT count(*) - count(DISTINCT clip_id) FROM clips").fetchall() == [(0,)]
    assert con.sql("SELECT count(*) - count(DISTINCT (log_id, t0_us)) FROM quarantine "
                   "WHERE t0_us IS NOT NULL").fetchall() == [(0,)]
    return manifest


def reasons_of(windows: list[dict], log_id: str) -> Counter:
    return Counter(r["reason"] for r in windows if r["log_id"] == log_id)

