"""Accuracy of a student's (or the teacher's) K samples on held-out examples (models/students/data.py):
minADE/minFDE over K against the ground truth and against the teacher's samples, teacher-student
L2 between the sample means, meta-action agreement with the teacher (majority over samples),
and whether the teacher's K samples all state the same meta-action.
Distances are in the xy plane, in metres."""

import numpy as np

from models.action_space import actions_to_traj, speed_from_history
from models.meta_actions import classify
from schemas.ids import seed_of


def ade_fde(pred_xyz, target_xyz):
    """(K, 64, 3) x (64, 3) -> (ADE (K,), FDE (K,))."""
    d = np.linalg.norm(pred_xyz[..., :2] - target_xyz[None, :, :2], axis=-1)
    return d.mean(-1), d[:, -1]


def majority(pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """The most common (longitudinal, lateral) pair; ties go to the first seen."""
    from collections import Counter

    counts = Counter(pairs)
    best = max(counts.values())
    return next(p for p in pairs if counts[p] == best)


def clip_accuracy(pred_xyz, pred_yaw, v0: float, teacher_xyz, teacher_meta: list[tuple[str, str]], gt_xyz) -> dict:
    """Metrics of one clip's K samples; `gt_xyz` None where the log has no full future."""
    out = {}
    if gt_xyz is not None:
        ade, fde = ade_fde(pred_xyz, gt_xyz)
        out["min_ade_gt"], out["min_fde_gt"] = float(ade.min()), float(fde.min())
    to_teacher = [ade_fde(pred_xyz, t) for t in teacher_xyz]
    out["min_ade_teacher"] = float(np.mean([a.min() for a, _ in to_teacher]))
    out["min_fde_teacher"] = float(np.mean([f.min() for _, f in to_teacher]))
    out["l2_teacher"] = float(np.linalg.norm(pred_xyz.mean(0)[:, :2] - teacher_xyz.mean(0)[:, :2], axis=-1).mean())
    mine = majority([classify(x, y, v0) for x, y in zip(pred_xyz, pred_yaw)])
    out["meta_agree"] = float(mine == majority(teacher_meta))
    # where the teacher's samples disagree among themselves its majority is partly chance
    out["teacher_unanimous"] = float(len(set(teacher_meta)) == 1)
    return out


def student_predictions(policy, columns: dict, samples: int, runner=None) -> list[tuple]:
    """Per example (xyz (K, 64, 3), yaw (K, 64), reasoning) of a StudentPolicy, clip i's noise
    seeded by seed_of(clip_id); with an exported `runner` (models/export.py) the trajectories
    are the runner's, and so is the reasoning where it gives word ids too (OnnxPolicy)."""
    from models.teacher import images_tensor

    out = []
    n, bs = len(columns["clip_id"]), policy.batch_size
    for start in range(0, n, bs):
        sl = slice(start, start + bs)
        seeds = [seed_of(str(c)) for c in columns["clip_id"][sl]]
        images, xyz, rot = columns["images"][sl], columns["history_xyz"][sl], columns["history_rot"][sl]
        preds = policy.predict_arrays(images, xyz, rot, samples, seeds)
        if runner is not None:
            v0 = speed_from_history(xyz)
            result = runner(images_tensor(images).numpy(), xyz, rot, v0.astype(np.float32), policy.noise(seeds, samples).numpy())
            ids, actions = result if isinstance(result, tuple) else (None, result)
            for i, p in enumerate(preds):
                if ids is not None:
                    for k in range(samples):
                        p[k]["reasoning"] = policy.tokenizer.decode(ids[i])
                traj, yaw = actions_to_traj(actions[i, :samples].astype(np.float64), v0[i], xyz[i, -1, 2])
                for k in range(samples):
                    p[k]["traj_xyz"], p[k]["traj_yaw"] = traj[k].astype(np.float32), yaw[k].astype(np.float32)
        for p in preds:
            out.append((np.stack([s["traj_xyz"] for s in p]), np.stack([s["traj_yaw"] for s in p]), p[0]["reasoning"]))
    return out


def clip_rows(columns: dict, preds: list[tuple] | None) -> list[dict]:
    """Per-example metrics of `preds`, or of the teacher's own samples when None (then only
    those against the ground truth)."""
    rows = []
    v0 = speed_from_history(columns["history_xyz"])
    for i in range(len(columns["clip_id"])):
        teacher_xyz = columns["teacher_xyz"][i]
        gt = columns["future_xyz"][i]
        gt = gt if np.isfinite(gt).all() else None
        meta = list(zip(columns["teacher_longitudinal"][i], columns["teacher_lateral"][i]))
        if preds is None:
            row = clip_accuracy(teacher_xyz, columns["teacher_yaw"][i], v0[i], teacher_xyz, meta, gt)
            row = {k: row[k] for k in ("min_ade_gt", "min_fde_gt") if k in row}
        else:
            row = clip_accuracy(preds[i][0], preds[i][1], v0[i], teacher_xyz, meta, gt)
        rows.append(row)
    return rows


def mean_rows(rows: list[dict]) -> dict:
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


def heldout_metrics(student_dir, columns: dict, samples: int, device: str = "cpu", noise_scale: float | None = None) -> dict:
    """The student's mean metrics on `columns` (at `noise_scale`, default its own), the
    teacher's minADE/FDE to the truth on the same examples, and their ratio."""
    from models.students.policy import StudentPolicy

    policy = StudentPolicy(student_dir, device, batch_size=64, noise_scale=noise_scale)
    student = mean_rows(clip_rows(columns, student_predictions(policy, columns, samples)))
    teacher = mean_rows(clip_rows(columns, None))
    out = {"clips": len(columns["clip_id"]), "noise_scale": policy.noise_scale, "student": student, "teacher": teacher}
    if "min_ade_gt" in teacher:
        out["min_ade_gt_ratio"] = student["min_ade_gt"] / max(teacher["min_ade_gt"], 1e-9)
    return out
