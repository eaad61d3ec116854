"""DuckDB views over a dataset: clips, labels, samples (one row per sample), waypoints (one row
per predicted waypoint) and quarantine. Partition keys stay VARCHAR, as in schemas.tables."""

from schemas.tables import TABLES

TABLE_VIEWS = ("clips", "labels", "quarantine")

SAMPLES_SQL = """
SELECT l.clip_id, l.vehicle_id, l.log_id, l.t0_us, l.date, l.min_ade_m,
       k - 1 AS sample_index,
       l.samples[k].reasoning AS reasoning,
       l.samples[k].meta_action.longitudinal AS meta_longitudinal,
       l.samples[k].meta_action.lateral AS meta_lateral,
       l.samples[k].ade_m AS ade_m,
       l.checks.sample_spread_m AS sample_spread_m,
       l.samples[k].traj_xyz AS traj_xyz,
       l.samples[k].traj_yaw AS traj_yaw
FROM labels l, LATERAL (SELECT unnest(generate_series(1, len(l.samples))) AS k)
"""

WAYPOINTS_SQL = """
SELECT s.clip_id, s.vehicle_id, s.log_id, s.t0_us, s.date, s.sample_index,
       i - 1 AS step, i * 0.1 AS t_s,
       s.traj_xyz[i][1] AS x, s.traj_xyz[i][2] AS y, s.traj_xyz[i][3] AS z, s.traj_yaw[i] AS yaw
FROM samples s, LATERAL (SELECT unnest(generate_series(1, len(s.traj_xyz))) AS i)
"""


def table_glob(root: str, table: str) -> str:
    return f"{root.rstrip('/')}/{table}/**/*.parquet"


def table_view_sql(root: str, table: str) -> str:
    """The view of one partitioned table; `root` must already be a trusted dataset path."""
    path = table_glob(root, table).replace("'", "''")
    return (f"SELECT * FROM read_parquet('{path}', hive_partitioning=true, "
            f"hive_types_autocast=false, union_by_name=true)")


DERIVED_VIEWS = {"samples": SAMPLES_SQL, "waypoints": WAYPOINTS_SQL}


def open_dataset(root: str):
    """A DuckDB connection with the dataset's views, sandboxed to read only under `root`."""
    import duckdb
    import fsspec
    import pyarrow as pa

    fs, _, (base,) = fsspec.get_fs_token_paths(root)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    local = protocol in ("file", "local")
    prefix = base if local else f"{protocol}://{base}"
    con = duckdb.connect(":memory:")
    if not local:
        con.register_filesystem(fs)
    for table in TABLE_VIEWS:
        if fs.glob(f"{base.rstrip('/')}/{table}/**/*.parquet"):
            con.execute(f"CREATE VIEW {table} AS {table_view_sql(prefix, table)}")
        else:
            con.register(table, pa.Table.from_pylist([], schema=TABLES[table]))
    for name, sql in DERIVED_VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    allowed = prefix.rstrip("/") + "/"
    con.execute(f"SET allowed_directories=['{allowed.replace(chr(39), chr(39) * 2)}']")
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")
    return con
