"""The data-quality report of a dataset: Great Expectations suites (schemas/expectations.py) over
flattened tables, Data Docs under `_quality/gx/`, and a self-contained `_quality/index.html`
with counts, distributions and a gallery of clips (camera grid, bird's-eye trajectories,
reasoning)."""

import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from schemas.expectations import CRITICAL, SUITES, WARNING, Expectation, freshness

GALLERY_CLIPS = 4  # evenly spread sample clips
WORST_CLIPS = 3  # per "worst" section


@dataclass(frozen=True)
class Outcome:
    table: str
    expectation: Expectation
    success: bool
    observed: str  # what GX saw, for the summary table
    docs_link: str  # relative link into Data Docs


# ---------------------------------------------------------------- flattening (DuckDB + numpy)

CLIPS_SQL = """
SELECT clip_id, vehicle_id, date, t0_us, len(images) AS num_images,
       sqrt(pow(ego_history_xyz[16][1] - ego_history_xyz[15][1], 2)
          + pow(ego_history_xyz[16][2] - ego_history_xyz[15][2], 2)) / 0.1 AS history_speed_mps,
       image_luma,
       len(list_filter(ego_future_xyz, lambda v: v IS NOT NULL)) = 64 AS future_complete
FROM clips
"""
LABELS_SQL = """
SELECT clip_id, vehicle_id, date, t0_us, len(samples) AS num_samples, min_ade_m,
       checks.sample_spread_m AS sample_spread_m
FROM labels
"""
SAMPLES_SQL = """
SELECT clip_id, vehicle_id, date, sample_index, reasoning, meta_longitudinal, meta_lateral,
       traj_xyz, traj_yaw
FROM samples
"""
QUARANTINE_SQL = "SELECT vehicle_id, date, stage, reason, detail FROM quarantine"


def flatten(con, today: str | None = None) -> dict[str, pd.DataFrame]:
    """Scalar-column frames of every table (GX misjudges list columns); `age_days` is the
    partition's age at `today` (default: now)."""
    frames = {
        "clips": con.sql(CLIPS_SQL).df(),
        "labels": con.sql(LABELS_SQL).df(),
        "samples": _flatten_samples(con.sql(SAMPLES_SQL).df()),
        "quarantine": con.sql(QUARANTINE_SQL).df(),
    }
    frames["quarantine"]["has_detail"] = frames["quarantine"]["detail"].fillna("").str.len() > 0
    now = pd.Timestamp(today or date.today().isoformat())
    for frame in frames.values():
        frame["age_days"] = (now - pd.to_datetime(frame["date"])).dt.days if len(frame) else pd.Series(dtype=int)
    return frames


def _flatten_samples(df: pd.DataFrame) -> pd.DataFrame:
    from transforms.validate import kinematics

    rows = []
    for traj_xyz, traj_yaw in zip(df["traj_xyz"], df["traj_yaw"]):
        xyz, yaw = _array(traj_xyz, 3), _array(traj_yaw, None)
        finite = bool(len(xyz) and np.isfinite(xyz).all() and np.isfinite(yaw).all() and len(yaw) == len(xyz))
        row = {"num_waypoints": len(xyz), "all_finite": finite, "speed_mps": np.nan,
               "max_abs_accel": np.nan, "max_abs_curvature": np.nan}
        if finite and len(xyz) >= 3:
            kin = kinematics(xyz, yaw)
            row.update(speed_mps=float(np.linalg.norm(xyz[0, :2]) / 0.1),
                       max_abs_accel=float(np.abs(kin.lon_accel).max()),
                       max_abs_curvature=float(np.abs(kin.curvature).max()))
        rows.append(row)
    out = df.drop(columns=["traj_xyz", "traj_yaw"]).reset_index(drop=True)
    out = pd.concat([out, pd.DataFrame(rows, index=out.index)], axis=1)
    out["reasoning_chars"] = out["reasoning"].fillna("").str.len()
    return out


def _array(value, width: int | None) -> np.ndarray:
    if value is None:
        return np.zeros((0, width) if width else (0,))
    items = [np.nan * np.ones(width) if width and v is None else v for v in value]
    return np.asarray([list(v) for v in items] if width else items, dtype=np.float64)


# ---------------------------------------------------------------- Great Expectations

