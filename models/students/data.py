"""Training examples of a student: one clip joined with its label, decoded at the student's
image size, and the .npz shards that hold them.

An example holds the model inputs (16 decoded images, ego history), the teacher's K samples
(trajectory, yaw, reasoning, meta-action) and the ground-truth future where the log has one
(NaN rows where it ends). Its split is drawn per 20 s block of its log, so that held-out clips
do not overlap training clips in time. Its image domain says how its frames were stored: "jpeg"
(MCAP logs, rosbag2 folders, the simulator's clips) or "h264" (PhysicalAI-AV video, decoded).
"""

import json
import posixpath
from pathlib import Path

import numpy as np

from models.teacher import clip_arrays
from schemas.contract import NUM_FUTURE
from schemas.ids import seed_of

SPLIT_BLOCK_US = 20_000_000
ARRAY_FIELDS = ("images", "history_xyz", "history_rot", "future_xyz", "future_rot", "teacher_xyz", "teacher_yaw")
TEXT_FIELDS = ("clip_id", "split", "domain", "teacher_text", "teacher_longitudinal", "teacher_lateral")


def shard_of(clip_id: str, n: int) -> int:
    """The shard (0..n-1) of a clip, from a hash of its id."""
    return seed_of(clip_id, salt=11) % n


def split_of(log_id: str, t0_us: int, heldout_percent: int) -> str:
    """"heldout" for about `heldout_percent` % of the 20 s blocks of each log, else "train"."""
    block = int(t0_us) // SPLIT_BLOCK_US
    return "heldout" if seed_of(f"{log_id}/{block}", salt=7) % 100 < heldout_percent else "train"


def image_domain(clip: dict) -> str:
    """"h264" for a clip read from a PhysicalAI-AV root (its `source_uri` is the root, not named
    after its log), else "jpeg" (an MCAP file, a rosbag2 folder named after its log, or a clip
    straight from the simulator, which has no `source_uri`)."""
    uri = clip.get("source_uri")
    if not uri:
        return "jpeg"
    name = posixpath.basename(str(uri).rstrip("/"))
    return "jpeg" if name.endswith(".mcap") or name == clip["log_id"] else "h264"


def _future(rows, width: int) -> np.ndarray:
    """(64, width) float32 from a list of rows, NaN where a row is null (past the log's end)."""
    out = np.full((NUM_FUTURE, width), np.nan, dtype=np.float32)
    for i, row in enumerate(rows[:NUM_FUTURE] if rows is not None else []):
        if row is not None:
            out[i] = row
    return out


def training_example(clip: dict, label: dict, height: int, width: int, heldout_percent: int) -> dict:
    """A CLIPS row and its LABELS row -> one example (see module docstring)."""
    images, hist_xyz, hist_rot = clip_arrays(clip, height, width)
    samples = label["samples"]
    if not samples:
        raise ValueError(f"clip {clip['clip_id']}: label has no samples")
    meta = [s.get("meta_action") or {} for s in samples]
    return {
        "clip_id": clip["clip_id"], "split": split_of(clip["log_id"], clip["t0_us"], heldout_percent),
        "domain": image_domain(clip),
        "images": images, "history_xyz": hist_xyz, "history_rot": hist_rot,
        "future_xyz": _future(clip.get("ego_future_xyz"), 3), "future_rot": _future(clip.get("ego_future_rot"), 9),
        "teacher_xyz": np.asarray([s["traj_xyz"] for s in samples], dtype=np.float32).reshape(len(samples), NUM_FUTURE, 3),
        "teacher_yaw": np.asarray([s["traj_yaw"] for s in samples], dtype=np.float32).reshape(len(samples), NUM_FUTURE),
        "teacher_text": np.asarray([s["reasoning"] for s in samples]),
        "teacher_longitudinal": np.asarray([m.get("longitudinal") or "" for m in meta]),
        "teacher_lateral": np.asarray([m.get("lateral") or "" for m in meta]),
    }


def write_shard(path: str | Path, examples: list[dict]) -> Path:
    """Stack examples (sorted by clip_id) into one .npz, written atomically; no pickles."""
    examples = sorted(examples, key=lambda e: e["clip_id"])
    k = {len(e["teacher_text"]) for e in examples}
    if len(k) != 1:
        raise ValueError(f"examples of one shard have different sample counts {sorted(k)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{f: np.stack([np.asarray(e[f]) for e in examples]) for f in ARRAY_FIELDS + TEXT_FIELDS})
    tmp.replace(path)
    return path


def write_shards(examples: list[dict], out_dir: str | Path, n_shards: int) -> list[Path]:
    """Examples -> `out_dir`/shard-NNNNN.npz by `shard_of` (what the Beam join writes), after
    removing the shards of an earlier run."""
    out_dir = Path(out_dir)
    for old in out_dir.glob("shard-*.npz"):
        old.unlink()
    groups: dict[int, list[dict]] = {}
    for e in examples:
        groups.setdefault(shard_of(str(e["clip_id"]), n_shards), []).append(e)
    return [write_shard(out_dir / f"shard-{k:05d}.npz", groups[k]) for k in sorted(groups)]


def shard_summary(shard_dir: str | Path) -> list[dict]:
    """Per shard file: its name, clips and held-out clips."""
    out = []
    for path in sorted(Path(shard_dir).glob("shard-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            out.append({"file": path.name, "clips": len(data["clip_id"]), "heldout": int((data["split"] == "heldout").sum())})
    return out


def load_shards(shard_dir: str | Path) -> dict[str, np.ndarray]:
    """Every shard of a folder concatenated, rows ordered by clip_id."""
    paths = sorted(Path(shard_dir).glob("shard-*.npz"))
    if not paths:
        raise FileNotFoundError(f"no shards (shard-*.npz) in {shard_dir}")
    parts = []
    for p in paths:
        with np.load(p, allow_pickle=False) as data:
            parts.append({k: data[k] for k in data.files})
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(columns["clip_id"], kind="stable")
    return {k: v[order] for k, v in columns.items()}


def select(columns: dict[str, np.ndarray], split: str, domain: str | None = None) -> dict[str, np.ndarray]:
    """The rows of `split` (and of image `domain` where given; shards written before domains
    were recorded hold no "domain" column and count as "jpeg")."""
    keep = columns["split"] == split
    if domain is not None:
        keep &= columns.get("domain", np.full(len(keep), "jpeg")) == domain
    return {k: v[keep] for k, v in columns.items()}


def write_join_report(shard_dir: str | Path, report: dict) -> None:
    Path(shard_dir, "_join.json").write_text(json.dumps(report, indent=1, sort_keys=True))


def read_join_report(shard_dir: str | Path) -> dict | None:
    path = Path(shard_dir, "_join.json")
    return json.loads(path.read_text()) if path.exists() else None
