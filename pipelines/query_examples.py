"""Worked example queries printed by `coclabel query DATASET --examples`."""

from dataclasses import dataclass

NIGHT_LUMA = 60.0  # clips.image_luma below this is a night (or tunnel) scene


@dataclass(frozen=True)
class Example:
    title: str
    sql: str


EXAMPLES = (
    Example(
        "samples whose reasoning mentions a red light while the trajectory does not slow down",
        """
SELECT clip_id, vehicle_id, t0_us, sample_index, meta_longitudinal, reasoning
FROM samples
WHERE reasoning ILIKE '%red%' AND meta_longitudinal NOT IN ('stop', 'decelerate')
ORDER BY clip_id, sample_index
""",
    ),
    Example(
        f"night clips (front camera luma < {NIGHT_LUMA:g}) with the widest disagreement between samples",
        f"""
SELECT l.clip_id, l.vehicle_id, l.t0_us, round(c.image_luma, 1) AS luma,
       round(l.checks.sample_spread_m, 2) AS spread_m, round(l.min_ade_m, 2) AS min_ade_m
FROM labels l JOIN clips c USING (clip_id)
WHERE c.image_luma < {NIGHT_LUMA}
ORDER BY l.checks.sample_spread_m DESC, l.clip_id
LIMIT 10
""",
    ),
    Example(
        "quarantine rows by reason and vehicle",
        """
SELECT reason, stage, vehicle_id, count(*) AS rows
FROM quarantine
GROUP BY ALL
ORDER BY rows DESC, reason, vehicle_id
""",
    ),
    Example(
        "meta-action mix of the teacher's samples",
        """
SELECT meta_longitudinal, meta_lateral, count(*) AS samples
FROM samples
GROUP BY ALL
ORDER BY samples DESC, meta_longitudinal, meta_lateral
""",
    ),
)