def run_expectations(frames: dict[str, pd.DataFrame], docs_dir: str,
                     max_age_days: int | None = 365) -> list[Outcome]:
    """Run every suite on its frame with one GX checkpoint; Data Docs go to `docs_dir`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = gx.get_context(mode="ephemeral")
    _quiet_progress_bars(context)
    context.add_data_docs_site(site_name="coclabel", site_config={
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
    })
    source = context.data_sources.add_pandas("coclabel")
    docs = gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["coclabel"])
    outcomes = []
    for table, expectations in suites(max_age_days).items():
        frame = frames[table]
        if frame.empty and table in ("quarantine", "samples"):
            continue  # nothing to check (a clean run has no quarantine rows)
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
        suite = context.suites.add(gx.ExpectationSuite(name=table))
        specs = {}
        for i, spec in enumerate(expectations):
            suite.add_expectation(getattr(gxe, spec.type)(**spec.kwargs, meta={"id": i}))
            specs[i] = spec
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch, suite=suite))
        # One checkpoint per table: batch parameters (the dataframe) apply to a whole checkpoint.
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(name=table, validation_definitions=[definition], actions=[docs]))
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        link = _docs_link(docs_dir, table)
        for validation in result.run_results.values():
            for r in validation.results:
                spec = specs[r.expectation_config.meta["id"]]
                outcomes.append(Outcome(table, spec, bool(r.success), _observed(r.result), link))
    return outcomes


def suites(max_age_days: int | None) -> dict[str, list[Expectation]]:
    out = {table: list(specs) for table, specs in SUITES.items()}
    if max_age_days is not None:
        for table in ("clips", "labels"):
            out[table].append(freshness(max_age_days))
    return out


def _quiet_progress_bars(context) -> None:
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):
        pass


def _docs_link(docs_dir: str, table: str) -> str:
    root = os.path.join(docs_dir, "validations", table)
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".html"):
                return os.path.relpath(os.path.join(folder, name), os.path.dirname(docs_dir))
    return os.path.relpath(os.path.join(docs_dir, "index.html"), os.path.dirname(docs_dir))


def _observed(result: dict) -> str:
    if "observed_value" in result:
        return str(result["observed_value"])
    unexpected = result.get("unexpected_count")
    if unexpected is None:
        return ""
    values = result.get("partial_unexpected_list") or []
    shown = ", ".join(str(v) for v in values[:3])
    return f"{unexpected} unexpected" + (f" (e.g. {shown})" if shown else "")


# ---------------------------------------------------------------- the report

@dataclass(frozen=True)
class Report:
    index_html: str  # where the page was written (path or URL)
    outcomes: list[Outcome]
    seconds: float

    def failed(self, severity: str) -> list[Outcome]:
        levels = {CRITICAL: (CRITICAL,), WARNING: (CRITICAL, WARNING)}[severity]
        return [o for o in self.outcomes if not o.success and o.expectation.severity in levels]


def build_report(dataset: str, max_age_days: int | None = 365, today: str | None = None) -> Report:
    """Run the suites on `dataset` and write `_quality/index.html` and `_quality/gx/` beside it.

    A remote dataset (fsspec URL) is reported from a local temporary folder, then uploaded."""
    import fsspec

    from schemas.views import open_dataset
    from transforms import report_html
    from transforms.publish import atomic_output

    started = time.perf_counter()
    con = open_dataset(dataset)
    frames = flatten(con, today)
    fs, _, (base,) = fsspec.get_fs_token_paths(dataset)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = os.path.join(base, "_quality") if local else os.path.join(scratch, "_quality")
        os.makedirs(out_dir, exist_ok=True)
        outcomes = run_expectations(frames, os.path.join(out_dir, "gx"), max_age_days)
        manifest = _manifest(fs, base)
        sections = [
            ("Summary", _summary(frames, manifest, outcomes)),
            ("Distributions", report_html.distributions(frames)),
            ("Sample clips", _gallery(con, _spread_ids(frames["labels"], GALLERY_CLIPS))),
            ("Worst clips by min ADE", _gallery(con, _worst(frames["labels"], "min_ade_m"))),
            ("Worst clips by sample disagreement", _gallery(con, _worst(frames["labels"], "sample_spread_m"))),
        ]
        index = os.path.join(out_dir, "index.html")
        with atomic_output(index) as f:
            f.write(report_html.page(f"coclabel quality report: {base}", sections).encode())
        if not local:
            # trailing slashes: the folder's contents, also when _quality/ exists (else it nests)
            fs.put(f"{out_dir}/", f"{base.rstrip('/')}/_quality/", recursive=True)
            index = f"{dataset.rstrip('/')}/_quality/index.html"
    return Report(index, outcomes, time.perf_counter() - started)


def _manifest(fs, base: str) -> dict:
    path = f"{base.rstrip('/')}/_manifest.json"
    if not fs.exists(path):
        return {}
    with fs.open(path, "r") as f:
        return json.load(f)


def _summary(frames, manifest: dict, outcomes: list[Outcome]) -> str:
    from transforms.report_html import esc, frame_table

    teacher = manifest.get("teacher", {})
    facts = [("clips", len(frames["clips"])), ("labels", len(frames["labels"])),
             ("samples", len(frames["samples"])), ("quarantine rows", len(frames["quarantine"])),
             ("run id", manifest.get("run_id", "n/a")),
             ("teacher", " ".join(str(teacher.get(k, "")) for k in ("name", "version")).strip() or "n/a"),
             ("teacher weights sha256", teacher.get("weights_sha256", "n/a"))]
    parts = ["<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts) + "</table>"]
    quarantine = frames["quarantine"]
    if not quarantine.empty:
        by_reason = quarantine.groupby(["stage", "reason"]).size().rename("rows").reset_index()
        parts.append("<h3>Quarantine by reason</h3>" + frame_table(by_reason))
    rows = []
    for o in outcomes:
        status = "ok" if o.success else ("fail" if o.expectation.severity == CRITICAL else "warn")
        rows.append(f'<tr><td>{esc(o.table)}</td><td>{esc(o.expectation.type)}</td>'
                    f'<td>{esc(o.expectation.kwargs.get("column", ""))}</td><td>{esc(o.expectation.severity)}</td>'
                    f'<td class="{status}">{"passed" if o.success else "FAILED"}</td><td>{esc(o.observed)}</td>'
                    f'<td>{esc(o.expectation.why)}</td><td><a href="{esc(o.docs_link)}">Data Docs</a></td></tr>')
    failed = sum(not o.success for o in outcomes)
    parts.append(f"<h3>Expectations: {len(outcomes) - failed} passed, {failed} failed "
                 f'(<a href="gx/index.html">all Data Docs</a>)</h3><table><tr><th>table</th><th>expectation</th>'
                 f"<th>column</th><th>severity</th><th>result</th><th>observed</th><th>why</th><th>docs</th></tr>"
                 + "".join(rows) + "</table>")
    return "\n".join(parts)


def _spread_ids(labels: pd.DataFrame, n: int) -> list[str]:
    ids = sorted(labels["clip_id"].dropna().unique())
    if not ids:
        return []
    picks = np.linspace(0, len(ids) - 1, num=min(n, len(ids))).round().astype(int)
    return [ids[i] for i in dict.fromkeys(picks)]


def _worst(labels: pd.DataFrame, column: str) -> list[str]:
    ranked = labels.dropna(subset=[column]).sort_values([column, "clip_id"], ascending=[False, True])
    return list(ranked["clip_id"].head(WORST_CLIPS))


def _gallery(con, clip_ids: list[str]) -> str:
    from transforms.report_html import clip_card

    if not clip_ids:
        return "<p>No labelled clips.</p>"
    placeholders = ", ".join("?" for _ in clip_ids)
    clips = {r["clip_id"]: r for r in con.sql(
        f"SELECT clip_id, vehicle_id, log_id, t0_us, images, ego_history_xyz, ego_future_xyz FROM clips "
        f"WHERE clip_id IN ({placeholders})", params=clip_ids).to_arrow_table().to_pylist()}
    labels = {r["clip_id"]: r for r in con.sql(
        f"SELECT clip_id, samples, min_ade_m, checks FROM labels WHERE clip_id IN ({placeholders})",
        params=clip_ids).to_arrow_table().to_pylist()}
    cards = [clip_card(clips[c], labels[c]) for c in clip_ids if c in clips and c in labels]
    return "\n".join(cards) or "<p>The selected clips have no clip rows.</p>"
